/**
 * Per-service delivery settings. A platform operator sets defaults on the dispatcher; a service owner may
 * tighten or loosen them for one Knative Service with annotations, which Knative copies onto the
 * KIngress. The controller publishes them in the async services registry (src/lib/registry.ts), the
 * producer copies them into the envelope's `policy`, and the dispatcher applies the registry's current
 * ones (or else the envelope's), clamped to the operator's limits. Never from a request header: a client
 * could send one.
 *
 *   annotation                        meaning
 *   async.knative.dev/max-attempts    deliveries tried in all, first one included
 *   async.knative.dev/min-backoff     first retry delay
 *   async.knative.dev/max-backoff     longest retry delay
 *   async.knative.dev/max-age         give up (dead-letter) past this age
 *   async.knative.dev/timeout         per-attempt request timeout
 */
import { parseDuration } from "./durations.js";
import type { DeliveryPolicyOverrides } from "./envelope.js";

const POLICY_ANNOTATION_PREFIX = "async.knative.dev/";

type Item = { key: keyof DeliveryPolicyOverrides; name: string; kind: "count" | "duration" };

const ITEMS: readonly Item[] = [
  { key: "maxAttempts", name: "max-attempts", kind: "count" },
  { key: "minBackoffMs", name: "min-backoff", kind: "duration" },
  { key: "maxBackoffMs", name: "max-backoff", kind: "duration" },
  { key: "maxAgeMs", name: "max-age", kind: "duration" },
  { key: "timeoutMs", name: "timeout", kind: "duration" },
];

function parseValue(item: Item, raw: string): number | undefined {
  if (item.kind === "count") {
    return /^\d+$/.test(raw.trim()) && Number(raw) >= 1 ? Number(raw) : undefined;
  }
  return parseDuration(raw);
}

export interface PolicyProblem {
  readonly name: string;
  readonly value: string;
  readonly message: string;
}

/**
 * Reads the policy annotations. Returns the overrides and the problems found: the controller reports
 * problems on the KIngress status instead of guessing.
 */
export function policyFromAnnotations(annotations: Readonly<Record<string, string>> | undefined): {
  policy: DeliveryPolicyOverrides;
  problems: PolicyProblem[];
} {
  const policy: DeliveryPolicyOverrides = {};
  const problems: PolicyProblem[] = [];
  for (const item of ITEMS) {
    const name = POLICY_ANNOTATION_PREFIX + item.name;
    const raw = annotations?.[name];
    if (raw === undefined) continue;
    const value = parseValue(item, raw);
    if (value === undefined) {
      problems.push({
        name,
        value: raw,
        message:
          item.kind === "count"
            ? "must be a whole number of at least 1"
            : "must be a duration like 500ms, 10s, 5m or 24h",
      });
    } else {
      policy[item.key] = value;
    }
  }
  return { policy, problems };
}
