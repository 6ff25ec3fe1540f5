/**
 * JSON logs (pino). One logger per component, carrying `component`. Secrets never reach a log line:
 * known secret-bearing fields are redacted, and Redis addresses are logged in their masked form.
 */
import { type Logger, pino } from "pino";

export type { Logger };

export interface LoggerOptions {
  readonly level?: string;
  /** Where to write; defaults to stdout. Tests pass a stream to read the lines back. */
  readonly destination?: NodeJS.WritableStream;
}

export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { component },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ["password", "*.password", "tlsCert", "*.tlsCert", "headers.authorization", "headers.cookie"],
        censor: "<redacted>",
      },
    },
    (options.destination ?? process.stdout) as pino.DestinationStream,
  );
}
