/**
 * Consumer configuration. The consumer has no Redis: it receives CloudEvents and replays requests, so
 * its settings are about the replay (timeouts, connections) and the events it accepts.
 */
import { z } from "zod";
import {
  boolSetting,
  durationSetting,
  type Env,
  intSetting,
  listSetting,
  minDurationSetting,
  notLargerThan,
  parseEnv,
  serverEnvFields,
  serverFromEnv,
  signingSecretsSetting,
  statusListSetting,
  urlSetting,
} from "../lib/config.js";
import type { OidcSettings } from "../lib/oidc.js";
import { DEFAULT_RETRYABLE_STATUSES } from "../lib/outcome.js";
import { type TargetRules, targetEnvFields, targetRulesFromEnv } from "../lib/target.js";
import { type SigningKey, signingKeys } from "../lib/wire/signature.js";

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
  /** Secrets of the dispatchers whose signed events are accepted (src/lib/wire/signature.ts). */
  EVENT_SIGNING_SECRETS: signingSecretsSetting,
  /** Accept events without a signature: eventing-redis's RedisStreamSource cannot sign. */
  EVENT_ACCEPT_UNSIGNED: boolSetting(false),
  /** How far a signature's timestamp may be from now: a captured event cannot be replayed later. */
  EVENT_SIGNATURE_TOLERANCE: minDurationSetting("5m", 1000),
  /** OIDC sender authentication (src/lib/oidc.ts), where the cluster issues tokens for it. */
  OIDC_ISSUER: urlSetting.optional(),
  OIDC_JWKS_URL: urlSetting.optional(),
  OIDC_AUDIENCE: z.string().min(1).optional(),
  OIDC_SUBJECTS: listSetting([]),
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
  /** Who may send events: our dispatchers' keys, and whether unsigned events are accepted too. */
  readonly authentication: EventAuthentication;
}

export interface EventAuthentication {
  readonly keys: readonly SigningKey[];
  readonly acceptUnsigned: boolean;
  readonly toleranceMs: number;
  /** Bearer tokens of the cluster's OIDC issuer, when configured. */
  readonly oidc?: OidcSettings;
}

const SIGNING_REQUIRED =
  "is required: the consumer accepts only events signed by the dispatcher (the same Secret on both) or, with OIDC_ISSUER, carrying its OIDC token; " +
  "set EVENT_ACCEPT_UNSIGNED=true to accept unsigned events (eventing-redis's RedisStreamSource cannot sign)";

export function loadConsumerConfig(env: Env): ConsumerConfig {
  const schema = consumerEnvSchema
    .refine((e) => e.REQUEST_TIMEOUT >= 1, { message: "must be at least 1ms", path: ["REQUEST_TIMEOUT"] })
    .refine(...notLargerThan("REQUEST_TIMEOUT", "MAX_REQUEST_TIMEOUT"))
    .refine(
      (e) =>
        e.EVENT_ACCEPT_UNSIGNED ||
        e.OIDC_ISSUER !== undefined ||
        e.EVENT_SIGNING_SECRETS.some((s) => s.trim() !== ""),
      { message: SIGNING_REQUIRED, path: ["EVENT_SIGNING_SECRETS"] },
    )
    .refine(
      (e) => e.OIDC_ISSUER === undefined || (e.OIDC_AUDIENCE !== undefined && e.OIDC_SUBJECTS.length > 0),
      {
        message: "OIDC_AUDIENCE and OIDC_SUBJECTS are required with OIDC_ISSUER",
        path: ["OIDC_ISSUER"],
      },
    );
  const e = parseEnv("consumer", schema, env);
  return Object.freeze({
    ...serverFromEnv(e),
    requestTimeoutMs: e.REQUEST_TIMEOUT,
    maxRequestTimeoutMs: e.MAX_REQUEST_TIMEOUT,
    maxConnectionsPerHost: e.MAX_CONNECTIONS_PER_HOST,
    eventSizeLimit: e.EVENT_SIZE_LIMIT,
    retryableStatusCodes: Object.freeze([...e.RETRYABLE_STATUS_CODES]),
    targets: targetRulesFromEnv(e),
    authentication: Object.freeze({
      keys: signingKeys(e.EVENT_SIGNING_SECRETS),
      acceptUnsigned: e.EVENT_ACCEPT_UNSIGNED,
      toleranceMs: e.EVENT_SIGNATURE_TOLERANCE,
      ...(e.OIDC_ISSUER === undefined
        ? {}
        : {
            oidc: {
              issuer: e.OIDC_ISSUER,
              ...(e.OIDC_JWKS_URL === undefined ? {} : { jwksUrl: e.OIDC_JWKS_URL }),
              audience: e.OIDC_AUDIENCE as string,
              subjects: e.OIDC_SUBJECTS,
            },
          }),
    }),
  });
}
