/** The consumer's metrics. */
import { Counter, Histogram, type Registry } from "prom-client";
import { boundChildren, LATENCY_BUCKETS } from "../lib/metrics.js";
import { type DeliveryOutcome, outcomeClass } from "../lib/outcome.js";

export interface ConsumerMetrics {
  /** Counts one handled event by its outcome: a status class, or an error code. */
  count(outcome: string): void;
  /** Counts and times one replay. */
  replayed(outcome: DeliveryOutcome): void;
}

export function consumerMetrics(registry: Registry): ConsumerMetrics {
  const deliveries = new Counter({
    name: "knative_async_consumer_deliveries_total",
    help: "Events handled, by outcome: the target's status class (2xx..5xx) or an error code",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const replayDuration = new Histogram({
    name: "knative_async_consumer_replay_duration_seconds",
    help: "Time from sending the replayed request to the end of the target's answer",
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const byOutcome = boundChildren((outcome) => deliveries.labels(outcome));
  return {
    count: (outcome) => byOutcome(outcome).inc(),
    replayed(outcome) {
      byOutcome(outcomeClass(outcome)).inc();
      replayDuration.observe(outcome.durationMs / 1000);
    },
  };
}
