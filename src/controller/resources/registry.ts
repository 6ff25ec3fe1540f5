/**
 * The entry of the async services registry (src/lib/registry.ts) for a parent KIngress: the host its
 * async route names in `Async-Original-Host`, and its delivery policy. The registry, not a header on the
 * route, is how the policy reaches the producer and the dispatcher: a header could be sent by a client.
 * Pure, like the other builders.
 */
import { type AsyncService, serviceId } from "../../lib/registry.js";
import { clusterLocalHost } from "../names.js";
import type { KIngress } from "../types.js";
import type { AsyncSettings } from "./settings.js";

/** The registry field of a KIngress. */
export function registryId(parent: KIngress): string {
  return serviceId(parent.metadata.namespace ?? "", parent.metadata.name ?? "");
}

export function makeAsyncService(parent: KIngress, settings: AsyncSettings): AsyncService {
  return {
    hosts: [clusterLocalHost(parent.metadata.name ?? "", parent.metadata.namespace ?? "")],
    policy: settings.policy,
  };
}
