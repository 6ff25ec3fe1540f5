/**
 * The async KIngress reconciler. `reconcile(key)` is the generic step (read from the cache, check the
 * class (a KIngress no longer async only has children left behind removed), work on a copy, write the
 * status only when it changed, retry status conflicts, record a Warning event and rethrow other errors
 * so the queue retries with backoff); `reconcileKind` is the per-kind
 * logic: validate the annotations, publish the service in the async services registry, put the two
 * children in their desired state, and take the parent's readiness and load balancers from the child
 * KIngress that the real networking layer reconciles.
 *
 * The registry entry (src/lib/registry.ts) is what lets the producer take requests for the service, with
 * its policy. It is written once both children are in place (the networking layer takes far longer to
 * program the new route than this write takes), never for a route another owner holds, and removed when
 * the KIngress is gone, being deleted, or no longer async. It is written after the children, not before:
 * a wait on Redis between reading the parent and its children from the cache could see a parent that was
 * deleted meanwhile, and create orphans.
 */
import type { ObjectCache } from "@kubernetes/client-node";
import type { Logger } from "../lib/logger.js";
import { type AsyncServicesWriter, sameService, serviceId } from "../lib/registry.js";
import type { BuilderConfig } from "./config.js";
import { semanticEqual } from "./equality.js";
import type { EventRecorder, EventType } from "./events.js";
import { isAlreadyExists, isConflict, isNotFound, type KubeClient } from "./kube.js";
import { ASYNC_INGRESS_CLASS, asyncServiceName, childIngressName } from "./names.js";
import { makeChildIngress } from "./resources/ingress.js";
import { isAsyncIngress, isControlledBy, keyOf } from "./resources/meta.js";
import { makeAsyncService, registryId } from "./resources/registry.js";
import { makeProducerService } from "./resources/service.js";
import { readAsyncSettings } from "./resources/settings.js";
import { getCondition, READY, StatusBuilder } from "./status.js";
import type { CoreService, IngressStatus, KIngress } from "./types.js";

export interface ReconcilerDeps {
  readonly client: KubeClient;
  /** The informers' caches: reads never go to the API server. */
  readonly ingresses: ObjectCache<KIngress>;
  readonly services: ObjectCache<CoreService>;
  readonly events: EventRecorder;
  readonly config: BuilderConfig;
  readonly logger: Logger;
  /** The async services registry in Redis. */
  readonly asyncServices: AsyncServicesWriter;
}

/** Status updates that hit a conflict are retried this many times, each on a fresh read. */
const STATUS_UPDATE_ATTEMPTS = 5;

interface PendingEvent {
  type: EventType;
  reason: string;
  message: string;
  /** Only worth telling when the status changed (a standing problem is not re-announced every resync). */
  onStatusChange?: boolean;
}

export class IngressReconciler {
  constructor(private readonly deps: ReconcilerDeps) {}

  async reconcile(key: string): Promise<void> {
    const [namespace = "", name = ""] = key.split("/", 2);
    const cached = this.deps.ingresses.get(name, namespace);
    // Gone: its children carry owner references, so the garbage collector removes them; its registry
    // entry is ours to remove.
    if (cached === undefined) {
      await this.deps.asyncServices.remove(serviceId(namespace, name));
      return;
    }
    if (cached.metadata.deletionTimestamp || !isAsyncIngress(cached)) {
      await this.unpublish(cached);
      if (!cached.metadata.deletionTimestamp) await this.removeChildren(cached);
      return;
    }

    const parent = structuredClone(cached);
    const status = new StatusBuilder(parent.status);
    status.setObservedGeneration(parent.metadata.generation);
    const events: PendingEvent[] = [];

    let failure: unknown;
    try {
      await this.reconcileKind(parent, status, events);
    } catch (err) {
      failure = err;
    }

    const statusChanged = !semanticEqual(cached.status, status.status);
    if (statusChanged) {
      try {
        await this.updateStatus(parent, status.status);
      } catch (err) {
        failure ??= err;
      }
    }

    for (const event of events) {
      if (!event.onStatusChange || statusChanged) {
        await this.deps.events.record(parent, event.type, event.reason, event.message);
      }
    }
    if (failure !== undefined) {
      await this.deps.events.record(parent, "Warning", "InternalError", (failure as Error).message);
      throw failure;
    }
  }

  private async reconcileKind(
    parent: KIngress,
    status: StatusBuilder,
    events: PendingEvent[],
  ): Promise<void> {
    const settings = readAsyncSettings(parent);
    if (!settings.ok) {
      // Nothing else changes: the children keep serving what was valid before.
      status.markNetworkNotConfigured(settings.problem.reason, settings.problem.message);
      events.push({ type: "Warning", onStatusChange: true, ...settings.problem });
      return;
    }

    const child = await this.reconcileChildIngress(parent, events);
    if (child === undefined) {
      this.markNotOwned(parent, status, events, "KIngress", childIngressName(parent.metadata.name ?? ""));
      return;
    }
    const service = await this.reconcileService(parent, events);
    if (service === undefined) {
      this.markNotOwned(parent, status, events, "Service", asyncServiceName(parent.metadata.name ?? ""));
      return;
    }
    await this.deps.asyncServices.publish(registryId(parent), makeAsyncService(parent, settings.settings));
    status.markNetworkConfigured();
    this.propagateChildStatus(child, status);
  }

  /**
   * A child's name is taken by an object this parent does not control (say, the KIngress of a Knative
   * Service named `<name>-new`): it is never overwritten; the user has to resolve it.
   */
  private markNotOwned(
    parent: KIngress,
    status: StatusBuilder,
    events: PendingEvent[],
    kind: string,
    name: string,
  ): void {
    const message = `${kind} ${parent.metadata.namespace}/${name} already exists and is not owned by KIngress ${keyOf(parent)}; delete or rename it`;
    status.markNetworkNotConfigured("NotOwned", message);
    events.push({ type: "Warning", reason: "NotOwned", message, onStatusChange: true });
  }

  /** The child KIngress as it now is on the server, or undefined when its name is taken by another owner. */
  private async reconcileChildIngress(
    parent: KIngress,
    events: PendingEvent[],
  ): Promise<KIngress | undefined> {
    const desired = makeChildIngress(parent, this.deps.config);
    const { namespace = "", name = "" } = desired.metadata;
    const found = await this.getOrCreate("KIngress", desired, events, {
      cached: () => this.deps.ingresses.get(name, namespace),
      create: () => this.deps.client.createIngress(desired),
      get: () => this.deps.client.getIngress(namespace, name),
    });
    if (found.created) return found.object;
    const existing = found.object;
    if (!isControlledBy(existing, parent)) return undefined;
    if (
      semanticEqual(existing.spec, desired.spec) &&
      semanticEqual(existing.metadata.labels, desired.metadata.labels) &&
      semanticEqual(existing.metadata.annotations, desired.metadata.annotations)
    ) {
      return existing;
    }
    const update = structuredClone(existing);
    update.spec = desired.spec;
    update.metadata.labels = desired.metadata.labels;
    update.metadata.annotations = desired.metadata.annotations;
    const updated = await this.deps.client.updateIngress(update);
    events.push({ type: "Normal", reason: "Updated", message: `Updated KIngress ${namespace}/${name}` });
    return updated;
  }

  private async reconcileService(parent: KIngress, events: PendingEvent[]): Promise<CoreService | undefined> {
    const desired = makeProducerService(parent, this.deps.config);
    const { namespace = "", name = "" } = desired.metadata;
    const found = await this.getOrCreate("Service", desired, events, {
      cached: () => this.deps.services.get(name, namespace),
      create: () => this.deps.client.createService(desired),
      get: () => this.deps.client.getService(namespace, name),
    });
    if (found.created) return found.object;
    const existing = found.object;
    if (!isControlledBy(existing, parent)) return undefined;
    const spec = existing.spec ?? {};
    if (
      spec.type === desired.spec.type &&
      spec.externalName === desired.spec.externalName &&
      semanticEqual(spec.ports, desired.spec.ports) &&
      semanticEqual(existing.metadata.labels, desired.metadata.labels)
    ) {
      return existing;
    }
    const update = structuredClone(existing);
    // Edited into another type by hand: start from our spec alone, the server clears the type's fields.
    update.spec = spec.type === desired.spec.type ? { ...spec, ...desired.spec } : desired.spec;
    update.metadata.labels = desired.metadata.labels;
    const updated = await this.deps.client.updateService(update);
    events.push({ type: "Normal", reason: "Updated", message: `Updated Service ${namespace}/${name}` });
    return updated;
  }

  /**
   * The child as it is, from the cache, or created as desired. A create that finds it already there
   * means the cache had not seen it yet: it is read, and the caller carries on as if it had been cached.
   */
  private async getOrCreate<T>(
    kind: string,
    desired: { metadata: { namespace?: string; name?: string } },
    events: PendingEvent[],
    calls: { cached: () => T | undefined; create: () => Promise<T>; get: () => Promise<T> },
  ): Promise<{ object: T; created: boolean }> {
    const cached = calls.cached();
    if (cached !== undefined) return { object: cached, created: false };
    const { namespace = "", name = "" } = desired.metadata;
    try {
      const created = await calls.create();
      events.push({ type: "Normal", reason: "Created", message: `Created ${kind} ${namespace}/${name}` });
      return { object: created, created: true };
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
      return { object: await calls.get(), created: false };
    }
  }

  /** Removes the registry entry of a KIngress being deleted or no longer async; a failure is retried. */
  private async unpublish(ingress: KIngress): Promise<void> {
    try {
      await this.deps.asyncServices.remove(registryId(ingress));
    } catch (err) {
      await this.deps.events.record(ingress, "Warning", "InternalError", (err as Error).message);
      throw err;
    }
  }

  /**
   * Brings the registry in line with the KIngresses in the cache: removes the entries no async KIngress
   * wants any more (deleted while no controller led, say), and returns the keys of async KIngresses whose
   * entry is missing or differs (a Redis that lost its data), for the work queue: reconciling them
   * publishes them. The caller makes sure the cache is filled.
   */
  async checkRegistry(): Promise<string[]> {
    const wanted = (ingress: KIngress | undefined): ingress is KIngress =>
      ingress !== undefined && isAsyncIngress(ingress) && !ingress.metadata.deletionTimestamp;
    await this.deps.asyncServices.prune((id) => {
      const [namespace = "", name = ""] = id.split("/", 2);
      return wanted(this.deps.ingresses.get(name, namespace));
    });
    const published = await this.deps.asyncServices.list();
    const behind: string[] = [];
    for (const ingress of this.deps.ingresses.list()) {
      if (!wanted(ingress)) continue;
      const settings = readAsyncSettings(ingress);
      // Invalid annotations publish nothing: the reconcile reports them and keeps what was there.
      if (!settings.ok) continue;
      const entry = published.get(registryId(ingress));
      if (entry === undefined || !sameService(entry, makeAsyncService(ingress, settings.settings))) {
        behind.push(keyOf(ingress));
      }
    }
    return behind;
  }

  /**
   * A KIngress whose class was changed away from async (the Service's annotation removed) is now the
   * real layer's own; a child left behind would route the same hosts a second time, so it goes.
   */
  private async removeChildren(ingress: KIngress): Promise<void> {
    const namespace = ingress.metadata.namespace ?? "";
    const name = ingress.metadata.name ?? "";
    const children: Array<
      [
        string,
        { metadata: KIngress["metadata"] } | undefined,
        (ns: string, n: string, uid: string) => Promise<void>,
      ]
    > = [
      [
        "KIngress",
        this.deps.ingresses.get(childIngressName(name), namespace),
        (ns, n, uid) => this.deps.client.deleteIngress(ns, n, uid),
      ],
      [
        "Service",
        this.deps.services.get(asyncServiceName(name), namespace),
        (ns, n, uid) => this.deps.client.deleteService(ns, n, uid),
      ],
    ];
    for (const [kind, child, remove] of children) {
      if (child === undefined || !isControlledBy(child, ingress)) continue;
      try {
        await remove(namespace, child.metadata.name ?? "", child.metadata.uid ?? "");
      } catch (err) {
        if (isNotFound(err)) continue;
        await this.deps.events.record(ingress, "Warning", "InternalError", (err as Error).message);
        throw err;
      }
      await this.deps.events.record(
        ingress,
        "Normal",
        "Deleted",
        `Deleted ${kind} ${namespace}/${child.metadata.name}: the KIngress is no longer of class ${ASYNC_INGRESS_CLASS}`,
      );
    }
  }

  /**
   * The parent is only as ready as the child: until the networking layer has reconciled the child's
   * current generation and marked it Ready, the parent says why it waits.
   */
  private propagateChildStatus(child: KIngress, status: StatusBuilder): void {
    status.copyLoadBalancers(child);
    const where = `KIngress ${keyOf(child)}`;
    const ready = getCondition(child.status, READY);
    const current = child.status?.observedGeneration === child.metadata.generation;
    if (!current || ready === undefined) {
      status.markLoadBalancer(
        "Unknown",
        "Reconciling",
        `waiting for the networking layer to reconcile ${where}`,
      );
    } else if (ready.status === "True") {
      status.markLoadBalancer("True");
    } else if (ready.status === "False") {
      status.markLoadBalancer(
        "False",
        ready.reason ?? "NotReady",
        `${where} is not ready: ${ready.message ?? "no message"}`,
      );
    } else {
      status.markLoadBalancer(
        "Unknown",
        ready.reason ?? "Reconciling",
        `waiting for ${where}: ${ready.message ?? "not ready yet"}`,
      );
    }
  }

  /**
   * Writes the status through the /status subresource. A conflict means someone wrote the parent since
   * the cache saw it: read it fresh and put the same status on it (the status depends only on the spec
   * we reconciled and the children, not on the fields that changed).
   */
  private async updateStatus(parent: KIngress, desired: IngressStatus): Promise<void> {
    const namespace = parent.metadata.namespace ?? "";
    const name = parent.metadata.name ?? "";
    let current = parent;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.deps.client.updateIngressStatus({ ...current, status: desired });
        return;
      } catch (err) {
        if (!isConflict(err) || attempt >= STATUS_UPDATE_ATTEMPTS) throw err;
        this.deps.logger.debug({ key: `${namespace}/${name}`, attempt }, "status update conflict, retrying");
      }
      current = await this.deps.client.getIngress(namespace, name);
      if (semanticEqual(current.status, desired)) return;
    }
  }
}
