/** Metadata questions and answers: which KIngresses are ours, owner references, labels, keys. */
import type { V1OwnerReference } from "@kubernetes/client-node";
import {
  ASYNC_INGRESS_CLASS,
  INGRESS_API_VERSION,
  INGRESS_CLASS_ANNOTATION,
  INGRESS_KIND,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
} from "../names.js";
import type { KIngress, ObjectMeta } from "../types.js";

/**
 * The controller reference that makes the garbage collector delete a child with its parent.
 * blockOwnerDeletion is left unset: setting it needs `update` on `ingresses/finalizers` (under the
 * OwnerReferencesPermissionEnforcement admission plugin) and only matters for foreground deletion.
 */
export function ownerReferenceFor(parent: KIngress): V1OwnerReference {
  return {
    apiVersion: INGRESS_API_VERSION,
    kind: INGRESS_KIND,
    name: parent.metadata.name ?? "",
    uid: parent.metadata.uid ?? "",
    controller: true,
  };
}

/** The parent's labels (Knative's route labels) plus the label the controller's watches select on. */
export function childLabels(parent: KIngress): Record<string, string> {
  return { ...(parent.metadata.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY_VALUE };
}

/** The controller reference of an object, if any. */
export function controllerOf(meta: ObjectMeta): V1OwnerReference | undefined {
  return meta.ownerReferences?.find((ref) => ref.controller === true);
}

/** True when `child` is controlled by this very parent (same uid, not just the same name). */
export function isControlledBy(child: { metadata: ObjectMeta }, parent: KIngress): boolean {
  const ref = controllerOf(child.metadata);
  return (
    ref !== undefined &&
    ref.kind === INGRESS_KIND &&
    ref.apiVersion === INGRESS_API_VERSION &&
    ref.uid === parent.metadata.uid
  );
}

/** True for a KIngress of the async class: the only ones this controller reconciles. */
export function isAsyncIngress(ingress: KIngress): boolean {
  return ingress.metadata.annotations?.[INGRESS_CLASS_ANNOTATION] === ASYNC_INGRESS_CLASS;
}

/** The work-queue key of an object: `namespace/name`. */
export function keyOf(object: { metadata?: { namespace?: string; name?: string } }): string {
  return `${object.metadata?.namespace ?? ""}/${object.metadata?.name ?? ""}`;
}
