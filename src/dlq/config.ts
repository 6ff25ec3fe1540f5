import { z } from "zod";
import { type Env, parseEnv } from "../lib/config.js";
import { type RedisSettings, redisEnvFields, redisFromEnv } from "../lib/redis.js";

/** Every environment variable `knative-async dlq` reads; the keys are the names. */
export const dlqEnvSchema = z.object({ ...redisEnvFields });

export interface DlqConfig {
  readonly redis: RedisSettings;
  readonly streamName: string;
}

export function loadDlqConfig(env: Env): DlqConfig {
  const e = parseEnv("dlq", dlqEnvSchema, env);
  return Object.freeze(redisFromEnv(e));
}
