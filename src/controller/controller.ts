/**
 * Wiring: informers -> work queue -> reconciler, under leader election, with the admin endpoints.
 *
 * Informer handlers only enqueue `namespace/name`: an async KIngress enqueues itself, a child (KIngress
 * or Service) enqueues its owner, so a child changed or deleted by hand is put back. Every replica keeps
 * its caches warm and answers /readyz once they are filled, but only the leader runs workers, so only
 * the leader writes. A watch that ends is restarted by the informer; one that fails is restarted here
 * with backoff. Every async KIngress is enqueued again every RESYNC_PERIOD and when leadership starts;
 * reconciling an unchanged object writes nothing.
 *
 * The leader also keeps the async services registry in Redis in line with the KIngresses: the reconciler
 * writes each entry, and ./registry-check.ts finds the stale and the missing ones.
 */
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { hostname } from "node:os";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import type { Redis } from "ioredis";
import type { Registry } from "prom-client";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { closeServer, listen, sendError, serveAdmin } from "../lib/http.js";
import { streamKeys } from "../lib/keys.js";
import type { Logger } from "../lib/logger.js";
import { connectRedis, quitRedis } from "../lib/redis.js";
import { AsyncServicesWriter } from "../lib/registry.js";
import type { ControllerConfig } from "./config.js";
import { KubeEventRecorder } from "./events.js";
import { informerWatcher } from "./informers.js";
import { KubeClient } from "./kube.js";
import { LeaderElector } from "./leader.js";
import { controllerMetrics } from "./metrics.js";
import { asyncServiceName, childIngressName, INGRESS_API_VERSION, INGRESS_KIND } from "./names.js";
import { IngressReconciler } from "./reconciler.js";
import { RegistryCheck } from "./registry-check.js";
import { controllerOf, isAsyncIngress, keyOf } from "./resources/meta.js";
import type { KIngress } from "./types.js";
import { runWorker, WorkQueue } from "./workqueue.js";

/** How long a registry write may take before the reconcile fails and is retried. */
const REDIS_TIMEOUT_MS = 5000;

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

export async function startController(
  config: ControllerConfig,
  deps: ControllerDeps,
): Promise<RunningController> {
  const { logger, registry } = deps;
  const identity = config.podName ?? `${hostname()}-${randomUUID().slice(0, 8)}`;
  let queue = new WorkQueue();
  const metrics = controllerMetrics(registry, () => queue.depth);
  const client = new KubeClient(deps.kubeConfig, (call, outcome, status) =>
    metrics.kubeRequests.inc({ verb: call.verb, resource: call.resource, outcome, status: String(status) }),
  );

  const ingresses = client.ingressInformer();
  const services = client.serviceInformer();
  const redis = registryConnection(config, identity);
  const reconciler = new IngressReconciler({
    client,
    ingresses,
    services,
    events: new KubeEventRecorder(client, logger, identity),
    config,
    logger,
    asyncServices: new AsyncServicesWriter(redis, streamKeys(config.streamName)),
  });

  let closing = false;
  let workers: Promise<void>[] = [];

  const { enqueueOwner, onIngress, enqueueAll } = enqueuers(() => queue, ingresses, services);

  const synced = { ingresses: false, services: false };
  const watch = informerWatcher<"ingresses" | "services">({
    logger,
    closing: () => closing,
    onSynced: (resource) => {
      synced[resource] = true;
    },
    onRestart: (resource) => metrics.informerRestarts.inc({ resource }),
  });
  const startInformers = [
    watch("ingresses", ingresses, onIngress),
    watch("services", services, enqueueOwner),
  ];

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
      registryCheck.run();
      workers = Array.from({ length: config.workers }, () =>
        runWorker(queue, (key) => reconciler.reconcile(key), metrics, logger),
      );
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
  const registryCheck = new RegistryCheck({
    reconciler,
    redis,
    periodMs: config.registryCheckPeriodMs,
    mayRun: () => !closing && elector.isLeader && isSynced(),
    enqueue: (key) => queue.add(key),
    logger,
  });
  const server = adminServer(registry, isSynced);
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
      await registryCheck.stop();
      await Promise.all([ingresses.stop(), services.stop()]);
      await closeServer(server, 1000);
      await quitRedis(redis);
    },
  };
}

/**
 * The connection the async services registry is written on. Fail-fast: while Redis is away a reconcile
 * fails at once and is retried with backoff, rather than holding a worker until Redis returns.
 */
function registryConnection(config: ControllerConfig, identity: string): Redis {
  return connectRedis(config.redis, {
    name: `knative-async-controller:${identity}`,
    failFast: true,
    commandTimeoutMs: REDIS_TIMEOUT_MS,
  });
}

/**
 * What goes into the work queue when something changes: an async KIngress, a KIngress whose class
 * changed away from async (its children must go), and the owner of a child that changed.
 */
function enqueuers(
  queue: () => WorkQueue,
  ingresses: ReturnType<KubeClient["ingressInformer"]>,
  services: ReturnType<KubeClient["serviceInformer"]>,
) {
  const enqueueOwner = (object: KubernetesObject) => {
    const owner = controllerOf((object as KIngress).metadata ?? {});
    if (owner?.kind === INGRESS_KIND && owner.apiVersion === INGRESS_API_VERSION) {
      queue().add(`${object.metadata?.namespace ?? ""}/${owner.name}`);
    }
  };
  const mayHaveChildren = (object: KIngress) => {
    const { name = "", namespace = "" } = object.metadata;
    return (
      ingresses.get(childIngressName(name), namespace) !== undefined ||
      services.get(asyncServiceName(name), namespace) !== undefined
    );
  };
  return {
    enqueueOwner,
    onIngress(object: KIngress) {
      if (isAsyncIngress(object) || mayHaveChildren(object)) queue().add(keyOf(object));
      enqueueOwner(object);
    },
    enqueueAll() {
      for (const ingress of ingresses.list()) if (isAsyncIngress(ingress)) queue().add(keyOf(ingress));
    },
  };
}

/** /healthz, /readyz (ready once both caches are filled) and /metrics; nothing else. */
function adminServer(registry: Registry, isSynced: () => boolean) {
  return createServer((req, res) => {
    if (!serveAdmin(req, res, { registry, ready: async () => isSynced() })) {
      sendError(res, new AsyncError(ErrorCode.NotFound, "not found"));
    }
  });
}
