import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AsyncError } from "../../lib/errors.js";
import type { BuilderConfig } from "../config.js";
import type { KIngress } from "../types.js";
import { makeChildIngress } from "./ingress.js";
import { makeAsyncService, registryId } from "./registry.js";
import { makeProducerService } from "./service.js";
import { requireAsyncSettings } from "./settings.js";

const config: BuilderConfig = {
  ingressClassName: "contour.ingress.networking.knative.dev",
  producerName: "ingest",
  producerNamespace: "async-system",
};

function parent(annotations: Record<string, string> = {}, uid: string | null = "u-1"): KIngress {
  return {
    apiVersion: "networking.internal.knative.dev/v1alpha1",
    kind: "Ingress",
    metadata: {
      name: "hello",
      namespace: "team-a",
      ...(uid ? { uid } : {}),
      annotations: {
        "networking.knative.dev/ingress.class": "async.ingress.networking.knative.dev",
        ...annotations,
      },
    },
    spec: {
      rules: [
        {
          hosts: ["hello.team-a.example.com"],
          visibility: "ExternalIP",
          http: {
            paths: [
              { splits: [{ serviceName: "hello-00001", serviceNamespace: "team-a", servicePort: 80 }] },
            ],
          },
        },
      ],
    },
  };
}

describe("makeAsyncService", () => {
  it("publishes the host the route names and the policy of the annotations, under namespace/name", () => {
    const p = parent({ "async.knative.dev/max-attempts": "4", "async.knative.dev/timeout": "30s" });
    assert.equal(registryId(p), "team-a/hello");
    assert.deepEqual(makeAsyncService(p, requireAsyncSettings(p)), {
      hosts: ["hello.team-a.svc.cluster.local"],
      policy: { maxAttempts: 4, timeoutMs: 30_000 },
    });
    const route = makeChildIngress(p, config).spec.rules?.[0]?.http?.paths[0];
    assert.deepEqual(route?.appendHeaders, { "Async-Original-Host": "hello.team-a.svc.cluster.local" });
  });
});

describe("makeChildIngress / makeProducerService", () => {
  it("are pure: deterministic, and the parent is not modified", () => {
    const p = parent({ "async.knative.dev/mode": "always.async.knative.dev" });
    const before = structuredClone(p);
    assert.deepEqual(makeChildIngress(p, config), makeChildIngress(p, config));
    assert.deepEqual(makeProducerService(p, config), makeProducerService(p, config));
    assert.deepEqual(p, before);
  });

  it("use the configured producer name and namespace and the real layer's class", () => {
    const child = makeChildIngress(parent(), config);
    assert.equal(
      child.metadata.annotations?.["networking.knative.dev/ingress.class"],
      config.ingressClassName,
    );
    assert.equal(child.spec.rules?.[0]?.http?.paths[0]?.rewriteHost, "ingest.async-system.svc.cluster.local");
    assert.equal(
      makeProducerService(parent(), config).spec.externalName,
      "ingest.async-system.svc.cluster.local",
    );
  });

  it("refuse invalid annotations with ASYNC_ERR_INVALID_ANNOTATION", () => {
    assert.throws(
      () => makeChildIngress(parent({ "async.knative.dev/timeout": "soon" }), config),
      (err: unknown) =>
        err instanceof AsyncError &&
        err.code === "ASYNC_ERR_INVALID_ANNOTATION" &&
        /timeout/.test(err.message),
    );
  });

  it("leave out owner references when the parent has no uid (a file, not a cluster object)", () => {
    assert.equal(makeChildIngress(parent({}, null), config).metadata.ownerReferences, undefined);
    assert.equal(makeProducerService(parent({}, null), config).metadata.ownerReferences, undefined);
  });
});
