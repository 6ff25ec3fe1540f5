import { createLogger } from "../lib/logger.js";
import { runComponent } from "../lib/process.js";
import { loadConsumerConfig } from "./config.js";
import { startConsumer } from "./consumer.js";

export async function main(): Promise<void> {
  await runComponent("consumer", async () => {
    const config = loadConsumerConfig(process.env);
    return startConsumer(config, { logger: createLogger("consumer", { level: config.logLevel }) });
  });
}
