/**
 * Every Redis key the project uses, derived from the stream name in one place.
 *
 * The stream itself keeps the exact name from REDIS_STREAM_NAME, so the original producer and the
 * eventing-redis RedisStreamSource can share it. Every other key is prefixed with `{<stream>}`: Redis
 * Cluster hashes only the part inside the first braces, and a key without braces hashes whole, so
 * `{mystream}:dlq` lands in the same slot as `mystream` and multi-key Lua scripts stay legal on a
 * cluster. A stream name that already has its own hash tag is used as the prefix as it is.
 */
export interface StreamKeys {
  /** The request stream (REDIS_STREAM_NAME). */
  readonly stream: string;
  /** Sorted set of request ids waiting for a retry, scored by the time they are due (ms since epoch). */
  readonly retrySchedule: string;
  /** Hash of request id to the entry (its stream fields, JSON) while it waits for a retry. */
  readonly retryEntries: string;
  /** The dead-letter stream: entries that will not be delivered, with their delivery context. */
  readonly deadLetter: string;
  /** Prefix for per-key idempotency records. */
  readonly idempotencyPrefix: string;
  /** Prefix for per-request status records. */
  readonly statusPrefix: string;
  /**
   * Hash of the async services the controller published: `<namespace>/<KIngress name>` -> JSON
   * `{hosts, policy, updatedAt}` (src/lib/registry.ts).
   */
  readonly services: string;
  /** Pub/Sub channel on which the controller announces a change of `services` (the message: the field). */
  readonly servicesChanged: string;
  idempotency(key: string): string;
  status(requestId: string): string;
}

export function hasHashTag(name: string): boolean {
  const open = name.indexOf("{");
  if (open < 0) return false;
  const close = name.indexOf("}", open + 1);
  return close > open + 1;
}

export function streamKeys(streamName: string): StreamKeys {
  const prefix = hasHashTag(streamName) ? streamName : `{${streamName}}`;
  const idempotencyPrefix = `${prefix}:idem:`;
  const statusPrefix = `${prefix}:status:`;
  return Object.freeze({
    stream: streamName,
    retrySchedule: `${prefix}:retry:schedule`,
    retryEntries: `${prefix}:retry:entries`,
    deadLetter: `${prefix}:dlq`,
    idempotencyPrefix,
    statusPrefix,
    services: `${prefix}:services`,
    servicesChanged: `${prefix}:services:changed`,
    idempotency: (key: string) => `${idempotencyPrefix}${key}`,
    status: (requestId: string) => `${statusPrefix}${requestId}`,
  });
}
