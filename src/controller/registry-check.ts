/**
 * Keeps the async services registry in line with the KIngresses: `IngressReconciler.checkRegistry` removes
 * the stale entries and names the KIngresses whose entry is missing or differs, which go to the work queue.
 * Run by the leader only, and only with filled caches (an empty cache would make every entry look stale):
 * when leadership starts, every REGISTRY_CHECK_PERIOD, and each time the Redis connection is (re)established,
 * as Redis may have come back without its data. One check at a time.
 */
import type { Redis } from "ioredis";
import type { Logger } from "../lib/logger.js";
import type { IngressReconciler } from "./reconciler.js";

export interface RegistryCheckOptions {
  readonly reconciler: IngressReconciler;
  /** The connection the registry is written on: its `ready` event starts a check. */
  readonly redis: Redis;
  readonly periodMs: number;
  /** Leading, caches filled, not closing. */
  readonly mayRun: () => boolean;
  readonly enqueue: (key: string) => void;
  readonly logger: Logger;
}

export class RegistryCheck {
  readonly #options: RegistryCheckOptions;
  readonly #timer: NodeJS.Timeout;
  #running: Promise<void> | undefined;

  constructor(options: RegistryCheckOptions) {
    this.#options = options;
    this.#timer = setInterval(() => this.run(), options.periodMs);
    this.#timer.unref();
    options.redis.on("ready", () => this.run());
  }

  run(): void {
    const { reconciler, mayRun, enqueue, logger } = this.#options;
    if (this.#running !== undefined || !mayRun()) return;
    this.#running = reconciler
      .checkRegistry()
      .then((keys) => {
        if (keys.length > 0) logger.info({ keys }, "async services registry behind; reconciling them");
        for (const key of keys) enqueue(key);
      })
      .catch((err: unknown) =>
        logger.warn({ err }, "cannot check the async services registry; will try again"),
      )
      .finally(() => {
        this.#running = undefined;
      });
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}
