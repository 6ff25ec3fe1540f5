/**
 * Redis connection settings shared by every component, with the original's env names: REDIS_ADDRESS is
 * `host:port` or a `redis://` / `rediss://` URL (user and password allowed), TLS_CERT an optional PEM CA
 * bundle for TLS to Redis (it also turns TLS on for a plain `host:port`).
 */
import { Redis, type RedisOptions, ReplyError } from "ioredis";
import { z } from "zod";
import { backoffDelay } from "./backoff.js";
import { decodeLoosely, maskUrl } from "./redact.js";
import { settlesWithin } from "./wait.js";

export interface RedisSettings {
  readonly host: string;
  readonly port: number;
  readonly username?: string;
  readonly password?: string;
  readonly db: number;
  readonly tls?: { readonly ca?: string; readonly servername?: string };
  /** The address as configured with any password masked: safe to log and to put in CloudEvent sources. */
  readonly display: string;
}

export function parseRedisAddress(address: string, tlsCert?: string): RedisSettings {
  const trimmed = address.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(trimmed);
  const protocol = scheme?.[1]?.toLowerCase() ?? "redis";
  if (protocol !== "redis" && protocol !== "rediss") {
    throw new Error(`scheme must be redis:// or rediss://, got ${protocol}://`);
  }
  const rest = scheme ? trimmed.slice(scheme[0].length) : trimmed;
  // The userinfo ends at the last `@`: a password may hold `@`, `:`, `/`, `?` or `#` written as they
  // are, and what follows (host, port, database number) never holds one. Only the part after it is
  // parsed as a URL, so no error message can quote the password.
  const at = rest.lastIndexOf("@");
  const { username, password } = splitUserinfo(at < 0 ? undefined : rest.slice(0, at));
  const url = new URL(`${protocol}://${rest.slice(at + 1)}`);
  if (!url.hostname) throw new Error("missing host");
  const port = url.port === "" ? 6379 : Number(url.port);
  const dbPath = url.pathname.replace(/^\//, "");
  const db = dbPath === "" ? 0 : Number(dbPath);
  if (!Number.isInteger(db) || db < 0)
    throw new Error(`database must be a number, got ${JSON.stringify(dbPath)}`);
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const useTls = protocol === "rediss" || (tlsCert !== undefined && tlsCert.trim() !== "");
  // Shown as written (with or without a scheme), rebuilt from the parts so that the mask sees an
  // unambiguous URL, and the password percent-encoded so that nothing in it can look like a delimiter.
  const shown = `${scheme ? `${protocol}://` : ""}${userinfoText(username, password)}${hostForUri(host)}:${port}${db === 0 ? "" : `/${db}`}`;
  return {
    host,
    port,
    db,
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(useTls ? { tls: { ...(tlsCert?.trim() ? { ca: tlsCert } : {}), servername: host } } : {}),
    display: maskUrl(shown),
  };
}

/** `user:password` (each percent-decoded when it is valid percent-encoding); empty parts are absent. */
function splitUserinfo(userinfo: string | undefined): { username?: string; password?: string } {
  if (userinfo === undefined) return {};
  const colon = userinfo.indexOf(":");
  const username = decodeLoosely(colon < 0 ? userinfo : userinfo.slice(0, colon));
  const password = colon < 0 ? "" : decodeLoosely(userinfo.slice(colon + 1));
  return { ...(username ? { username } : {}), ...(password ? { password } : {}) };
}

function userinfoText(username: string | undefined, password: string | undefined): string {
  if (password !== undefined) return `${encodeURIComponent(username ?? "")}:${encodeURIComponent(password)}@`;
  return username === undefined ? "" : `${encodeURIComponent(username)}@`;
}

/** A host as it appears in a URI: an IPv6 address in brackets. */
function hostForUri(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** A zod field for REDIS_ADDRESS; TLS_CERT is applied afterwards by `withTlsCert`. */
const redisAddressSetting = (defaultValue = "127.0.0.1:6379") =>
  z
    .string()
    .default(defaultValue)
    .transform((value, ctx) => {
      try {
        return parseRedisAddress(value);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: `not a Redis address: ${(err as Error).message}` });
        return z.NEVER;
      }
    });

/** The stream name every component uses unless REDIS_STREAM_NAME says otherwise (the original's). */
export const DEFAULT_STREAM_NAME = "mystream";

/**
 * The Redis trio every component reads, one spelling for all: spread into a component's env schema,
 * then turned into settings by `redisFromEnv`.
 */
export const redisEnvFields = {
  REDIS_ADDRESS: redisAddressSetting(),
  TLS_CERT: z.string().optional(),
  REDIS_STREAM_NAME: z.string().min(1).default(DEFAULT_STREAM_NAME),
};

export function redisFromEnv(e: {
  readonly REDIS_ADDRESS: RedisSettings;
  readonly TLS_CERT?: string | undefined;
  readonly REDIS_STREAM_NAME: string;
}): { redis: RedisSettings; streamName: string } {
  return { redis: withTlsCert(e.REDIS_ADDRESS, e.TLS_CERT), streamName: e.REDIS_STREAM_NAME };
}

function withTlsCert(settings: RedisSettings, tlsCert: string | undefined): RedisSettings {
  if (!tlsCert?.trim()) return settings;
  return { ...settings, tls: { ...settings.tls, ca: tlsCert, servername: settings.host } };
}

/** Reconnect quickly at first (100 ms), then every 2 s at most: Redis restarts should be ridden out. */
const RECONNECT_BACKOFF = { baseMs: 100, maxMs: 2000 };

export interface ConnectOptions {
  /** Shown in CLIENT LIST, which makes it easy to see who holds which connection. */
  readonly name: string;
  /**
   * Fail commands at once while disconnected instead of queueing them. The producer wants this: a
   * request must get 503 quickly, not hang until Redis returns.
   */
  readonly failFast?: boolean;
  /** For blocking reads (XREADGROUP BLOCK): no command timeout may cut them. */
  readonly blocking?: boolean;
  /**
   * Rejects a command with "Command timed out" when Redis has not answered it within this time (one
   * timer per command, set by ioredis); a command given its own timeout first keeps that one.
   */
  readonly commandTimeoutMs?: number;
}

export function connectRedis(settings: RedisSettings, options: ConnectOptions): Redis {
  const redisOptions: RedisOptions = {
    host: settings.host,
    port: settings.port,
    db: settings.db,
    connectionName: options.name,
    lazyConnect: false,
    enableAutoPipelining: !options.blocking,
    maxRetriesPerRequest: options.failFast ? 0 : null,
    enableOfflineQueue: !options.failFast,
    ...(options.commandTimeoutMs === undefined ? {} : { commandTimeout: options.commandTimeoutMs }),
    retryStrategy: (times) => backoffDelay(times, RECONNECT_BACKOFF),
    ...(settings.username ? { username: settings.username } : {}),
    ...(settings.password ? { password: settings.password } : {}),
    ...(settings.tls ? { tls: { ...settings.tls } } : {}),
  };
  const client = new Redis(redisOptions);
  // ioredis emits 'error' on every failed reconnect; without a listener Node would crash the process.
  // The components report Redis health through /readyz and their own error handling instead.
  client.on("error", () => {});
  return client;
}

/**
 * Error replies that say Redis cannot run a command now but may later: memory full, busy with a script,
 * loading its data, a replica or a failover. Any other error reply is about the command itself (a script
 * that fails, a key of the wrong type) and comes back the same however often it is sent.
 */
const PASSING_REPLY =
  /^(OOM|BUSY|LOADING|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|NOREPLICAS|MISCONF|NOSCRIPT)\b/;

/**
 * True when Redis refused the command itself: an error reply that is not one of the passing ones above.
 * A connection error, a timeout or a passing refusal is worth trying again; this is not.
 */
export function isRefusedByRedis(err: unknown): boolean {
  // ioredis types ReplyError as `any`: the instanceof check says nothing to TypeScript.
  return err instanceof ReplyError && !PASSING_REPLY.test((err as Error).message);
}

/** True when Redis answers PING within `timeoutMs`. Used by /readyz. */
export async function redisIsReady(client: Redis, timeoutMs = 1000): Promise<boolean> {
  if (client.status !== "ready") return false;
  let timer: NodeJS.Timeout | undefined;
  try {
    const pong = await Promise.race([
      client.ping(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("timeout")), timeoutMs);
      }),
    ]);
    return pong === "PONG";
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once the client is connected and ready; rejects with the last connection error after `timeoutMs`. */
export function waitUntilReady(client: Redis, timeoutMs: number): Promise<void> {
  if (client.status === "ready") return Promise.resolve();
  return new Promise((resolve, reject) => {
    let lastError: Error | undefined;
    const onError = (err: Error) => {
      lastError = err;
    };
    const onReady = () => {
      clearTimeout(timer);
      client.off("error", onError);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off("ready", onReady);
      client.off("error", onError);
      reject(
        new Error(`could not connect within ${timeoutMs} ms${lastError ? `: ${lastError.message}` : ""}`),
      );
    }, timeoutMs);
    client.on("error", onError);
    client.once("ready", onReady);
  });
}

/**
 * Sends QUIT and waits for it at most `timeoutMs`, then drops the connection whatever happened: closing
 * must not hang on a Redis that is away, and there is nothing to say goodbye to then.
 */
export async function quitRedis(client: Redis, timeoutMs = 1000): Promise<void> {
  await settlesWithin(client.quit(), timeoutMs);
  client.disconnect();
}
