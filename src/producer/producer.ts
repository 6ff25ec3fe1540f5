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
import { Command, type Redis } from "ioredis";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { DATA_FIELD } from "../lib/entry.js";
import {
  type AsyncRequest,
  canonicalHeaderName,
  encodeEnvelope,
  encodeEnvelopeBuffer,
  type HeaderMap,
} from "../lib/envelope.js";
import { AsyncError, ErrorCode, errorCodeOf, httpStatusOf } from "../lib/errors.js";
import {
  ADMIN_PATHS,
  type AdminEndpoints,
  type BodyLimit,
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
import { ByteBudget } from "./budget.js";
import type { ProducerConfig } from "./config.js";
import {
  IDEMPOTENCY_HEADER,
  IdempotencyScripts,
  parseIdempotencyKey,
  requestFingerprint,
} from "./idempotency.js";
import { parseHostPattern, producerHostPatterns, type TargetRules, targetResolver } from "./target.js";

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
  /**
   * What /metrics serves instead of `registry` alone: in a cluster worker, every worker's metrics
   * gathered by the primary (src/producer/cluster.ts).
   */
  readonly clusterMetrics?: () => Promise<string>;
}

export interface RunningProducer {
  readonly port: number;
  close(): Promise<void>;
}

const ORIGINAL_HOST_HEADER = "async-original-host";
/** From this body size on, the envelope is built as a Buffer rather than a string. */
const LARGE_BODY_BYTES = 32 * 1024;
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
  const resolve = targetResolver(rules);
  // failFast: while Redis is away, writes fail at once (503) instead of queueing until it returns.
  // With replicas to wait for, a write may queue behind another request's WAIT on the shared
  // connection (WAIT blocks it), so its deadline includes the WAIT timeout.
  const writeTimeoutMs = config.redisTimeoutMs + (config.waitReplicas > 0 ? config.waitTimeoutMs : 0);
  // failFast: while Redis is away, writes fail at once (503) instead of queueing until it returns;
  // a command Redis does not answer in time fails with "Command timed out" (503 too).
  const redis = connectRedis(config.redis, {
    name: `${config.producerName}-producer`,
    failFast: true,
    commandTimeoutMs: writeTimeoutMs,
  });
  const scripts = new IdempotencyScripts(redis);
  // A request waits for room at most as long as for Redis: either way it learns within REDIS_TIMEOUT
  // whether it can be accepted.
  const budget = new ByteBudget(Math.ceil(config.requestBytesInFlight / config.workers), writeTimeoutMs);
  const metrics = producerMetrics(registry, redis, keys.stream, config.redisTimeoutMs, budget);
  const warn = throttledWarn(logger);
  const overloaded = () =>
    new AsyncError(
      ErrorCode.Overloaded,
      `the producer holds as many request bodies as it may (REQUEST_BYTES_IN_FLIGHT); retry later`,
      { headers: { "retry-after": "1" } },
    );
  let closing = false;

  const admin: AdminEndpoints = {
    registry,
    ready: async () => !closing && (await redisIsReady(redis)),
  };

  /** Stores the request and resolves with what the 202 says; throws the error answer otherwise. */
  async function store(
    envelopeId: string,
    envelope: string | Buffer,
    url: string,
    method: string,
    body: Buffer,
    key: string | undefined,
  ): Promise<Answer> {
    try {
      if (key === undefined) {
        if (typeof envelope === "string") await redis.xadd(keys.stream, "*", DATA_FIELD, envelope);
        // Sent on its own rather than auto-pipelined: a pipeline copies its commands into one more
        // Buffer, which for large bodies is the largest allocation of the request.
        else await redis.sendCommand(new Command("xadd", [keys.stream, "*", DATA_FIELD, envelope]));
        if (config.waitReplicas > 0) await confirmReplicas(envelopeId, false);
        return { id: envelopeId, replayed: false, firstAccept: true };
      }
      return await storeWithKey(envelopeId, envelope, url, method, body, key);
    } catch (err) {
      throw notStored(err, writeTimeoutMs);
    }
  }

  async function storeWithKey(
    envelopeId: string,
    envelope: string | Buffer,
    url: string,
    method: string,
    body: Buffer,
    key: string,
  ): Promise<Answer> {
    const recordKey = keys.idempotency(key);
    const { outcome, id } = await scripts.enqueue({
      streamKey: keys.stream,
      recordKey,
      fingerprint: requestFingerprint(method, url, body),
      id: envelopeId,
      envelope,
      ttlMs: config.idempotencyTtlMs,
      // Covers the WAIT and the write queued before it; past this, a retry may confirm again.
      acceptingMs: config.waitReplicas > 0 ? config.waitTimeoutMs + writeTimeoutMs : 0,
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
        await scripts.settle(recordKey, id, "unconfirmed").catch(() => undefined);
        throw err;
      }
      // If this fails the record stays "accepting" until its window ends; a retry then confirms again.
      await scripts
        .settle(recordKey, id, "accepted")
        .catch((err: unknown) =>
          warn(
            ErrorCode.StoreUnavailable,
            "could not mark an idempotency record accepted",
            notStored(err, writeTimeoutMs),
          ),
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
    let confirmed = 0;
    let cause: unknown;
    try {
      // WAIT blocks for up to its own timeout on the server, so it gets that on top of the usual one.
      // It goes out after this request's write was answered, so it covers that write.
      const wait = new Command("wait", [config.waitReplicas, config.waitTimeoutMs]);
      wait.setTimeout(config.waitTimeoutMs + writeTimeoutMs);
      confirmed = Number(await redis.sendCommand(wait));
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

  const bodyLimit: BodyLimit = {
    limit: config.requestSizeLimit,
    tooLarge: () => bodyTooLarge(config.requestSizeLimit),
    afterLimit: "stop",
  };

  /** Stores an async request and answers 202; throws the error to answer with otherwise. */
  async function accept(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean) {
    const headers = readHeaders(req.rawHeaders);
    const target = resolve(headers.originalHost, req.url);
    const key = parseIdempotencyKey(headers.idempotencyKey);
    const declaredText = req.headers["content-length"];
    const declared = declaredText === undefined ? -1 : Number(declaredText);
    if (declared > config.requestSizeLimit) throw bodyTooLarge(config.requestSizeLimit);

    // Bytes of the budget this request holds, given back once Redis has answered.
    let held = 0;
    try {
      if (declared > 0) {
        const room = budget.take(declared, overloaded);
        if (room !== undefined) {
          await room;
          if (req.destroyed) {
            budget.give(declared);
            throw new AsyncError(ErrorCode.BodyAborted, "the client went away while its request waited");
          }
        }
        held = declared;
      }
      if (expectsContinue) res.writeContinue();
      const body = await readBody(
        req,
        declared >= 0
          ? bodyLimit
          : {
              ...bodyLimit,
              admit: (bytes: number) => {
                if (!budget.tryTake(bytes)) return overloaded();
                held += bytes;
                return undefined;
              },
            },
      );

      const method = req.method ?? "GET";
      const policy = parsePolicyHeader(headers.policy?.join("; "));
      const id = randomUUID();
      const request: AsyncRequest = {
        id,
        url: target.url,
        method,
        headers: headers.stored,
        body,
        acceptedAt: Date.now(),
        ...(policy === undefined ? {} : { policy }),
      };
      // Small envelopes are cheaper as a string; large ones as one Buffer (see encodeEnvelopeBuffer).
      const envelope =
        body.length >= LARGE_BODY_BYTES ? encodeEnvelopeBuffer(request) : encodeEnvelope(request);
      const answer = await store(id, envelope, target.url, method, body, key);
      budget.give(held);
      held = 0;

      sendAccepted(res, answer, prefersRespondAsync(headers.prefer));
      if (!answer.replayed) metrics.acceptedBytes.inc(body.length);
      if (answer.firstAccept) {
        logger.debug({ id: answer.id, url: target.url, method, bytes: body.length }, "request queued");
        if (deps.onAccepted !== undefined) {
          try {
            deps.onAccepted({ id: answer.id, url: target.url, method, bytes: body.length });
          } catch (err) {
            logger.error({ err }, "onAccepted hook failed");
          }
        }
      }
      return answer.replayed ? REPLAYED : ACCEPTED;
    } finally {
      if (held > 0) budget.give(held);
    }
  }

  function handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    if (req.headers[ORIGINAL_HOST_HEADER] === undefined) {
      const path = (req.url ?? "/").split("?", 1)[0] as string;
      if (path === "/metrics" && deps.clusterMetrics !== undefined) {
        serveClusterMetrics(res, deps.clusterMetrics, registry.contentType);
        return;
      }
      if (ADMIN_PATHS.has(path) && serveAdmin(req, res, admin)) return;
    }
    const started = performance.now();
    accept(req, res, expectsContinue).then(
      (outcome) => metrics.observe(outcome, started),
      (err: unknown) => {
        const code = errorCodeOf(err);
        const status = httpStatusOf(err);
        if (!(err instanceof AsyncError)) logger.error({ code, err }, "request failed unexpectedly");
        else if (status >= 500) warn(code, "request not accepted", err);
        else logger.debug({ code, err }, "request refused");
        // The unread rest of a body is not worth reading (an oversized one, or one refused for lack
        // of room): answer and close the connection.
        sendError(res, err, {
          closeConnection: code === ErrorCode.BodyTooLarge || code === ErrorCode.Overloaded,
        });
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

/** What the producer needs from a request's headers, from one pass over `req.rawHeaders`. */
interface RequestHeaders {
  /** Every header but the delivery policy, by canonical name, with all its values: what is stored. */
  readonly stored: HeaderMap;
  readonly originalHost: string[] | undefined;
  readonly idempotencyKey: string[] | undefined;
  readonly prefer: string[] | undefined;
  readonly policy: string[] | undefined;
}

const ORIGINAL_HOST = canonicalHeaderName(ORIGINAL_HOST_HEADER);
const IDEMPOTENCY_KEY = canonicalHeaderName(IDEMPOTENCY_HEADER);
const PREFER = canonicalHeaderName("prefer");
const POLICY = canonicalHeaderName(POLICY_HEADER);

/**
 * The stored header map is what `canonicalHeaders(req.headersDistinct)` gives (values in order, names
 * merged case-insensitively), without Node building `headersDistinct` first. The policy header is an
 * instruction from the controller to us, not part of the app's request: it is not stored.
 */
function readHeaders(raw: readonly string[]): RequestHeaders {
  const stored: HeaderMap = {};
  let policy: string[] | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = canonicalHeaderName(raw[i] as string);
    const value = raw[i + 1] as string;
    if (name === POLICY) {
      if (policy === undefined) policy = [value];
      else policy.push(value);
      continue;
    }
    const values = stored[name];
    if (values === undefined) stored[name] = [value];
    else values.push(value);
  }
  return {
    stored,
    originalHost: stored[ORIGINAL_HOST],
    idempotencyKey: stored[IDEMPOTENCY_KEY],
    prefer: stored[PREFER],
    policy,
  };
}

/** The 202, written directly: it is the one answer on the hot path. */
function sendAccepted(res: ServerResponse, answer: Answer, preferenceApplied: boolean): void {
  const text = `{"id":${JSON.stringify(answer.id)},"status":"queued"}`;
  const headers = [
    "content-type",
    "application/json",
    "content-length",
    String(Buffer.byteLength(text)),
    REQUEST_ID_HEADER,
    answer.id,
  ];
  if (preferenceApplied) headers.push("preference-applied", "respond-async");
  if (answer.replayed) headers.push("idempotent-replayed", "true");
  res.writeHead(202, headers);
  res.end(text);
}

function serveClusterMetrics(
  res: ServerResponse,
  clusterMetrics: () => Promise<string>,
  contentType: string,
): void {
  clusterMetrics().then(
    (text) => {
      res.writeHead(200, { "content-type": contentType });
      res.end(text);
    },
    () => sendJson(res, 500, { error: "metrics unavailable" }),
  );
}

function bodyTooLarge(limit: number): AsyncError {
  return new AsyncError(ErrorCode.BodyTooLarge, `the request body is larger than ${limit} bytes`);
}

/** ioredis's message for a command that reached its `commandTimeout` (or its own timeout). */
const COMMAND_TIMED_OUT = "Command timed out";

/**
 * The answer for a failed Redis write. A command that timed out may still be applied later, so that
 * answer says "not acknowledged" rather than "not stored".
 */
function notStored(err: unknown, timeoutMs: number): AsyncError {
  if (err instanceof AsyncError) return err;
  const message =
    err instanceof Error && err.message === COMMAND_TIMED_OUT
      ? `Redis did not acknowledge the request within ${timeoutMs}ms; retry later (with an Idempotency-Key a retry cannot enqueue it twice)`
      : "the request was not stored: Redis is unavailable; retry later";
  return new AsyncError(ErrorCode.StoreUnavailable, message, {
    cause: err,
    headers: { "retry-after": "1" },
  });
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
  budget: ByteBudget,
): ProducerMetrics {
  new Gauge({
    name: "knative_async_producer_body_bytes_in_flight",
    help: "Request-body bytes held now, of the REQUEST_BYTES_IN_FLIGHT budget",
    registers: [registry],
    collect() {
      this.set(budget.used);
    },
  });
  new Gauge({
    name: "knative_async_producer_requests_waiting",
    help: "Requests waiting, their bodies unread, for room in the REQUEST_BYTES_IN_FLIGHT budget",
    registers: [registry],
    collect() {
      this.set(budget.waiting);
    },
  });
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
    // Every cluster worker reads the same stream: their answers are one figure, not parts of a sum.
    aggregator: "first",
    async collect() {
      try {
        const xlen = new Command("xlen", [stream]);
        xlen.setTimeout(Math.min(timeoutMs, 1000));
        this.set(Number(await redis.sendCommand(xlen)));
      } catch {
        this.set(Number.NaN);
      }
    },
  });
  // Label children bound once per outcome (a few dozen at most: the error codes), not looked up by
  // hashing the labels on every request.
  const byOutcome = new Map<string, { count: Counter.Internal; time: Histogram.Internal<"outcome"> }>();
  return {
    acceptedBytes,
    observe(outcome, startedMs) {
      let children = byOutcome.get(outcome);
      if (children === undefined) {
        children = { count: requests.labels(outcome), time: duration.labels(outcome) };
        byOutcome.set(outcome, children);
      }
      children.count.inc();
      children.time.observe((performance.now() - startedMs) / 1000);
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
