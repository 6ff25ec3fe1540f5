/**
 * The real controller (informers, work queue, reconciler, leader election, admin endpoints) against the
 * fake API server over HTTP. Each replica authenticates with its own token, so the server's audit says
 * who wrote what. Where the Knative CRD is available, every KIngress write is validated against it. The
 * async services registry the controller publishes is in a real Redis.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { PassThrough } from "node:stream";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import type { Redis } from "ioredis";
import { loadControllerConfig } from "../../src/controller/config.js";
import { type RunningController, startController } from "../../src/controller/controller.js";
import { isAllowed } from "../../src/controller/rbac.js";
import { streamKeys } from "../../src/lib/keys.js";
import { createLogger } from "../../src/lib/logger.js";
import { createRegistry } from "../../src/lib/metrics.js";
import { connectRedis, parseRedisAddress } from "../../src/lib/redis.js";
import { AsyncServicesWriter, type PublishedService } from "../../src/lib/registry.js";
import { waitFor } from "../helpers/net.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import { CRD_SKIP_REASON, ingressCrdSchema } from "./crd.js";
import { type Action, FakeApiServer, type KubeObject } from "./fake-api-server.js";
import { validate } from "./openapi.js";

const NS = "default";
const SYSTEM_NS = "knative-serving";
const LB = { ingress: [{ domainInternal: "kourier.kourier-system.svc.cluster.local" }] };

interface Replica {
  readonly user: string;
  readonly controller: RunningController;
  readonly logs: string[];
  closed: boolean;
  close(): Promise<void>;
}

function parentIngress(name: string, annotations: Record<string, string> = {}): KubeObject {
  return {
    apiVersion: "networking.internal.knative.dev/v1alpha1",
    kind: "Ingress",
    metadata: {
      name,
      namespace: NS,
      annotations: {
        "networking.knative.dev/ingress.class": "async.ingress.networking.knative.dev",
        ...annotations,
      },
    },
    spec: {
      rules: [
        {
          hosts: [`${name}.${NS}.example.com`],
          visibility: "ExternalIP",
          http: {
            paths: [
              {
                splits: [
                  { serviceName: `${name}-00001`, serviceNamespace: NS, servicePort: 80, percent: 100 },
                ],
              },
            ],
          },
        },
      ],
    },
  };
}

function condition(
  object: KubeObject | undefined,
  type: string,
): { status: string; reason?: string } | undefined {
  const conditions = (
    object?.status as { conditions?: Array<{ type: string; status: string; reason?: string }> }
  )?.conditions;
  return conditions?.find((c) => c.type === type);
}

/** What the networking layer (net-kourier here) does: reconcile the child and mark it Ready. */
function networkingLayerMarksReady(server: FakeApiServer, childName: string): void {
  server.edit("ingresses", NS, childName, (o) => {
    o.status = {
      observedGeneration: o.metadata.generation,
      conditions: [{ type: "Ready", status: "True", lastTransitionTime: "2024-01-01T00:00:00Z" }],
      publicLoadBalancer: LB,
      privateLoadBalancer: LB,
    };
  });
}

const isWrite = (a: Action) =>
  (a.verb === "create" || a.verb === "update" || a.verb === "delete") && a.code < 300;
const nonLeaseWrites = (actions: Action[]) => actions.filter((a) => isWrite(a) && a.resource !== "leases");

describe("controller against the fake API server", () => {
  let server: FakeApiServer;
  let redisServer: TestRedisServer;
  let redis: Redis;
  /** Each test's own stream, and so its own registry. */
  let stream = "";
  const replicas: Replica[] = [];

  before(async () => {
    server = await FakeApiServer.start();
    if (CRD_SKIP_REASON === false) {
      const schema = ingressCrdSchema();
      server.setValidator("ingresses", (object) => validate(object, schema));
    }
    redisServer = await startRedisServer();
    redis = connectRedis(parseRedisAddress(redisServer.address), { name: "controller-test" });
  });
  beforeEach(() => {
    stream = `controller-${randomUUID()}`;
  });
  afterEach(async () => {
    await Promise.all(replicas.splice(0).map((r) => r.close()));
    server.reset();
  });
  after(async () => {
    redis.disconnect();
    await redisServer.cleanup();
    await server.close();
  });

  const registry = () => new AsyncServicesWriter(redis, streamKeys(stream));
  /** `namespace/name` -> the policy published for it. */
  async function published(): Promise<Record<string, PublishedService["policy"]>> {
    const out: Record<string, PublishedService["policy"]> = {};
    for (const [id, entry] of await registry().list()) out[id] = entry.policy;
    return out;
  }
  const registryIs = (want: Record<string, PublishedService["policy"]>, what: string) =>
    waitFor(async () => isDeepStrictEqual(await published(), want), {
      what: `${what}: ${JSON.stringify(want)}`,
      timeoutMs: 5000,
    });

  async function startReplica(name: string, env: Record<string, string> = {}): Promise<Replica> {
    const user = `replica-${name}`;
    const logs: string[] = [];
    const destination = new PassThrough();
    destination.on("data", (chunk: Buffer) => logs.push(...chunk.toString().split("\n").filter(Boolean)));
    const config = loadControllerConfig({
      PORT: "0",
      POD_NAME: name,
      SYSTEM_NAMESPACE: SYSTEM_NS,
      INGRESS_CLASS_NAME: "kourier.ingress.networking.knative.dev",
      LEASE_DURATION: "1s",
      RENEW_DEADLINE: "600ms",
      RETRY_PERIOD: "100ms",
      RESYNC_PERIOD: "1h",
      REDIS_ADDRESS: redisServer.address,
      REDIS_STREAM_NAME: stream,
      ...env,
    });
    const controller = await startController(config, {
      logger: createLogger("controller", { level: "info", destination }),
      registry: createRegistry("controller", { processMetrics: false }),
      kubeConfig: server.kubeConfig(user),
    });
    const replica: Replica = {
      user,
      controller,
      logs,
      closed: false,
      async close() {
        if (replica.closed) return;
        replica.closed = true;
        await controller.close();
      },
    };
    replicas.push(replica);
    return replica;
  }

  async function admin(replica: Replica, path: string): Promise<{ status: number; text: string }> {
    const res = await fetch(`http://127.0.0.1:${replica.controller.port}${path}`);
    return { status: res.status, text: await res.text() };
  }

  async function metric(replica: Replica, name: string): Promise<number> {
    const { text } = await admin(replica, "/metrics");
    return text
      .split("\n")
      .filter((line) => line.startsWith(name))
      .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
  }

  async function leaderOf(candidates: Replica[]): Promise<Replica> {
    await waitFor(() => candidates.filter((r) => r.controller.isLeader()).length === 1, {
      what: "exactly one leader",
      timeoutMs: 5000,
    });
    return candidates.find((r) => r.controller.isLeader()) as Replica;
  }

  const child = (name: string) => server.get("ingresses", NS, `${name}-new`);
  const service = (name: string) => server.get("services", NS, `${name}-async`);
  const parentOf = (name: string) => server.get("ingresses", NS, name);
  const externalNameOf = (name: string) =>
    (service(name)?.spec as { externalName?: string } | undefined)?.externalName;
  /** Events come last in a reconcile: once the one wanted is there, that reconcile is over. */
  const eventRecorded = (message: string) =>
    waitFor(() => server.list("events", NS).some((e) => (e as { message?: string }).message === message), {
      what: `event "${message}"`,
      timeoutMs: 5000,
    });

  it("two replicas: one leader does all the writing; children created, readiness propagated, repairs, idempotent resyncs", async () => {
    server.seed(parentIngress("hello"));
    const a = await startReplica("a", { RESYNC_PERIOD: "1s" });
    const b = await startReplica("b", { RESYNC_PERIOD: "1s" });
    const leader = await leaderOf([a, b]);
    const follower = leader === a ? b : a;

    await waitFor(() => child("hello") !== undefined && service("hello") !== undefined, {
      what: "children",
      timeoutMs: 5000,
    });
    assert.equal(
      child("hello")?.metadata.annotations?.["networking.knative.dev/ingress.class"],
      "kourier.ingress.networking.knative.dev",
    );
    await waitFor(() => condition(parentOf("hello"), "Ready")?.reason === "Reconciling", {
      what: "parent waiting for the child",
      timeoutMs: 5000,
    });

    networkingLayerMarksReady(server, "hello-new");
    await waitFor(() => condition(parentOf("hello"), "Ready")?.status === "True", {
      what: "parent Ready",
      timeoutMs: 5000,
    });
    assert.deepEqual(
      (parentOf("hello")?.status as { publicLoadBalancer?: unknown } | undefined)?.publicLoadBalancer,
      LB,
    );

    const oldUid = child("hello")?.metadata.uid;
    server.remove("ingresses", NS, "hello-new");
    await waitFor(() => child("hello") !== undefined && child("hello")?.metadata.uid !== oldUid, {
      what: "child KIngress put back",
      timeoutMs: 5000,
    });
    await waitFor(() => condition(parentOf("hello"), "Ready")?.status === "Unknown", {
      what: "parent waiting for the new child",
      timeoutMs: 5000,
    });
    networkingLayerMarksReady(server, "hello-new");

    server.edit("services", NS, "hello-async", (o) => {
      (o.spec as { externalName: string }).externalName = "somewhere.else.example.com";
    });
    await waitFor(() => externalNameOf("hello") === "async-producer.knative-serving.svc.cluster.local", {
      what: "child Service put back",
      timeoutMs: 5000,
    });
    await waitFor(() => condition(parentOf("hello"), "Ready")?.status === "True", {
      what: "parent Ready again",
      timeoutMs: 5000,
    });
    await eventRecorded("Updated Service default/hello-async");

    // Steady state: resyncs (every second here) reconcile again and write nothing.
    const reconcilesBefore = await metric(
      leader,
      'knative_async_controller_reconcile_total{result="success"',
    );
    const mark = server.actions.length;
    await new Promise((r) => setTimeout(r, 2500));
    assert.deepEqual(nonLeaseWrites(server.actions.slice(mark)), [], "no writes while nothing changes");
    assert.ok(
      (await metric(leader, 'knative_async_controller_reconcile_total{result="success"')) > reconcilesBefore,
    );

    assert.deepEqual(
      nonLeaseWrites(server.actions.filter((x) => x.user === follower.user)),
      [],
      "the follower wrote nothing",
    );
    assert.ok(nonLeaseWrites(server.actions.filter((x) => x.user === leader.user)).length >= 5);

    // Everything either replica asked of the API server is declared in rbac.ts (and so in the ClusterRole).
    for (const action of server.actions.filter((x) => x.user.startsWith("replica-"))) {
      const resource = action.subresource ? `${action.resource}/${action.subresource}` : action.resource;
      assert.ok(
        isAllowed(action.apiGroup, resource, action.verb),
        `not declared: ${action.verb} ${resource}`,
      );
    }

    for (const replica of [a, b]) {
      assert.equal((await admin(replica, "/healthz")).status, 200);
      assert.equal((await admin(replica, "/readyz")).status, 200, "followers are ready too (warm caches)");
      assert.equal((await admin(replica, "/nope")).status, 404);
      const { text } = await admin(replica, "/metrics");
      for (const name of [
        "reconcile_total",
        "reconcile_errors_total",
        "reconcile_duration_seconds",
        "workqueue_depth",
        "leader",
      ]) {
        assert.match(text, new RegExp(`knative_async_controller_${name}`));
      }
      for (const line of replica.logs) JSON.parse(line);
    }
    assert.equal(await metric(leader, "knative_async_controller_leader"), 1);
    assert.equal(await metric(follower, "knative_async_controller_leader"), 0);
    assert.ok(leader.logs.some((line) => JSON.parse(line).msg === "became leader"));
  });

  it("a bad annotation is reported on the parent and fixed by editing it; no crash, no spinning", async () => {
    server.seed(parentIngress("bad", { "async.knative.dev/mode": "sometimes" }));
    const a = await startReplica("a");
    await leaderOf([a]);
    await waitFor(() => condition(parentOf("bad"), "Ready")?.reason === "InvalidAnnotation", {
      what: "InvalidAnnotation",
      timeoutMs: 5000,
    });
    assert.equal(child("bad"), undefined);
    await eventRecorded(
      'annotation async.knative.dev/mode is "sometimes"; use conditional.async.knative.dev (the default) or always.async.knative.dev',
    );
    const mark = server.actions.length;
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(nonLeaseWrites(server.actions.slice(mark)), [], "the error is not retried in a loop");

    server.edit("ingresses", NS, "bad", (o) => {
      (o.metadata.annotations as Record<string, string>)["async.knative.dev/mode"] =
        "always.async.knative.dev";
    });
    await waitFor(() => child("bad") !== undefined, { what: "children after the fix", timeoutMs: 5000 });
    await waitFor(() => condition(parentOf("bad"), "NetworkConfigured")?.status === "True", {
      what: "NetworkConfigured",
      timeoutMs: 5000,
    });
  });

  it("publishes the async services: entries come, change and go with their KIngresses; stale and lost ones are mended", async () => {
    // Left behind by a KIngress deleted while no controller was leading.
    await registry().publish("default/ghost", { hosts: ["ghost.default.svc.cluster.local"], policy: {} });
    server.seed(parentIngress("hello"), parentIngress("slow", { "async.knative.dev/max-attempts": "4" }));
    const a = await startReplica("a", { REGISTRY_CHECK_PERIOD: "200ms" });
    await leaderOf([a]);
    await registryIs({ "default/hello": {}, "default/slow": { maxAttempts: 4 } }, "published, ghost removed");
    assert.deepEqual(
      (await registry().list()).get("default/hello")?.hosts,
      ["hello.default.svc.cluster.local"],
      "the host the route names",
    );
    await waitFor(() => child("slow") !== undefined, { what: "the child KIngress", timeoutMs: 5000 });
    const route = child("slow")?.spec as {
      rules: Array<{ http: { paths: Array<Record<string, unknown>> } }>;
    };
    assert.deepEqual(
      route.rules[0]?.http.paths[0]?.appendHeaders,
      { "Async-Original-Host": "slow.default.svc.cluster.local" },
      "the policy is not on the route",
    );

    server.edit("ingresses", NS, "slow", (o) => {
      (o.metadata.annotations as Record<string, string>)["async.knative.dev/max-attempts"] = "6";
    });
    await registryIs({ "default/hello": {}, "default/slow": { maxAttempts: 6 } }, "the new policy");

    server.edit("ingresses", NS, "hello", (o) => {
      (o.metadata.annotations as Record<string, string>)["networking.knative.dev/ingress.class"] =
        "kourier.ingress.networking.knative.dev";
    });
    await registryIs({ "default/slow": { maxAttempts: 6 } }, "no longer async: removed");

    server.remove("ingresses", NS, "slow");
    server.seed(parentIngress("fresh"));
    await registryIs({ "default/fresh": {} }, "deleted: removed; created: published");

    // Redis lost its data (FLUSHALL, a failover to an empty replica): the periodic check puts it back.
    await redis.del(streamKeys(stream).services);
    await registryIs({ "default/fresh": {} }, "put back after the loss");
  });

  it("a Redis restarted without its data gets the registry back as soon as the controller reconnects", async () => {
    server.seed(parentIngress("hello"));
    const a = await startReplica("a");
    await leaderOf([a]);
    await registryIs({ "default/hello": {} }, "published");
    await redisServer.stop();
    await redisServer.start();
    // REGISTRY_CHECK_PERIOD is 30 s here: only the reconnection can bring it back this soon.
    await registryIs({ "default/hello": {} }, "published again after the restart");
  });

  it("watches that end, fail or expire are restarted and nothing is missed", async () => {
    const a = await startReplica("a");
    await leaderOf([a]);
    await waitFor(() => a.controller.isSynced(), { what: "caches synced", timeoutMs: 5000 });

    server.endWatches();
    server.seed(parentIngress("after-end"));
    await waitFor(() => child("after-end") !== undefined, {
      what: "watch resumed after it ended",
      timeoutMs: 5000,
    });

    server.failNext({ verb: "watch", resource: "ingresses", code: 500, user: a.user });
    server.endWatches();
    server.seed(parentIngress("after-error"));
    await waitFor(() => child("after-error") !== undefined, {
      what: "watch restarted after an error",
      timeoutMs: 5000,
    });
    assert.ok((await metric(a, "knative_async_controller_informer_restarts_total")) >= 1);

    const listsBefore = server.actions.filter((x) => x.verb === "list" && x.resource === "ingresses").length;
    server.endWatches();
    server.seed(parentIngress("after-expiry"));
    server.compact();
    await waitFor(() => child("after-expiry") !== undefined, {
      what: "relisted after 410 Expired",
      timeoutMs: 5000,
    });
    assert.ok(
      server.actions.filter((x) => x.verb === "list" && x.resource === "ingresses").length > listsBefore,
    );
  });

  it("deleting the parent removes its children (owner references), and they are not recreated", async () => {
    server.seed(parentIngress("doomed"));
    const a = await startReplica("a");
    await leaderOf([a]);
    await waitFor(() => child("doomed") !== undefined && service("doomed") !== undefined, {
      what: "children",
      timeoutMs: 5000,
    });
    server.remove("ingresses", NS, "doomed");
    assert.equal(child("doomed"), undefined);
    assert.equal(service("doomed"), undefined);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(child("doomed"), undefined);
    assert.equal(service("doomed"), undefined);
  });

  it("turning async off (the KIngress's class changed) removes the children", async () => {
    server.seed(parentIngress("switch"));
    const a = await startReplica("a");
    await leaderOf([a]);
    await waitFor(() => child("switch") !== undefined && service("switch") !== undefined, {
      what: "children",
      timeoutMs: 5000,
    });
    server.edit("ingresses", NS, "switch", (o) => {
      (o.metadata.annotations as Record<string, string>)["networking.knative.dev/ingress.class"] =
        "kourier.ingress.networking.knative.dev";
    });
    await waitFor(() => child("switch") === undefined && service("switch") === undefined, {
      what: "children removed",
      timeoutMs: 5000,
    });
    assert.ok(parentOf("switch"), "the KIngress itself stays, now the real layer's");
  });

  it("leadership moves: at once when the leader shuts down; when it cannot renew, it stops writing before another leads", async () => {
    const a = await startReplica("a");
    const b = await startReplica("b");
    const first = await leaderOf([a, b]);
    const second = first === a ? b : a;

    await first.close();
    const start = Date.now();
    await waitFor(() => second.controller.isLeader(), { what: "takeover after release", timeoutMs: 5000 });
    assert.ok(Date.now() - start < 1000, "a released Lease is taken without waiting for it to expire");
    const lease = server.get("leases", SYSTEM_NS, "knative-async-controller");
    assert.equal(
      (lease?.spec as { holderIdentity?: string } | undefined)?.holderIdentity,
      second === a ? "a" : "b",
    );

    server.seed(parentIngress("handover"));
    await waitFor(() => child("handover") !== undefined, { what: "new leader reconciles", timeoutMs: 5000 });

    // The leader loses the API server for its Lease (a partition): it must stop before a third replica leads.
    server.failNext({ verb: "get", resource: "leases", user: second.user, code: 503, times: 1_000_000 });
    server.failNext({ verb: "update", resource: "leases", user: second.user, code: 503, times: 1_000_000 });
    const third = await startReplica("c");
    await waitFor(() => third.controller.isLeader(), { what: "third replica leads", timeoutMs: 5000 });
    assert.equal(second.controller.isLeader(), false);
    const stoppedAt = second.logs.map((line) => JSON.parse(line)).find((l) => l.msg === "stopped leading");
    assert.ok(stoppedAt, "the old leader logged that it stopped leading");

    const mark = server.actions.length;
    server.edit("services", NS, "handover-async", (o) => {
      (o.spec as { externalName: string }).externalName = "somewhere.else.example.com";
    });
    await waitFor(() => externalNameOf("handover") === "async-producer.knative-serving.svc.cluster.local", {
      what: "repair by the new leader",
      timeoutMs: 5000,
    });
    const writes = nonLeaseWrites(server.actions.slice(mark));
    assert.ok(writes.length > 0);
    assert.deepEqual(new Set(writes.map((w) => w.user)), new Set([third.user]));
  });

  it("runs as `knative-async controller`: kubeconfig from KUBECONFIG, JSON logs, ready, clean exit on SIGTERM", async () => {
    server.seed(parentIngress("process"));
    const dir = mkdtempSync(join(tmpdir(), "knative-async-kubeconfig-"));
    const kubeconfig = join(dir, "config");
    writeFileSync(
      kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        `clusters: [{name: fake, cluster: {server: "${server.url}", insecure-skip-tls-verify: true}}]`,
        "users: [{name: proc, user: {token: replica-process}}]",
        "contexts: [{name: fake, context: {cluster: fake, user: proc}}]",
        "current-context: fake",
        "",
      ].join("\n"),
    );
    const bin = join(dirname(fileURLToPath(import.meta.url)), "../../bin/knative-async.js");
    const env: Record<string, string | undefined> = {
      ...process.env,
      KUBECONFIG: kubeconfig,
      PORT: "0",
      POD_NAME: "process",
      SYSTEM_NAMESPACE: SYSTEM_NS,
      LEASE_DURATION: "1s",
      RENEW_DEADLINE: "600ms",
      RETRY_PERIOD: "100ms",
      REDIS_ADDRESS: redisServer.address,
      REDIS_STREAM_NAME: stream,
    };
    delete env.KUBERNETES_SERVICE_HOST;
    const proc = spawn(process.execPath, [bin, "controller"], { env, stdio: ["ignore", "pipe", "pipe"] });
    const lines: Array<Record<string, unknown>> = [];
    let stderr = "";
    let buffered = "";
    proc.stdout.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const parts = buffered.split("\n");
      buffered = parts.pop() ?? "";
      for (const line of parts.filter(Boolean)) lines.push(JSON.parse(line));
    });
    proc.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
    try {
      await waitFor(() => lines.some((l) => l.msg === "controller started"), {
        what: `start (${stderr})`,
        timeoutMs: 15_000,
      });
      const port = lines.find((l) => l.msg === "controller started")?.port;
      await waitFor(() => child("process") !== undefined, {
        what: "children from the process",
        timeoutMs: 5000,
      });
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
      assert.equal(ready.status, 200);
      proc.kill("SIGTERM");
      assert.equal(await exited, 0, stderr);
      const lease = server.get("leases", SYSTEM_NS, "knative-async-controller");
      assert.equal(
        (lease?.spec as { holderIdentity?: string } | undefined)?.holderIdentity,
        "",
        "released on shutdown",
      );
      assert.ok(lines.every((l) => l.component === "controller" && typeof l.level === "string"));
    } finally {
      if (proc.exitCode === null) proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
