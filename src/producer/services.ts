/**
 * Which services the producer takes requests for, and with which delivery policy: the async services the
 * controller published (src/lib/registry.ts), each with its own policy; or a host of ALLOWED_TARGET_HOSTS
 * (local use: no controller, no policy). Anything else the target rule lets through, say a cluster-local
 * Service that never opted in, is refused: the producer is nobody's deputy. The policy never comes from
 * the request: a client can send any header it likes.
 */
import type { DeliveryPolicyOverrides } from "../lib/envelope.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import type { AsyncServicesReader } from "../lib/registry.js";
import { type HostPattern, matchesHostPatterns, type Target } from "../lib/target.js";
import { RETRY_AFTER } from "../lib/wire/headers.js";

export interface ServiceGateOptions {
  readonly services: AsyncServicesReader;
  /** ALLOWED_TARGET_HOSTS. */
  readonly allowed: readonly HostPattern[];
  /** REQUIRE_REGISTERED_TARGETS: when false, any target the rule allows, as before the registry. */
  readonly requireRegistered: boolean;
}

/** The delivery policy to store with a request for `target` (none: the dispatcher's defaults), or throws. */
export type ServiceGate = (target: Target) => DeliveryPolicyOverrides | undefined;

export function serviceGate({ services, allowed, requireRegistered }: ServiceGateOptions): ServiceGate {
  return (target) => {
    const found = services.lookup(target.authority);
    if (found !== undefined) return Object.keys(found.policy).length > 0 ? found.policy : undefined;
    if (!requireRegistered || matchesHostPatterns(allowed, target.authority)) return undefined;
    if (!services.loaded) {
      // Not known yet is not forbidden: the client may try again shortly (the pod is not ready meanwhile).
      throw new AsyncError(
        ErrorCode.StoreUnavailable,
        `the async services registry has not been read yet (${services.problem}); not stored`,
        { headers: { [RETRY_AFTER]: "1" } },
      );
    }
    throw new AsyncError(
      ErrorCode.ForbiddenTarget,
      `target ${target.authority} is not an async service: no KIngress of the async class routes to it`,
    );
  };
}
