/**
 * Every name the controller generates or matches on, in one place: child resource names, annotation and
 * label keys, ingress classes, header names and hosts. Builders and the reconciler never spell a name
 * themselves, so a rename is one edit here.
 */
import { createHash } from "node:crypto";
import { canonical, ORIGINAL_HOST, PREFER, RESPOND_ASYNC, RESPOND_SYNC } from "../lib/wire/headers.js";

// ---- Kubernetes names ------------------------------------------------------------------------------

/** The longest DNS-1123 label, which is the limit on Service names. */
const LONGEST = 63;
const MD5_HEX_LENGTH = 32;
/** How much of the parent survives when the hash has to be spliced in. */
const HEAD = LONGEST - MD5_HEX_LENGTH;

/**
 * Knative's `kmeta.ChildName`: `parent + suffix`, unless that is longer than 63 characters; then the
 * parent is cut and the hex MD5 of the whole parent name spliced in, so that two long parents sharing a
 * prefix still get different children. When the suffix alone leaves no room for the hash, the whole
 * `parent + suffix` is hashed instead. Matches knative.dev/pkg/kmeta/names.go byte for byte (tested
 * against its own examples), so names agree with what Knative's own tools expect.
 */
export function childName(parent: string, suffix: string): string {
  if (parent.length <= LONGEST - suffix.length) return parent + suffix;
  if (HEAD - suffix.length <= 0) {
    const hash = md5Hex(parent + suffix);
    let name = (parent.length > HEAD ? parent.slice(0, HEAD) : parent) + hash;
    const room = LONGEST - name.length;
    if (room > 0) name += suffix.slice(0, room);
    return trimToAlphanumericEnd(name);
  }
  return parent.slice(0, HEAD - suffix.length) + md5Hex(parent) + suffix;
}

function md5Hex(text: string): string {
  return createHash("md5").update(text).digest("hex");
}

/** A name must end in an alphanumeric character; cutting may have left a `-` or `.` at the end. */
function trimToAlphanumericEnd(name: string): string {
  let end = name.length;
  while (end > 0 && !/[a-zA-Z0-9]/.test(name[end - 1] as string)) end--;
  return name.slice(0, end);
}

/** The original's suffix for the child KIngress (`<name>-new`), kept so existing clusters keep working. */
const CHILD_INGRESS_SUFFIX = "-new";
/** The ExternalName Service the async route points to (`<name>-async`). */
const ASYNC_SERVICE_SUFFIX = "-async";

export const childIngressName = (parentName: string): string => childName(parentName, CHILD_INGRESS_SUFFIX);
export const asyncServiceName = (parentName: string): string => childName(parentName, ASYNC_SERVICE_SUFFIX);

/** The cluster-local host of a Service. */
export const clusterLocalHost = (name: string, namespace: string): string =>
  `${name}.${namespace}.svc.cluster.local`;

// ---- API groups, classes, annotations, labels -----------------------------------------------------

export const NETWORKING_GROUP = "networking.internal.knative.dev";
export const NETWORKING_VERSION = "v1alpha1";
export const INGRESS_API_VERSION = `${NETWORKING_GROUP}/${NETWORKING_VERSION}`;
export const INGRESS_KIND = "Ingress";
export const INGRESSES = "ingresses";

/** Knative Serving copies this annotation from the Service (or config-network) onto the KIngress. */
export const INGRESS_CLASS_ANNOTATION = "networking.knative.dev/ingress.class";
/** The class this controller owns. */
export const ASYNC_INGRESS_CLASS = "async.ingress.networking.knative.dev";

export const KNOWN_INGRESS_CLASSES = {
  istio: "istio.ingress.networking.knative.dev",
  kourier: "kourier.ingress.networking.knative.dev",
  contour: "contour.ingress.networking.knative.dev",
} as const;

export const MODE_ANNOTATION = "async.knative.dev/mode";
export const MODE_CONDITIONAL = "conditional.async.knative.dev";
export const MODE_ALWAYS = "always.async.knative.dev";

/** kubectl's copy of the applied object: it describes the parent, never the child. */
export const LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration";

/** Put on both children, so the Service informer only watches what this controller made. */
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY_VALUE = "knative-async-controller";
export const MANAGED_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}`;

// ---- HTTP routing ----------------------------------------------------------------------------------

// Header names (src/lib/wire/headers.ts) in the Go spelling the KIngress has always carried.
export const PREFER_HEADER = canonical(PREFER);
export const PREFER_ASYNC = RESPOND_ASYNC;
export const PREFER_SYNC = RESPOND_SYNC;
/** Where the producer finds the service the request was meant for. */
export const ORIGINAL_HOST_HEADER = canonical(ORIGINAL_HOST);
/** The async Service's port; the producer is reached on plain HTTP port 80 through the gateway. */
export const ASYNC_SERVICE_PORT = 80;
export const ASYNC_SERVICE_PORT_NAME = "http";

// ---- Leader election and events ----------------------------------------------------------------------

export const DEFAULT_LEASE_NAME = "knative-async-controller";
/** `source.component` of the events the controller records (what `kubectl describe` shows as From). */
export const EVENT_SOURCE = "async-controller";
