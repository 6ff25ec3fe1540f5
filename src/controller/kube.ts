/**
 * The controller's only door to the Kubernetes API, on @kubernetes/client-node. Every method goes
 * through `call(API_CALLS.x, ...)`, so what the code can do and what RBAC grants are one list (rbac.ts).
 * Failures become AsyncError(ASYNC_ERR_KUBE_API) carrying the HTTP status and the API's reason
 * (NotFound, Conflict, AlreadyExists, ...), which is all the reconciler decides on.
 */
import {
  CoordinationV1Api,
  CoreV1Api,
  type CoreV1Event,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesListObject,
  ListWatch,
  type V1Lease,
  type V1Service,
  Watch,
} from "@kubernetes/client-node";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { INGRESSES, MANAGED_SELECTOR, NETWORKING_GROUP, NETWORKING_VERSION } from "./names.js";
import { API_CALLS, type ApiCall } from "./rbac.js";
import type { CoreService, KIngress } from "./types.js";

export class KubeApiError extends AsyncError {
  /** HTTP status of the failed call; 0 when the server could not be reached. */
  readonly status: number;
  /** The API's reason (`NotFound`, `Conflict`, `AlreadyExists`, `Invalid`, ...), when it gave one. */
  readonly reason: string | undefined;

  constructor(call: ApiCall, status: number, reason: string | undefined, message: string, cause: unknown) {
    const what = `${call.verb} ${call.resource}`;
    super(ErrorCode.KubeApi, `${what}: ${message}`, { cause });
    this.name = "KubeApiError";
    this.status = status;
    this.reason = reason;
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof KubeApiError && err.status === 404;
/** 409 because the object changed since it was read (resourceVersion mismatch). */
export const isConflict = (err: unknown): boolean =>
  err instanceof KubeApiError && err.status === 409 && err.reason !== "AlreadyExists";
export const isAlreadyExists = (err: unknown): boolean =>
  err instanceof KubeApiError && err.status === 409 && err.reason === "AlreadyExists";

/** Turns whatever the client threw (ApiException with a JSON Status body, or a network error) into one error. */
function toKubeError(call: ApiCall, err: unknown): KubeApiError {
  const e = err as { code?: unknown; body?: unknown; message?: string };
  const status = typeof e.code === "number" ? e.code : 0;
  let reason: string | undefined;
  let message = status === 0 ? (e.message ?? String(err)) : `HTTP ${status}`;
  if (typeof e.body === "string" && e.body.length > 0) {
    try {
      const body = JSON.parse(e.body) as { reason?: string; message?: string };
      reason = body.reason;
      if (body.message) message = body.message;
    } catch {
      message = `HTTP ${status}: ${e.body.slice(0, 200)}`;
    }
  }
  return new KubeApiError(call, status, reason, message, err);
}

/** JSON as the API server sent it: the typed client turns timestamps into Date objects, we keep strings. */
function plain<T>(value: unknown): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

export type KubeCallObserver = (call: ApiCall, outcome: "ok" | "error", status: number) => void;

export class KubeClient {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly coordination: CoordinationV1Api;

  constructor(
    readonly kubeConfig: KubeConfig,
    private readonly observe: KubeCallObserver = () => {},
  ) {
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.coordination = kubeConfig.makeApiClient(CoordinationV1Api);
  }

  private async call<T>(call: ApiCall, fn: () => Promise<T>): Promise<T> {
    try {
      const result = await fn();
      this.observe(call, "ok", 200);
      return result;
    } catch (err) {
      const error = toKubeError(call, err);
      this.observe(call, "error", error.status);
      throw error;
    }
  }

  private ingressPath(namespace: string) {
    return { group: NETWORKING_GROUP, version: NETWORKING_VERSION, plural: INGRESSES, namespace };
  }

  // ---- KIngresses (networking.internal.knative.dev/v1alpha1) ----

  listIngresses(): Promise<KubernetesListObject<KIngress>> {
    return this.call(API_CALLS.listIngresses, () =>
      this.custom.listCustomObjectForAllNamespaces({
        group: NETWORKING_GROUP,
        version: NETWORKING_VERSION,
        plural: INGRESSES,
      }),
    );
  }

  getIngress(namespace: string, name: string): Promise<KIngress> {
    return this.call(API_CALLS.getIngress, () =>
      this.custom.getNamespacedCustomObject({ ...this.ingressPath(namespace), name }),
    );
  }

  createIngress(ingress: KIngress): Promise<KIngress> {
    return this.call(API_CALLS.createIngress, () =>
      this.custom.createNamespacedCustomObject({
        ...this.ingressPath(ingress.metadata.namespace ?? ""),
        body: ingress,
      }),
    );
  }

  /** A full replace; `ingress.metadata.resourceVersion` must be the one read, or the server answers 409. */
  updateIngress(ingress: KIngress): Promise<KIngress> {
    return this.call(API_CALLS.updateIngress, () =>
      this.custom.replaceNamespacedCustomObject({
        ...this.ingressPath(ingress.metadata.namespace ?? ""),
        name: ingress.metadata.name ?? "",
        body: ingress,
      }),
    );
  }

  updateIngressStatus(ingress: KIngress): Promise<KIngress> {
    return this.call(API_CALLS.updateIngressStatus, () =>
      this.custom.replaceNamespacedCustomObjectStatus({
        ...this.ingressPath(ingress.metadata.namespace ?? ""),
        name: ingress.metadata.name ?? "",
        body: ingress,
      }),
    );
  }

  /** Deletes only the object with this uid: one recreated under the same name meanwhile is left alone. */
  async deleteIngress(namespace: string, name: string, uid: string): Promise<void> {
    await this.call(API_CALLS.deleteIngress, () =>
      this.custom.deleteNamespacedCustomObject({
        ...this.ingressPath(namespace),
        name,
        body: { preconditions: { uid } },
      }),
    );
  }

  // ---- Services (core/v1) ----

  async listServices(labelSelector: string): Promise<KubernetesListObject<CoreService>> {
    const list = await this.call(API_CALLS.listServices, () =>
      this.core.listServiceForAllNamespaces({ labelSelector }),
    );
    return plain(list);
  }

  async getService(namespace: string, name: string): Promise<CoreService> {
    return plain(
      await this.call(API_CALLS.getService, () => this.core.readNamespacedService({ namespace, name })),
    );
  }

  async createService(service: CoreService): Promise<CoreService> {
    const created = await this.call(API_CALLS.createService, () =>
      this.core.createNamespacedService({
        namespace: service.metadata.namespace ?? "",
        body: service as V1Service,
      }),
    );
    return plain(created);
  }

  async updateService(service: CoreService): Promise<CoreService> {
    const updated = await this.call(API_CALLS.updateService, () =>
      this.core.replaceNamespacedService({
        namespace: service.metadata.namespace ?? "",
        name: service.metadata.name ?? "",
        body: service as V1Service,
      }),
    );
    return plain(updated);
  }

  async deleteService(namespace: string, name: string, uid: string): Promise<void> {
    await this.call(API_CALLS.deleteService, () =>
      this.core.deleteNamespacedService({ namespace, name, body: { preconditions: { uid } } }),
    );
  }

  // ---- Events (core/v1) ----

  async createEvent(event: CoreV1Event): Promise<void> {
    await this.call(API_CALLS.createEvent, () =>
      this.core.createNamespacedEvent({ namespace: event.metadata.namespace ?? "", body: event }),
    );
  }

  // ---- Leases (coordination.k8s.io/v1) ----

  getLease(namespace: string, name: string): Promise<V1Lease> {
    return this.call(API_CALLS.getLease, () => this.coordination.readNamespacedLease({ namespace, name }));
  }

  createLease(lease: V1Lease): Promise<V1Lease> {
    return this.call(API_CALLS.createLease, () =>
      this.coordination.createNamespacedLease({ namespace: lease.metadata?.namespace ?? "", body: lease }),
    );
  }

  updateLease(lease: V1Lease): Promise<V1Lease> {
    return this.call(API_CALLS.updateLease, () =>
      this.coordination.replaceNamespacedLease({
        namespace: lease.metadata?.namespace ?? "",
        name: lease.metadata?.name ?? "",
        body: lease,
      }),
    );
  }

  // ---- Informers (list + watch) ----

  /** Every KIngress in the cluster: parents (async class) and the children they own. Not started. */
  ingressInformer(): ListWatch<KIngress> {
    return new ListWatch(
      `/apis/${NETWORKING_GROUP}/${NETWORKING_VERSION}/${INGRESSES}`,
      new Watch(this.kubeConfig),
      () => this.listIngresses(),
      false,
    );
  }

  /** Only the Services this controller made (by label), not every Service of the cluster. Not started. */
  serviceInformer(): ListWatch<CoreService> {
    return new ListWatch(
      "/api/v1/services",
      new Watch(this.kubeConfig),
      () => this.listServices(MANAGED_SELECTOR),
      false,
      MANAGED_SELECTOR,
    );
  }
}
