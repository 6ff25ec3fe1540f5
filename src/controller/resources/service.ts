/**
 * The `<name>-async` ExternalName Service in the parent's namespace. The async path of the child KIngress
 * targets it; it resolves (a DNS CNAME) to the producer's cluster-local host, so the networking layer can
 * send the request across namespaces to the producer. Unlike the original, it has no selector (an
 * ExternalName Service ignores one) and the producer's name and namespace come from the config.
 */
import type { BuilderConfig } from "../config.js";
import { ASYNC_SERVICE_PORT, ASYNC_SERVICE_PORT_NAME, asyncServiceName } from "../names.js";
import type { CoreService, KIngress } from "../types.js";
import { producerHost } from "./ingress.js";
import { childLabels, ownerReferenceFor } from "./meta.js";

/** The async Service for `parent`. Pure: same input, same output. */
export function makeProducerService(parent: KIngress, config: BuilderConfig): CoreService {
  const metadata: CoreService["metadata"] = {
    name: asyncServiceName(parent.metadata.name ?? ""),
    namespace: parent.metadata.namespace ?? "",
    labels: childLabels(parent),
  };
  if (parent.metadata.uid) metadata.ownerReferences = [ownerReferenceFor(parent)];
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata,
    spec: {
      type: "ExternalName",
      externalName: producerHost(config),
      ports: [
        {
          name: ASYNC_SERVICE_PORT_NAME,
          protocol: "TCP",
          port: ASYNC_SERVICE_PORT,
          targetPort: ASYNC_SERVICE_PORT,
        },
      ],
    },
  };
}
