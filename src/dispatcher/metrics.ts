/** The dispatcher's Prometheus metrics. */
import type { Redis } from "ioredis";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { StreamKeys } from "../lib/keys.js";
import { boundChildren, LATENCY_BUCKETS } from "../lib/metrics.js";
import { type DeliveryOutcome, outcomeClass } from "../lib/outcome.js";
import type { Decision } from "./decide.js";

export type DispatcherMetrics = ReturnType<typeof createMetrics>;

/** One finished attempt, as the metrics count it. */
export interface AttemptResult {
  readonly outcome: DeliveryOutcome;
  readonly decision: Decision;
  /** False when another dispatcher had taken the entry over, and so decides. */
  readonly applied: boolean;
  /** From acceptance by the producer to now, when known. */
  readonly ageMs: number | undefined;
}

/** `bytesInFlight`: the bytes of the entries in flight, read when the metrics are collected. */
export function createMetrics(
  registry: Registry,
  redis: Redis,
  keys: StreamKeys,
  group: string,
  bytesInFlight: () => number,
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
  new Gauge({
    name: "knative_async_dispatcher_bytes_in_flight",
    help: "Bytes of the entries in progress on this dispatcher (DISPATCH_BYTES_IN_FLIGHT bounds them)",
    registers: [registry],
    collect() {
      this.set(bytesInFlight());
    },
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
  new Gauge({
    name: "knative_async_queue_entries",
    help: "Entries by place: stream (length), pending (delivered to the group, not acknowledged), retry_scheduled, dead_letter",
    labelNames: ["place"],
    registers: [registry],
    async collect() {
      try {
        const [length, pending, scheduled, dead] = await Promise.all([
          redis.xlen(keys.stream),
          redis.xpending(keys.stream, group) as Promise<[number, ...unknown[]]>,
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
  // Few combinations (results times reasons or outcome classes), each child bound once.
  const attemptsFor = boundChildren((key) => {
    const [result, reason] = key.split("\n") as [string, string];
    return attempts.labels({ result, reason });
  });
  const countAttempt = (result: string, reason: string): void => attemptsFor(`${result}\n${reason}`).inc();

  /** Counts a finished attempt, by what became of the entry, and times it. */
  const observeAttempt = ({ outcome, decision, applied, ageMs }: AttemptResult): void => {
    const result = applied ? (decision.action === "ack" ? "delivered" : decision.action) : "lease_lost";
    countAttempt(result, decision.action === "dead-letter" ? decision.reason : outcomeClass(outcome));
    attemptDuration.observe(outcome.durationMs / 1000);
    if (decision.action === "ack" && applied && ageMs !== undefined) endToEnd.observe(ageMs / 1000);
  };

  return { countAttempt, observeAttempt, inFlight, claimed, promoted };
}
