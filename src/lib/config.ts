/**
 * Configuration is parsed once, from the environment, into a frozen typed object. No other module reads
 * `process.env`: components receive their config as an argument, which is what lets the local all-in-one
 * mode run several of them in one process with different settings.
 */
import { z } from "zod";
import { formatDuration, parseDuration } from "./durations.js";
import { AsyncError, ErrorCode } from "./errors.js";
import { maskUrl } from "./redact.js";

export type Env = Readonly<Record<string, string | undefined>>;

export class ConfigError extends AsyncError {
  constructor(message: string) {
    super(ErrorCode.BadConfig, message);
    this.name = "ConfigError";
  }
}

/**
 * Parses `env` with `schema`. Empty strings count as unset, so that `FOO=` in a manifest means "default".
 * On failure throws one ConfigError whose message names every bad variable on one line.
 */
export function parseEnv<S extends z.ZodType>(component: string, schema: S, env: Env): Readonly<z.infer<S>> {
  const cleaned: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== "") cleaned[key] = value;
  }
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const name = issue.path.join(".") || "(environment)";
      const got = typeof issue.path[0] === "string" ? cleaned[issue.path[0]] : undefined;
      return `${name}: ${issue.message}${got === undefined ? "" : ` (got ${JSON.stringify(redactValue(name, got))})`}`;
    });
    throw new ConfigError(`invalid ${component} configuration: ${problems.join("; ")}`);
  }
  return deepFreeze(result.data) as Readonly<z.infer<S>>;
}

/** A value as an error may show it: never a secret setting, and any address in it masked. */
function redactValue(name: string, value: string): string {
  if (/PASSWORD|SECRET|TOKEN|CERT|KEY/i.test(name)) return "<redacted>";
  return maskUrl(value);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

// Small reusable field parsers, so every component spells its settings the same way.

/** A whole number within [min, max], from a string. */
export const intSetting = (defaultValue: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(defaultValue);

/** A TCP port number; 0 lets the OS pick (used by tests and the all-in-one mode). */
const portSetting = (defaultValue: number) => intSetting(defaultValue, 0, 65535);

/** `true/false`, `1/0`, `yes/no`, `on/off`. */
export const boolSetting = (defaultValue: boolean) =>
  z
    .string()
    .trim()
    .toLowerCase()
    .refine((v) => ["true", "false", "1", "0", "yes", "no", "on", "off"].includes(v), {
      message: "must be true or false",
    })
    .transform((v) => ["true", "1", "yes", "on"].includes(v))
    .optional()
    .transform((v) => v ?? defaultValue);

/** A comma-separated list of non-empty strings. */
export const listSetting = (defaultValue: readonly string[]) =>
  z
    .string()
    .transform((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0),
    )
    .optional()
    .transform((v) => v ?? [...defaultValue]);

const logLevelSetting = z
  .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
  .default("info");

/** An absolute http(s) URL. */
export const urlSetting = z.string().refine(
  (v) => {
    try {
      const url = new URL(v);
      return url.protocol === "http:" || url.protocol === "https:";
    } catch {
      return false;
    }
  },
  { message: "must be an absolute http:// or https:// URL" },
);

/** A duration like `500ms`, `10s`, `5m`, `24h` (a bare number is milliseconds), parsed to milliseconds. */
export const durationSetting = (defaultValue: string) =>
  z
    .string()
    .default(defaultValue)
    .transform((value, ctx) => {
      const ms = parseDuration(value);
      if (ms === undefined) {
        ctx.addIssue({ code: "custom", message: "must be a duration like 500ms, 10s, 5m or 24h" });
        return z.NEVER;
      }
      return ms;
    });

/** A duration of at least `minMs`, in milliseconds; the message says the minimum as people write it. */
export const minDurationSetting = (defaultValue: string, minMs: number) =>
  durationSetting(defaultValue).pipe(z.number().min(minMs, `must be at least ${formatDuration(minMs)}`));

/** What every component serving HTTP reads: its port (Knative sets PORT) and its log level. */
export const serverEnvFields = {
  PORT: portSetting(8080),
  LOG_LEVEL: logLevelSetting,
};

/** `port` and `logLevel` of a component's config, from the fields of `serverEnvFields`. */
export function serverFromEnv(e: { readonly PORT: number; readonly LOG_LEVEL: string }): {
  port: number;
  logLevel: string;
} {
  return { port: e.PORT, logLevel: e.LOG_LEVEL };
}

/**
 * A refinement (spread into zod's `.refine`) that one setting is not larger than another, reported on
 * the first: `.refine(...notLargerThan("MIN_BACKOFF", "MAX_BACKOFF"))`.
 */
export function notLargerThan<K extends string>(
  small: K,
  large: K,
): [(e: Readonly<Record<K, number>>) => boolean, { message: string; path: [K] }] {
  return [(e) => e[small] <= e[large], { message: `must not be larger than ${large}`, path: [small] }];
}

/** A comma-separated list of HTTP status codes. */
export const statusListSetting = (defaultValue: readonly number[]) =>
  listSetting(defaultValue.map(String)).transform((values, ctx) => {
    const codes = values.map(Number);
    if (!codes.every((c) => Number.isInteger(c) && c >= 100 && c <= 599)) {
      ctx.addIssue({ code: "custom", message: "must be a comma-separated list of HTTP status codes" });
      return z.NEVER;
    }
    return codes;
  });

/**
 * EVENT_SIGNING_SECRETS: the secrets events are signed with (dispatcher) and checked against (consumer),
 * comma-separated so that a new one can be added before the old one is removed (src/lib/wire/signature.ts).
 * From a Secret; shown as `<redacted>` in configuration errors, like every variable named *SECRET*.
 */
export const signingSecretsSetting = listSetting([]);
