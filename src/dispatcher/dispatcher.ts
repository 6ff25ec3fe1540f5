/**
 * The dispatcher: reads the request stream through a consumer group and delivers every entry, retrying
 * failures on a schedule and dead-lettering what cannot be delivered.
 *
 * The contract, enforced by the Lua scripts in ./lua:
 * - An entry is acknowledged only after its outcome is decided: delivered (XACK, then XDEL unless
 *   DELETE_ACKED=false), scheduled for a retry (moved to the retry schedule), or dead-lettered (moved to
 *   the dead-letter stream). Each move is one script, so an entry is never in two places or in none.
 *   Deliveries that finish together are acknowledged in one script call (./batch.ts), which checks
 *   ownership and acknowledges each entry on its own; until its ack has returned, an entry stays in
 *   flight here (its claim refreshed, close() waiting for it), as it does during a retry or dead-letter move.
 * - While a delivery runs, its entry stays pending on this dispatcher, whose claim is refreshed every
 *   CLAIM_IDLE/3. Entries of a dispatcher that died stop being refreshed, become idle, and are taken over
 *   by any live dispatcher (XAUTOCLAIM) after CLAIM_IDLE. The moves check ownership first, so a
 *   dispatcher that lost an entry to another changes nothing about it.
 * - Deliveries are at least once: a dispatcher killed after the app answered but before the ack leads to
 *   a second delivery. The app receives `Async-Request-Id` to deduplicate on.
 * - Retries wait in a sorted set, not in the stream, so a waiting entry never holds back the others, and
 *   the wait survives restarts. Due retries are moved back to the stream's end by any dispatcher.
 */
import { createServer } from "node:http";
import type { Redis } from "ioredis";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { DATA_FIELD, fieldValue, type StreamEntry } from "../lib/entry.js";
import { type AsyncRequest, decodeEnvelope } from "../lib/envelope.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { closeServer, listen, sendJson, serveAdmin } from "../lib/http.js";
import { streamKeys } from "../lib/keys.js";
import type { Logger } from "../lib/logger.js";
import { createRegistry, LATENCY_BUCKETS } from "../lib/metrics.js";
import type { DeliveryOutcome } from "../lib/outcome.js";
import { connectRedis, redisIsReady } from "../lib/redis.js";
import { defineScripts } from "../lib/scripts.js";
import { createBatcher } from "./batch.js";
import type { DispatcherConfig } from "./config.js";
import { type DeadLetterReason, type Decision, decide, effectivePolicy, isExpired } from "./decide.js";
import {
  createCloudEventDeliverer,
  createDirectDeliverer,
  type Deliverer,
  notifyDeadLetterSink,
} from "./deliver.js";

/** Set on an entry replayed from the dead-letter stream (src/dlq/lua/replay-2.lua): ms, Redis clock. */
export const REPLAYED_AT_FIELD = "replayedAt";

/** Fields the dispatcher adds to an entry it re-queues for a retry, and reads back. */
export const META_FIELDS = [
  "attempts",
  "firstAttemptAt",
  "lastAttemptAt",
  "lastStatus",
  "lastError",
] as const;

export interface AttemptInfo {
  readonly requestId: string;
  readonly entryId: string;
  readonly method: string;
  readonly url: string;
  readonly attempt: number;
  readonly outcome: DeliveryOutcome;
  readonly decision: Decision;
  /** False when another dispatcher had taken the entry over meanwhile; it decides instead. */
  readonly applied: boolean;
  readonly durationMs: number;
  /** From acceptance by the producer to this outcome, when the producer recorded when it accepted. */
  readonly ageMs?: number;
}

export interface DispatcherDeps {
  readonly logger: Logger;
  readonly registry?: Registry;
  /** Called after every attempt (the all-in-one mode prints these). */
  readonly onAttempt?: (info: AttemptInfo) => void;
  /** Called when an entry is dead-lettered. */
  readonly onDeadLetter?: (info: { entryId: string; deadLetterId: string; reason: DeadLetterReason }) => void;
}

export interface Dispatcher {
  readonly port: number;
  /** Entries being delivered right now. */
  inFlight(): number;
  close(): Promise<void>;
}

type ScriptClient = Redis & {
  ackBatch(stream: string, group: string, consumer: string, del: string, ...ids: string[]): Promise<number[]>;
  scheduleRetry(
    stream: string,
    schedule: string,
    entries: string,
    group: string,
    consumer: string,
    id: string,
    delayMs: number,
    fieldsJson: string,
  ): Promise<number>;
  deadLetter(
    stream: string,
    dlq: string,
    group: string,
    consumer: string,
    id: string,
    ...fields: string[]
  ): Promise<string | null>;
  promoteDue(
    stream: string,
    schedule: string,
    entries: string,
    limit: number,
  ): Promise<[number, number, number]>;
  refreshLease(stream: string, group: string, consumer: string, ...ids: string[]): Promise<string[]>;
};

const SCRIPTS = [
  "ack-batch-1.lua",
  "schedule-retry-3.lua",
  "dead-letter-2.lua",
  "promote-due-3.lua",
  "refresh-lease-1.lua",
];
const READ_BLOCK_MS = 1000;
const MAX_READ_BATCH = 256;
/**
 * Under load the read waits until this many delivery slots are free (or READ_GATHER_MS passed), so it
 * fetches entries in tens rather than ones and twos: each XREADGROUP costs about as much as the
 * deliveries it starts.
 */
const READ_MIN_SLOTS = 32;
const READ_GATHER_MS = 10;
/** Entries acknowledged in one script call at most (the script unpacks them into XACK and XDEL). */
const ACK_BATCH = 256;
const PROMOTE_BATCH = 500;
const PROMOTE_MAX_SLEEP_MS = 500;
/** How long a finishing move keeps being tried while Redis is unreachable, before the entry is left pending. */
const FINISH_RETRY_MS = 15_000;
/** Consumers of the group idle this long with nothing pending are removed (each restart adds one). */
const STALE_CONSUMER_MS = 3_600_000;
/** On close, how long the Redis work still running may take before the connections are cut. */
const CLOSE_REDIS_MS = 1000;

export async function startDispatcher(config: DispatcherConfig, deps: DispatcherDeps): Promise<Dispatcher> {
  const { logger } = deps;
  const keys = streamKeys(config.streamName);
  const consumer = config.consumerName;
  const commands = connectRedis(config.redis, {
    name: `knative-async-dispatcher:${consumer}`,
  }) as ScriptClient;
  const reader = connectRedis(config.redis, {
    name: `knative-async-dispatcher-reader:${consumer}`,
    blocking: true,
  });
  defineScripts(commands, new URL("./lua/", import.meta.url), SCRIPTS);

  const source = `${config.redis.display}/${config.streamName}`;
  const deliverer: Deliverer =
    config.mode === "direct"
      ? createDirectDeliverer({
          timeoutMs: config.retry.timeoutMs,
          maxTimeoutMs: config.retry.maxTimeoutMs,
          connections: config.concurrency,
        })
      : createCloudEventDeliverer({ sink: config.sink as string, source, connections: config.concurrency });

  const registry = deps.registry ?? createRegistry("dispatcher");
  const metrics = createMetrics(registry, commands, keys, config);

  /** Ids of the entries being delivered. */
  const inFlight = new Set<string>();
  /** The read loop, when it waits for free slots: it is woken when `slots` are free. */
  let slotWaiter: { slots: number; wake: () => void } | undefined;
  const drainWaiters: (() => void)[] = [];
  let closing = false;
  let groupReady = false;
  const stopTimers = new AbortController();

  const server = createServer((req, res) => {
    if (serveAdmin(req, res, { registry, ready: async () => groupReady && (await redisIsReady(commands)) }))
      return;
    sendJson(res, 404, {
      error: ErrorCode.NotFound,
      message: "the dispatcher serves only /healthz, /readyz and /metrics",
    });
  });
  const port = await listen(server, config.port);

  async function ensureGroup(): Promise<void> {
    try {
      // From the beginning of the stream: entries written before any dispatcher ran are delivered too.
      await commands.xgroup("CREATE", keys.stream, config.group, "0", "MKSTREAM");
      logger.info({ stream: keys.stream, group: config.group }, "created consumer group");
    } catch (err) {
      if (!String((err as Error).message).includes("BUSYGROUP")) throw err;
    }
    groupReady = true;
  }

  function freeSlots(): number {
    return config.concurrency - inFlight.size;
  }

  /** Resolves when `slots` delivery slots are free, on close, or after `timeoutMs` when given. */
  function waitForSlots(slots: number, timeoutMs?: number): Promise<void> {
    if (freeSlots() >= slots || closing) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => wakeReader(), timeoutMs);
      slotWaiter = {
        slots,
        wake: () => {
          clearTimeout(timer);
          resolve();
        },
      };
    });
  }

  function wakeReader(): void {
    const waiter = slotWaiter;
    slotWaiter = undefined;
    waiter?.wake();
  }

  function releaseSlot(): void {
    if (slotWaiter !== undefined && freeSlots() >= slotWaiter.slots) wakeReader();
    if (inFlight.size === 0) for (const waiter of drainWaiters.splice(0)) waiter();
  }

  const readMinSlots = Math.max(1, Math.min(READ_MIN_SLOTS, Math.floor(config.concurrency / 4)));

  /** One script call for the entries delivered in one turn of the event loop, or while the last call was out. */
  const acknowledge = createBatcher<string, number>(
    (ids) =>
      finish(() =>
        commands.ackBatch(keys.stream, config.group, consumer, config.deleteAcked ? "1" : "0", ...ids),
      ),
    ACK_BATCH,
  );

  function start(entry: StreamEntry, deliveries = 1): void {
    if (inFlight.has(entry.id)) return;
    inFlight.add(entry.id);
    metrics.inFlight.set(inFlight.size);
    deliverEntry(entry, deliveries)
      .catch((err) =>
        logger.error({ err, entryId: entry.id }, "delivery failed unexpectedly; the entry stays pending"),
      )
      .finally(() => {
        inFlight.delete(entry.id);
        metrics.inFlight.set(inFlight.size);
        releaseSlot();
      });
  }

  async function deliverEntry(entry: StreamEntry, deliveries: number): Promise<void> {
    const started = Date.now();
    const meta = readMeta(entry.fields);
    // Deliveries started on a dispatcher that died count as attempts: a request that kills whatever
    // delivers it must not go round forever.
    const attempt = meta.attempts + Math.max(1, deliveries);
    const firstAttemptAt = meta.firstAttemptAt ?? started;

    let request: AsyncRequest;
    try {
      const data = fieldValue(entry.fields, DATA_FIELD);
      if (data === undefined) throw new AsyncError(ErrorCode.MalformedEvent, "the entry has no data field");
      request = decodeEnvelope(data);
    } catch (err) {
      const outcome: DeliveryOutcome = {
        kind: "error",
        code: ErrorCode.MalformedEvent,
        message: (err as Error).message,
        durationMs: 0,
      };
      const applied = await deadLetter(entry, "malformed", { attempt, firstAttemptAt, outcome });
      // There is no request to report(), but the attempt counts like any other dead-lettered one.
      metrics.countAttempt(applied ? "dead-letter" : "lease_lost", "malformed");
      return;
    }

    const policy = effectivePolicy(config.retry, request.policy);
    const ageFrom = ageOrigin(request.acceptedAt, entry.fields);
    if (isExpired(ageFrom, started, policy)) {
      const outcome: DeliveryOutcome = {
        kind: "error",
        code: ErrorCode.TargetTimeout,
        message: "expired before delivery",
        durationMs: 0,
      };
      const applied = await deadLetter(entry, "max-age", { attempt: attempt - 1, firstAttemptAt, outcome });
      report(
        entry,
        request,
        attempt,
        outcome,
        { action: "dead-letter", reason: "max-age" },
        applied,
        started,
      );
      return;
    }

    const outcome = await deliverer.deliver(entry, request, attempt, policy.timeoutMs);
    const now = Date.now();
    const decision = decide(
      {
        outcome,
        attempt,
        method: request.method,
        hasIdempotencyKey: request.headers["Idempotency-Key"] !== undefined,
        acceptedAt: ageFrom,
        firstAttemptAt,
        now,
      },
      policy,
      config.retry,
    );

    let applied: boolean;
    if (decision.action === "ack") {
      applied = (await acknowledge(entry.id)) === 1;
    } else if (decision.action === "retry") {
      const fields = withMeta(entry.fields, {
        attempts: attempt,
        firstAttemptAt,
        lastAttemptAt: now,
        outcome,
      });
      const due = await finish(() =>
        commands.scheduleRetry(
          keys.stream,
          keys.retrySchedule,
          keys.retryEntries,
          config.group,
          consumer,
          entry.id,
          decision.delayMs,
          JSON.stringify(fields),
        ),
      );
      applied = due !== 0;
      if (applied) wakePromoter(decision.delayMs);
    } else {
      applied = await deadLetter(entry, decision.reason, {
        attempt,
        firstAttemptAt,
        outcome,
        requestId: request.id,
      });
    }
    report(entry, request, attempt, outcome, decision, applied, started);
  }

  function report(
    entry: StreamEntry,
    request: AsyncRequest,
    attempt: number,
    outcome: DeliveryOutcome,
    decision: Decision,
    applied: boolean,
    started: number,
  ): void {
    const durationMs = Date.now() - started;
    const result = applied ? (decision.action === "ack" ? "delivered" : decision.action) : "lease_lost";
    metrics.countAttempt(result, decision.action === "dead-letter" ? decision.reason : outcomeLabel(outcome));
    metrics.attemptDuration.observe(outcome.durationMs / 1000);
    const ageMs = request.acceptedAt === undefined ? undefined : Date.now() - request.acceptedAt;
    if (decision.action === "ack" && applied && ageMs !== undefined) metrics.endToEnd.observe(ageMs / 1000);
    if (!applied) {
      logger.warn(
        { entryId: entry.id, requestId: request.id },
        "another dispatcher took this entry over; leaving it to it",
      );
    } else if (logger.isLevelEnabled("debug")) {
      logger.debug(
        { entryId: entry.id, requestId: request.id, attempt, outcome, decision },
        "attempt finished",
      );
    }
    deps.onAttempt?.({
      requestId: request.id,
      entryId: entry.id,
      method: request.method,
      url: request.url,
      attempt,
      outcome,
      decision,
      applied,
      durationMs,
      ...(ageMs === undefined ? {} : { ageMs }),
    });
  }

  async function deadLetter(
    entry: StreamEntry,
    reason: DeadLetterReason,
    context: { attempt: number; firstAttemptAt: number; outcome: DeliveryOutcome; requestId?: string },
  ): Promise<boolean> {
    const now = Date.now();
    const fields = [
      ...withMeta(entry.fields, {
        attempts: context.attempt,
        firstAttemptAt: context.firstAttemptAt,
        lastAttemptAt: now,
        outcome: context.outcome,
      }),
      "reason",
      reason,
      "deadLetteredAt",
      String(now),
      "sourceEntryId",
      entry.id,
    ];
    const deadLetterId = await finish(() =>
      commands.deadLetter(keys.stream, keys.deadLetter, config.group, consumer, entry.id, ...fields),
    );
    if (deadLetterId === null) return false;
    logger.warn(
      {
        entryId: entry.id,
        deadLetterId,
        reason,
        attempts: context.attempt,
        lastError: describe(context.outcome),
      },
      "entry dead-lettered",
    );
    deps.onDeadLetter?.({ entryId: entry.id, deadLetterId, reason });
    if (config.deadLetterSink) {
      const body = { deadLetterId, reason, entry: Object.fromEntries(pairs(fields)) };
      notifyDeadLetterSink(config.deadLetterSink, source, deadLetterId, body).catch((err) =>
        logger.warn(
          { err: String(err), deadLetterId },
          "could not notify DEAD_LETTER_SINK; the entry is in the dead-letter stream",
        ),
      );
    }
    return true;
  }

  /**
   * Runs a finishing move, retrying while Redis is unreachable. The entry stays in flight meanwhile, so
   * its claim keeps being refreshed; if Redis stays away, the entry is left pending and recovered later.
   */
  async function finish<T>(move: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + FINISH_RETRY_MS;
    for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
      try {
        return await move();
      } catch (err) {
        if (Date.now() + delay > deadline) throw err;
        await sleep(delay);
      }
    }
  }

  // The read loop: one blocking XREADGROUP at a time on its own connection, asking for no more entries
  // than there are free delivery slots, so memory stays bounded whatever the backlog.
  const readLoop = (async () => {
    let failures = 0;
    while (!closing) {
      try {
        if (!groupReady) await ensureGroup();
        await waitForSlots(1);
        // Slots free up one by one under load: a short wait for more makes one read of many entries.
        if (freeSlots() < readMinSlots) await waitForSlots(readMinSlots, READ_GATHER_MS);
        if (closing) break;
        const count = Math.min(freeSlots(), MAX_READ_BATCH);
        const reply = (await reader.xreadgroup(
          "GROUP",
          config.group,
          consumer,
          "COUNT",
          count,
          "BLOCK",
          READ_BLOCK_MS,
          "STREAMS",
          keys.stream,
          ">",
        )) as [string, [string, string[]][]][] | null;
        failures = 0;
        if (!reply) continue;
        for (const [, entries] of reply) {
          for (const [id, fields] of entries) start({ id, fields });
        }
      } catch (err) {
        if (closing) break;
        failures++;
        if (String((err as Error).message).includes("NOGROUP")) groupReady = false;
        if (failures === 1 || failures % 30 === 0) {
          logger.warn({ err: String(err), failures }, "reading the stream failed; retrying");
        }
        await sleep(Math.min(100 * 2 ** Math.min(failures, 4), 1000));
      }
    }
  })();

  // Keeps the claim on in-flight entries fresh, so that nobody takes over a delivery that is still running.
  const leaseTimer = setInterval(
    () => {
      const ids = [...inFlight.keys()];
      if (ids.length === 0) return;
      // Entries another dispatcher took meanwhile are reported by the script; the finishing moves check
      // ownership again, so nothing more is needed here than to keep the others' claims fresh.
      commands.refreshLease(keys.stream, config.group, consumer, ...ids).then(
        () => {},
        (err) => logger.warn({ err: String(err) }, "could not refresh the claim on in-flight entries"),
      );
    },
    Math.max(250, Math.floor(config.claimIdleMs / 3)),
  );

  // Takes over entries left pending by dispatchers that died (their claims went stale).
  let claimCursor = "0-0";
  let lastConsumerCleanup = 0;
  async function recover(): Promise<void> {
    if (!groupReady || closing) return;
    const room = Math.min(freeSlots(), MAX_READ_BATCH);
    if (room > 0) {
      const [next, entries] = (await commands.xautoclaim(
        keys.stream,
        config.group,
        consumer,
        config.claimIdleMs,
        claimCursor,
        "COUNT",
        room,
      )) as [string, [string, string[] | null][], string[]?];
      claimCursor = next;
      const live = entries.filter((e): e is [string, string[]] => e[1] !== null && !inFlight.has(e[0]));
      if (live.length > 0) {
        const counts = await Promise.all(
          live.map(
            ([id]) =>
              commands.xpending(keys.stream, config.group, id, id, 1) as Promise<
                [string, string, number, number][]
              >,
          ),
        );
        live.forEach(([id, fields], i) => {
          const deliveries = counts[i]?.[0]?.[3] ?? 1;
          logger.info(
            { entryId: id, deliveries },
            "took over an entry left pending by a dispatcher that stopped",
          );
          metrics.claimed.inc();
          start({ id, fields }, deliveries);
        });
      }
    }
    if (Date.now() - lastConsumerCleanup > STALE_CONSUMER_MS / 4) {
      lastConsumerCleanup = Date.now();
      await removeStaleConsumers();
    }
  }

  async function removeStaleConsumers(): Promise<void> {
    const consumers = (await commands.xinfo("CONSUMERS", keys.stream, config.group)) as (string | number)[][];
    for (const info of consumers) {
      const record = Object.fromEntries(pairs(info.map(String)));
      if (
        record.name !== consumer &&
        Number(record.pending) === 0 &&
        Number(record.idle) > STALE_CONSUMER_MS
      ) {
        await commands.xgroup("DELCONSUMER", keys.stream, config.group, record.name as string);
      }
    }
  }

  const recoveryLoop = (async () => {
    const period = Math.max(200, Math.floor(config.claimIdleMs / 2));
    while (!closing) {
      try {
        await recover();
      } catch (err) {
        if (!closing) logger.warn({ err: String(err) }, "recovering stale entries failed; retrying");
      }
      await sleep(period, stopTimers.signal);
    }
  })();

  // Moves due retries back into the stream. Sleeps until the next one is due, but at most
  // PROMOTE_MAX_SLEEP_MS, since other dispatchers may schedule earlier ones.
  let wakeEarly: (() => void) | undefined;
  let promoterSleepsUntil = 0;
  function wakePromoter(delayMs: number): void {
    if (Date.now() + delayMs < promoterSleepsUntil) wakeEarly?.();
  }
  stopTimers.signal.addEventListener("abort", () => wakeEarly?.(), { once: true });
  const promoteLoop = (async () => {
    while (!closing) {
      let sleepMs = PROMOTE_MAX_SLEEP_MS;
      try {
        const [moved, nextDue, redisNow] = await commands.promoteDue(
          keys.stream,
          keys.retrySchedule,
          keys.retryEntries,
          PROMOTE_BATCH,
        );
        if (moved > 0) metrics.promoted.inc(moved);
        if (moved >= PROMOTE_BATCH) sleepMs = 0;
        else if (nextDue >= 0) sleepMs = Math.max(5, Math.min(PROMOTE_MAX_SLEEP_MS, nextDue - redisNow));
      } catch (err) {
        if (!closing) logger.warn({ err: String(err) }, "moving due retries failed; retrying");
      }
      if (sleepMs > 0) {
        promoterSleepsUntil = Date.now() + sleepMs;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, sleepMs);
          wakeEarly = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wakeEarly = undefined;
      }
    }
  })();

  logger.info(
    { stream: keys.stream, group: config.group, consumer, mode: config.mode, sink: config.sink, port },
    "dispatcher started",
  );

  return {
    port,
    inFlight: () => inFlight.size,
    async close() {
      if (closing) return;
      closing = true;
      wakeReader();
      // The blocking read returns within READ_BLOCK_MS; entries it brings are still delivered. With Redis
      // away it would wait in ioredis for a reconnect, for ever: then it is cut, and anything Redis had
      // already handed to this read stays pending for another dispatcher to take over.
      if (!(await settlesWithin(readLoop, READ_BLOCK_MS + CLOSE_REDIS_MS))) reader.disconnect();
      if (inFlight.size > 0) {
        logger.info({ inFlight: inFlight.size }, "waiting for in-flight deliveries to finish");
        const drained = new Promise<void>((resolve) => drainWaiters.push(resolve));
        const timedOut = await Promise.race([
          drained.then(() => false),
          sleep(config.shutdownGraceMs).then(() => true),
        ]);
        if (timedOut) {
          logger.warn(
            { inFlight: inFlight.size },
            "shutdown grace ran out; unfinished entries stay pending and another dispatcher will take them over",
          );
        }
      }
      stopTimers.abort();
      clearInterval(leaseTimer);
      // Their Redis calls, like the read, wait for a reconnect when Redis is away: bounded too.
      await settlesWithin(Promise.all([recoveryLoop, promoteLoop]), CLOSE_REDIS_MS);
      await deliverer.close();
      await closeServer(server, 1000);
      reader.disconnect();
      await settlesWithin(commands.quit(), CLOSE_REDIS_MS);
      commands.disconnect();
      logger.info("dispatcher stopped");
    },
  };
}

/**
 * When the entry's age starts: when the producer accepted it, or when someone replayed it from the
 * dead-letter stream (`replayedAt`, set by the dlq replay script), whichever is later. A replay starts
 * over with a full set of attempts, and so with a full max age: otherwise an entry dead-lettered past
 * its max age could never be replayed.
 */
function ageOrigin(acceptedAt: number | undefined, fields: readonly string[]): number | undefined {
  const replayedAt = Number(fieldValue(fields, REPLAYED_AT_FIELD));
  if (!Number.isFinite(replayedAt) || replayedAt <= 0) return acceptedAt;
  return Math.max(replayedAt, acceptedAt ?? 0);
}

interface EntryMeta {
  attempts: number;
  firstAttemptAt?: number;
}

function readMeta(fields: readonly string[]): EntryMeta {
  const attempts = Number(fieldValue(fields, "attempts") ?? "0");
  const first = Number(fieldValue(fields, "firstAttemptAt"));
  return {
    attempts: Number.isInteger(attempts) && attempts >= 0 ? attempts : 0,
    ...(Number.isFinite(first) && first > 0 ? { firstAttemptAt: first } : {}),
  };
}

/** The entry's fields with the delivery context replaced: `data` first, then other fields, then ours. */
function withMeta(
  fields: readonly string[],
  meta: { attempts: number; firstAttemptAt: number; lastAttemptAt: number; outcome: DeliveryOutcome },
): string[] {
  const out: string[] = [];
  const data = fieldValue(fields, DATA_FIELD);
  if (data !== undefined) out.push(DATA_FIELD, data);
  const skip = new Set<string>([DATA_FIELD, ...META_FIELDS, "reason", "deadLetteredAt", "sourceEntryId"]);
  for (const [name, value] of pairs(fields)) {
    if (!skip.has(name)) out.push(name, value);
  }
  out.push(
    "attempts",
    String(meta.attempts),
    "firstAttemptAt",
    String(meta.firstAttemptAt),
    "lastAttemptAt",
    String(meta.lastAttemptAt),
    "lastStatus",
    meta.outcome.kind === "response" ? String(meta.outcome.status) : "",
    "lastError",
    describe(meta.outcome),
  );
  return out;
}

function* pairs(fields: readonly string[]): Generator<[string, string]> {
  for (let i = 0; i + 1 < fields.length; i += 2) yield [fields[i] as string, fields[i + 1] as string];
}

function describe(outcome: DeliveryOutcome): string {
  return outcome.kind === "response"
    ? `target answered ${outcome.status}`
    : `${outcome.code}: ${outcome.message}`;
}

function outcomeLabel(outcome: DeliveryOutcome): string {
  return outcome.kind === "response" ? `${Math.floor(outcome.status / 100)}xx` : outcome.code;
}

/** True when `promise` settles (either way) within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = promise.then(
    () => true,
    () => true,
  );
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([settled, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function createMetrics(
  registry: Registry,
  redis: Redis,
  keys: ReturnType<typeof streamKeys>,
  config: DispatcherConfig,
) {
  const attempts = new Counter({
    name: "knative_async_dispatcher_attempts_total",
    help: "Delivery attempts by result (delivered, retry, dead-letter, lease_lost) and reason or outcome class",
    labelNames: ["result", "reason"],
    registers: [registry],
  });
  const attemptDuration = new Histogram({
    name: "knative_async_dispatcher_attempt_duration_seconds",
    help: "Time one delivery attempt took, until the app (or the consumer) answered",
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const endToEnd = new Histogram({
    name: "knative_async_delivery_latency_seconds",
    help: "Time from the producer's 202 to the app's answer, for delivered requests",
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const inFlight = new Gauge({
    name: "knative_async_dispatcher_in_flight",
    help: "Deliveries in progress on this dispatcher",
    registers: [registry],
  });
  const claimed = new Counter({
    name: "knative_async_dispatcher_claimed_total",
    help: "Entries taken over from dispatchers that stopped",
    registers: [registry],
  });
  const promoted = new Counter({
    name: "knative_async_dispatcher_retries_promoted_total",
    help: "Retries moved from the schedule back to the stream when due",
    registers: [registry],
  });
  const backlog = new Gauge({
    name: "knative_async_queue_entries",
    help: "Entries by place: stream (length), pending (delivered to the group, not acknowledged), retry_scheduled, dead_letter",
    labelNames: ["place"],
    registers: [registry],
    async collect() {
      try {
        const [length, pending, scheduled, dead] = await Promise.all([
          redis.xlen(keys.stream),
          redis.xpending(keys.stream, config.group) as Promise<[number, ...unknown[]]>,
          redis.zcard(keys.retrySchedule),
          redis.xlen(keys.deadLetter),
        ]);
        this.set({ place: "stream" }, length);
        this.set({ place: "pending" }, Number(pending[0]));
        this.set({ place: "retry_scheduled" }, scheduled);
        this.set({ place: "dead_letter" }, dead);
      } catch {
        // Redis unreachable: /readyz says so; keep the last values rather than failing the scrape.
      }
    },
  });
  // prom-client hashes the labels on every inc(); there are few combinations, so each child is kept.
  const attemptChildren = new Map<string, Counter.Internal>();
  const countAttempt = (result: string, reason: string): void => {
    const key = `${result}\n${reason}`;
    let child = attemptChildren.get(key);
    if (child === undefined) {
      child = attempts.labels({ result, reason });
      attemptChildren.set(key, child);
    }
    child.inc();
  };
  return { countAttempt, attemptDuration, endToEnd, inFlight, claimed, promoted, backlog };
}
