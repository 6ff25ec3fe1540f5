/**
 * Controller configuration. INGRESS_CLASS_NAME is the original's name for the real networking layer's
 * class; the producer's name and namespace, hard-coded in the original, are settings here.
 */
import { z } from "zod";
import {
  durationSetting,
  type Env,
  intSetting,
  minDurationSetting,
  parseEnv,
  serverEnvFields,
  serverFromEnv,
} from "../lib/config.js";
import { type RedisSettings, redisEnvFields, redisFromEnv } from "../lib/redis.js";
import { ASYNC_INGRESS_CLASS, DEFAULT_LEASE_NAME, KNOWN_INGRESS_CLASSES } from "./names.js";

/** A Kubernetes object name (DNS-1123 label). */
const dnsLabel = z
  .string()
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, { message: "must be a lowercase DNS label (a-z, 0-9, -)" });

/** Every environment variable the controller reads; the keys are the names. */
export const controllerEnvSchema = z.object({
  /** Admin endpoints: /healthz, /readyz, /metrics. */
  ...serverEnvFields,
  /** The namespace the controller runs in: its Lease lives there, and the producer by default. */
  SYSTEM_NAMESPACE: dnsLabel.default("knative-serving"),
  PRODUCER_NAME: dnsLabel.default("async-producer"),
  /** Defaults to SYSTEM_NAMESPACE. */
  PRODUCER_NAMESPACE: dnsLabel.optional(),
  INGRESS_CLASS_NAME: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, {
      message: "must be an ingress class like kourier.ingress.networking.knative.dev",
    })
    .refine((v) => v !== ASYNC_INGRESS_CLASS, {
      message:
        "must be the real networking layer's class; the async class would route the child to this controller again",
    })
    .default(KNOWN_INGRESS_CLASSES.istio),
  /** This replica's identity in the Lease; the pod name (downward API) in the manifests. */
  POD_NAME: z.string().min(1).optional(),
  LEASE_NAME: dnsLabel.default(DEFAULT_LEASE_NAME),
  /** How long a leader's claim lasts without renewal: how long a crashed leader blocks the others. */
  LEASE_DURATION: durationSetting("15s"),
  /** A leader that could not renew for this long stops writing (must be shorter than LEASE_DURATION). */
  RENEW_DEADLINE: durationSetting("10s"),
  /** How often the Lease is renewed or tried. */
  RETRY_PERIOD: durationSetting("2s"),
  /** How often every async KIngress is reconciled again, changed or not. */
  RESYNC_PERIOD: minDurationSetting("10h", 1000),
  /** Keys reconciled in parallel (never the same key twice at once). */
  WORKERS: intSetting(2, 1, 64),
  /** Where the async services registry is published (src/lib/registry.ts): the producer's Redis and stream. */
  ...redisEnvFields,
  /**
   * How often the leader compares the registry with the KIngresses: puts back what a Redis that lost its
   * data no longer has, removes what no KIngress wants any more.
   */
  REGISTRY_CHECK_PERIOD: minDurationSetting("30s", 100),
});

export interface ControllerConfig {
  readonly port: number;
  readonly logLevel: string;
  readonly systemNamespace: string;
  readonly producerName: string;
  readonly producerNamespace: string;
  readonly ingressClassName: string;
  readonly podName: string | undefined;
  readonly leaseName: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  readonly resyncPeriodMs: number;
  readonly workers: number;
  readonly redis: RedisSettings;
  readonly streamName: string;
  readonly registryCheckPeriodMs: number;
}

/** What the pure builders need: no clients, no environment. */
export type BuilderConfig = Pick<ControllerConfig, "ingressClassName" | "producerName" | "producerNamespace">;

export function loadControllerConfig(env: Env): ControllerConfig {
  const schema = controllerEnvSchema
    .refine((e) => e.RENEW_DEADLINE < e.LEASE_DURATION, {
      message: "must be shorter than LEASE_DURATION, or two replicas could both think they lead",
      path: ["RENEW_DEADLINE"],
    })
    .refine((e) => e.RETRY_PERIOD < e.RENEW_DEADLINE, {
      message: "must be shorter than RENEW_DEADLINE, or the leader could never renew in time",
      path: ["RETRY_PERIOD"],
    });
  const e = parseEnv("controller", schema, env);
  return Object.freeze({
    ...serverFromEnv(e),
    systemNamespace: e.SYSTEM_NAMESPACE,
    producerName: e.PRODUCER_NAME,
    producerNamespace: e.PRODUCER_NAMESPACE ?? e.SYSTEM_NAMESPACE,
    ingressClassName: e.INGRESS_CLASS_NAME,
    podName: e.POD_NAME,
    leaseName: e.LEASE_NAME,
    leaseDurationMs: e.LEASE_DURATION,
    renewDeadlineMs: e.RENEW_DEADLINE,
    retryPeriodMs: e.RETRY_PERIOD,
    resyncPeriodMs: e.RESYNC_PERIOD,
    workers: e.WORKERS,
    ...redisFromEnv(e),
    registryCheckPeriodMs: e.REGISTRY_CHECK_PERIOD,
  });
}
