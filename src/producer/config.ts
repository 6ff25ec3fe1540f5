/**
 * Producer configuration. Env names follow the original producer (REDIS_ADDRESS, REDIS_STREAM_NAME,
 * REQUEST_SIZE_LIMIT, TLS_CERT) plus the settings this implementation adds.
 */
import { availableParallelism } from "node:os";
import { z } from "zod";
import {
  boolSetting,
  type Env,
  intSetting,
  minDurationSetting,
  notLargerThan,
  parseEnv,
  serverEnvFields,
  serverFromEnv,
} from "../lib/config.js";
import { type RedisSettings, redisEnvFields, redisFromEnv } from "../lib/redis.js";
import {
  type HostPattern,
  producerHostPatterns,
  redisHostPattern,
  type TargetRules,
  targetEnvFields,
  targetRulesFromEnv,
} from "../lib/target.js";

/**
 * Bodies are held in memory while they stream in and stored base64-encoded when binary (4/3 larger);
 * Redis refuses strings over 512 MB, so larger limits could never be honoured.
 */
const MAX_REQUEST_SIZE_LIMIT = 256 * 1024 * 1024;

const MAX_WORKERS = 256;

/**
 * How many processes serve requests: `auto` is one per CPU the process may use. One is the default, as
 * Kubernetes scales by pods; more use a pod's spare cores (one Node process uses about one core).
 */
const workersSetting = z
  .string()
  .default("1")
  .transform((value, ctx) => {
    const text = value.trim().toLowerCase();
    if (text === "auto") return availableParallelism();
    const n = Number(text);
    if (text === "" || !Number.isInteger(n) || n < 1 || n > MAX_WORKERS) {
      ctx.addIssue({ code: "custom", message: `must be auto or a whole number from 1 to ${MAX_WORKERS}` });
      return z.NEVER;
    }
    return n;
  });
export const producerEnvSchema = z.object({
  ...serverEnvFields,
  ...redisEnvFields,
  REQUEST_SIZE_LIMIT: intSetting(6_000_000, 0, MAX_REQUEST_SIZE_LIMIT),
  PRODUCER_NAME: z.string().default("async-producer"),
  ...targetEnvFields,
  IDEMPOTENCY_TTL: minDurationSetting("24h", 1000),
  REDIS_WAIT_REPLICAS: intSetting(0, 0, 100),
  // WAIT with timeout 0 blocks forever, so a zero timeout is refused rather than passed on.
  REDIS_WAIT_TIMEOUT: minDurationSetting("1s", 1),
  REDIS_TIMEOUT: minDurationSetting("2s", 1),
  PRODUCER_WORKERS: workersSetting,
  REQUEST_BYTES_IN_FLIGHT: intSetting(8 * 1024 * 1024, 1),
  // false: any cluster-local Service is a target, as before the registry (for set-ups without our
  // controller, which is what publishes the async services). Weaker: see the README.
  REQUIRE_REGISTERED_TARGETS: boolSetting(true),
  BODY_IDLE_TIMEOUT: minDurationSetting("10s", 100),
  HEADERS_TIMEOUT: minDurationSetting("10s", 100),
  REQUEST_READ_TIMEOUT: minDurationSetting("60s", 100),
});

export interface ProducerConfig {
  readonly port: number;
  readonly redis: RedisSettings;
  readonly streamName: string;
  /** Largest accepted body, in bytes. */
  readonly requestSizeLimit: number;
  readonly logLevel: string;
  readonly systemNamespace: string;
  readonly producerName: string;
  /** Targets allowed besides cluster-local Service names (for local use). */
  readonly allowedTargetHosts: readonly HostPattern[];
  /** The target rule (src/lib/target.ts), with the producer's own names and its Redis forbidden. */
  readonly targets: TargetRules;
  /** How long an Idempotency-Key is remembered. */
  readonly idempotencyTtlMs: number;
  /** Replicas that must confirm a write (Redis WAIT) before the 202; 0 = the primary's ack is enough. */
  readonly waitReplicas: number;
  readonly waitTimeoutMs: number;
  /** How long a Redis write may take before the request is refused with 503. */
  readonly redisTimeoutMs: number;
  /**
   * Request-body bytes held at once by the whole producer (shared evenly among its workers); beyond it
   * requests wait for room, their bodies unread (see budget.ts).
   */
  readonly requestBytesInFlight: number;
  /** Processes serving requests (node:cluster workers sharing the port when more than one). */
  readonly workers: number;
  /**
   * Only services the controller published as async (src/lib/registry.ts) and ALLOWED_TARGET_HOSTS are
   * targets; when false, any cluster-local Service the target rule allows.
   */
  readonly requireRegisteredTargets: boolean;
  /** How long a body may bring no byte before the request is cut (408). */
  readonly bodyIdleTimeoutMs: number;
  /** How long the headers of a request may take to arrive, from its first byte (408). */
  readonly headersTimeoutMs: number;
  /** How long a whole request, headers and body, may take to arrive (408). */
  readonly requestReadTimeoutMs: number;
}

export function loadProducerConfig(env: Env): ProducerConfig {
  // Node refuses a server whose headers may take longer than the whole request.
  const schema = producerEnvSchema.refine(...notLargerThan("HEADERS_TIMEOUT", "REQUEST_READ_TIMEOUT"));
  const e = parseEnv("producer", schema, env);
  return Object.freeze({
    ...serverFromEnv(e),
    ...redisFromEnv(e),
    requestSizeLimit: e.REQUEST_SIZE_LIMIT,
    systemNamespace: e.SYSTEM_NAMESPACE,
    producerName: e.PRODUCER_NAME,
    allowedTargetHosts: e.ALLOWED_TARGET_HOSTS,
    targets: targetRulesFromEnv(e, [
      ...producerHostPatterns(e.PRODUCER_NAME, e.SYSTEM_NAMESPACE),
      redisHostPattern(e.REDIS_ADDRESS),
    ]),
    idempotencyTtlMs: e.IDEMPOTENCY_TTL,
    waitReplicas: e.REDIS_WAIT_REPLICAS,
    waitTimeoutMs: e.REDIS_WAIT_TIMEOUT,
    redisTimeoutMs: e.REDIS_TIMEOUT,
    workers: e.PRODUCER_WORKERS,
    requestBytesInFlight: e.REQUEST_BYTES_IN_FLIGHT,
    requireRegisteredTargets: e.REQUIRE_REGISTERED_TARGETS,
    bodyIdleTimeoutMs: e.BODY_IDLE_TIMEOUT,
    headersTimeoutMs: e.HEADERS_TIMEOUT,
    requestReadTimeoutMs: e.REQUEST_READ_TIMEOUT,
  });
}
