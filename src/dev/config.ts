/**
 * The dev mode's environment, parsed once like every component's. The dev mode passes these on to the
 * components it starts: each validates its own settings again, so a bad value is still reported once,
 * in one line, by the component it belongs to.
 */
import { z } from "zod";
import { type Env, parseEnv } from "../lib/config.js";
import { DEFAULT_STREAM_NAME, parseRedisAddress } from "../lib/redis.js";

/** Dispatcher settings a user may want to try locally; passed through as they are. */
const DISPATCHER_PASSTHROUGH = [
  "MAX_ATTEMPTS",
  "MIN_BACKOFF",
  "MAX_BACKOFF",
  "MAX_EVENT_AGE",
  "RETRY_NON_IDEMPOTENT",
  "REQUEST_TIMEOUT",
] as const;

/** Fewer attempts than a deployment's default, so that a failing request reaches the dead letters soon. */
const DEV_MAX_ATTEMPTS = "4";

const passthrough = Object.fromEntries(DISPATCHER_PASSTHROUGH.map((name) => [name, z.string().optional()]));

/** Every environment variable `knative-async dev` reads; the keys are the names. */
export const devEnvSchema = z.object({
  /** An existing Redis; when unset the dev mode starts its own. Checked here, kept as written. */
  REDIS_ADDRESS: z
    .string()
    .optional()
    .superRefine((value, ctx) => {
      if (value === undefined) return;
      try {
        parseRedisAddress(value);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: `not a Redis address: ${(err as Error).message}` });
      }
    }),
  REDIS_STREAM_NAME: z.string().min(1).default(DEFAULT_STREAM_NAME),
  /** The components' JSON logs on stderr; quieter than a deployment so the event lines stand out. */
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("warn"),
  ...passthrough,
});

export interface DevEnv {
  readonly redisAddress?: string;
  readonly streamName: string;
  readonly logLevel: string;
  readonly dispatcherEnv: Readonly<Record<string, string>>;
}

export function loadDevEnv(env: Env): DevEnv {
  const e = parseEnv("dev", devEnvSchema, env) as Readonly<Record<string, string | undefined>>;
  const dispatcherEnv: Record<string, string> = { MAX_ATTEMPTS: DEV_MAX_ATTEMPTS };
  for (const name of DISPATCHER_PASSTHROUGH) {
    const value = e[name];
    if (value !== undefined) dispatcherEnv[name] = value;
  }
  return Object.freeze({
    ...(e.REDIS_ADDRESS === undefined ? {} : { redisAddress: e.REDIS_ADDRESS }),
    streamName: e.REDIS_STREAM_NAME as string,
    logLevel: e.LOG_LEVEL as string,
    dispatcherEnv: Object.freeze(dispatcherEnv),
  });
}
