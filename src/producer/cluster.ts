/**
 * The producer on several cores (PRODUCER_WORKERS > 1): `knative-async producer` becomes a node:cluster
 * primary that forks that many workers. They share the port (the primary accepts connections and hands
 * them out in turn) and each runs the whole producer with its own Redis connection.
 *
 * The primary serves no request itself. It restarts a worker that dies, a bounded number of times: a
 * crash loop ends the process, so that Kubernetes sees it and backs off. On SIGTERM it asks every worker
 * to close gracefully and exits when they have. It gathers every worker's metrics (prom-client's
 * AggregatorRegistry), so /metrics, answered by whichever worker the scrape reaches, covers the pod.
 * /healthz and /readyz are each worker's own; any worker speaks for all, as they share one
 * configuration and one Redis.
 */
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry } from "prom-client";
import type { Logger } from "../lib/logger.js";
import type { ProducerConfig } from "./config.js";
import type { RunningProducer } from "./producer.js";

/** Messages between the primary and its workers (prom-client's own ones travel alongside). */
export const CLOSE = "knative-async:producer-close";
export const METRICS_REQUEST = "knative-async:producer-metrics";
export const METRICS_REPLY = "knative-async:producer-metrics-reply";

export interface Message {
  readonly type: string;
  readonly id?: number;
  readonly text?: string;
  readonly error?: string;
}

export function isMessage(value: unknown, type: string): value is Message {
  return typeof value === "object" && value !== null && (value as Message).type === type;
}

export interface ClusterOptions {
  /** Restarts allowed within `restartWindowMs`; one more and the primary gives up (exit code 1). */
  readonly maxRestarts?: number;
  readonly restartWindowMs?: number;
  /** How long a worker may take to close (it lets requests in flight finish) before it is killed. */
  readonly closeTimeoutMs?: number;
}

/** In the primary: forks `config.workers` workers and resolves once every one of them listens. */
export async function startProducerCluster(
  config: ProducerConfig,
  logger: Logger,
  options: ClusterOptions = {},
): Promise<RunningProducer> {
  const maxRestarts = options.maxRestarts ?? Math.max(3, config.workers);
  const restartWindowMs = options.restartWindowMs ?? 60_000;
  const closeTimeoutMs = options.closeTimeoutMs ?? 20_000;
  const aggregator = new AggregatorRegistry();
  const restarts: number[] = [];
  let started = false;
  let closing = false;

  const onMessage = (worker: Worker, message: unknown) => {
    if (!isMessage(message, METRICS_REQUEST)) return;
    const reply = (answer: Omit<Message, "type" | "id">) => {
      if (worker.isConnected()) worker.send({ type: METRICS_REPLY, id: message.id, ...answer });
    };
    aggregator.clusterMetrics().then(
      (text) => reply({ text }),
      (err: Error) => reply({ error: err.message }),
    );
  };

  const onExit = (worker: Worker, code: number | null, signal: string | null) => {
    // Before every worker listened, a death fails the start instead (see `listening` below).
    if (closing || !started) return;
    const now = Date.now();
    while (restarts.length > 0 && now - (restarts[0] as number) > restartWindowMs) restarts.shift();
    if (restarts.length >= maxRestarts) {
      logger.fatal(
        { worker: worker.id, code, signal, restarts: restarts.length, windowMs: restartWindowMs },
        "producer workers keep dying; giving up",
      );
      closing = true;
      closeAll().finally(() => process.exit(1));
      return;
    }
    restarts.push(now);
    logger.error({ worker: worker.id, code, signal }, "producer worker died; starting another");
    // A replacement that dies too comes back here and counts against the same bound.
    cluster.fork();
  };

  function listening(worker: Worker): Promise<number> {
    return new Promise((resolve, reject) => {
      const onListening = (address: { port: number }) => {
        worker.off("exit", onEarlyExit);
        resolve(address.port);
      };
      const onEarlyExit = (code: number | null, signal: string | null) => {
        worker.off("listening", onListening);
        reject(new Error(`a producer worker exited (${signal ?? `code ${code}`}) before it listened`));
      };
      worker.once("listening", onListening);
      worker.once("exit", onEarlyExit);
    });
  }

  function closeWorker(worker: Worker): Promise<void> {
    if (worker.isDead()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => worker.process.kill("SIGKILL"), closeTimeoutMs);
      worker.once("exit", () => {
        clearTimeout(timer);
        resolve();
      });
      if (worker.isConnected()) worker.send({ type: CLOSE });
      else worker.process.kill("SIGTERM");
    });
  }

  async function closeAll(): Promise<void> {
    await Promise.all(Object.values(cluster.workers ?? {}).map((w) => (w ? closeWorker(w) : undefined)));
    cluster.off("message", onMessage);
    cluster.off("exit", onExit);
  }

  cluster.on("message", onMessage);
  cluster.on("exit", onExit);
  const forked = Array.from({ length: config.workers }, () => cluster.fork());
  let ports: number[];
  try {
    ports = await Promise.all(forked.map(listening));
  } catch (err) {
    closing = true;
    await closeAll();
    throw err;
  }
  started = true;
  const port = ports[0] as number;
  logger.info({ port, workers: config.workers }, "producer workers listening");

  return {
    port,
    async close() {
      closing = true;
      await closeAll();
    },
  };
}
