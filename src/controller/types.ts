/**
 * The shapes of the objects the controller reads and writes, as JSON (what the API server sends), after
 * knative.dev/networking's v1alpha1 Ingress. Only fields the controller touches are typed closely.
 */
import type { V1ObjectMeta } from "@kubernetes/client-node";

export type ConditionStatus = "True" | "False" | "Unknown";

export interface Condition {
  type: string;
  status: ConditionStatus;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  severity?: string;
}

export interface HeaderMatch {
  exact: string;
}

export interface IngressBackendSplit {
  serviceName: string;
  serviceNamespace: string;
  servicePort: number | string;
  percent?: number;
  appendHeaders?: Record<string, string>;
}

export interface HTTPIngressPath {
  path?: string;
  headers?: Record<string, HeaderMatch>;
  rewriteHost?: string;
  appendHeaders?: Record<string, string>;
  splits: IngressBackendSplit[];
}

export interface IngressRule {
  hosts?: string[];
  visibility?: "ExternalIP" | "ClusterLocal" | string;
  http?: { paths: HTTPIngressPath[] };
}

export interface IngressTLS {
  hosts?: string[];
  secretName?: string;
  secretNamespace?: string;
}

export interface IngressSpec {
  rules?: IngressRule[];
  tls?: IngressTLS[];
  httpOption?: string;
}

export interface LoadBalancerIngressStatus {
  domain?: string;
  domainInternal?: string;
  ip?: string;
  meshOnly?: boolean;
}

export interface LoadBalancerStatus {
  ingress?: LoadBalancerIngressStatus[];
}

export interface IngressStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  annotations?: Record<string, string>;
  publicLoadBalancer?: LoadBalancerStatus;
  privateLoadBalancer?: LoadBalancerStatus;
}

/**
 * The client's metadata type. Its timestamps are typed as Date, but objects read from the cache are plain
 * JSON with string timestamps; the controller never reads a timestamp beyond testing that it is set.
 */
export type ObjectMeta = V1ObjectMeta;

export interface KIngress {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: IngressSpec;
  status?: IngressStatus;
}

export interface ServicePort {
  name?: string;
  protocol?: string;
  port: number;
  targetPort?: number | string;
}

/** The part of a core/v1 Service this controller writes (an ExternalName Service). */
export interface CoreService {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: {
    type?: string;
    externalName?: string;
    ports?: ServicePort[];
    [other: string]: unknown;
  };
  status?: unknown;
}
