/**
 * The thin `main` of every component: build from config, start, and close on SIGTERM/SIGINT. A bad
 * configuration is one readable line on stderr and exit code 1, never a stack trace or a crash loop of
 * half-started components.
 */
import { ConfigError } from "./config.js";

export interface Running {
  close(): Promise<void>;
}

export async function runComponent(name: string, start: () => Promise<Running>): Promise<void> {
  let running: Running;
  try {
    running = await start();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`knative-async ${name}: ${err.message}\n`);
    } else {
      process.stderr.write(
        `knative-async ${name}: failed to start: ${(err as Error).stack ?? String(err)}\n`,
      );
    }
    process.exit(1);
  }
  let closing = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (closing) {
      // A second Ctrl-C means "now".
      process.exit(130);
    }
    closing = true;
    running.close().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`knative-async ${name}: error while closing on ${signal}: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}
