import { createLogger } from "../lib/logger.js";
import { runComponent } from "../lib/process.js";
import { loadDispatcherConfig } from "./config.js";
import { startDispatcher } from "./dispatcher.js";

export async function main(): Promise<void> {
  await runComponent("dispatcher", async () => {
    const config = loadDispatcherConfig(process.env);
    return startDispatcher(config, { logger: createLogger("dispatcher", { level: config.logLevel }) });
  });
}
