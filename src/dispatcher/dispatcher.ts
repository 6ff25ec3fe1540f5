/**
 * The dispatcher: reads the request stream through a consumer group and delivers every entry, retrying
 * failures on a schedule and dead-lettering what cannot be delivered.
 *
 * The contract, enforced by the Lua scripts in ./lua (called through ./scripts.ts):
 * - An entry is acknowledged only after its outcome is decided: delivered (XACK, then XDEL unless
 *   DELETE_ACKED=false), scheduled for a retry (moved to the retry schedule), or dead-lettered (moved to
 *   the dead-letter stream). Each move is one script, so an entry is never in two places or in none.
 *   Deliveries that finish together are acknowledged in one script call (./batch.ts), which checks
 *   ownership and acknowledges each entry on its own; until its ack has returned, an entry stays in
 *   flight here (its claim refreshed, close() waiting for it), as it does during a retry or dead-letter move.
 * - While a delivery runs, its entry stays pending on this dispatcher, whose claim is refreshed every
 *   CLAIM_IDLE/3. Entries of a dispatcher that died stop being refreshed, become idle, and are taken over
 *   by any live dispatcher (XAUTOCLAIM) after CLAIM_IDLE (./lease.ts). The moves check ownership first,
 *   so a dispatcher that lost an entry to another changes nothing about it.
 * - Deliveries are at least once: a dispatcher killed after the app answered but before the ack leads to
 *   a second delivery. The app receives `Async-Request-Id` to deduplicate on.
 * - Retries wait in a sorted set, not in the stream, so a waiting entry never holds back the others, and
 *   the wait survives restarts. Due retries are moved back to the stream's end by any dispatcher
 *   (./promoter.ts).
 *
 * This file reads top-down: start, the read loop, the delivery of one entry, the recording of its
 * outcome (ack, retry or dead letter), close.
 */
import { createServer, type Server } from "node:http";
import type { Redis } from "ioredis";
import type { Registry } from "prom-client";
import { Backoff } from "../lib/backoff.js";
import { ageOrigin, DATA_FIELD, fieldValue, heldFields, readMeta, type StreamEntry } from "../lib/entry.js";
import { type AsyncRequest, decodeEnvelope } from "../lib/envelope.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { closeServer, listen, type Readiness, sendJson, serveAdmin } from "../lib/http.js";
import { type StreamKeys, streamKeys } from "../lib/keys.js";
import type { Logger } from "../lib/logger.js";
import { createRegistry } from "../lib/metrics.js";
import type { DeliveryOutcome } from "../lib/outcome.js";
import { connectRedis, quitRedis, redisIsReady } from "../lib/redis.js";
import { AsyncServicesReader } from "../lib/registry.js";
import { appReceivesIdempotencyKey } from "../lib/replay.js";
import { pause, settlesWithin } from "../lib/wait.js";
import { streamSource } from "../lib/wire/cloudevent.js";
import type { DispatcherConfig } from "./config.js";
import { type Decision, decide, effectivePolicy, isExpired } from "./decide.js";
import { createCloudEventDeliverer, createDirectDeliverer, type Deliverer } from "./deliver.js";
import { LeaseKeeper } from "./lease.js";
import { createMetrics, type DispatcherMetrics } from "./metrics.js";
import { type DeadLetterNotice, EntryMoves } from "./moves.js";
import { Promoter } from "./promoter.js";
import { type AttemptInfo, type AttemptObservers, reportAttempt } from "./report.js";
import { DispatcherScripts } from "./scripts.js";
import { Slots } from "./slots.js";

export type { AttemptInfo } from "./report.js";

export interface DispatcherDeps {
  readonly logger: Logger;
  readonly registry?: Registry;
  /** Called after every attempt (the all-in-one mode prints these). */
  readonly onAttempt?: (info: AttemptInfo) => void;
  /** Called when an entry is dead-lettered. */
  readonly onDeadLetter?: (notice: DeadLetterNotice) => void;
}

export interface Dispatcher {
  readonly port: number;
  /** Entries being delivered right now. */
  inFlight(): number;
  close(): Promise<void>;
}

const READ_BLOCK_MS = 1000;
const MAX_READ_BATCH = 256;
/**
 * Under load the read waits until this many delivery slots are free (or READ_GATHER_MS passed), so it
 * fetches entries in tens rather than ones and twos: each XREADGROUP costs about as much as the
 * deliveries it starts.
 */
const READ_MIN_SLOTS = 32;
const READ_GATHER_MS = 10;
/** After a failed read: 200 ms, doubling up to 1 s. */
const READ_BACKOFF = { baseMs: 200, maxMs: 1000 };
/** On close, how long the Redis work still running may take before the connections are cut. */
const CLOSE_REDIS_MS = 1000;
/** At start, how long the first load of the async services registry is waited for. */
const SERVICES_LOAD_MS = 1000;

export async function startDispatcher(config: DispatcherConfig, deps: DispatcherDeps): Promise<Dispatcher> {
  const dispatcher = new StreamDispatcher(config, deps);
  await dispatcher.start();
  return dispatcher;
}

class StreamDispatcher implements Dispatcher {
  readonly #config: DispatcherConfig;
  /** Told about every attempt. */
  readonly #observers: AttemptObservers;
  readonly #logger: Logger;
  readonly #keys: StreamKeys;
  /** Commands and scripts; the blocking read has a connection of its own. */
  readonly #commands: Redis;
  readonly #reader: Redis;
  readonly #scripts: DispatcherScripts;
  readonly #deliverer: Deliverer;
  readonly #metrics: DispatcherMetrics;
  readonly #server: Server;
  readonly #slots: Slots;
  readonly #lease: LeaseKeeper;
  readonly #promoter: Promoter;
  readonly #moves: EntryMoves;
  /** The services' current delivery policies (src/lib/registry.ts). */
  readonly #services: AsyncServicesReader;
  /** Aborted when close() starts: no more reads, take-overs or promotions. */
  readonly #closing = new AbortController();
  #groupReady = false;
  /** Why the consumer group could not be created (for /readyz), while it cannot. */
  #groupProblem: string | undefined;
  #readLoop: Promise<void> = Promise.resolve();
  #port = 0;

  constructor(config: DispatcherConfig, deps: DispatcherDeps) {
    this.#config = config;
    this.#logger = deps.logger;
    this.#keys = streamKeys(config.streamName);
    const consumer = config.consumerName;
    this.#commands = connectRedis(config.redis, { name: `knative-async-dispatcher:${consumer}` });
    this.#reader = connectRedis(config.redis, {
      name: `knative-async-dispatcher-reader:${consumer}`,
      blocking: true,
    });
    this.#scripts = new DispatcherScripts(this.#commands, {
      keys: this.#keys,
      group: config.group,
      consumer,
      deleteAcked: config.deleteAcked,
    });
    // Where deliveries and dead-letter notices say they come from.
    const source = streamSource(config.redis, config.streamName);
    this.#deliverer =
      config.mode === "direct"
        ? createDirectDeliverer({
            timeoutMs: config.retry.timeoutMs,
            maxTimeoutMs: config.retry.maxTimeoutMs,
            connections: config.concurrency,
            targets: config.targets,
          })
        : createCloudEventDeliverer({
            sink: config.sink,
            source,
            connections: config.concurrency,
            targets: config.targets,
            signingKeys: config.signingKeys,
            ...(config.oidcTokenFile === undefined ? {} : { oidcTokenFile: config.oidcTokenFile }),
          });
    const registry = deps.registry ?? createRegistry("dispatcher");
    this.#metrics = createMetrics(
      registry,
      this.#commands,
      this.#keys,
      config.group,
      () => this.#slots.bytes,
    );
    this.#observers = { metrics: this.#metrics, logger: this.#logger, onAttempt: deps.onAttempt };
    this.#server = createServer((req, res) => {
      if (serveAdmin(req, res, { registry, ready: () => this.#readiness() })) return;
      sendJson(res, 404, {
        error: ErrorCode.NotFound,
        message: "the dispatcher serves only /healthz, /readyz and /metrics",
      });
    });
    this.#slots = new Slots(config.concurrency, config.bytesInFlight);
    this.#lease = new LeaseKeeper({
      redis: this.#commands,
      scripts: this.#scripts,
      keys: this.#keys,
      group: config.group,
      consumer,
      claimIdleMs: config.claimIdleMs,
      logger: this.#logger,
      metrics: this.#metrics,
      inFlight: () => this.#slots.ids,
      room: () => this.#slots.readable(),
      groupReady: () => this.#groupReady,
      start: (entry, deliveries) => this.#start(entry, deliveries),
    });
    this.#promoter = new Promoter(this.#scripts, this.#metrics, this.#logger);
    this.#services = new AsyncServicesReader({
      redis: config.redis,
      commands: this.#commands,
      keys: this.#keys,
      name: `knative-async-dispatcher-services:${consumer}`,
      logger: this.#logger,
    });
    this.#moves = new EntryMoves({
      scripts: this.#scripts,
      logger: this.#logger,
      source,
      deadLetterSink: config.deadLetterSink,
      onRetry: (delayMs) => this.#promoter.wake(delayMs),
      onDeadLetter: deps.onDeadLetter,
    });
  }

  get port(): number {
    return this.#port;
  }

  inFlight(): number {
    return this.#slots.used;
  }

  async start(): Promise<void> {
    const config = this.#config;
    this.#port = await listen(this.#server, config.port);
    // Not loaded in time: entries fall back to their envelope's policy meanwhile.
    await settlesWithin(this.#services.start(), SERVICES_LOAD_MS);
    const closing = this.#closing.signal;
    this.#readLoop = this.#read(closing);
    this.#lease.start(closing);
    this.#promoter.start(closing);
    this.#logger.info(
      {
        stream: this.#keys.stream,
        group: config.group,
        consumer: config.consumerName,
        mode: config.mode,
        sink: config.mode === "cloudevent" ? config.sink : undefined,
        port: this.#port,
      },
      "dispatcher started",
    );
  }

  /**
   * The read loop: one blocking XREADGROUP at a time on its own connection, asking for no more entries
   * than there are free delivery slots and room in the bytes in flight (./slots.ts), so memory stays
   * bounded whatever the backlog and whatever its bodies weigh.
   */
  async #read(closing: AbortSignal): Promise<void> {
    const readMinSlots = Math.max(1, Math.min(READ_MIN_SLOTS, Math.floor(this.#config.concurrency / 4)));
    const backoff = new Backoff(READ_BACKOFF);
    while (!closing.aborted) {
      try {
        if (!this.#groupReady) await this.#ensureGroup();
        const count = Math.min(
          await this.#slots.nextRead(readMinSlots, READ_GATHER_MS, closing),
          MAX_READ_BATCH,
        );
        if (closing.aborted) break;
        const entries = await this.#readEntries(count);
        backoff.reset();
        for (const entry of entries) this.#start(entry);
      } catch (err) {
        if (closing.aborted) break;
        const delayMs = backoff.next();
        if (String((err as Error).message).includes("NOGROUP")) this.#groupReady = false;
        // Once, then every 30th time (about every 30 s at the longest wait): the state lasts, the log
        // should not grow with it. /readyz says it all the time.
        if (backoff.failures === 1 || backoff.failures % 30 === 0) {
          this.#logger.warn(
            { err: String(err), failures: backoff.failures },
            this.#groupProblem === undefined
              ? "reading the stream failed; retrying"
              : "cannot create the consumer group, so nothing is delivered; retrying until Redis accepts it",
          );
        }
        await pause(delayMs, closing);
      }
    }
  }

  async #ensureGroup(): Promise<void> {
    const { stream } = this.#keys;
    try {
      // From the beginning of the stream: entries written before any dispatcher ran are delivered too.
      await this.#commands.xgroup("CREATE", stream, this.#config.group, "0", "MKSTREAM");
      this.#logger.info({ stream, group: this.#config.group }, "created consumer group");
    } catch (err) {
      // A full Redis (maxmemory with noeviction) answers OOM until it has room again: not ready meanwhile.
      if (!String((err as Error).message).includes("BUSYGROUP")) {
        this.#groupProblem = `consumer group not created: ${(err as Error).message}`;
        throw err;
      }
    }
    this.#groupReady = true;
    this.#groupProblem = undefined;
  }

  /** Ready when the consumer group exists and Redis answers; why not, when it is known. */
  async #readiness(): Promise<Readiness> {
    if (this.#groupProblem !== undefined) return { ready: false, reason: this.#groupProblem };
    if (!this.#groupReady) return { ready: false, reason: "starting: the consumer group is not checked yet" };
    if (!(await redisIsReady(this.#commands))) return { ready: false, reason: "Redis does not answer" };
    return { ready: true };
  }

  /**
   * New entries for this consumer, `count` at most; none when none came within READ_BLOCK_MS. Read as
   * Buffers, so that a large envelope is held once, outside the V8 heap (heldFields).
   */
  async #readEntries(count: number): Promise<StreamEntry[]> {
    const reply = (await this.#reader.xreadgroupBuffer(
      "GROUP",
      this.#config.group,
      this.#config.consumerName,
      "COUNT",
      count,
      "BLOCK",
      READ_BLOCK_MS,
      "STREAMS",
      this.#keys.stream,
      ">",
    )) as [Buffer, [Buffer, Buffer[]][]][] | null;
    const entries: StreamEntry[] = [];
    for (const [id, fields] of reply?.[0]?.[1] ?? [])
      entries.push({ id: id.toString(), fields: heldFields(fields) });
    return entries;
  }

  /** Delivers an entry in a slot of its own; `deliveries` counts those started on dispatchers that died. */
  #start(entry: StreamEntry, deliveries = 1): void {
    if (!this.#slots.take(entry)) return;
    this.#metrics.inFlight.set(this.#slots.used);
    this.#deliver(entry, deliveries)
      .catch((err) =>
        this.#logger.error(
          { err, entryId: entry.id },
          "delivery failed unexpectedly; the entry stays pending",
        ),
      )
      .finally(() => {
        this.#slots.release(entry.id);
        this.#metrics.inFlight.set(this.#slots.used);
      });
  }

  async #deliver(entry: StreamEntry, deliveries: number): Promise<void> {
    const started = Date.now();
    const meta = readMeta(entry.fields);
    // Deliveries started on a dispatcher that died count as attempts: a request that kills whatever
    // delivers it must not go round forever.
    const attempt = meta.attempts + Math.max(1, deliveries);
    const firstAttemptAt = meta.firstAttemptAt ?? started;

    let request: AsyncRequest;
    try {
      request = requestOf(entry);
    } catch (err) {
      const outcome = failure(ErrorCode.MalformedEvent, (err as Error).message);
      const soFar = { attempts: attempt, firstAttemptAt, lastAttemptAt: started, outcome };
      const malformed: Decision = { action: "dead-letter", reason: "malformed" };
      const { applied } = await this.#moves.record(entry, malformed, soFar);
      // There is no request to report(), but the attempt counts like any other dead-lettered one.
      this.#metrics.countAttempt(applied ? "dead-letter" : "lease_lost", "malformed");
      return;
    }

    // The service's policy as it is now (a change applies to queued requests too), else the envelope's.
    const published = this.#services.policyOf(request.url);
    const policy = effectivePolicy(this.#config.retry, published ?? request.policy);
    const ageFrom = ageOrigin(request.acceptedAt, entry.fields);
    if (isExpired(ageFrom, started, policy)) {
      const outcome = failure(ErrorCode.TargetTimeout, "expired before delivery");
      const soFar = { attempts: attempt - 1, firstAttemptAt, lastAttemptAt: started, outcome };
      const expired: Decision = { action: "dead-letter", reason: "max-age" };
      const { decision, applied } = await this.#moves.record(entry, expired, soFar);
      reportAttempt({ entry, request, attempt, outcome, decision, applied, started }, this.#observers);
      return;
    }

    const outcome = await this.#deliverer.deliver(entry, request, attempt, policy.timeoutMs);
    const now = Date.now();
    const facts = {
      outcome,
      attempt,
      method: request.method,
      hasIdempotencyKey: appReceivesIdempotencyKey(request),
      acceptedAt: ageFrom,
      firstAttemptAt,
      now,
    };
    const decided = decide(facts, policy, this.#config.retry);
    const soFar = { attempts: attempt, firstAttemptAt, lastAttemptAt: now, outcome };
    // The decision carried out; false when another dispatcher had taken the entry over: it decides.
    const { decision, applied } = await this.#moves.record(entry, decided, soFar);
    reportAttempt({ entry, request, attempt, outcome, decision, applied, started }, this.#observers);
  }

  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    // The blocking read returns within READ_BLOCK_MS; entries it brings are still delivered. With Redis
    // away it would wait in ioredis for a reconnect, for ever: then it is cut, and anything Redis had
    // already handed to this read stays pending for another dispatcher to take over.
    if (!(await settlesWithin(this.#readLoop, READ_BLOCK_MS + CLOSE_REDIS_MS))) this.#reader.disconnect();
    if (this.#slots.used > 0) {
      this.#logger.info({ inFlight: this.#slots.used }, "waiting for in-flight deliveries to finish");
      if (!(await settlesWithin(this.#slots.drained(), this.#config.shutdownGraceMs))) {
        this.#logger.warn(
          { inFlight: this.#slots.used },
          "shutdown grace ran out; unfinished entries stay pending and another dispatcher will take them over",
        );
      }
    }
    // Their Redis calls, like the read, wait for a reconnect when Redis is away: bounded too.
    await settlesWithin(Promise.all([this.#lease.stop(), this.#promoter.stopped()]), CLOSE_REDIS_MS);
    await this.#deliverer.close();
    await closeServer(this.#server, 1000);
    this.#services.close();
    this.#reader.disconnect();
    await quitRedis(this.#commands, CLOSE_REDIS_MS);
    this.#logger.info("dispatcher stopped");
  }
}

/** The request an entry carries; throws when it has none or it does not decode. */
function requestOf(entry: StreamEntry): AsyncRequest {
  const data = fieldValue(entry.fields, DATA_FIELD);
  if (data === undefined) throw new AsyncError(ErrorCode.MalformedEvent, "the entry has no data field");
  return decodeEnvelope(data);
}

/** The outcome of an attempt that never reached the target. */
function failure(code: ErrorCode, message: string): DeliveryOutcome {
  return { kind: "error", code, message, durationMs: 0 };
}
