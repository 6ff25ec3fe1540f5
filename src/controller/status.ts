/**
 * The parent KIngress's status, with Knative's condition semantics: LoadBalancerReady and
 * NetworkConfigured are the dependents, Ready is True when both are, False when one is False (with its
 * reason and message), Unknown otherwise. A condition's lastTransitionTime changes only when its status
 * does, so recomputing an unchanged status gives an identical object and no write.
 */
import type { Condition, ConditionStatus, IngressStatus, KIngress } from "./types.js";

export const READY = "Ready";
const LOAD_BALANCER_READY = "LoadBalancerReady";
const NETWORK_CONFIGURED = "NetworkConfigured";
const DEPENDENTS = [LOAD_BALANCER_READY, NETWORK_CONFIGURED] as const;

/** metav1.Time has second precision; keep the same so a round trip through the API compares equal. */
function nowRfc3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function getCondition(status: IngressStatus | undefined, type: string): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

/** Builds a new status from an existing one without touching it (it may be the informer's cache). */
export class StatusBuilder {
  readonly status: IngressStatus;

  constructor(
    existing: IngressStatus | undefined,
    private readonly now: () => string = nowRfc3339,
  ) {
    this.status = structuredClone(existing ?? {});
    for (const type of DEPENDENTS) {
      if (getCondition(this.status, type) === undefined) this.set(type, "Unknown");
    }
    this.recomputeReady();
  }

  setObservedGeneration(generation: number | undefined): void {
    if (generation === undefined) delete this.status.observedGeneration;
    else this.status.observedGeneration = generation;
  }

  markNetworkConfigured(): void {
    this.set(NETWORK_CONFIGURED, "True");
  }

  /** The children could not be written as wanted: the reason is the user's to act on. */
  markNetworkNotConfigured(reason: string, message: string): void {
    this.set(NETWORK_CONFIGURED, "False", reason, message);
  }

  markLoadBalancer(status: ConditionStatus, reason?: string, message?: string): void {
    this.set(LOAD_BALANCER_READY, status, reason, message);
  }

  /** The parent's load balancers are the child's: that is where its traffic really goes. */
  copyLoadBalancers(child: KIngress): void {
    for (const key of ["publicLoadBalancer", "privateLoadBalancer"] as const) {
      const value = child.status?.[key];
      if (value === undefined) delete this.status[key];
      else this.status[key] = structuredClone(value);
    }
  }

  private set(type: string, status: ConditionStatus, reason?: string, message?: string): void {
    const conditions = this.status.conditions ?? [];
    const previous = conditions.find((c) => c.type === type);
    const next: Condition = { type, status };
    if (reason) next.reason = reason;
    if (message) next.message = message;
    if (previous?.severity) next.severity = previous.severity;
    next.lastTransitionTime =
      previous !== undefined && previous.status === status && previous.lastTransitionTime
        ? previous.lastTransitionTime
        : this.now();
    const others = conditions.filter((c) => c.type !== type);
    // Knative keeps conditions sorted by type; doing the same keeps the object stable across writes.
    this.status.conditions = [...others, next].sort((a, b) => a.type.localeCompare(b.type));
    if (type !== READY) this.recomputeReady();
  }

  private recomputeReady(): void {
    const dependents = DEPENDENTS.map(
      (type): Condition => getCondition(this.status, type) ?? { type, status: "Unknown" },
    );
    const failed = dependents.find((c) => c.status === "False");
    const unknown = dependents.find((c) => c.status === "Unknown");
    if (failed) this.set(READY, "False", failed.reason, failed.message);
    else if (unknown) this.set(READY, "Unknown", unknown.reason, unknown.message);
    else this.set(READY, "True");
  }
}
