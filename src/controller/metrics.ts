/** The controller's metrics. */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { LATENCY_BUCKETS } from "../lib/metrics.js";

export type ControllerMetrics = ReturnType<typeof controllerMetrics>;

export function controllerMetrics(registry: Registry, queueDepth: () => number) {
  const prefix = "knative_async_controller_";
  return {
    reconciles: new Counter({
      name: `${prefix}reconcile_total`,
      help: "Reconciles of async KIngresses, by result",
      labelNames: ["result"],
      registers: [registry],
    }),
    reconcileErrors: new Counter({
      name: `${prefix}reconcile_errors_total`,
      help: "Failed reconciles, by error code",
      labelNames: ["code"],
      registers: [registry],
    }),
    reconcileDuration: new Histogram({
      name: `${prefix}reconcile_duration_seconds`,
      help: "Time to reconcile one KIngress",
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: `${prefix}workqueue_depth`,
      help: "Keys waiting in the work queue",
      registers: [registry],
      collect() {
        this.set(queueDepth());
      },
    }),
    leader: new Gauge({
      name: `${prefix}leader`,
      help: "1 while this replica holds the leader Lease",
      registers: [registry],
    }),
    kubeRequests: new Counter({
      name: `${prefix}kube_requests_total`,
      help: "Kubernetes API calls, by verb, resource and outcome",
      labelNames: ["verb", "resource", "outcome", "status"],
      registers: [registry],
    }),
    informerRestarts: new Counter({
      name: `${prefix}informer_restarts_total`,
      help: "Watches restarted after an error",
      labelNames: ["resource"],
      registers: [registry],
    }),
  };
}
