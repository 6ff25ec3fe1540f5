/**
 * The reconciler's spec, one row per situation. Expected objects are spelled out here, not built with
 * the code under test.
 */

import type { KubeObject } from "../../test/kube/fake-api-server.js";
import { runTable, WRITTEN } from "../../test/kube/table.js";
import type { DeliveryPolicyOverrides } from "../lib/envelope.js";
import type { PublishedService } from "../lib/registry.js";
import type { BuilderConfig } from "./config.js";

const config: BuilderConfig = {
  ingressClassName: "kourier.ingress.networking.knative.dev",
  producerName: "async-producer",
  producerNamespace: "knative-serving",
};

const NS = "default";
const UID = "6a2b8f9e-0000-4000-8000-000000000001";
const API = "networking.internal.knative.dev/v1alpha1";
const ASYNC_CLASS = "async.ingress.networking.knative.dev";
const REAL_CLASS = "kourier.ingress.networking.knative.dev";
const PRODUCER_HOST = "async-producer.knative-serving.svc.cluster.local";
const MANAGED = { "app.kubernetes.io/managed-by": "knative-async-controller" };

// ---- what Knative Serving writes: the parent KIngress of a Service ---------------------------------

type Path = Record<string, unknown>;
type Rule = Record<string, unknown>;

/** A path to one revision, the way Knative Serving writes it. */
function appPath(revision: string, extra: Path = {}): Path {
  return {
    splits: [
      {
        serviceName: revision,
        serviceNamespace: NS,
        servicePort: 80,
        percent: 100,
        appendHeaders: { "Knative-Serving-Namespace": NS, "Knative-Serving-Revision": revision },
      },
    ],
    ...extra,
  };
}

function externalRule(name: string, paths: Path[]): Rule {
  return { hosts: [`${name}.${NS}.example.com`], visibility: "ExternalIP", http: { paths } };
}

function localRule(name: string, paths: Path[]): Rule {
  return {
    hosts: [`${name}.${NS}`, `${name}.${NS}.svc`, `${name}.${NS}.svc.cluster.local`],
    visibility: "ClusterLocal",
    http: { paths },
  };
}

interface ParentOptions {
  annotations?: Record<string, string>;
  rules?: Rule[];
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  generation?: number;
  deleting?: boolean;
}

function parent(name: string, o: ParentOptions = {}): KubeObject {
  return {
    apiVersion: API,
    kind: "Ingress",
    metadata: {
      name,
      namespace: NS,
      uid: UID,
      generation: o.generation ?? 1,
      labels: { "serving.knative.dev/route": name, "serving.knative.dev/routeNamespace": NS },
      annotations: { "networking.knative.dev/ingress.class": ASYNC_CLASS, ...(o.annotations ?? {}) },
      ...(o.deleting ? { deletionTimestamp: "2024-01-01T00:00:00Z", finalizers: ["example.com/hold"] } : {}),
    },
    spec: { rules: o.rules ?? [externalRule(name, [appPath(`${name}-00001`)])], ...(o.spec ?? {}) },
    ...(o.status ? { status: o.status } : {}),
  };
}

// ---- what the controller should write ----------------------------------------------------------------

/** The path to the producer, spelled out. */
function toProducer(name: string, extra: Path = {}): Path {
  return {
    rewriteHost: PRODUCER_HOST,
    appendHeaders: { "Async-Original-Host": `${name}.${NS}.svc.cluster.local` },
    splits: [{ serviceName: `${name}-async`, serviceNamespace: NS, servicePort: 80, percent: 100 }],
    ...extra,
  };
}

const PREFER_ASYNC = { headers: { Prefer: { exact: "respond-async" } } };
const preferSync = (headers: Record<string, unknown> = {}) => ({
  headers: { ...headers, Prefer: { exact: "respond-sync" } },
});

interface ChildOptions {
  childName?: string;
  annotations?: Record<string, string>;
  rules: Rule[];
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  generation?: number;
  owner?: string;
}

function child(name: string, o: ChildOptions): KubeObject {
  return {
    apiVersion: API,
    kind: "Ingress",
    metadata: {
      name: o.childName ?? `${name}-new`,
      namespace: NS,
      ...(o.generation ? { generation: o.generation } : {}),
      labels: { "serving.knative.dev/route": name, "serving.knative.dev/routeNamespace": NS, ...MANAGED },
      annotations: { ...(o.annotations ?? {}), "networking.knative.dev/ingress.class": REAL_CLASS },
      ownerReferences: [{ apiVersion: API, kind: "Ingress", name, uid: o.owner ?? UID, controller: true }],
    },
    spec: { rules: o.rules, ...(o.spec ?? {}) },
    ...(o.status ? { status: o.status } : {}),
  };
}

/** The usual child of `parent(name)` in conditional mode. */
function conditionalChild(name: string, o: Partial<ChildOptions> = {}): KubeObject {
  return child(name, {
    rules: [externalRule(name, [toProducer(name, PREFER_ASYNC), appPath(`${name}-00001`)])],
    ...o,
  });
}

function asyncService(
  name: string,
  o: { serviceName?: string; externalName?: string; owner?: string } = {},
): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: o.serviceName ?? `${name}-async`,
      namespace: NS,
      labels: { "serving.knative.dev/route": name, "serving.knative.dev/routeNamespace": NS, ...MANAGED },
      ownerReferences: [{ apiVersion: API, kind: "Ingress", name, uid: o.owner ?? UID, controller: true }],
    },
    spec: {
      type: "ExternalName",
      externalName: o.externalName ?? PRODUCER_HOST,
      ports: [{ name: "http", protocol: "TCP", port: 80, targetPort: 80 }],
    },
  };
}

// ---- the async services registry -------------------------------------------------------------------

/** What ioredis says about a command while its fail-fast connection is down. */
const REDIS_AWAY = "Stream isn't writeable and enableOfflineQueue options is false";

/** When an entry found in the registry was written (a reconcile that leaves it alone keeps this). */
const EARLIER = 1_700_000_000_000;

/** The registry entry of the service `name`, as the controller publishes it. */
function published(
  name: string,
  o: { policy?: DeliveryPolicyOverrides; updatedAt?: number } = {},
): Record<string, PublishedService> {
  return {
    [`${NS}/${name}`]: {
      hosts: [`${name}.${NS}.svc.cluster.local`],
      policy: o.policy ?? {},
      updatedAt: o.updatedAt ?? WRITTEN,
    },
  };
}
/** An entry already there (from an earlier reconcile). */
const publishedEarlier = (name: string, policy: DeliveryPolicyOverrides = {}) =>
  published(name, { policy, updatedAt: EARLIER });

// ---- statuses --------------------------------------------------------------------------------------

type Cond = [status: "True" | "False" | "Unknown", reason?: string, message?: string];

/** Seeded conditions carry a transition time as real ones do; the table ignores it when comparing. */
function cond(type: string, [status, reason, message]: Cond) {
  return {
    type,
    status,
    ...(reason ? { reason } : {}),
    ...(message ? { message } : {}),
    lastTransitionTime: "2024-01-01T00:00:00Z",
  };
}

/** A status with its three conditions (Ready is derived the same way Knative does). */
function status(lb: Cond, network: Cond, ready: Cond, extra: Record<string, unknown> = {}) {
  return {
    observedGeneration: 1,
    conditions: [cond("LoadBalancerReady", lb), cond("NetworkConfigured", network), cond("Ready", ready)],
    ...extra,
  };
}

const LB = {
  publicLoadBalancer: { ingress: [{ domainInternal: "kourier.kourier-system.svc.cluster.local" }] },
  privateLoadBalancer: { ingress: [{ domainInternal: "kourier-internal.kourier-system.svc.cluster.local" }] },
};

const waiting = (name: string): Cond => [
  "Unknown",
  "Reconciling",
  `waiting for the networking layer to reconcile KIngress ${NS}/${name}-new`,
];
const READY: Cond = ["True"];
const UNKNOWN: Cond = ["Unknown"];

const readyParentStatus = status(READY, READY, READY, LB);
const readyChildStatus = { observedGeneration: 1, conditions: [cond("Ready", READY)], ...LB };

/** A parent status update, as the table compares them. */
function withStatus(object: KubeObject, s: Record<string, unknown>): KubeObject {
  return { ...object, status: s };
}

const createdEvents = (name: string) => [
  `Normal Created Created KIngress ${NS}/${name}-new`,
  `Normal Created Created Service ${NS}/${name}-async`,
];

// ---- the table ---------------------------------------------------------------------------------------

runTable("IngressReconciler", config, [
  {
    name: "a KIngress of another class is ignored",
    objects: [
      {
        ...parent("hello"),
        metadata: {
          ...parent("hello").metadata,
          annotations: { "networking.knative.dev/ingress.class": REAL_CLASS },
        },
      },
    ],
    key: `${NS}/hello`,
  },
  {
    name: "a KIngress whose class changed away from async: its children are deleted (they would route its hosts twice)",
    objects: [
      {
        ...parent("hello"),
        metadata: {
          ...parent("hello").metadata,
          annotations: { "networking.knative.dev/ingress.class": REAL_CLASS },
        },
      },
      conditionalChild("hello", { generation: 1, status: readyChildStatus }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantRegistry: {},
    wantDeletes: [`ingresses ${NS}/hello-new`, `services ${NS}/hello-async`],
    wantEvents: [
      `Normal Deleted Deleted KIngress ${NS}/hello-new: the KIngress is no longer of class ${ASYNC_CLASS}`,
      `Normal Deleted Deleted Service ${NS}/hello-async: the KIngress is no longer of class ${ASYNC_CLASS}`,
    ],
  },
  {
    name: "a KIngress of another class never deletes same-named objects it does not own",
    objects: [
      {
        ...parent("hello"),
        metadata: {
          ...parent("hello").metadata,
          annotations: { "networking.knative.dev/ingress.class": REAL_CLASS },
        },
      },
      conditionalChild("hello", { owner: "someone-else" }),
      asyncService("hello", { owner: "someone-else" }),
    ],
    key: `${NS}/hello`,
  },
  {
    name: "a key that no longer exists (parent deleted): its registry entry goes; the garbage collector removes children",
    key: `${NS}/gone`,
    registry: { ...publishedEarlier("gone"), ...publishedEarlier("other") },
    wantRegistry: publishedEarlier("other"),
  },
  {
    name: "a parent being deleted: its registry entry goes, nothing else is touched",
    objects: [parent("hello", { deleting: true })],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantRegistry: {},
  },
  {
    name: "first reconcile, conditional mode (no annotation): creates the child KIngress and Service",
    objects: [
      parent("hello", {
        annotations: {
          "serving.knative.dev/creator": "alice",
          "kubectl.kubernetes.io/last-applied-configuration": "{}",
        },
      }),
    ],
    key: `${NS}/hello`,
    wantRegistry: published("hello"),
    wantCreates: [
      conditionalChild("hello", { annotations: { "serving.knative.dev/creator": "alice" } }),
      asyncService("hello"),
    ],
    wantStatusUpdates: [withStatus(parent("hello"), status(waiting("hello"), READY, waiting("hello")))],
    wantEvents: createdEvents("hello"),
  },
  {
    name: "conditional mode by annotation, several paths and both visibilities, TLS and httpOption carried over",
    objects: [
      parent("split", {
        annotations: { "async.knative.dev/mode": "conditional.async.knative.dev" },
        rules: [
          externalRule("split", [
            appPath("split-00002", { headers: { "Knative-Serving-Tag": { exact: "candidate" } } }),
            appPath("split-00001"),
          ]),
          localRule("split", [appPath("split-00001")]),
        ],
        spec: {
          tls: [{ hosts: ["split.default.example.com"], secretName: "route-cert", secretNamespace: NS }],
          httpOption: "Redirected",
        },
      }),
    ],
    key: `${NS}/split`,
    wantRegistry: published("split"),
    wantCreates: [
      child("split", {
        annotations: { "async.knative.dev/mode": "conditional.async.knative.dev" },
        rules: [
          externalRule("split", [
            toProducer("split", PREFER_ASYNC),
            appPath("split-00002", { headers: { "Knative-Serving-Tag": { exact: "candidate" } } }),
            appPath("split-00001"),
          ]),
          localRule("split", [toProducer("split", PREFER_ASYNC), appPath("split-00001")]),
        ],
        spec: {
          tls: [{ hosts: ["split.default.example.com"], secretName: "route-cert", secretNamespace: NS }],
          httpOption: "Redirected",
        },
      }),
      asyncService("split"),
    ],
    wantStatusUpdates: [withStatus(parent("split"), status(waiting("split"), READY, waiting("split")))],
    wantEvents: createdEvents("split"),
  },
  {
    name: "always mode, one path: the path answers only Prefer: respond-sync, then everything goes to the producer",
    objects: [parent("always", { annotations: { "async.knative.dev/mode": "always.async.knative.dev" } })],
    key: `${NS}/always`,
    wantRegistry: published("always"),
    wantCreates: [
      child("always", {
        annotations: { "async.knative.dev/mode": "always.async.knative.dev" },
        rules: [externalRule("always", [appPath("always-00001", preferSync()), toProducer("always")])],
      }),
      asyncService("always"),
    ],
    wantStatusUpdates: [withStatus(parent("always"), status(waiting("always"), READY, waiting("always")))],
    wantEvents: createdEvents("always"),
  },
  {
    name: "always mode, several paths and both visibilities: one producer path per rule, not one per path",
    objects: [
      parent("always", {
        annotations: { "async.knative.dev/mode": "always.async.knative.dev" },
        rules: [
          externalRule("always", [
            appPath("always-00002", { headers: { "Knative-Serving-Tag": { exact: "candidate" } } }),
            appPath("always-00001"),
          ]),
          localRule("always", [appPath("always-00001")]),
        ],
      }),
    ],
    key: `${NS}/always`,
    wantRegistry: published("always"),
    wantCreates: [
      child("always", {
        annotations: { "async.knative.dev/mode": "always.async.knative.dev" },
        rules: [
          externalRule("always", [
            appPath("always-00002", preferSync({ "Knative-Serving-Tag": { exact: "candidate" } })),
            appPath("always-00001", preferSync()),
            toProducer("always"),
          ]),
          localRule("always", [appPath("always-00001", preferSync()), toProducer("always")]),
        ],
      }),
      asyncService("always"),
    ],
    wantStatusUpdates: [withStatus(parent("always"), status(waiting("always"), READY, waiting("always")))],
    wantEvents: createdEvents("always"),
  },
  {
    name: "a delivery policy set by annotations is published in the registry, not on the route (a client could send a header)",
    objects: [
      parent("policy", {
        annotations: { "async.knative.dev/max-attempts": "3", "async.knative.dev/min-backoff": "500ms" },
      }),
    ],
    key: `${NS}/policy`,
    wantRegistry: published("policy", { policy: { maxAttempts: 3, minBackoffMs: 500 } }),
    wantCreates: [
      child("policy", {
        annotations: { "async.knative.dev/max-attempts": "3", "async.knative.dev/min-backoff": "500ms" },
        rules: [externalRule("policy", [toProducer("policy", PREFER_ASYNC), appPath("policy-00001")])],
      }),
      asyncService("policy"),
    ],
    wantStatusUpdates: [withStatus(parent("policy"), status(waiting("policy"), READY, waiting("policy")))],
    wantEvents: createdEvents("policy"),
  },
  {
    name: "a 63-character name: children follow Knative's child-name rule (cut + md5), and the route points at the cut name",
    objects: [parent("a-service-with-a-very-long-name-that-knative-accepts-up-to-63ch")],
    key: `${NS}/a-service-with-a-very-long-name-that-knative-accepts-up-to-63ch`,
    wantRegistry: published("a-service-with-a-very-long-name-that-knative-accepts-up-to-63ch"),
    wantCreates: [
      child("a-service-with-a-very-long-name-that-knative-accepts-up-to-63ch", {
        childName: "a-service-with-a-very-long-d983d3abf5bc3784947e64f9013b33de-new",
        rules: [
          externalRule("a-service-with-a-very-long-name-that-knative-accepts-up-to-63ch", [
            {
              ...toProducer("a-service-with-a-very-long-name-that-knative-accepts-up-to-63ch", PREFER_ASYNC),
              splits: [
                {
                  serviceName: "a-service-with-a-very-lond983d3abf5bc3784947e64f9013b33de-async",
                  serviceNamespace: NS,
                  servicePort: 80,
                  percent: 100,
                },
              ],
            },
            appPath("a-service-with-a-very-long-name-that-knative-accepts-up-to-63ch-00001"),
          ]),
        ],
      }),
      asyncService("a-service-with-a-very-long-name-that-knative-accepts-up-to-63ch", {
        serviceName: "a-service-with-a-very-lond983d3abf5bc3784947e64f9013b33de-async",
      }),
    ],
    wantStatusUpdates: [
      withStatus(
        parent("a-service-with-a-very-long-name-that-knative-accepts-up-to-63ch"),
        status(
          [
            "Unknown",
            "Reconciling",
            `waiting for the networking layer to reconcile KIngress ${NS}/a-service-with-a-very-long-d983d3abf5bc3784947e64f9013b33de-new`,
          ],
          READY,
          [
            "Unknown",
            "Reconciling",
            `waiting for the networking layer to reconcile KIngress ${NS}/a-service-with-a-very-long-d983d3abf5bc3784947e64f9013b33de-new`,
          ],
        ),
      ),
    ],
    wantEvents: [
      `Normal Created Created KIngress ${NS}/a-service-with-a-very-long-d983d3abf5bc3784947e64f9013b33de-new`,
      `Normal Created Created Service ${NS}/a-service-with-a-very-lond983d3abf5bc3784947e64f9013b33de-async`,
    ],
  },
  {
    name: "an invalid mode annotation: Ready=False naming the annotation; the working children and the registry entry are not touched",
    objects: [
      parent("hello", { annotations: { "async.knative.dev/mode": "sometimes" }, status: readyParentStatus }),
      conditionalChild("hello", { generation: 1, status: readyChildStatus }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantStatusUpdates: [
      withStatus(
        parent("hello"),
        status(
          READY,
          [
            "False",
            "InvalidAnnotation",
            'annotation async.knative.dev/mode is "sometimes"; use conditional.async.knative.dev (the default) or always.async.knative.dev',
          ],
          [
            "False",
            "InvalidAnnotation",
            'annotation async.knative.dev/mode is "sometimes"; use conditional.async.knative.dev (the default) or always.async.knative.dev',
          ],
          LB,
        ),
      ),
    ],
    wantEvents: [
      'Warning InvalidAnnotation annotation async.knative.dev/mode is "sometimes"; use conditional.async.knative.dev (the default) or always.async.knative.dev',
    ],
  },
  {
    name: "an invalid annotation already reported: nothing is written again (no spinning, no repeated events)",
    objects: [
      parent("hello", {
        annotations: { "async.knative.dev/mode": "sometimes" },
        status: status(
          UNKNOWN,
          [
            "False",
            "InvalidAnnotation",
            'annotation async.knative.dev/mode is "sometimes"; use conditional.async.knative.dev (the default) or always.async.knative.dev',
          ],
          [
            "False",
            "InvalidAnnotation",
            'annotation async.knative.dev/mode is "sometimes"; use conditional.async.knative.dev (the default) or always.async.knative.dev',
          ],
        ),
      }),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
  },
  {
    name: "an invalid policy annotation is reported like a bad mode, naming the annotation; nothing is created",
    objects: [parent("hello", { annotations: { "async.knative.dev/max-attempts": "zero" } })],
    key: `${NS}/hello`,
    wantStatusUpdates: [
      withStatus(
        parent("hello"),
        status(
          UNKNOWN,
          [
            "False",
            "InvalidAnnotation",
            'annotation async.knative.dev/max-attempts is "zero": must be a whole number of at least 1',
          ],
          [
            "False",
            "InvalidAnnotation",
            'annotation async.knative.dev/max-attempts is "zero": must be a whole number of at least 1',
          ],
        ),
      ),
    ],
    wantEvents: [
      'Warning InvalidAnnotation annotation async.knative.dev/max-attempts is "zero": must be a whole number of at least 1',
    ],
  },
  {
    name: "a policy annotation changed: the registry entry is rewritten (queued requests get it too), the route stays",
    objects: [
      parent("hello", { annotations: { "async.knative.dev/max-attempts": "5" }, status: readyParentStatus }),
      conditionalChild("hello", {
        annotations: { "async.knative.dev/max-attempts": "5" },
        generation: 1,
        status: readyChildStatus,
      }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello", { maxAttempts: 3 }),
    wantRegistry: published("hello", { policy: { maxAttempts: 5 } }),
  },
  {
    name: "the registry cannot be reached: Warning event, retried; children and status untouched",
    objects: [
      parent("hello", { status: readyParentStatus }),
      conditionalChild("hello", { generation: 1, status: readyChildStatus }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registryDown: true,
    wantEvents: [`Warning InternalError ${REDIS_AWAY}`],
    wantErr: new RegExp(REDIS_AWAY),
  },
  {
    name: "the registry cannot be reached when the parent is gone: retried, so the entry is not left behind",
    key: `${NS}/gone`,
    registryDown: true,
    wantErr: new RegExp(REDIS_AWAY),
  },
  {
    name: "child not ready yet: the parent waits (Unknown), with the child's reason",
    objects: [
      parent("hello", { status: status(waiting("hello"), READY, waiting("hello")) }),
      conditionalChild("hello", {
        generation: 1,
        status: {
          observedGeneration: 1,
          conditions: [cond("Ready", ["Unknown", "NotReconciled", "Ingress reconciliation is in progress"])],
        },
      }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantStatusUpdates: [
      withStatus(
        parent("hello"),
        status(
          [
            "Unknown",
            "NotReconciled",
            `waiting for KIngress ${NS}/hello-new: Ingress reconciliation is in progress`,
          ],
          READY,
          [
            "Unknown",
            "NotReconciled",
            `waiting for KIngress ${NS}/hello-new: Ingress reconciliation is in progress`,
          ],
        ),
      ),
    ],
  },
  {
    name: "child ready: the parent becomes Ready with the child's load balancers",
    objects: [
      parent("hello", { status: status(waiting("hello"), READY, waiting("hello")) }),
      conditionalChild("hello", { generation: 1, status: readyChildStatus }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantStatusUpdates: [withStatus(parent("hello"), readyParentStatus)],
  },
  {
    name: "steady state (a resync): everything as wanted, nothing is written",
    objects: [
      parent("hello", { status: readyParentStatus }),
      conditionalChild("hello", { generation: 1, status: readyChildStatus }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
  },
  {
    name: "child ready for an older generation: the parent waits until the networking layer catches up",
    objects: [
      parent("hello", { status: readyParentStatus }),
      conditionalChild("hello", { generation: 2, status: readyChildStatus }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantStatusUpdates: [withStatus(parent("hello"), status(waiting("hello"), READY, waiting("hello"), LB))],
  },
  {
    name: "child failed: the parent is not Ready, with the child's reason and message",
    objects: [
      parent("hello", { status: readyParentStatus }),
      conditionalChild("hello", {
        generation: 1,
        status: {
          observedGeneration: 1,
          conditions: [cond("Ready", ["False", "ReconcileFailed", "envoy said no"])],
        },
      }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantStatusUpdates: [
      withStatus(
        parent("hello"),
        status(["False", "ReconcileFailed", `KIngress ${NS}/hello-new is not ready: envoy said no`], READY, [
          "False",
          "ReconcileFailed",
          `KIngress ${NS}/hello-new is not ready: envoy said no`,
        ]),
      ),
    ],
  },
  {
    name: "child KIngress deleted by hand: it is created again",
    objects: [parent("hello", { status: readyParentStatus }), asyncService("hello")],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantCreates: [conditionalChild("hello")],
    wantStatusUpdates: [withStatus(parent("hello"), status(waiting("hello"), READY, waiting("hello")))],
    wantEvents: [`Normal Created Created KIngress ${NS}/hello-new`],
  },
  {
    name: "child KIngress edited by hand: it is put back (labels and annotations too); finalizers of the layer are kept",
    objects: [
      parent("hello", { status: readyParentStatus }),
      (() => {
        const edited = conditionalChild("hello", { generation: 1, status: readyChildStatus });
        edited.spec = { rules: [externalRule("hello", [appPath("hello-00001")])] };
        edited.metadata.labels = { hand: "made" };
        edited.metadata.finalizers = ["ingresses.networking.internal.knative.dev"];
        return edited;
      })(),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantUpdates: [
      (() => {
        const fixed = conditionalChild("hello", { status: readyChildStatus });
        fixed.metadata.finalizers = ["ingresses.networking.internal.knative.dev"];
        return fixed;
      })(),
    ],
    wantStatusUpdates: [withStatus(parent("hello"), status(waiting("hello"), READY, waiting("hello"), LB))],
    wantEvents: [`Normal Updated Updated KIngress ${NS}/hello-new`],
  },
  {
    name: "child Service edited by hand: it is put back",
    objects: [
      parent("hello", { status: readyParentStatus }),
      conditionalChild("hello", { generation: 1, status: readyChildStatus }),
      asyncService("hello", { externalName: "elsewhere.example.com" }),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    wantUpdates: [asyncService("hello")],
    wantEvents: [`Normal Updated Updated Service ${NS}/hello-async`],
  },
  {
    name: "a child name taken by a KIngress this parent does not own: never overwritten, reported as NotOwned, not published",
    objects: [
      parent("hello"),
      {
        ...conditionalChild("hello"),
        metadata: { ...conditionalChild("hello").metadata, ownerReferences: [] },
      },
    ],
    key: `${NS}/hello`,
    wantStatusUpdates: [
      withStatus(
        parent("hello"),
        status(
          UNKNOWN,
          [
            "False",
            "NotOwned",
            `KIngress ${NS}/hello-new already exists and is not owned by KIngress ${NS}/hello; delete or rename it`,
          ],
          [
            "False",
            "NotOwned",
            `KIngress ${NS}/hello-new already exists and is not owned by KIngress ${NS}/hello; delete or rename it`,
          ],
        ),
      ),
    ],
    wantEvents: [
      `Warning NotOwned KIngress ${NS}/hello-new already exists and is not owned by KIngress ${NS}/hello; delete or rename it`,
    ],
  },
  {
    name: "first reconcile (failure creating the child KIngress): conditions initialized, Warning event, retried, not published yet",
    objects: [parent("hello")],
    key: `${NS}/hello`,
    failures: [{ verb: "create", resource: "ingresses", message: "inducing failure for create ingresses" }],
    wantCreates: [conditionalChild("hello")],
    wantStatusUpdates: [withStatus(parent("hello"), status(UNKNOWN, UNKNOWN, UNKNOWN))],
    wantEvents: ["Warning InternalError create ingresses: inducing failure for create ingresses"],
    wantErr: /create ingresses: inducing failure/,
  },
  {
    name: "failure updating a child Service: Warning event, retried, the parent's status untouched",
    objects: [
      parent("hello", { status: readyParentStatus }),
      conditionalChild("hello", { generation: 1, status: readyChildStatus }),
      asyncService("hello", { externalName: "elsewhere.example.com" }),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    failures: [{ verb: "update", resource: "services", message: "inducing failure for update services" }],
    wantUpdates: [asyncService("hello")],
    wantEvents: ["Warning InternalError update services: inducing failure for update services"],
    wantErr: /update services: inducing failure/,
  },
  {
    name: "conflict on the status update: read fresh and written again",
    objects: [
      parent("hello", { status: status(waiting("hello"), READY, waiting("hello")) }),
      conditionalChild("hello", { generation: 1, status: readyChildStatus }),
      asyncService("hello"),
    ],
    key: `${NS}/hello`,
    registry: publishedEarlier("hello"),
    failures: [{ verb: "update", resource: "ingresses", subresource: "status", code: 409 }],
    wantStatusUpdates: [
      withStatus(parent("hello"), readyParentStatus),
      withStatus(parent("hello"), readyParentStatus),
    ],
    wantGets: [`get ingresses ${NS}/hello`],
  },
]);
