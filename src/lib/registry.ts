/**
 * The async services registry: which services opted in to async requests, and each one's delivery
 * policy. The controller publishes it; the producer and the dispatcher read it.
 *
 * Why it exists: the producer used to take a request for any cluster-local service, with the delivery
 * policy of a header (`Async-Delivery-Policy`) that a client could send itself (whether a networking layer
 * replaces or appends the route's `appendHeaders` varies). So anyone who could reach the producer could
 * have it call services that never opted in, with up to 1000 attempts over 30 days. Now only the
 * controller says which services are async and with which policy, here, where no client can write.
 *
 * Storage (src/lib/keys.ts): the HASH `{S}:services`, field `<namespace>/<KIngress name>` -> JSON
 * `{"hosts": [...], "policy": {...}, "updatedAt": <ms>}`, `hosts` being the cluster-local names the
 * controller's route puts in `Async-Original-Host`. Every write is announced on the channel
 * `{S}:services:changed`.
 *
 * Readers hold the whole hash in memory and answer from there: the producer's ingest makes no Redis round
 * trip per request. They load it again on each notice, whenever their subscription (re)connects (a notice
 * sent while they were away is lost), and every `refreshMs` as a safety net.
 */
import { isDeepStrictEqual } from "node:util";
import type { Redis } from "ioredis";
import { type DeliveryPolicyOverrides, decodePolicy } from "./envelope.js";
import type { StreamKeys } from "./keys.js";
import { type CodeWarning, type Logger, throttledWarn } from "./logger.js";
import { connectRedis, type RedisSettings } from "./redis.js";

/** What the controller publishes for one async KIngress. */
export interface AsyncService {
  /** Cluster-local names the service is called by (`Async-Original-Host`), without a port. */
  readonly hosts: readonly string[];
  /** From the Service's annotations; empty when it sets none (the dispatcher's defaults apply). */
  readonly policy: DeliveryPolicyOverrides;
}

export interface PublishedService extends AsyncService {
  /** When the controller last changed it (ms since the epoch). */
  readonly updatedAt: number;
}

/** A reader's answer for a target that is a published service. */
export interface ServiceMatch {
  readonly policy: DeliveryPolicyOverrides;
}

/** `<namespace>/<name>` of a KIngress: the registry field, the same as the controller's work-queue key. */
export function serviceId(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

const CLUSTER_DOMAIN = ".cluster.local";

/**
 * The key a host is looked up by: lower-case, without its port (a Service is the same on each of its
 * ports; the target rule decides which ports), and `<name>.<namespace>.svc.cluster.local` the same as
 * `<name>.<namespace>.svc`, as both name the same Service.
 */
export function serviceHostKey(authority: string): string {
  let host = authority.toLowerCase();
  if (host.startsWith("[")) host = host.slice(0, host.indexOf("]") + 1);
  else {
    const colon = host.indexOf(":");
    if (colon >= 0) host = host.slice(0, colon);
  }
  return host.endsWith(`.svc${CLUSTER_DOMAIN}`) ? host.slice(0, -CLUSTER_DOMAIN.length) : host;
}

/** Parses one stored value; undefined when it is not one (written by hand, or by a newer writer). */
export function decodeService(value: string | null | undefined): PublishedService | undefined {
  if (value === null || value === undefined) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (raw === null || typeof raw !== "object") return undefined;
  const { hosts, policy, updatedAt } = raw as Record<string, unknown>;
  if (!Array.isArray(hosts) || !hosts.every((h) => typeof h === "string" && h !== "")) return undefined;
  return {
    hosts,
    policy: decodePolicy(policy) ?? {},
    updatedAt: typeof updatedAt === "number" ? updatedAt : 0,
  };
}

/** Throws the first error of a MULTI's replies: ioredis reports them per command, not as a rejection. */
async function exec(multi: ReturnType<Redis["multi"]>): Promise<void> {
  const replies = await multi.exec();
  if (replies === null) throw new Error("the transaction was aborted");
  for (const [err] of replies) if (err) throw err;
}

/** The controller's side: publish, remove, and forget services whose KIngress is gone. */
export class AsyncServicesWriter {
  constructor(
    private readonly redis: Redis,
    private readonly keys: StreamKeys,
  ) {}

  /**
   * Writes the service and announces it, unless it is already published as it is: a resync reconciles
   * every KIngress again, and readers should not reload for nothing. Resolves true when it wrote.
   */
  async publish(id: string, service: AsyncService): Promise<boolean> {
    const current = decodeService(await this.redis.hget(this.keys.services, id));
    if (current !== undefined && sameService(current, service)) return false;
    const value = JSON.stringify({ hosts: service.hosts, policy: service.policy, updatedAt: Date.now() });
    await exec(this.redis.multi().hset(this.keys.services, id, value).publish(this.keys.servicesChanged, id));
    return true;
  }

  /** Removes the service (no longer async, or gone). Announced even when absent: it is rare and cheap. */
  async remove(id: string): Promise<void> {
    await exec(this.redis.multi().hdel(this.keys.services, id).publish(this.keys.servicesChanged, id));
  }

  /**
   * Removes every published service for which `isLive(id)` is false, and returns their ids: a KIngress
   * deleted while no controller was leading leaves its entry behind. `isLive` is asked after the fields
   * are read, so a service published meanwhile is judged by the same, fresher, view.
   */
  async prune(isLive: (id: string) => boolean): Promise<string[]> {
    const stale = (await this.redis.hkeys(this.keys.services)).filter((id) => !isLive(id));
    if (stale.length > 0) {
      await exec(
        this.redis
          .multi()
          .hdel(this.keys.services, ...stale)
          .publish(this.keys.servicesChanged, stale.join(" ")),
      );
    }
    return stale;
  }

  /** Everything published, by field (the controller's registry check compares it with the KIngresses). */
  async list(): Promise<Map<string, PublishedService>> {
    const all = await this.redis.hgetall(this.keys.services);
    const out = new Map<string, PublishedService>();
    for (const [id, value] of Object.entries(all)) {
      const service = decodeService(value);
      if (service !== undefined) out.set(id, service);
    }
    return out;
  }
}

/** Same hosts and policy (when it was written does not matter). */
export function sameService(a: AsyncService, b: AsyncService): boolean {
  return isDeepStrictEqual([...a.hosts], [...b.hosts]) && isDeepStrictEqual(a.policy, b.policy);
}

export interface AsyncServicesReaderOptions {
  /** Where to subscribe to change notices (a connection of its own: a subscribed one can do nothing else). */
  readonly redis: RedisSettings;
  /** The component's command connection, for the loads. */
  readonly commands: Redis;
  readonly keys: StreamKeys;
  /** Shown in CLIENT LIST. */
  readonly name: string;
  readonly logger: Logger;
}

/** The safety net: loaded again this often even without a notice. */
const REFRESH_MS = 30_000;
/** While nothing could be loaded yet: tried again this often. */
const RETRY_MS = 1000;
const WARN_INTERVAL_MS = 30_000;

/** The readers' side: the whole registry in memory, kept current. */
export class AsyncServicesReader {
  readonly #options: AsyncServicesReaderOptions;
  readonly #subscriber: Redis;
  #byHost = new Map<string, ServiceMatch>();
  #loaded = false;
  /** Why nothing could be loaded yet, while that is so. */
  #problem: string | undefined = "not loaded yet";
  #loading: Promise<void> | undefined;
  #again = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  /** A load fails every second while Redis is away: one line for the lot. */
  readonly #warn: CodeWarning;

  constructor(options: AsyncServicesReaderOptions) {
    this.#options = options;
    this.#warn = throttledWarn(options.logger, WARN_INTERVAL_MS);
    // `blocking`: no command timeout, and commands wait for a reconnect; ioredis subscribes again by itself.
    this.#subscriber = connectRedis(options.redis, { name: options.name, blocking: true });
    this.#subscriber.on("message", () => void this.reload());
    this.#subscriber.on("ready", () => void this.reload());
  }

  /** Subscribes and loads once; resolves when that first load has succeeded or failed (see `problem`). */
  async start(): Promise<void> {
    this.#subscriber.subscribe(this.#options.keys.servicesChanged).catch((err: unknown) => {
      if (!this.#closed) this.#options.logger.warn({ err }, "cannot subscribe to async services changes");
    });
    await this.reload();
  }

  /** True once the registry has been read at least once. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** Why the registry has not been read yet (undefined once it has). */
  get problem(): string | undefined {
    return this.#problem;
  }

  /** The service a target host (`host[:port]`) belongs to, from memory. */
  lookup(authority: string): ServiceMatch | undefined {
    return this.#byHost.get(serviceHostKey(authority));
  }

  /** The policy of the service an absolute URL's host belongs to; undefined when it is none. */
  policyOf(url: string): DeliveryPolicyOverrides | undefined {
    const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(url)?.[1];
    return authority === undefined ? undefined : this.lookup(authority)?.policy;
  }

  /** Loads the registry now; calls made while a load runs are served by one more load after it. */
  reload(): Promise<void> {
    if (this.#loading !== undefined) {
      this.#again = true;
      return this.#loading;
    }
    this.#loading = (async () => {
      do {
        this.#again = false;
        await this.#loadOnce();
      } while (this.#again && !this.#closed);
    })().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  async #loadOnce(): Promise<void> {
    if (this.#closed) return;
    const { commands, keys, logger } = this.#options;
    try {
      const all = await commands.hgetall(keys.services);
      const byHost = new Map<string, ServiceMatch>();
      const unreadable: string[] = [];
      for (const [id, value] of Object.entries(all)) {
        const service = decodeService(value);
        if (service === undefined) {
          unreadable.push(id);
          continue;
        }
        const match = { policy: service.policy };
        for (const host of service.hosts) byHost.set(serviceHostKey(host), match);
      }
      if (unreadable.length > 0) {
        logger.warn(
          { key: keys.services, fields: unreadable },
          "async services registry: unreadable entries ignored",
        );
      }
      this.#byHost = byHost;
      if (!this.#loaded) logger.info({ services: Object.keys(all).length }, "async services registry loaded");
      this.#loaded = true;
      this.#problem = undefined;
    } catch (err) {
      if (this.#closed) return;
      // Once loaded, the last view stays in use: a Redis that is away blocks new requests anyway.
      if (!this.#loaded) this.#problem = `cannot read the async services registry: ${(err as Error).message}`;
      this.#warn(
        "ASYNC_SERVICES_UNREADABLE",
        this.#loaded
          ? "cannot read the async services registry; the last view stays in use"
          : "cannot read the async services registry yet; trying again every second",
        err,
      );
    }
    this.#schedule();
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    this.#timer = setTimeout(() => void this.reload(), this.#loaded ? REFRESH_MS : RETRY_MS);
    this.#timer.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#subscriber.disconnect();
  }
}
