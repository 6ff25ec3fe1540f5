/**
 * Consumer configuration. The consumer has no Redis: it receives CloudEvents and replays requests, so
 * its settings are about the replay (timeouts, connections) and the events it accepts.
 */
import { z } from "zod";
import {
  durationSetting,
  type Env,
  intSetting,
  notLargerThan,
  parseEnv,
  serverEnvFields,
  serverFromEnv,
  statusListSetting,
} from "../lib/config.js";
import { DEFAULT_RETRYABLE_STATUSES } from "../lib/outcome.js";
import { type TargetRules, targetEnvFields, targetRulesFromEnv } from "../lib/target.js";

/**
 * The event carries the body inside the envelope's JSON inside the entry's JSON field list. A 6 MB body
 * (the producer's default limit) grows to 8 MB as base64 when binary, and up to 7 times when it is text
 * full of characters JSON escapes twice (a control character becomes `\\u0001`); 48 MiB holds the worst.
 */
export const DEFAULT_EVENT_SIZE_LIMIT = 48 * 1024 * 1024;

/** Every environment variable the consumer reads; the keys are the names. */
export const consumerEnvSchema = z.object({
  ...serverEnvFields,
  /** Per-replay timeout when the request carries none (Knative's default revision timeout). */
  REQUEST_TIMEOUT: durationSetting("5m"),
  /** Upper bound for a per-service timeout (`async.knative.dev/timeout`). */
  MAX_REQUEST_TIMEOUT: durationSetting("15m"),
  MAX_CONNECTIONS_PER_HOST: intSetting(256, 1, 65_535),
  EVENT_SIZE_LIMIT: intSetting(DEFAULT_EVENT_SIZE_LIMIT, 1024, 512 * 1024 * 1024),
  /** Target statuses answered with 502 so that the sender tries again; others are final (200). */
  RETRYABLE_STATUS_CODES: statusListSetting(DEFAULT_RETRYABLE_STATUSES),
  ...targetEnvFields,
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
  /** The target rule (src/lib/target.ts), checked again before every replay. */
  readonly targets: TargetRules;
}

export function loadConsumerConfig(env: Env): ConsumerConfig {
  const schema = consumerEnvSchema
    .refine((e) => e.REQUEST_TIMEOUT >= 1, { message: "must be at least 1ms", path: ["REQUEST_TIMEOUT"] })
    .refine(...notLargerThan("REQUEST_TIMEOUT", "MAX_REQUEST_TIMEOUT"));
  const e = parseEnv("consumer", schema, env);
  return Object.freeze({
    ...serverFromEnv(e),
    requestTimeoutMs: e.REQUEST_TIMEOUT,
    maxRequestTimeoutMs: e.MAX_REQUEST_TIMEOUT,
    maxConnectionsPerHost: e.MAX_CONNECTIONS_PER_HOST,
    eventSizeLimit: e.EVENT_SIZE_LIMIT,
    retryableStatusCodes: Object.freeze([...e.RETRYABLE_STATUS_CODES]),
    targets: targetRulesFromEnv(e),
  });
}
