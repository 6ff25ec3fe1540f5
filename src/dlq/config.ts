import { z } from "zod";
import { type Env, parseEnv } from "../lib/config.js";
import { type RedisSettings, redisAddressSetting, withTlsCert } from "../lib/redis.js";

/** Every environment variable `knative-async dlq` reads; the keys are the names. */
export const dlqEnvSchema = z.object({
  REDIS_ADDRESS: redisAddressSetting(),
  TLS_CERT: z.string().optional(),
  REDIS_STREAM_NAME: z.string().min(1).default("mystream"),
});

export interface DlqConfig {
  readonly redis: RedisSettings;
  readonly streamName: string;
}

export function loadDlqConfig(env: Env): DlqConfig {
  const e = parseEnv("dlq", dlqEnvSchema, env);
  return Object.freeze({ redis: withTlsCert(e.REDIS_ADDRESS, e.TLS_CERT), streamName: e.REDIS_STREAM_NAME });
}
