/**
 * Per-service delivery settings. A platform operator sets defaults on the dispatcher; a service owner may
 * tighten or loosen them for one Knative Service with annotations, which Knative copies onto the
 * KIngress. The controller turns them into one header on the async route, the producer parses that header
 * into the envelope's `policy`, and the dispatcher applies it, clamped to the operator's limits.
 *
 *   annotation                        header item      meaning
 *   async.knative.dev/max-attempts    max-attempts=5   deliveries tried in all, first one included
 *   async.knative.dev/min-backoff     min-backoff=1s   first retry delay
 *   async.knative.dev/max-backoff     max-backoff=5m   longest retry delay
 *   async.knative.dev/max-age         max-age=24h      give up (dead-letter) past this age
 *   async.knative.dev/timeout         timeout=30s      per-attempt request timeout
 *
 * Header: `Async-Delivery-Policy: max-attempts=5; min-backoff=1s`.
 */
import { formatDuration, parseDuration } from "./durations.js";
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

export function formatPolicyHeader(policy: DeliveryPolicyOverrides): string {
  return ITEMS.filter((i) => policy[i.key] !== undefined)
    .map((i) => {
      const value = policy[i.key] as number;
      return `${i.name}=${i.kind === "count" ? value : formatDuration(value)}`;
    })
    .join("; ");
}

/** Parses the header; unknown or malformed items are ignored (the controller already validated them). */
export function parsePolicyHeader(value: string | undefined): DeliveryPolicyOverrides | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const policy: DeliveryPolicyOverrides = {};
  for (const part of value.split(/[;,]/)) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    const name = part.slice(0, eq).trim().toLowerCase();
    const item = ITEMS.find((i) => i.name === name);
    if (!item) continue;
    const parsed = parseValue(item, part.slice(eq + 1));
    if (parsed !== undefined) policy[item.key] = parsed;
  }
  return Object.keys(policy).length > 0 ? policy : undefined;
}
