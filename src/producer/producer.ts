/**
 * The producer: takes an async request, stores it in the Redis stream, and answers 202 Accepted.
 *
 * Contract with the client: a 202 means Redis acknowledged the write (and, with REDIS_WAIT_REPLICAS,
 * that many replicas confirmed it). Any failure before that is an error answer, never a 202; a 503 after
 * the write reached Redis may still be delivered, which is why retries should carry an Idempotency-Key.
 *
 * Routing: a request with `Async-Original-Host` is always an async request, whatever its path; without
 * it only the admin endpoints answer.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Redis } from "ioredis";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { canonicalHeaderName, canonicalHeaders, DATA_FIELD, encodeEnvelope } from "../lib/envelope.js";
import { AsyncError, ErrorCode, errorCodeOf, httpStatusOf } from "../lib/errors.js";
import {
  ADMIN_PATHS,
  type AdminEndpoints,
  closeServer,
  listen,
  readBody,
  sendError,
  sendJson,
  serveAdmin,
} from "../lib/http.js";
import { streamKeys } from "../lib/keys.js";
import type { Logger } from "../lib/logger.js";
import { createRegistry, LATENCY_BUCKETS } from "../lib/metrics.js";
import { POLICY_HEADER, parsePolicyHeader } from "../lib/policy.js";
import { connectRedis, redisIsReady } from "../lib/redis.js";
import type { ProducerConfig } from "./config.js";
import {
  IDEMPOTENCY_HEADER,
  IdempotencyScripts,
  parseIdempotencyKey,
  requestFingerprint,
} from "./idempotency.js";
import { parseHostPattern, producerHostPatterns, resolveTarget, type TargetRules } from "./target.js";

export interface AcceptedInfo {
  readonly id: string;
  readonly url: string;
  readonly method: string;
  readonly bytes: number;
}

export interface ProducerDeps {
  readonly logger: Logger;
  readonly registry?: Registry;
  /** Called after each 202 for a newly stored request (the dev mode prints a line). */
  readonly onAccepted?: (info: AcceptedInfo) => void;
  /** More hosts the producer is reachable at (the dev mode's loopback address): forbidden as targets. */
  readonly selfHosts?: readonly string[];
}

export interface RunningProducer {
  readonly port: number;
  close(): Promise<void>;
}

const ORIGINAL_HOST_HEADER = "async-original-host";
const REQUEST_ID_HEADER = "async-request-id";

/** Outcome label for a request answered 202 with a new id, and for a 202 replayed from its key. */
const ACCEPTED = "accepted";
const REPLAYED = "replayed";

interface Answer {
  readonly id: string;
  /** True when nothing new was stored: the 202 repeats an earlier one for the same Idempotency-Key. */
  readonly replayed: boolean;
  /** True when this answer is the first 202 for the id. */
  readonly firstAccept: boolean;
}

export async function startProducer(config: ProducerConfig, deps: ProducerDeps): Promise<RunningProducer> {
  const { logger } = deps;
  const registry = deps.registry ?? createRegistry("producer");
  const keys = streamKeys(config.streamName);
  const rules: TargetRules = {
    allowed: config.allowedTargetHosts,
    forbidden: [
      ...producerHostPatterns(config.producerName, config.systemNamespace),
      ...(deps.selfHosts ?? []).map(parseHostPattern),
    ],
  };
  // failFast: while Redis is away, writes fail at once (503) instead of queueing until it returns.
  const redis = connectRedis(config.redis, { name: `${config.producerName}-producer`, failFast: true });
  const scripts = new IdempotencyScripts(redis);
  const metrics = producerMetrics(registry, redis, keys.stream, config.redisTimeoutMs);
  const warn = throttledWarn(logger);
  // With replicas to wait for, a write may queue behind another request's WAIT on the shared
  // connection (WAIT blocks it), so its deadline includes the WAIT timeout.
  const writeTimeoutMs = config.redisTimeoutMs + (config.waitReplicas > 0 ? config.waitTimeoutMs : 0);
  let closing = false;

  const admin: AdminEndpoints = {
    registry,
    ready: async () => !closing && (await redisIsReady(redis)),
  };

  /** Stores the request and resolves with what the 202 says; throws the error answer otherwise. */
  async function store(
    envelopeId: string,
    envelope: string,
    url: string,
    method: string,
    body: Buffer,
    key: string | undefined,
  ): Promise<Answer> {
    if (key === undefined) {
      await redisCall(redis.xadd(keys.stream, "*", DATA_FIELD, envelope), writeTimeoutMs, "XADD");
      await confirmReplicas(envelopeId, false);
      return { id: envelopeId, replayed: false, firstAccept: true };
    }
    const recordKey = keys.idempotency(key);
    const { outcome, id } = await redisCall(
      scripts.enqueue({
        streamKey: keys.stream,
        recordKey,
        fingerprint: requestFingerprint(method, url, body),
        id: envelopeId,
        envelope,
        ttlMs: config.idempotencyTtlMs,
        // Covers the WAIT and the write queued before it; past this, a retry may confirm again.
        acceptingMs: config.waitReplicas > 0 ? config.waitTimeoutMs + writeTimeoutMs : 0,
      }),
      writeTimeoutMs,
      "enqueue",
    );
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
          { headers: { "retry-after": "1" } },
        );
      case "new":
      case "confirm":
        break;
    }
    if (config.waitReplicas > 0) {
      try {
        await confirmReplicas(id, true);
      } catch (err) {
        await redisCall(scripts.settle(recordKey, id, "unconfirmed"), writeTimeoutMs, "settle").catch(
          () => undefined,
        );
        throw err;
      }
      // If this fails the record stays "accepting" until its window ends; a retry then confirms again.
      await redisCall(scripts.settle(recordKey, id, "accepted"), writeTimeoutMs, "settle").catch(
        (err: unknown) =>
          warn(ErrorCode.StoreUnavailable, "could not mark an idempotency record accepted", err),
      );
    }
    return { id, replayed: outcome === "confirm", firstAccept: true };
  }

  /**
   * With REDIS_WAIT_REPLICAS, waits until that many replicas have the connection's writes so far. The
   * connection is shared and auto-pipelined, so one WAIT covers every write sent before it and the
   * WAITs of concurrent requests mostly return at once.
   */
  async function confirmReplicas(id: string, hasKey: boolean): Promise<void> {
    if (config.waitReplicas === 0) return;
    let confirmed = 0;
    let cause: unknown;
    try {
      confirmed = await redisCall(
        redis.wait(config.waitReplicas, config.waitTimeoutMs),
        config.waitTimeoutMs + writeTimeoutMs,
        "WAIT",
      );
    } catch (err) {
      cause = err;
    }
    if (confirmed >= config.waitReplicas) return;
    throw new AsyncError(
      ErrorCode.NotReplicated,
      `the request ${id} was stored on the Redis primary only (${confirmed} of ${config.waitReplicas} replicas confirmed it in time) and may still be delivered; ${hasKey ? "retry with the same Idempotency-Key" : "a retry may deliver it twice (an Idempotency-Key makes retries safe)"}`,
      { cause, headers: { "retry-after": "1", [REQUEST_ID_HEADER]: id } },
    );
  }

  async function handleAsync(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean) {
    const headers = req.headersDistinct;
    const target = resolveTarget(headers[ORIGINAL_HOST_HEADER], req.url, rules);
    const key = parseIdempotencyKey(headers[IDEMPOTENCY_HEADER]);
    const declared = req.headers["content-length"];
    if (declared !== undefined && Number(declared) > config.requestSizeLimit) {
      throw bodyTooLarge(config.requestSizeLimit);
    }
    if (expectsContinue) res.writeContinue();
    const body = await readBody(req, {
      limit: config.requestSizeLimit,
      tooLarge: () => bodyTooLarge(config.requestSizeLimit),
      afterLimit: "stop",
    });

    const method = req.method ?? "GET";
    const policy = parsePolicyHeader(headers[POLICY_HEADER]?.join("; "));
    const storedHeaders = canonicalHeaders(headers as Record<string, string[]>);
    // The policy header is an instruction from the controller to us, not part of the app's request.
    delete storedHeaders[canonicalHeaderName(POLICY_HEADER)];
    const id = randomUUID();
    const envelope = encodeEnvelope({
      id,
      url: target.url,
      method,
      headers: storedHeaders,
      body,
      acceptedAt: Date.now(),
      ...(policy === undefined ? {} : { policy }),
    });
    const answer = await store(id, envelope, target.url, method, body, key);

    const responseHeaders: Record<string, string> = { [REQUEST_ID_HEADER]: answer.id };
    if (prefersRespondAsync(headers.prefer)) responseHeaders["preference-applied"] = "respond-async";
    if (answer.replayed) responseHeaders["idempotent-replayed"] = "true";
    sendJson(res, 202, { id: answer.id, status: "queued" }, responseHeaders);

    if (!answer.replayed) metrics.acceptedBytes.inc(body.length);
    if (answer.firstAccept) {
      logger.debug({ id: answer.id, url: target.url, method, bytes: body.length }, "request queued");
      try {
        deps.onAccepted?.({ id: answer.id, url: target.url, method, bytes: body.length });
      } catch (err) {
        logger.error({ err }, "onAccepted hook failed");
      }
    }
    return answer.replayed ? REPLAYED : ACCEPTED;
  }

  function handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    if (req.headers[ORIGINAL_HOST_HEADER] === undefined) {
      const path = (req.url ?? "/").split("?", 1)[0] as string;
      if (ADMIN_PATHS.has(path) && serveAdmin(req, res, admin)) return;
    }
    const started = performance.now();
    handleAsync(req, res, expectsContinue).then(
      (outcome) => metrics.observe(outcome, started),
      (err: unknown) => {
        const code = errorCodeOf(err);
        const status = httpStatusOf(err);
        if (!(err instanceof AsyncError)) logger.error({ code, err }, "request failed unexpectedly");
        else if (status >= 500) warn(code, "request not accepted", err);
        else logger.debug({ code, err }, "request refused");
        // The unread rest of an oversized body is not worth reading: answer and close the connection.
        sendError(res, err, { closeConnection: code === ErrorCode.BodyTooLarge });
        metrics.observe(code, started);
      },
    );
  }

  const server = createServer((req, res) => handle(req, res, false));
  // A client that sends `Expect: 100-continue` learns about a bad target or an oversized body before
  // it sends the body.
  server.on("checkContinue", (req, res) => handle(req, res, true));

  // Answering 503 to the first requests only because the connection is still being set up would be
  // needless; a Redis that is really away does not hold up the start (/readyz reports it).
  await redisReadyOrTimeout(redis, config.redisTimeoutMs);
  let port: number;
  try {
    port = await listen(server, config.port);
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  logger.info(
    { port, redis: config.redis.display, stream: keys.stream, waitReplicas: config.waitReplicas },
    "producer listening",
  );

  return {
    port,
    async close() {
      closing = true;
      await closeServer(server);
      await quitRedis(redis);
    },
  };
}

function bodyTooLarge(limit: number): AsyncError {
  return new AsyncError(ErrorCode.BodyTooLarge, `the request body is larger than ${limit} bytes`);
}

class RedisTimeout extends Error {
  override name = "RedisTimeout";
}

/**
 * Bounds a Redis command: a request must not hang while Redis is slow. A command that timed out may
 * still be applied later, so that answer says "not acknowledged" rather than "not stored".
 */
function redisCall<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RedisTimeout(`${what} timed out after ${timeoutMs}ms`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).then(
    (value) => {
      clearTimeout(timer);
      return value;
    },
    (err: unknown) => {
      clearTimeout(timer);
      if (err instanceof AsyncError) throw err;
      const message =
        err instanceof RedisTimeout
          ? `Redis did not acknowledge the request within ${timeoutMs}ms; retry later (with an Idempotency-Key a retry cannot enqueue it twice)`
          : "the request was not stored: Redis is unavailable; retry later";
      throw new AsyncError(ErrorCode.StoreUnavailable, message, {
        cause: err,
        headers: { "retry-after": "1" },
      });
    },
  );
}

/**
 * RFC 7240: `Prefer` may repeat and each value may hold several comma-separated preferences, each with
 * optional `=value` and `;parameters`; quoted strings may contain commas.
 */
export function prefersRespondAsync(values: readonly string[] | undefined): boolean {
  if (values === undefined) return false;
  for (const value of values) {
    let start = 0;
    let quoted = false;
    for (let i = 0; i <= value.length; i++) {
      const ch = value[i];
      if (ch === '"' && value[i - 1] !== "\\") quoted = !quoted;
      if (i === value.length || (ch === "," && !quoted)) {
        const name = /^\s*([^\s=;]+)/.exec(value.slice(start, i))?.[1];
        if (name?.toLowerCase() === "respond-async") return true;
        start = i + 1;
      }
    }
  }
  return false;
}

interface ProducerMetrics {
  readonly acceptedBytes: Counter;
  observe(outcome: string, startedMs: number): void;
}

function producerMetrics(
  registry: Registry,
  redis: Redis,
  stream: string,
  timeoutMs: number,
): ProducerMetrics {
  const requests = new Counter({
    name: "knative_async_producer_requests_total",
    help: "Async requests by outcome: accepted, replayed (a 202 repeated for an Idempotency-Key) or the error code",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "knative_async_producer_request_duration_seconds",
    help: "Time from the request's headers to the answer, by outcome",
    labelNames: ["outcome"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const acceptedBytes = new Counter({
    name: "knative_async_producer_accepted_bytes_total",
    help: "Body bytes of the requests stored in the stream",
    registers: [registry],
  });
  new Gauge({
    name: "knative_async_producer_stream_length",
    help: "Entries in the request stream (XLEN at scrape time; NaN when Redis does not answer)",
    registers: [registry],
    async collect() {
      try {
        this.set(await redisCall(redis.xlen(stream), Math.min(timeoutMs, 1000), "XLEN"));
      } catch {
        this.set(Number.NaN);
      }
    },
  });
  return {
    acceptedBytes,
    observe(outcome, startedMs) {
      requests.inc({ outcome });
      duration.observe({ outcome }, (performance.now() - startedMs) / 1000);
    },
  };
}

/**
 * Warns about failures that are not the client's fault, at most once per interval per code with a count
 * of the ones left out: while Redis is down every request fails, and one line per request would flood
 * the logs.
 */
function throttledWarn(logger: Logger, intervalMs = 5000) {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (code: string, message: string, err: unknown) => {
    const now = Date.now();
    const seen = last.get(code);
    if (seen && now - seen.at < intervalMs) {
      seen.suppressed++;
      return;
    }
    last.set(code, { at: now, suppressed: 0 });
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : undefined;
    logger.warn(
      { code, err, ...(cause ? { cause } : {}), suppressedSinceLast: seen?.suppressed ?? 0 },
      message,
    );
  };
}

function redisReadyOrTimeout(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === "ready") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off("ready", done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    redis.once("ready", done);
  });
}

async function quitRedis(redis: Redis): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.quit(),
      new Promise((resolve) => {
        timer = setTimeout(resolve, 1000);
      }),
    ]);
  } catch {
    // Redis is away; nothing to say goodbye to.
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}
