/**
 * Consumer configuration. The consumer has no Redis: it receives CloudEvents and replays requests, so
 * its settings are about the replay (timeouts, connections) and the events it accepts.
 */
import { z } from "zod";
import {
  durationSetting,
  type Env,
  intSetting,
  listSetting,
  logLevelSetting,
  parseEnv,
  portSetting,
} from "../lib/config.js";
import { DEFAULT_RETRYABLE_STATUSES } from "../lib/outcome.js";

/**
 * The dispatcher sends a 6 MB binary body (the producer's default limit) as base64 (8 MB) inside the
 * envelope JSON inside the entry's JSON field list; 9 MiB holds that with room for the headers.
 */
export const DEFAULT_EVENT_SIZE_LIMIT = 9 * 1024 * 1024;

const statusListSetting = listSetting(DEFAULT_RETRYABLE_STATUSES.map(String)).transform((values, ctx) => {
  const codes = values.map(Number);
  if (!codes.every((c) => Number.isInteger(c) && c >= 100 && c <= 599)) {
    ctx.addIssue({ code: "custom", message: "must be a comma-separated list of HTTP status codes" });
    return z.NEVER;
  }
  return codes;
});

/** Every environment variable the consumer reads; the keys are the names. */
export const consumerEnvSchema = z.object({
  PORT: portSetting(8080),
  LOG_LEVEL: logLevelSetting,
  /** Per-replay timeout when the request carries none (Knative's default revision timeout). */
  REQUEST_TIMEOUT: durationSetting("5m"),
  /** Upper bound for a per-service timeout (`async.knative.dev/timeout`). */
  MAX_REQUEST_TIMEOUT: durationSetting("15m"),
  MAX_CONNECTIONS_PER_HOST: intSetting(256, 1, 65_535),
  EVENT_SIZE_LIMIT: intSetting(DEFAULT_EVENT_SIZE_LIMIT, 1024, 512 * 1024 * 1024),
  /** Target statuses answered with 502 so that the sender tries again; others are final (200). */
  RETRYABLE_STATUS_CODES: statusListSetting,
});

export interface ConsumerConfig {
  readonly port: number;
  readonly logLevel: string;
  readonly requestTimeoutMs: number;
  readonly maxRequestTimeoutMs: number;
  readonly maxConnectionsPerHost: number;
  /** Largest accepted CloudEvent body, in bytes. */
  readonly eventSizeLimit: number;
  readonly retryableStatusCodes: readonly number[];
}

export function loadConsumerConfig(env: Env): ConsumerConfig {
  const schema = consumerEnvSchema
    .refine((e) => e.REQUEST_TIMEOUT >= 1, { message: "must be at least 1ms", path: ["REQUEST_TIMEOUT"] })
    .refine((e) => e.REQUEST_TIMEOUT <= e.MAX_REQUEST_TIMEOUT, {
      message: "must not be larger than MAX_REQUEST_TIMEOUT",
      path: ["REQUEST_TIMEOUT"],
    });
  const e = parseEnv("consumer", schema, env);
  return Object.freeze({
    port: e.PORT,
    logLevel: e.LOG_LEVEL,
    requestTimeoutMs: e.REQUEST_TIMEOUT,
    maxRequestTimeoutMs: e.MAX_REQUEST_TIMEOUT,
    maxConnectionsPerHost: e.MAX_CONNECTIONS_PER_HOST,
    eventSizeLimit: e.EVENT_SIZE_LIMIT,
    retryableStatusCodes: Object.freeze([...e.RETRYABLE_STATUS_CODES]),
  });
}
