/**
 * What the controller writes to KIngresses (children, and the parents' status) validates against the
 * real Knative networking CRD. The CRD is read from ../shared/schemas at run time; without it these
 * tests skip and say why.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BuilderConfig } from "../../src/controller/config.js";
import { makeChildIngress } from "../../src/controller/resources/ingress.js";
import { StatusBuilder } from "../../src/controller/status.js";
import type { KIngress } from "../../src/controller/types.js";
import { CRD_SKIP_REASON, ingressCrdSchema } from "./crd.js";
import { validate } from "./openapi.js";

const config: BuilderConfig = {
  ingressClassName: "istio.ingress.networking.knative.dev",
  producerName: "async-producer",
  producerNamespace: "knative-serving",
};

function parent(name: string, annotations: Record<string, string> = {}): KIngress {
  const split = (revision: string, percent: number) => ({
    serviceName: revision,
    serviceNamespace: "default",
    servicePort: 80,
    percent,
    appendHeaders: { "Knative-Serving-Revision": revision, "Knative-Serving-Namespace": "default" },
  });
  return {
    apiVersion: "networking.internal.knative.dev/v1alpha1",
    kind: "Ingress",
    metadata: {
      name,
      namespace: "default",
      uid: "0b4d6c1e-1111-4222-8333-444455556666",
      generation: 3,
      annotations: {
        "networking.knative.dev/ingress.class": "async.ingress.networking.knative.dev",
        ...annotations,
      },
      labels: { "serving.knative.dev/route": name },
    },
    spec: {
      httpOption: "Enabled",
      tls: [{ hosts: [`${name}.default.example.com`], secretName: "cert", secretNamespace: "default" }],
      rules: [
        {
          hosts: [`${name}.default.example.com`],
          visibility: "ExternalIP",
          http: {
            paths: [
              {
                headers: { "Knative-Serving-Tag": { exact: "next" } },
                splits: [split(`${name}-00002`, 100)],
              },
              { splits: [split(`${name}-00001`, 90), split(`${name}-00002`, 10)] },
            ],
          },
        },
        {
          hosts: [`${name}.default.svc.cluster.local`],
          visibility: "ClusterLocal",
          http: { paths: [{ path: "/", splits: [split(`${name}-00001`, 100)] }] },
        },
      ],
    },
  };
}

const parents: Array<[string, KIngress]> = [
  ["conditional mode", parent("hello")],
  ["always mode", parent("always", { "async.knative.dev/mode": "always.async.knative.dev" })],
  [
    "with a delivery policy",
    parent("policy", { "async.knative.dev/max-attempts": "4", "async.knative.dev/max-age": "2h" }),
  ],
  ["a 63-character name", parent("x".repeat(63))],
];

describe("objects written to KIngresses validate against the Knative CRD", { skip: CRD_SKIP_REASON }, () => {
  for (const [what, p] of parents) {
    it(`the child KIngress, ${what}`, () => {
      assert.deepEqual(validate(makeChildIngress(p, config), ingressCrdSchema()), []);
    });
  }

  it("the parent's status: waiting, ready with load balancers, failed", () => {
    const schema = ingressCrdSchema();
    const child: KIngress = {
      ...parent("child"),
      status: {
        publicLoadBalancer: {
          ingress: [{ domainInternal: "istio-ingressgateway.istio-system.svc.cluster.local" }],
        },
        privateLoadBalancer: {
          ingress: [
            { domainInternal: "knative-local-gateway.istio-system.svc.cluster.local", meshOnly: false },
          ],
        },
      },
    };
    const waiting = new StatusBuilder(undefined);
    waiting.setObservedGeneration(3);
    const ready = new StatusBuilder(waiting.status);
    ready.markNetworkConfigured();
    ready.markLoadBalancer("True");
    ready.copyLoadBalancers(child);
    const failed = new StatusBuilder(ready.status);
    failed.markNetworkNotConfigured("InvalidAnnotation", "annotation async.knative.dev/mode is wrong");
    for (const builder of [waiting, ready, failed]) {
      assert.deepEqual(validate({ ...parent("p"), status: builder.status }, schema), []);
    }
  });

  it("rejects a broken child, so the schema is really applied", () => {
    const broken = makeChildIngress(parent("hello"), config) as unknown as {
      spec: { rules: Array<{ http: { paths: Array<Record<string, unknown>> } }> };
    };
    const first = broken.spec.rules[0]?.http.paths[0] as Record<string, unknown>;
    first.headers = { Prefer: "respond-async" };
    first.rewriteHosts = "typo";
    const problems = validate(broken, ingressCrdSchema());
    assert.deepEqual(problems, [
      "spec.rules[0].http.paths[0].headers.Prefer: must be object, got string",
      "spec.rules[0].http.paths[0].rewriteHosts: unknown field (the API server would prune it)",
    ]);
  });
});
