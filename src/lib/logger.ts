/**
 * JSON logs (pino). One logger per component, carrying `component`. Secrets never reach a log line:
 * known secret-bearing fields are redacted, and the fields that carry a URL or an address are masked
 * (`maskUrl`) whoever logs them, so that a call site that forgets cannot print a password or a token.
 */
import { type Logger, pino } from "pino";
import { maskUrl } from "./redact.js";

export type { Logger };

export interface LoggerOptions {
  readonly level?: string;
  /** Where to write; defaults to stdout. Tests pass a stream to read the lines back. */
  readonly destination?: NodeJS.WritableStream;
}

/** Log fields that hold a URL or an address: K_SINK, a stored request's url, the Redis address. */
const URL_FIELDS = ["url", "sink", "deadLetterSink", "redis", "address", "target", "source"];

const maskIfString = (value: unknown) => (typeof value === "string" ? maskUrl(value) : value);

export function createLogger(component: string, options: LoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { component },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: Object.fromEntries(URL_FIELDS.map((field) => [field, maskIfString])),
      redact: {
        paths: ["password", "*.password", "tlsCert", "*.tlsCert", "headers.authorization", "headers.cookie"],
        censor: "<redacted>",
      },
    },
    (options.destination ?? process.stdout) as pino.DestinationStream,
  );
}

/** A warning about a failure, labelled by its error code; see `throttledWarn`. */
export type CodeWarning = (code: string, message: string, err: unknown) => void;

/**
 * Warns about failures that are not the client's fault, at most once per interval per code with a count
 * of the ones left out: while a dependency (Redis) is down every request fails, and one line per request
 * would flood the logs. The cause's message is lifted out, as it is what says what went wrong.
 */
export function throttledWarn(logger: Logger, intervalMs = 5000): CodeWarning {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (code, message, err) => {
    const now = Date.now();
    const seen = last.get(code);
    if (seen && now - seen.at < intervalMs) {
      seen.suppressed++;
      return;
    }
    last.set(code, { at: now, suppressed: 0 });
    const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : undefined;
    logger.warn(
      { code, err, ...(cause ? { cause } : {}), suppressedSinceLast: seen?.suppressed ?? 0 },
      message,
    );
  };
}
