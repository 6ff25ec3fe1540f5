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
  let running: Running | undefined;
  let stopRequested: NodeJS.Signals | undefined;
  let closing = false;

  const close = (signal: NodeJS.Signals, component: Running) => {
    closing = true;
    component.close().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`knative-async ${name}: error while closing on ${signal}: ${String(err)}\n`);
        process.exit(1);
      },
    );
  };
  // Installed before starting, so that a signal during start-up is not lost: the component is closed
  // as soon as it is up. A second signal while closing means "now".
  const onSignal = (signal: NodeJS.Signals) => {
    if (closing || stopRequested) process.exit(130);
    if (running) close(signal, running);
    else stopRequested = signal;
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

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
  if (stopRequested) close(stopRequested, running);
}
