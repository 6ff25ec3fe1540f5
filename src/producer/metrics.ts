/** The producer's metrics: requests by outcome and duration, accepted bytes, the budget, the stream. */
import { Command, type Redis } from "ioredis";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { boundChildren, LATENCY_BUCKETS } from "../lib/metrics.js";
import type { ByteBudget } from "./budget.js";

export interface ProducerMetrics {
  readonly acceptedBytes: Counter;
  observe(outcome: string, startedMs: number): void;
}

export function producerMetrics(
  registry: Registry,
  redis: Redis,
  stream: string,
  timeoutMs: number,
  budget: ByteBudget,
): ProducerMetrics {
  new Gauge({
    name: "knative_async_producer_body_bytes_in_flight",
    help: "Request-body bytes held now, of the REQUEST_BYTES_IN_FLIGHT budget",
    registers: [registry],
    collect() {
      this.set(budget.used);
    },
  });
  new Gauge({
    name: "knative_async_producer_requests_waiting",
    help: "Requests whose body is paused, unread, waiting for room in the REQUEST_BYTES_IN_FLIGHT budget",
    registers: [registry],
    collect() {
      this.set(budget.waiting);
    },
  });
  const requests = new Counter({
    name: "knative_async_producer_requests_total",
    help: "Async requests by outcome: accepted, replayed (a 202 repeated for an Idempotency-Key) or the error code",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const duration = new Histogram({
    name: "knative_async_producer_request_duration_seconds",
    help: "Time from the request's headers to the answer, by outcome",
    labelNames: ["outcome"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const acceptedBytes = new Counter({
    name: "knative_async_producer_accepted_bytes_total",
    help: "Body bytes of the requests stored in the stream",
    registers: [registry],
  });
  new Gauge({
    name: "knative_async_producer_stream_length",
    help: "Entries in the request stream (XLEN at scrape time; NaN when Redis does not answer)",
    registers: [registry],
    // Every cluster worker reads the same stream: their answers are one figure, not parts of a sum.
    aggregator: "first",
    async collect() {
      try {
        const xlen = new Command("xlen", [stream]);
        xlen.setTimeout(Math.min(timeoutMs, 1000));
        this.set(Number(await redis.sendCommand(xlen)));
      } catch {
        this.set(Number.NaN);
      }
    },
  });
  // Bound once per outcome (a few dozen at most: the error codes).
  const byOutcome = boundChildren((outcome) => ({
    count: requests.labels(outcome),
    time: duration.labels(outcome),
  }));
  return {
    acceptedBytes,
    observe(outcome, startedMs) {
      const children = byOutcome(outcome);
      children.count.inc();
      children.time.observe((performance.now() - startedMs) / 1000);
    },
  };
}
