/**
 * The producer's durable write: what makes a 202 true.
 *
 * Contract: `accept` resolves only once Redis acknowledged the write (and, with REDIS_WAIT_REPLICAS, that
 * many replicas confirmed it); otherwise it throws the error to answer with, never a 202. That error says
 * "not stored" only when the write provably had no effect; a write that went out and was not confirmed
 * (no answer in time, a broken connection, too few replicas) may still be delivered, so those errors
 * carry the request's id and point the client at an Idempotency-Key, and a request that carries one goes
 * through the idempotency script (idempotency.ts) rather than a plain XADD.
 */
import { Command, type Redis, ReplyError } from "ioredis";
import { DATA_FIELD } from "../lib/entry.js";
import type { AsyncRequest } from "../lib/envelope.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import type { StreamKeys } from "../lib/keys.js";
import type { CodeWarning } from "../lib/logger.js";
import { REQUEST_ID, RETRY_AFTER } from "../lib/wire/headers.js";
import type { ProducerConfig } from "./config.js";
import { IdempotencyScripts, requestFingerprint } from "./idempotency.js";

/** What the 202 says about a stored request. */
export interface Answer {
  readonly id: string;
  /** True when nothing new was stored: the 202 repeats an earlier one for the same Idempotency-Key. */
  readonly replayed: boolean;
  /** True when this answer is the first 202 for the id. */
  readonly firstAccept: boolean;
}

export type StoreConfig = Pick<
  ProducerConfig,
  "redisTimeoutMs" | "waitReplicas" | "waitTimeoutMs" | "idempotencyTtlMs"
>;

/**
 * How long one write may take before it is refused. With replicas to wait for, a write may queue behind
 * another request's WAIT on the shared connection (WAIT blocks it), so its deadline includes the WAIT
 * timeout.
 */
export function writeTimeoutMs(config: StoreConfig): number {
  return config.redisTimeoutMs + (config.waitReplicas > 0 ? config.waitTimeoutMs : 0);
}

/** The errors' Retry-After, built once: every refusal here is worth retrying a second later. */
const RETRY_SOON: Readonly<Record<string, string>> = Object.freeze({ [RETRY_AFTER]: "1" });

/**
 * Stores async requests in the stream. The connection is expected to fail fast while Redis is away and
 * to time commands out after `writeTimeoutMs(config)` (see connectRedis), so that a client learns within
 * that time whether its request was accepted.
 */
export class RequestStore {
  readonly #redis: Redis;
  readonly #keys: StreamKeys;
  readonly #config: StoreConfig;
  readonly #scripts: IdempotencyScripts;
  readonly #warn: CodeWarning;
  readonly #writeTimeoutMs: number;

  constructor(redis: Redis, keys: StreamKeys, config: StoreConfig, warn: CodeWarning) {
    this.#redis = redis;
    this.#keys = keys;
    this.#config = config;
    this.#scripts = new IdempotencyScripts(redis);
    this.#warn = warn;
    this.#writeTimeoutMs = writeTimeoutMs(config);
  }

  /**
   * Stores the request, encoded as `envelope`, and resolves with what the 202 says; throws the error
   * answer otherwise. With `key` (an Idempotency-Key), a request already stored under it is not stored
   * again: the answer repeats its id.
   */
  async accept(request: AsyncRequest, envelope: string | Buffer, key: string | undefined): Promise<Answer> {
    try {
      if (key === undefined) {
        await this.#append(envelope);
        if (this.#config.waitReplicas > 0) await this.#confirmReplicas(request.id, false);
        return { id: request.id, replayed: false, firstAccept: true };
      }
      return await this.#acceptOnce(request, envelope, key);
    } catch (err) {
      throw notStored(err, { timeoutMs: this.#writeTimeoutMs, id: request.id, hasKey: key !== undefined });
    }
  }

  /** The plain append; not async, so that the hot path awaits ioredis's promise and no other. */
  #append(envelope: string | Buffer): Promise<unknown> {
    const stream = this.#keys.stream;
    if (typeof envelope === "string") return this.#redis.xadd(stream, "*", DATA_FIELD, envelope);
    // Sent on its own rather than auto-pipelined: a pipeline copies its commands into one more Buffer,
    // which for large bodies is the largest allocation of the request.
    const xadd = new Command("xadd", [stream, "*", DATA_FIELD, envelope]);
    this.#redis.sendCommand(xadd);
    return xadd.promise;
  }

  /** The idempotent enqueue: decide and append in one script, then confirm with replicas and settle. */
  async #acceptOnce(request: AsyncRequest, envelope: string | Buffer, key: string): Promise<Answer> {
    const { waitReplicas, waitTimeoutMs } = this.#config;
    const recordKey = this.#keys.idempotency(key);
    const { outcome, id } = await this.#scripts.enqueue({
      streamKey: this.#keys.stream,
      recordKey,
      fingerprint: requestFingerprint(request.method, request.url, request.body),
      id: request.id,
      envelope,
      ttlMs: this.#config.idempotencyTtlMs,
      // Covers the WAIT and the write queued before it; past this, a retry may confirm again.
      acceptingMs: waitReplicas > 0 ? waitTimeoutMs + this.#writeTimeoutMs : 0,
    });
    switch (outcome) {
      case "replay":
        return { id, replayed: true, firstAccept: false };
      case "mismatch":
        throw new AsyncError(
          ErrorCode.IdempotencyMismatch,
          "this Idempotency-Key was already used for a different request (method, URL or body differ)",
        );
      case "in-progress":
        throw new AsyncError(
          ErrorCode.IdempotencyInProgress,
          "a request with this Idempotency-Key is still being accepted; retry shortly",
          { headers: RETRY_SOON },
        );
      case "new":
      case "confirm":
        break;
    }
    if (waitReplicas > 0) {
      try {
        await this.#confirmReplicas(id, true);
      } catch (err) {
        await this.#scripts.settle(recordKey, id, "unconfirmed").catch(() => undefined);
        throw err;
      }
      // If this fails the record stays "accepting" until its window ends; a retry then confirms again.
      await this.#scripts
        .settle(recordKey, id, "accepted")
        .catch((err: unknown) =>
          this.#warn(ErrorCode.StoreUnavailable, "could not mark an idempotency record accepted", err),
        );
    }
    return { id, replayed: outcome === "confirm", firstAccept: true };
  }

  /**
   * With REDIS_WAIT_REPLICAS, waits until that many replicas have the connection's writes so far. The
   * connection is shared and auto-pipelined, so one WAIT covers every write sent before it and the
   * WAITs of concurrent requests mostly return at once.
   */
  async #confirmReplicas(id: string, hasKey: boolean): Promise<void> {
    const { waitReplicas, waitTimeoutMs } = this.#config;
    let confirmed = 0;
    let cause: unknown;
    try {
      // WAIT blocks for up to its own timeout on the server, so it gets that on top of the usual one.
      // It goes out after this request's write was answered, so it covers that write.
      const wait = new Command("wait", [waitReplicas, waitTimeoutMs]);
      wait.setTimeout(waitTimeoutMs + this.#writeTimeoutMs);
      confirmed = Number(await this.#redis.sendCommand(wait));
    } catch (err) {
      cause = err;
    }
    if (confirmed >= waitReplicas) return;
    throw new AsyncError(
      ErrorCode.NotReplicated,
      `the request ${id} was stored on the Redis primary only (${confirmed} of ${waitReplicas} replicas confirmed it in time) and may still be delivered; ${retryAdvice(hasKey)}`,
      { cause, headers: maybeStoredHeaders(id) },
    );
  }
}

/** ioredis's message for a command that reached its `commandTimeout` (or its own timeout). */
const COMMAND_TIMED_OUT = "Command timed out";
/**
 * ioredis's message for a command it did not send because the connection was down (the producer's
 * connection fails fast rather than queueing): such a write never reached Redis.
 */
const NOT_SENT = "Stream isn't writeable and enableOfflineQueue options is false";

/**
 * The answer for a failed Redis write, as exact as the client can be told: "not stored" only when the
 * write provably had no effect: it was never sent, or Redis answered it with an error (Redis checks
 * memory, role and the like before a write, and our script's writes come last, after every check).
 * Any other failure came after the write went out (no answer in time, the connection broke,
 * Redis was killed): Redis may have applied it, so the request may have been stored and may be
 * delivered, under the id sent along.
 */
function notStored(err: unknown, write: { timeoutMs: number; id: string; hasKey: boolean }): AsyncError {
  if (err instanceof AsyncError) return err;
  const message = err instanceof Error ? err.message : "";
  if (message === NOT_SENT || err instanceof ReplyError) {
    const why = message === NOT_SENT ? "Redis is unavailable" : "Redis refused the write";
    return new AsyncError(ErrorCode.StoreUnavailable, `the request was not stored: ${why}; retry later`, {
      cause: err,
      headers: RETRY_SOON,
    });
  }
  const why =
    message === COMMAND_TIMED_OUT
      ? `Redis did not answer within ${write.timeoutMs}ms`
      : "the connection to Redis broke before it answered";
  return new AsyncError(
    ErrorCode.StoreUnconfirmed,
    `${why}: the request ${write.id} may have been stored and may still be delivered; ${retryAdvice(write.hasKey)}`,
    { cause: err, headers: maybeStoredHeaders(write.id) },
  );
}

/** What a client whose request may have been stored should do. */
function retryAdvice(hasKey: boolean): string {
  return hasKey
    ? "retry with the same Idempotency-Key (a retry cannot store it twice)"
    : "a retry may deliver it twice (an Idempotency-Key makes retries safe)";
}

/** A request that may have been stored is named, so that its client can tell it apart later. */
function maybeStoredHeaders(id: string): Record<string, string> {
  return { [RETRY_AFTER]: "1", [REQUEST_ID]: id };
}
