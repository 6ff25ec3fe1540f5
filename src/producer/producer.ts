/**
 * The producer: takes an async request, stores it in the Redis stream, and answers 202 Accepted.
 *
 * Contract with the client: a 202 means Redis acknowledged the write (and, with REDIS_WAIT_REPLICAS,
 * that many replicas confirmed it). Any failure before that is an error answer, never a 202; a 503 after
 * the write reached Redis may still be delivered, which is why retries should carry an Idempotency-Key.
 *
 * This file assembles the parts: the request flow (accept.ts) and its answers (answer.ts), the durable
 * write (store.ts), the budget of bytes in flight (budget.ts), the metrics (metrics.ts); it serves them
 * next to the admin endpoints and starts and closes the whole.
 *
 * Routing: a request with `Async-Original-Host` is always an async request, whatever its path; without
 * it only the admin endpoints answer.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import {
  ADMIN_PATHS,
  type AdminEndpoints,
  closeServer,
  listen,
  type Readiness,
  sendJson,
  serveAdmin,
} from "../lib/http.js";
import { streamKeys } from "../lib/keys.js";
import { type Logger, throttledWarn } from "../lib/logger.js";
import { createRegistry } from "../lib/metrics.js";
import { connectRedis, quitRedis, redisIsReady, waitUntilReady } from "../lib/redis.js";
import { AsyncServicesReader } from "../lib/registry.js";
import { parseHostPattern, targetResolver } from "../lib/target.js";
import { ORIGINAL_HOST } from "../lib/wire/headers.js";
import { type AcceptedInfo, requestAcceptor } from "./accept.js";
import { sendNotAccepted } from "./answer.js";
import { ByteBudget } from "./budget.js";
import type { ProducerConfig } from "./config.js";
import { ConnectionGuard, serverOptions } from "./connections.js";
import { producerMetrics } from "./metrics.js";
import { serviceGate } from "./services.js";
import { RequestStore, writeTimeoutMs } from "./store.js";

export type { AcceptedInfo };

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

export async function startProducer(config: ProducerConfig, deps: ProducerDeps): Promise<RunningProducer> {
  const { logger } = deps;
  const registry = deps.registry ?? createRegistry("producer");
  const keys = streamKeys(config.streamName);
  const resolve = targetResolver({
    ...config.targets,
    forbidden: [...config.targets.forbidden, ...(deps.selfHosts ?? []).map(parseHostPattern)],
  });
  // failFast: while Redis is away, writes fail at once (503) instead of queueing until it returns;
  // a command Redis does not answer in time fails with "Command timed out" (503 too).
  const timeoutMs = writeTimeoutMs(config);
  const redis = connectRedis(config.redis, {
    name: `${config.producerName}-producer`,
    failFast: true,
    commandTimeoutMs: timeoutMs,
  });
  const warn = throttledWarn(logger);
  const store = new RequestStore(redis, keys, config, warn);
  // A chunk waits for room at most as long as a write for Redis: either way the client learns within
  // REDIS_TIMEOUT whether its request can be accepted. The oldest body being read may pass the budget by
  // one REQUEST_SIZE_LIMIT, so that some body always finishes (see budget.ts).
  const budget = new ByteBudget(
    Math.ceil(config.requestBytesInFlight / config.workers),
    config.requestSizeLimit,
    timeoutMs,
  );
  const metrics = producerMetrics(registry, redis, keys.stream, config.redisTimeoutMs, budget);
  const connections = new ConnectionGuard();
  // Which targets are async services, and their policies: read from Redis into memory, kept current.
  const services = new AsyncServicesReader({
    redis: config.redis,
    commands: redis,
    keys,
    name: `${config.producerName}-producer-services`,
    logger,
  });
  const accept = requestAcceptor({
    requestSizeLimit: config.requestSizeLimit,
    bodyIdleTimeoutMs: config.bodyIdleTimeoutMs,
    resolve,
    services: serviceGate({
      services,
      allowed: config.allowedTargetHosts,
      requireRegistered: config.requireRegisteredTargets,
    }),
    budget,
    store,
    connections,
    metrics,
    logger,
    onAccepted: deps.onAccepted,
  });
  let closing = false;

  const admin: AdminEndpoints = {
    registry,
    ready: async (): Promise<Readiness> => {
      if (closing) return { ready: false, reason: "closing" };
      // Until it has been read, every registered service would be refused: not ready rather than that.
      if (!services.loaded) return { ready: false, reason: services.problem ?? "not loaded" };
      if (!(await redisIsReady(redis))) return { ready: false, reason: "Redis does not answer" };
      return { ready: true };
    },
  };

  function handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void {
    connections.track(req, res);
    if (req.headers[ORIGINAL_HOST] === undefined) {
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
      (err: unknown) => metrics.observe(sendNotAccepted(res, err, logger, warn), started),
    );
  }

  const server = createServer(serverOptions(config), (req, res) => handle(req, res, false));
  connections.watch(server);
  // A client that sends `Expect: 100-continue` learns about a bad target or an oversized body before
  // it sends the body.
  server.on("checkContinue", (req, res) => handle(req, res, true));

  // Answering 503 to the first requests only because the connection is still being set up would be
  // needless; a Redis that is really away does not hold up the start (/readyz reports it), hence the
  // timeout is not an error here.
  await waitUntilReady(redis, config.redisTimeoutMs).catch(() => undefined);
  // Not awaited past its first try: a registry that cannot be read yet is reported by /readyz.
  await services.start();
  let port: number;
  try {
    port = await listen(server, config.port);
  } catch (err) {
    services.close();
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
      services.close();
      await quitRedis(redis);
    },
  };
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
