/**
 * Wiring: informers -> work queue -> reconciler, under leader election, with the admin endpoints.
 *
 * Informer handlers only enqueue `namespace/name`: an async KIngress enqueues itself, a child (KIngress
 * or Service) enqueues its owner, so a child changed or deleted by hand is put back. Every replica keeps
 * its caches warm and answers /readyz once they are filled, but only the leader runs workers, so only
 * the leader writes. A watch that ends is restarted by the informer; one that fails is restarted here
 * with backoff. Every async KIngress is enqueued again every RESYNC_PERIOD and when leadership starts;
 * reconciling an unchanged object writes nothing.
 */
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { hostname } from "node:os";
import type { KubeConfig, KubernetesObject, ListWatch } from "@kubernetes/client-node";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { Backoff } from "../lib/backoff.js";
import { AsyncError, ErrorCode, errorCodeOf } from "../lib/errors.js";
import { closeServer, listen, sendError, serveAdmin } from "../lib/http.js";
import type { Logger } from "../lib/logger.js";
import { LATENCY_BUCKETS } from "../lib/metrics.js";
import type { ControllerConfig } from "./config.js";
import { KubeEventRecorder } from "./events.js";
import { KubeClient } from "./kube.js";
import { LeaderElector } from "./leader.js";
import { asyncServiceName, childIngressName, INGRESS_API_VERSION, INGRESS_KIND } from "./names.js";
import { IngressReconciler } from "./reconciler.js";
import { controllerOf, isAsyncIngress, keyOf } from "./resources/meta.js";
import type { KIngress } from "./types.js";
import { WorkQueue } from "./workqueue.js";

export interface ControllerDeps {
  readonly logger: Logger;
  readonly registry: Registry;
  /** Where the API server is and how to authenticate (in-cluster, a kubeconfig file, or a test's). */
  readonly kubeConfig: KubeConfig;
}

export interface RunningController {
  readonly port: number;
  readonly identity: string;
  isLeader(): boolean;
  /** True once both caches have been filled from a list. */
  isSynced(): boolean;
  close(): Promise<void>;
}

/** Backoff for restarting an informer whose list or watch failed. */
const INFORMER_RETRY_MIN_MS = 200;
const INFORMER_RETRY_MAX_MS = 30_000;

export async function startController(
  config: ControllerConfig,
  deps: ControllerDeps,
): Promise<RunningController> {
  const { logger, registry } = deps;
  const identity = config.podName ?? `${hostname()}-${randomUUID().slice(0, 8)}`;
  let queue = new WorkQueue();
  const metrics = createMetrics(registry, () => queue.depth);
  const client = new KubeClient(deps.kubeConfig, (call, outcome, status) =>
    metrics.kubeRequests.inc({ verb: call.verb, resource: call.resource, outcome, status: String(status) }),
  );

  const ingresses = client.ingressInformer();
  const services = client.serviceInformer();
  const reconciler = new IngressReconciler({
    client,
    ingresses,
    services,
    events: new KubeEventRecorder(client, logger, identity),
    config,
    logger,
  });

  let closing = false;
  let workers: Promise<void>[] = [];

  const enqueueOwner = (object: KubernetesObject) => {
    const owner = controllerOf((object as KIngress).metadata ?? {});
    if (owner?.kind === INGRESS_KIND && owner.apiVersion === INGRESS_API_VERSION) {
      queue.add(`${object.metadata?.namespace ?? ""}/${owner.name}`);
    }
  };
  const onIngress = (object: KIngress) => {
    if (isAsyncIngress(object) || mayHaveChildren(object)) queue.add(keyOf(object));
    enqueueOwner(object);
  };
  /** A KIngress whose class changed away from async still has children to remove. */
  const mayHaveChildren = (object: KIngress) => {
    const { name = "", namespace = "" } = object.metadata;
    return (
      ingresses.get(childIngressName(name), namespace) !== undefined ||
      services.get(asyncServiceName(name), namespace) !== undefined
    );
  };
  const enqueueAll = () => {
    for (const ingress of ingresses.list()) if (isAsyncIngress(ingress)) queue.add(keyOf(ingress));
  };

  const synced = { ingresses: false, services: false };
  const startInformers = [
    watchWithRestart("ingresses", ingresses, onIngress),
    watchWithRestart("services", services, enqueueOwner),
  ];

  /** Hooks the handlers up and returns the function that starts (and after an error restarts) it. */
  function watchWithRestart<T extends KubernetesObject>(
    resource: "ingresses" | "services",
    informer: ListWatch<T>,
    handler: (object: T) => void,
  ): () => Promise<void> {
    const backoff = new Backoff({ baseMs: INFORMER_RETRY_MIN_MS, maxMs: INFORMER_RETRY_MAX_MS });
    const seen = (object: T) => {
      backoff.reset();
      handler(object);
    };
    informer.on("add", seen);
    informer.on("update", seen);
    informer.on("delete", seen);
    const start = async () => {
      await informer.start();
      // The informer only has a resourceVersion once a list succeeded: the cache is filled from then on.
      if (informer.latestResourceVersion() !== "") synced[resource] = true;
    };
    informer.on("error", (err) => {
      if (closing) return;
      metrics.informerRestarts.inc({ resource });
      const delay = backoff.next();
      logger.warn({ err, resource, retryInMs: delay }, "list or watch failed; restarting");
      const timer = setTimeout(() => {
        if (!closing) start().catch((e) => logger.error({ err: e, resource }, "informer restart failed"));
      }, delay);
      timer.unref();
    });
    return start;
  }

  async function work(workQueue: WorkQueue): Promise<void> {
    for (;;) {
      const key = await workQueue.get();
      if (key === undefined) return;
      const stop = metrics.reconcileDuration.startTimer();
      try {
        await reconciler.reconcile(key);
        workQueue.forget(key);
        metrics.reconciles.inc({ result: "success" });
      } catch (err) {
        const retryInMs = workQueue.addRateLimited(key);
        metrics.reconciles.inc({ result: "error" });
        metrics.reconcileErrors.inc({ code: errorCodeOf(err) });
        logger.warn({ err, key, retryInMs }, "reconcile failed; will retry");
      } finally {
        stop();
        workQueue.done(key);
      }
    }
  }

  const elector = new LeaderElector({
    client,
    namespace: config.systemNamespace,
    name: config.leaseName,
    identity,
    leaseDurationMs: config.leaseDurationMs,
    renewDeadlineMs: config.renewDeadlineMs,
    retryPeriodMs: config.retryPeriodMs,
    logger,
    onStartedLeading: () => {
      metrics.leader.set(1);
      queue = new WorkQueue();
      enqueueAll();
      workers = Array.from({ length: config.workers }, () => work(queue));
    },
    onStoppedLeading: async () => {
      metrics.leader.set(0);
      // Workers finish the key in hand and take no other; a new term gets a new queue.
      queue.shutDown();
      await Promise.all(workers);
      workers = [];
    },
  });

  const resync = setInterval(() => {
    if (elector.isLeader) enqueueAll();
  }, config.resyncPeriodMs);
  resync.unref();

  const isSynced = () => synced.ingresses && synced.services;
  const server = createServer((req, res) => {
    if (!serveAdmin(req, res, { registry, ready: async () => isSynced() })) {
      sendError(res, new AsyncError(ErrorCode.NotFound, "not found"));
    }
  });
  const port = await listen(server, config.port);

  await Promise.all(startInformers.map((start) => start()));
  elector.start();
  logger.info(
    {
      port,
      identity,
      ingressClass: config.ingressClassName,
      producer: `${config.producerName}.${config.producerNamespace}`,
    },
    "controller started",
  );

  return {
    port,
    identity,
    isLeader: () => elector.isLeader,
    isSynced,
    async close() {
      closing = true;
      clearInterval(resync);
      await elector.stop();
      queue.shutDown();
      await Promise.all(workers);
      await Promise.all([ingresses.stop(), services.stop()]);
      await closeServer(server, 1000);
    },
  };
}

function createMetrics(registry: Registry, queueDepth: () => number) {
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
