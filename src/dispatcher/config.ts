import { hostname } from "node:os";
import { z } from "zod";
import {
  boolSetting,
  ConfigError,
  durationSetting,
  type Env,
  intSetting,
  minDurationSetting,
  notLargerThan,
  parseEnv,
  serverEnvFields,
  serverFromEnv,
  signingSecretsSetting,
  statusListSetting,
  urlSetting,
} from "../lib/config.js";
import { DEFAULT_RETRYABLE_STATUSES } from "../lib/outcome.js";
import { type RedisSettings, redisEnvFields, redisFromEnv } from "../lib/redis.js";
import { redisHostPattern, type TargetRules, targetEnvFields, targetRulesFromEnv } from "../lib/target.js";
import { type SigningKey, signingKeys } from "../lib/wire/signature.js";

/**
 * Sized for the shipped 512Mi pod (config/core/600-dispatcher.yaml): an entry in flight is held about
 * twice (as read, and as the event or request sent), and as much again waits for the garbage collector
 * (V8 collects large Buffers only every few tens of MB); on top of a base of about 100 MB this keeps the
 * dispatcher, and the consumer it feeds, near half that limit whatever the bodies weigh (about 200 MB
 * draining 6 MB bodies, bench/RESULTS.md), while entries of up to 160 KiB still fill all 100 slots.
 */
const DEFAULT_BYTES_IN_FLIGHT = 16 * 1024 * 1024;

/** Every environment variable the dispatcher reads; the keys are the names. */
export const dispatcherEnvSchema = z.object({
  ...serverEnvFields,
  ...redisEnvFields,
  REDIS_GROUP: z.string().min(1).default("knative-async"),
  /** This dispatcher's consumer name in the group; unique per replica. */
  DISPATCHER_NAME: z.string().min(1).optional(),
  /** `cloudevent`: POST a CloudEvent to K_SINK (the consumer). `direct`: replay the request itself. */
  DISPATCH_MODE: z.enum(["cloudevent", "direct"]).default("cloudevent"),
  K_SINK: urlSetting.optional(),
  DISPATCH_CONCURRENCY: intSetting(100, 1, 10_000),
  /**
   * Bytes of entries in flight at most (their fields as read): the dispatcher reads fewer entries when
   * they are large. An entry larger than this still goes, alone.
   */
  DISPATCH_BYTES_IN_FLIGHT: intSetting(DEFAULT_BYTES_IN_FLIGHT, 1),
  MAX_ATTEMPTS: intSetting(10, 1, 1000),
  MIN_BACKOFF: durationSetting("1s"),
  MAX_BACKOFF: durationSetting("5m"),
  MAX_EVENT_AGE: durationSetting("24h"),
  RETRYABLE_STATUS_CODES: statusListSetting(DEFAULT_RETRYABLE_STATUSES),
  RETRY_NON_IDEMPOTENT: boolSetting(false),
  REQUEST_TIMEOUT: durationSetting("5m"),
  MAX_REQUEST_TIMEOUT: durationSetting("15m"),
  CLAIM_IDLE: minDurationSetting("30s", 1000),
  DEAD_LETTER_SINK: urlSetting.optional(),
  DELETE_ACKED: boolSetting(true),
  SHUTDOWN_GRACE: durationSetting("25s"),
  ...targetEnvFields,
  EVENT_SIGNING_SECRETS: signingSecretsSetting,
  /** A projected service account token for the consumer's audience, sent as OIDC bearer token. */
  OIDC_TOKEN_FILE: z.string().min(1).optional(),
});

export interface RetrySettings {
  readonly maxAttempts: number;
  readonly minBackoffMs: number;
  readonly maxBackoffMs: number;
  readonly maxAgeMs: number;
  readonly retryableStatuses: readonly number[];
  readonly retryNonIdempotent: boolean;
  readonly timeoutMs: number;
  readonly maxTimeoutMs: number;
}

/** Where the dispatcher delivers: what each mode needs, and only that. */
export type DispatchMode =
  /** POST a CloudEvent to the sink (the consumer), which replays the request. */
  | { readonly mode: "cloudevent"; readonly sink: string }
  /** Replay the request itself. */
  | { readonly mode: "direct" };

interface DispatcherSettings {
  readonly port: number;
  readonly logLevel: string;
  readonly redis: RedisSettings;
  readonly streamName: string;
  readonly group: string;
  readonly consumerName: string;
  readonly concurrency: number;
  /** DISPATCH_BYTES_IN_FLIGHT. */
  readonly bytesInFlight: number;
  readonly retry: RetrySettings;
  readonly claimIdleMs: number;
  readonly deadLetterSink?: string;
  readonly deleteAcked: boolean;
  readonly shutdownGraceMs: number;
  /** The target rule (src/lib/target.ts), checked again before every delivery; its Redis forbidden. */
  readonly targets: TargetRules;
  /** Keys every CloudEvent is signed with, so that the consumer knows it came from us. */
  readonly signingKeys: readonly SigningKey[];
  /** The OIDC token file (OIDC_TOKEN_FILE), when the cluster issues tokens for sender authentication. */
  readonly oidcTokenFile?: string;
}

export type DispatcherConfig = DispatcherSettings & DispatchMode;

const SINK_REQUIRED =
  "K_SINK is required in cloudevent mode (set it to the consumer's URL, or set DISPATCH_MODE=direct)";

export function loadDispatcherConfig(env: Env): DispatcherConfig {
  const schema = dispatcherEnvSchema
    .refine((e) => e.DISPATCH_MODE === "direct" || e.K_SINK !== undefined, {
      message: SINK_REQUIRED,
      path: ["K_SINK"],
    })
    .refine(...notLargerThan("MIN_BACKOFF", "MAX_BACKOFF"))
    .refine(
      (e) => e.OIDC_TOKEN_FILE === undefined || !/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*@/i.test(e.K_SINK ?? ""),
      {
        message: "cannot be used with credentials in K_SINK: both would be the Authorization header",
        path: ["OIDC_TOKEN_FILE"],
      },
    );
  const e = parseEnv("dispatcher", schema, env);
  return Object.freeze({
    ...serverFromEnv(e),
    ...redisFromEnv(e),
    group: e.REDIS_GROUP,
    consumerName: e.DISPATCHER_NAME ?? `${hostname()}-${process.pid}`,
    ...dispatchMode(e.DISPATCH_MODE, e.K_SINK),
    concurrency: e.DISPATCH_CONCURRENCY,
    bytesInFlight: e.DISPATCH_BYTES_IN_FLIGHT,
    retry: Object.freeze({
      maxAttempts: e.MAX_ATTEMPTS,
      minBackoffMs: e.MIN_BACKOFF,
      maxBackoffMs: e.MAX_BACKOFF,
      maxAgeMs: e.MAX_EVENT_AGE,
      retryableStatuses: Object.freeze([...e.RETRYABLE_STATUS_CODES]),
      retryNonIdempotent: e.RETRY_NON_IDEMPOTENT,
      timeoutMs: e.REQUEST_TIMEOUT,
      maxTimeoutMs: e.MAX_REQUEST_TIMEOUT,
    }),
    claimIdleMs: e.CLAIM_IDLE,
    ...(e.DEAD_LETTER_SINK === undefined ? {} : { deadLetterSink: e.DEAD_LETTER_SINK }),
    deleteAcked: e.DELETE_ACKED,
    shutdownGraceMs: e.SHUTDOWN_GRACE,
    targets: targetRulesFromEnv(e, [redisHostPattern(e.REDIS_ADDRESS)]),
    signingKeys: signingKeys(e.EVENT_SIGNING_SECRETS),
    ...(e.OIDC_TOKEN_FILE === undefined ? {} : { oidcTokenFile: e.OIDC_TOKEN_FILE }),
  });
}

function dispatchMode(mode: DispatchMode["mode"], sink: string | undefined): DispatchMode {
  if (mode === "direct") return { mode };
  // The schema has refused cloudevent mode without K_SINK already; this tells the type checker.
  if (sink === undefined) throw new ConfigError(SINK_REQUIRED);
  return { mode, sink };
}
