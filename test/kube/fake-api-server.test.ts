/**
 * The fake API server, driven by the real @kubernetes/client-node clients: if these pass, the controller
 * talks to it exactly as it would talk to a real API server.
 */
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubernetesObject,
  ListWatch,
  V1MicroTime,
  Watch,
} from "@kubernetes/client-node";
import { waitFor } from "../helpers/net.js";
import { FakeApiServer, type KubeObject, parseLabelSelector } from "./fake-api-server.js";

const group = "networking.internal.knative.dev";
const version = "v1alpha1";
const plural = "ingresses";

function kingress(name: string, extra: Partial<KubeObject> = {}): KubeObject {
  return {
    apiVersion: `${group}/${version}`,
    kind: "Ingress",
    metadata: { name, namespace: "default" },
    spec: { rules: [] },
    ...extra,
  };
}

async function rejection(promise: Promise<unknown>): Promise<{ code: number; body: { reason: string } }> {
  try {
    await promise;
  } catch (err) {
    const e = err as { code: number; body: string };
    return { code: e.code, body: JSON.parse(e.body) };
  }
  throw new Error("expected the call to fail");
}

describe("fake API server", () => {
  let server: FakeApiServer;
  let custom: CustomObjectsApi;
  let core: CoreV1Api;

  before(async () => {
    server = await FakeApiServer.start();
    custom = server.kubeConfig().makeApiClient(CustomObjectsApi);
    core = server.kubeConfig().makeApiClient(CoreV1Api);
  });
  after(() => server.close());
  beforeEach(() => server.reset());

  it("creates, gets and refuses a second create with 409 AlreadyExists", async () => {
    const created = await custom.createNamespacedCustomObject({
      group,
      version,
      plural,
      namespace: "default",
      body: kingress("a", { status: { observedGeneration: 7 } }),
    });
    assert.equal(created.metadata.generation, 1);
    assert.ok(created.metadata.uid);
    assert.equal(created.status, undefined, "status is ignored on create (status subresource)");
    const got = await custom.getNamespacedCustomObject({
      group,
      version,
      plural,
      namespace: "default",
      name: "a",
    });
    assert.equal(got.metadata.resourceVersion, created.metadata.resourceVersion);
    const again = await rejection(
      custom.createNamespacedCustomObject({
        group,
        version,
        plural,
        namespace: "default",
        body: kingress("a"),
      }),
    );
    assert.equal(again.code, 409);
    assert.equal(again.body.reason, "AlreadyExists");
  });

  it("answers 404 NotFound for a missing object", async () => {
    const missing = await rejection(
      custom.getNamespacedCustomObject({ group, version, plural, namespace: "default", name: "x" }),
    );
    assert.equal(missing.code, 404);
    assert.equal(missing.body.reason, "NotFound");
  });

  it("replaces with optimistic concurrency and bumps generation only on spec changes", async () => {
    server.seed(kingress("a"));
    const current = server.get(plural, "default", "a") as KubeObject;
    const labelled = await custom.replaceNamespacedCustomObject({
      group,
      version,
      plural,
      namespace: "default",
      name: "a",
      body: { ...current, metadata: { ...current.metadata, labels: { x: "y" } } },
    });
    assert.equal(labelled.metadata.generation, 1);
    assert.notEqual(labelled.metadata.resourceVersion, current.metadata.resourceVersion);

    const stale = await rejection(
      custom.replaceNamespacedCustomObject({
        group,
        version,
        plural,
        namespace: "default",
        name: "a",
        body: current,
      }),
    );
    assert.equal(stale.code, 409);
    assert.equal(stale.body.reason, "Conflict");

    const respec = await custom.replaceNamespacedCustomObject({
      group,
      version,
      plural,
      namespace: "default",
      name: "a",
      body: { ...labelled, spec: { httpOption: "Redirected" } },
    });
    assert.equal(respec.metadata.generation, 2);

    const noRv = await rejection(
      custom.replaceNamespacedCustomObject({
        group,
        version,
        plural,
        namespace: "default",
        name: "a",
        body: { ...respec, metadata: { ...respec.metadata, resourceVersion: undefined } },
      }),
    );
    assert.equal(noRv.code, 422, "a CRD update needs a resourceVersion");
  });

  it("keeps status on main writes and everything else on /status writes; no-op writes change nothing", async () => {
    server.seed(kingress("a", { status: { observedGeneration: 1 } }));
    const current = server.get(plural, "default", "a") as KubeObject;
    const main = await custom.replaceNamespacedCustomObject({
      group,
      version,
      plural,
      namespace: "default",
      name: "a",
      body: { ...current, status: { observedGeneration: 99 } },
    });
    assert.deepEqual(main.status, { observedGeneration: 1 });
    assert.equal(
      main.metadata.resourceVersion,
      current.metadata.resourceVersion,
      "nothing changed: same version",
    );

    const status = await custom.replaceNamespacedCustomObjectStatus({
      group,
      version,
      plural,
      namespace: "default",
      name: "a",
      body: { ...current, spec: { httpOption: "Redirected" }, status: { observedGeneration: 2 } },
    });
    assert.deepEqual(status.status, { observedGeneration: 2 });
    assert.deepEqual(status.spec, { rules: [] });
  });

  it("induces failures on a verb and resource, once", async () => {
    server.failNext({ verb: "create", resource: "services", code: 500, message: "etcd is sad" });
    const svc = {
      metadata: { name: "s", namespace: "default" },
      spec: { type: "ExternalName", externalName: "x.y" },
    };
    const failed = await rejection(core.createNamespacedService({ namespace: "default", body: svc }));
    assert.equal(failed.code, 500);
    await core.createNamespacedService({ namespace: "default", body: svc });
    assert.deepEqual(
      server.actions.map((a) => `${a.verb} ${a.resource} ${a.code} ${a.user}`),
      ["create services 500 test", "create services 201 test"],
    );
  });

  it("deletes dependents with their owner (garbage collector)", async () => {
    server.seed(kingress("parent"));
    const uid = server.get(plural, "default", "parent")?.metadata.uid as string;
    server.seed(
      kingress("child", { metadata: { name: "child", namespace: "default", ownerReferences: [{ uid }] } }),
    );
    server.seed({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "svc", namespace: "default", ownerReferences: [{ uid }] },
      spec: {},
    });
    await custom.deleteNamespacedCustomObject({
      group,
      version,
      plural,
      namespace: "default",
      name: "parent",
    });
    assert.deepEqual(server.list(plural), []);
    assert.deepEqual(server.list("services"), []);
  });

  it("parses Lease MicroTimes strictly, as the real server does", async () => {
    const leases = server.kubeConfig().makeApiClient(CoordinationV1Api);
    const lease = (renewTime: unknown) => ({
      metadata: { name: "l", namespace: "kube-system" },
      spec: { holderIdentity: "me", renewTime: renewTime as V1MicroTime },
    });
    const bad = await rejection(
      leases.createNamespacedLease({ namespace: "kube-system", body: lease("2024-01-01T00:00:00.123Z") }),
    );
    assert.equal(bad.code, 400);
    const created = await leases.createNamespacedLease({
      namespace: "kube-system",
      body: lease(new V1MicroTime()),
    });
    assert.match(String(created.spec?.renewTime), /\.\d{6}Z$/);
  });

  it("matches label selectors like the API", () => {
    const s = parseLabelSelector("a=b,c!=d,e,!f");
    assert.equal(s({ a: "b", e: "" }), true);
    assert.equal(s({ a: "b", c: "d", e: "" }), false);
    assert.equal(s({ a: "b", e: "", f: "1" }), false);
    assert.equal(s({ a: "x", e: "" }), false);
  });

  describe("list and watch (ListWatch informer)", () => {
    it("lists, then streams changes; a watch that ends resumes from its resourceVersion", async () => {
      server.seed(kingress("a"));
      const informer = new ListWatch<KubernetesObject>(
        `/apis/${group}/${version}/${plural}`,
        new Watch(server.kubeConfig()),
        () => custom.listCustomObjectForAllNamespaces({ group, version, plural }),
        false,
      );
      const seen: string[] = [];
      informer.on("add", (o) => seen.push(`add ${o.metadata?.name}`));
      informer.on("update", (o) => seen.push(`update ${o.metadata?.name}`));
      informer.on("delete", (o) => seen.push(`delete ${o.metadata?.name}`));
      try {
        await informer.start();
        assert.deepEqual(seen, ["add a"]);
        server.seed(kingress("b"));
        await waitFor(() => seen.includes("add b"), { what: "b added", timeoutMs: 5000 });

        const watchesBefore = server.actions.filter((a) => a.verb === "watch").length;
        server.endWatches();
        await waitFor(() => server.actions.filter((a) => a.verb === "watch").length > watchesBefore, {
          what: "the informer to watch again",
          timeoutMs: 5000,
        });
        server.edit(plural, "default", "a", (o) => {
          o.metadata.labels = { edited: "yes" };
        });
        server.remove(plural, "default", "b");
        await waitFor(() => seen.includes("update a") && seen.includes("delete b"), {
          what: "changes",
          timeoutMs: 5000,
        });
        assert.equal(server.actions.filter((a) => a.verb === "list").length, 1, "resumed without a new list");
      } finally {
        await informer.stop();
      }
    });

    it("answers a watch from compacted history with 410 Expired, and the informer lists again", async () => {
      server.seed(kingress("a"));
      const informer = new ListWatch<KubernetesObject>(
        `/apis/${group}/${version}/${plural}`,
        new Watch(server.kubeConfig()),
        () => custom.listCustomObjectForAllNamespaces({ group, version, plural }),
        false,
      );
      try {
        await informer.start();
        server.endWatches();
        server.compact();
        server.seed(kingress("late"));
        server.compact();
        await waitFor(() => informer.get("late", "default") !== undefined, {
          what: "relist",
          timeoutMs: 5000,
        });
        assert.ok(server.actions.filter((a) => a.verb === "list").length >= 2);
      } finally {
        await informer.stop();
      }
    });

    it("turns label changes into ADDED and DELETED for a selecting watch", async () => {
      const svc = (name: string, labels: Record<string, string>): KubeObject => ({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name, namespace: "default", labels },
        spec: {},
      });
      server.seed(svc("in", { mine: "yes" }), svc("out", {}));
      const informer = new ListWatch<KubernetesObject>(
        "/api/v1/services",
        new Watch(server.kubeConfig()),
        () => core.listServiceForAllNamespaces({ labelSelector: "mine=yes" }) as never,
        false,
        "mine=yes",
      );
      try {
        await informer.start();
        assert.deepEqual(
          informer.list().map((o) => o.metadata?.name),
          ["in"],
        );
        server.edit("services", "default", "in", (o) => {
          o.metadata.labels = {};
        });
        server.edit("services", "default", "out", (o) => {
          o.metadata.labels = { mine: "yes" };
        });
        await waitFor(
          () => informer.get("in", "default") === undefined && informer.get("out", "default") !== undefined,
          {
            what: "label transitions",
            timeoutMs: 5000,
          },
        );
      } finally {
        await informer.stop();
      }
    });
  });
});
