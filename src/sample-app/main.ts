import { createLogger } from "../lib/logger.js";
import { runComponent } from "../lib/process.js";
import { loadSampleAppConfig } from "./config.js";
import { startSampleApp } from "./sample-app.js";

export async function main(): Promise<void> {
  await runComponent("sample-app", async () => {
    const config = loadSampleAppConfig(process.env);
    return startSampleApp(config, { logger: createLogger("sample-app", { level: config.logLevel }) });
  });
}
