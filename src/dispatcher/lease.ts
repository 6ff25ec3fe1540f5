/**
 * The lease keeper (BullMQ's LockManager, for stream entries). An entry being delivered stays pending on
 * this dispatcher; its claim is refreshed every CLAIM_IDLE/3, so that nobody takes over a delivery that
 * is still running. Entries of a dispatcher that died stop being refreshed, become idle, and are taken
 * over here (XAUTOCLAIM) after CLAIM_IDLE, counting the deliveries they already had.
 */
import type { Redis } from "ioredis";
import { type FieldValue, fieldPairs, heldFields, type StreamEntry } from "../lib/entry.js";
import type { StreamKeys } from "../lib/keys.js";
import type { Logger } from "../lib/logger.js";
import { pause } from "../lib/wait.js";
import type { DispatcherMetrics } from "./metrics.js";
import type { DispatcherScripts } from "./scripts.js";

/** Entries taken over in one turn at most. */
const MAX_TAKEOVER = 256;
/** Consumers of the group idle this long with nothing pending are removed (each restart adds one). */
const STALE_CONSUMER_MS = 3_600_000;

export interface LeaseKeeperOptions {
  readonly redis: Redis;
  readonly scripts: DispatcherScripts;
  readonly keys: StreamKeys;
  readonly group: string;
  readonly consumer: string;
  readonly claimIdleMs: number;
  readonly logger: Logger;
  readonly metrics: Pick<DispatcherMetrics, "claimed">;
  /** Ids of the entries being delivered here (the keys). */
  inFlight(): ReadonlyMap<string, unknown>;
  /** How many more entries may start now, by slots and bytes in flight (./slots.ts). */
  room(): number;
  /** False until the consumer group exists. */
  groupReady(): boolean;
  /** Starts delivering an entry taken over, which had `deliveries` deliveries already. */
  start(entry: StreamEntry, deliveries: number): void;
}

/** The one ioredis command used here that its types do not declare. */
interface BufferCommands {
  xautoclaimBuffer(...args: (string | number)[]): Promise<unknown>;
}

export class LeaseKeeper {
  #refreshTimer: NodeJS.Timeout | undefined;
  #takeovers: Promise<void> = Promise.resolve();
  #claimCursor = "0-0";
  #lastConsumerCleanup = 0;

  constructor(private readonly options: LeaseKeeperOptions) {}

  /**
   * Starts refreshing claims, and taking over idle entries until `closing` aborts. Claims are refreshed
   * until stop(): through close(), the deliveries still running keep their entries.
   */
  start(closing: AbortSignal): void {
    const { claimIdleMs } = this.options;
    this.#refreshTimer = setInterval(() => this.#refresh(), Math.max(250, Math.floor(claimIdleMs / 3)));
    this.#takeovers = this.#takeOverLoop(closing, Math.max(200, Math.floor(claimIdleMs / 2)));
  }

  /** Stops refreshing; resolves when the take-over loop (stopped by `closing`) has ended. */
  stop(): Promise<void> {
    clearInterval(this.#refreshTimer);
    return this.#takeovers;
  }

  #refresh(): void {
    const ids = [...this.options.inFlight().keys()];
    if (ids.length === 0) return;
    // Entries another dispatcher took meanwhile are reported by the script; the finishing moves check
    // ownership again, so nothing more is needed here than to keep the others' claims fresh.
    this.options.scripts.refreshLease(ids).then(
      () => {},
      (err) =>
        this.options.logger.warn({ err: String(err) }, "could not refresh the claim on in-flight entries"),
    );
  }

  async #takeOverLoop(closing: AbortSignal, periodMs: number): Promise<void> {
    while (!closing.aborted) {
      try {
        if (this.options.groupReady()) await this.#takeOver();
      } catch (err) {
        if (!closing.aborted) {
          this.options.logger.warn({ err: String(err) }, "recovering stale entries failed; retrying");
        }
      }
      await pause(periodMs, closing);
    }
  }

  /** Takes over entries left pending by dispatchers that died (their claims went stale). */
  async #takeOver(): Promise<void> {
    const { redis, keys, group, consumer, claimIdleMs, logger } = this.options;
    const room = Math.min(this.options.room(), MAX_TAKEOVER);
    if (room > 0) {
      // As Buffers, as the read loop reads them (see dispatcher.ts). ioredis has the command but no type
      // for it, and its callBuffer() loses the command name under auto-pipelining.
      const [next, claimed] = (await (redis as unknown as BufferCommands).xautoclaimBuffer(
        keys.stream,
        group,
        consumer,
        claimIdleMs,
        this.#claimCursor,
        "COUNT",
        room,
      )) as [Buffer, [Buffer, Buffer[] | null][], Buffer[]?];
      this.#claimCursor = next.toString();
      const entries = claimed.map(([id, fields]) => [id.toString(), fields && heldFields(fields)] as const);
      // A deleted entry comes back without fields; one in flight here was ours all along.
      const inFlight = this.options.inFlight();
      const live = entries.filter(
        (e): e is readonly [string, FieldValue[]] => e[1] !== null && !inFlight.has(e[0]),
      );
      const deliveries = await Promise.all(live.map(([id]) => this.#deliveryCount(id)));
      live.forEach(([id, fields], i) => {
        logger.info(
          { entryId: id, deliveries: deliveries[i] },
          "took over an entry left pending by a dispatcher that stopped",
        );
        this.options.metrics.claimed.inc();
        this.options.start({ id, fields }, deliveries[i] ?? 1);
      });
    }
    if (Date.now() - this.#lastConsumerCleanup > STALE_CONSUMER_MS / 4) {
      this.#lastConsumerCleanup = Date.now();
      await this.#removeStaleConsumers();
    }
  }

  /** How many times the group delivered the entry (XPENDING's count, which XAUTOCLAIM raised by one). */
  async #deliveryCount(id: string): Promise<number> {
    const { redis, keys, group } = this.options;
    const pending = (await redis.xpending(keys.stream, group, id, id, 1)) as [
      string,
      string,
      number,
      number,
    ][];
    return pending[0]?.[3] ?? 1;
  }

  async #removeStaleConsumers(): Promise<void> {
    const { redis, keys, group, consumer } = this.options;
    const consumers = (await redis.xinfo("CONSUMERS", keys.stream, group)) as (string | number)[][];
    for (const info of consumers) {
      const record = Object.fromEntries(fieldPairs(info.map(String)));
      if (
        record.name !== consumer &&
        Number(record.pending) === 0 &&
        Number(record.idle) > STALE_CONSUMER_MS
      ) {
        await redis.xgroup("DELCONSUMER", keys.stream, group, record.name as string);
      }
    }
  }
}
