/** `knative-async producer`: HTTP ingest that stores each async request in the Redis stream. */
import { createLogger } from "../lib/logger.js";
import { runComponent } from "../lib/process.js";
import { loadProducerConfig } from "./config.js";
import { startProducer } from "./producer.js";

export async function main(_argv: string[]): Promise<void> {
  await runComponent("producer", async () => {
    const config = loadProducerConfig(process.env);
    return startProducer(config, { logger: createLogger("producer", { level: config.logLevel }) });
  });
}
