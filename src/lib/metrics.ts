/**
 * Prometheus metrics. Each component owns a Registry of its own (never prom-client's global one), so the
 * all-in-one mode can run several components in one process without their metric names colliding.
 */
import { collectDefaultMetrics, Registry } from "prom-client";

export function createRegistry(component: string, options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ component });
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  return registry;
}

/** Seconds buckets for delivery and request latencies, from 1 ms to 1 min. */
export const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/**
 * Label children bound once per key and then reused: prom-client hashes the label values on every
 * `inc()`/`observe()` otherwise, which shows on the hot paths. Meant for few keys (outcome classes, error
 * codes), never for values from requests.
 */
export function boundChildren<T>(bind: (key: string) => T): (key: string) => T {
  const children = new Map<string, T>();
  return (key) => {
    let child = children.get(key);
    if (child === undefined) {
      child = bind(key);
      children.set(key, child);
    }
    return child;
  };
}
