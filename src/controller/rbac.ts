/**
 * Every Kubernetes API call the controller makes, declared once. The client (`kube.ts`) can only call the
 * API through an entry of this table, the RBAC rules in config/ are checked against `rbacRules()` by the
 * manifests test, and the integration test checks that every request the fake API server saw is one of
 * these. So the ClusterRole grants exactly what the code uses, no more and no less.
 */
import { INGRESSES, NETWORKING_GROUP } from "./names.js";

export type Verb = "get" | "list" | "watch" | "create" | "update" | "patch" | "delete";

/** `cluster`: any namespace (a ClusterRole); `system`: only SYSTEM_NAMESPACE (a Role there). */
export type Scope = "cluster" | "system";

export interface ApiCall {
  readonly apiGroup: string;
  /** With the subresource, as RBAC names it: `ingresses/status`. */
  readonly resource: string;
  readonly verb: Verb;
  readonly scope: Scope;
}

const ingress = (verb: Verb, resource = INGRESSES): ApiCall => ({
  apiGroup: NETWORKING_GROUP,
  resource,
  verb,
  scope: "cluster",
});
const service = (verb: Verb): ApiCall => ({ apiGroup: "", resource: "services", verb, scope: "cluster" });
const lease = (verb: Verb): ApiCall => ({
  apiGroup: "coordination.k8s.io",
  resource: "leases",
  verb,
  scope: "system",
});

export const API_CALLS = {
  listIngresses: ingress("list"),
  watchIngresses: ingress("watch"),
  /** Fresh read after a conflict on a status update. */
  getIngress: ingress("get"),
  createIngress: ingress("create"),
  updateIngress: ingress("update"),
  updateIngressStatus: ingress("update", `${INGRESSES}/status`),
  /** Children of a KIngress that is no longer of the async class (the garbage collector handles deletion). */
  deleteIngress: ingress("delete"),
  listServices: service("list"),
  watchServices: service("watch"),
  /** Fresh read when a create finds the Service already there (the cache had not seen it yet). */
  getService: service("get"),
  createService: service("create"),
  updateService: service("update"),
  deleteService: service("delete"),
  /** Events go to the namespace of the object they are about. */
  createEvent: { apiGroup: "", resource: "events", verb: "create", scope: "cluster" },
  getLease: lease("get"),
  createLease: lease("create"),
  updateLease: lease("update"),
} as const satisfies Record<string, ApiCall>;

export type ApiCallName = keyof typeof API_CALLS;

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/** The RBAC rules that allow exactly the calls of one scope: one rule per API group and resource. */
export function rbacRules(scope: Scope): PolicyRule[] {
  const verbs = new Map<string, Set<string>>();
  for (const call of Object.values(API_CALLS) as ApiCall[]) {
    if (call.scope !== scope) continue;
    const key = `${call.apiGroup}\u0000${call.resource}`;
    const set = verbs.get(key) ?? new Set<string>();
    set.add(call.verb);
    verbs.set(key, set);
  }
  return [...verbs.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([key, set]) => {
      const [apiGroup, resource] = key.split("\u0000") as [string, string];
      return { apiGroups: [apiGroup], resources: [resource], verbs: [...set].sort() };
    });
}

/** True when some declared call allows `verb` on `resource` of `apiGroup`. */
export function isAllowed(apiGroup: string, resource: string, verb: string): boolean {
  return (Object.values(API_CALLS) as ApiCall[]).some(
    (c) => c.apiGroup === apiGroup && c.resource === resource && c.verb === verb,
  );
}
