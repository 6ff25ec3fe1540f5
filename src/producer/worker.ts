/** A node:cluster worker of the producer (see cluster.ts): the whole producer, closed by the primary. */
import { AggregatorRegistry } from "prom-client";
import type { Logger } from "../lib/logger.js";
import { createRegistry } from "../lib/metrics.js";
import { CLOSE, isMessage, METRICS_REPLY, METRICS_REQUEST } from "./cluster.js";
import type { ProducerConfig } from "./config.js";
import { type RunningProducer, startProducer } from "./producer.js";

/**
 * In a worker: runs the producer until the primary asks it to close, a signal comes, or the primary is
 * gone (an orphan would keep the port's connections but answer nobody's scrape). Resolves once started.
 */
export async function runProducerWorker(config: ProducerConfig, logger: Logger): Promise<void> {
  let running: RunningProducer | undefined;
  let closeRequested = false;
  const close = () => {
    if (closeRequested) return;
    closeRequested = true;
    running?.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "error while closing a producer worker");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", close);
  process.on("SIGINT", close);
  process.on("disconnect", close);

  const pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();
  let nextId = 0;
  process.on("message", (message: unknown) => {
    if (isMessage(message, CLOSE)) {
      close();
      return;
    }
    if (!isMessage(message, METRICS_REPLY) || message.id === undefined) return;
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.text !== undefined) waiter?.resolve(message.text);
    else waiter?.reject(new Error(message.error ?? "no metrics"));
  });
  /** The whole pod's metrics, from the primary, which asks every worker. */
  const clusterMetrics = (timeoutMs = 6000) =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error("the primary did not answer with the metrics in time"));
      }, timeoutMs);
      pending.set(id, {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      process.send?.({ type: METRICS_REQUEST, id });
    });

  const registry = createRegistry("producer");
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs prom-client's listener that answers the primary's requests for metrics.
  new AggregatorRegistry();
  try {
    running = await startProducer(config, { logger, registry, clusterMetrics });
  } catch (err) {
    process.stderr.write(`knative-async producer: worker failed to start: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  }
  if (closeRequested) {
    closeRequested = false;
    close();
  }
}
