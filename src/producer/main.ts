/** `knative-async producer`: HTTP ingest that stores each async request in the Redis stream. */
import cluster from "node:cluster";
import { createLogger } from "../lib/logger.js";
import { runComponent } from "../lib/process.js";
import { startProducerCluster } from "./cluster.js";
import { loadProducerConfig } from "./config.js";
import { startProducer } from "./producer.js";
import { runProducerWorker } from "./worker.js";

export async function main(_argv: string[]): Promise<void> {
  if (cluster.isWorker) {
    const config = loadProducerConfig(process.env);
    const logger = createLogger("producer", { level: config.logLevel });
    await runProducerWorker(config, logger.child({ worker: cluster.worker?.id }));
    return;
  }
  await runComponent("producer", async () => {
    const config = loadProducerConfig(process.env);
    const logger = createLogger("producer", { level: config.logLevel });
    return config.workers > 1 ? startProducerCluster(config, logger) : startProducer(config, { logger });
  });
}
