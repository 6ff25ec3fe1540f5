/**
 * The child KIngress: the parent's routing, rewritten so that async requests reach the producer, handed
 * to the real networking layer (Istio, Kourier or Contour) through its ingress class.
 *
 *   conditional mode: per rule, first a path matching `Prefer: respond-async` that goes to the producer,
 *                     then the parent's paths unchanged;
 *   always mode:      per rule, the parent's paths each with an added `Prefer: respond-sync` match, then
 *                     one default path to the producer (the original added one per path, duplicating
 *                     the rule when a rule had several paths).
 *
 * The path to the producer targets the `<name>-async` ExternalName Service on port 80, rewrites the Host
 * to the producer's cluster-local host (the gateway routes on it), and appends `Async-Original-Host` so
 * the producer knows where the request was going. The delivery policy does not travel on the route (a
 * client could send the same header): it is in the async services registry (./registry.ts).
 */
import type { BuilderConfig } from "../config.js";
import {
  ASYNC_SERVICE_PORT,
  asyncServiceName,
  childIngressName,
  clusterLocalHost,
  INGRESS_API_VERSION,
  INGRESS_CLASS_ANNOTATION,
  INGRESS_KIND,
  LAST_APPLIED_ANNOTATION,
  ORIGINAL_HOST_HEADER,
  PREFER_ASYNC,
  PREFER_HEADER,
  PREFER_SYNC,
} from "../names.js";
import type { HTTPIngressPath, IngressRule, IngressSpec, KIngress } from "../types.js";
import { childLabels, ownerReferenceFor } from "./meta.js";
import { type AsyncSettings, requireAsyncSettings } from "./settings.js";

/** The producer's cluster-local host: where async requests are sent. */
export function producerHost(config: BuilderConfig): string {
  return clusterLocalHost(config.producerName, config.producerNamespace);
}

/**
 * The child KIngress for `parent`. Pure: same input, same output. Throws AsyncError
 * (ASYNC_ERR_INVALID_ANNOTATION) when the parent's annotations are invalid; the reconciler checks them
 * first and reports them on the status instead.
 */
export function makeChildIngress(parent: KIngress, config: BuilderConfig): KIngress {
  const settings = requireAsyncSettings(parent);
  const name = parent.metadata.name ?? "";
  const namespace = parent.metadata.namespace ?? "";
  const metadata: KIngress["metadata"] = {
    name: childIngressName(name),
    namespace,
    labels: childLabels(parent),
    annotations: childAnnotations(parent, config.ingressClassName),
  };
  if (parent.metadata.uid) metadata.ownerReferences = [ownerReferenceFor(parent)];
  return {
    apiVersion: INGRESS_API_VERSION,
    kind: INGRESS_KIND,
    metadata,
    spec: childSpec(parent, settings, config),
  };
}

/** The parent's annotations, without kubectl's copy of the parent, with the real layer's class. */
function childAnnotations(parent: KIngress, ingressClass: string): Record<string, string> {
  const annotations: Record<string, string> = {};
  for (const [key, value] of Object.entries(parent.metadata.annotations ?? {})) {
    if (key !== LAST_APPLIED_ANNOTATION) annotations[key] = value;
  }
  annotations[INGRESS_CLASS_ANNOTATION] = ingressClass;
  return annotations;
}

function childSpec(parent: KIngress, settings: AsyncSettings, config: BuilderConfig): IngressSpec {
  const source = structuredClone(parent.spec ?? {});
  const asyncPath = makeAsyncPath(parent, config);
  const spec: IngressSpec = {};
  if (source.rules !== undefined) {
    spec.rules = source.rules.map((rule) => rewriteRule(rule, settings, asyncPath));
  }
  if (source.tls !== undefined) spec.tls = source.tls;
  if (source.httpOption !== undefined) spec.httpOption = source.httpOption;
  return spec;
}

function rewriteRule(rule: IngressRule, settings: AsyncSettings, asyncPath: HTTPIngressPath): IngressRule {
  if (rule.http === undefined) return rule;
  const paths = rule.http.paths ?? [];
  const rewritten =
    settings.mode === "conditional"
      ? [{ ...structuredClone(asyncPath), headers: { [PREFER_HEADER]: { exact: PREFER_ASYNC } } }, ...paths]
      : [
          ...paths.map((path) => ({
            ...path,
            headers: { ...(path.headers ?? {}), [PREFER_HEADER]: { exact: PREFER_SYNC } },
          })),
          structuredClone(asyncPath),
        ];
  return { ...rule, http: { ...rule.http, paths: rewritten } };
}

/** The path that sends a request to the producer (without header matches; the mode adds those). */
function makeAsyncPath(parent: KIngress, config: BuilderConfig): HTTPIngressPath {
  const name = parent.metadata.name ?? "";
  const namespace = parent.metadata.namespace ?? "";
  return {
    appendHeaders: { [ORIGINAL_HOST_HEADER]: clusterLocalHost(name, namespace) },
    rewriteHost: producerHost(config),
    splits: [
      {
        serviceName: asyncServiceName(name),
        serviceNamespace: namespace,
        servicePort: ASYNC_SERVICE_PORT,
        percent: 100,
      },
    ],
  };
}
