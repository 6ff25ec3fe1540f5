/**
 * Table-driven reconciler tests, after knative.dev/pkg/reconciler/testing: each row names the objects
 * that exist, the key to reconcile, the failures to induce, and what the reconciler must then do: the
 * creates, updates and status updates it sends (request bodies, as the API server received them) and
 * the deletes and the events it records. Nothing else may be written.
 *
 * Each row runs against the fake API server over real HTTP: the row's objects are seeded there, real
 * informers list them into the caches, `reconcile(key)` runs once, and the server's audit of requests
 * is compared with the row. The async services registry is a real Redis: the row's entries are seeded
 * there, and what it holds afterwards is compared with the row too.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Redis } from "ioredis";
import type { BuilderConfig } from "../../src/controller/config.js";
import { KubeEventRecorder } from "../../src/controller/events.js";
import { KubeClient } from "../../src/controller/kube.js";
import { IngressReconciler } from "../../src/controller/reconciler.js";
import { streamKeys } from "../../src/lib/keys.js";
import { createLogger } from "../../src/lib/logger.js";
import { freePort } from "../../src/lib/net.js";
import { connectRedis, parseRedisAddress } from "../../src/lib/redis.js";
import { AsyncServicesWriter, decodeService, type PublishedService } from "../../src/lib/registry.js";
import { startRedisServer, type TestRedisServer } from "../helpers/redis-server.js";
import { FakeApiServer, type InducedFailure, type KubeObject } from "./fake-api-server.js";

export interface TableRow {
  readonly name: string;
  /** What exists before the reconcile (in the API server and therefore in the caches). */
  readonly objects?: KubeObject[];
  /** `namespace/name` of the KIngress to reconcile. */
  readonly key: string;
  readonly failures?: InducedFailure[];
  readonly wantCreates?: KubeObject[];
  readonly wantUpdates?: KubeObject[];
  /** Compared on metadata.namespace/name and status, with lastTransitionTime left out. */
  readonly wantStatusUpdates?: KubeObject[];
  /** `"<resource> <namespace>/<name>"`, in order. */
  readonly wantDeletes?: string[];
  /** `"<type> <reason> <message>"`, in order. */
  readonly wantEvents?: string[];
  /** The reconcile must fail (and so be retried with backoff), with a message matching this. */
  readonly wantErr?: RegExp;
  /** Extra reads the reconciler makes, `"get ingresses default/name"` (fresh reads after conflicts). */
  readonly wantGets?: string[];
  /** The async services registry before the reconcile, by field (`namespace/name`). */
  readonly registry?: Record<string, PublishedService>;
  /**
   * The registry afterwards; an entry written by this reconcile has `updatedAt: WRITTEN`. Absent: as
   * seeded, untouched.
   */
  readonly wantRegistry?: Record<string, PublishedService>;
  /** The registry's Redis cannot be reached. */
  readonly registryDown?: boolean;
}

/** The `updatedAt` of an entry the reconcile wrote, in `wantRegistry`. */
export const WRITTEN = -1;

const STREAM = "table";

/** Server-assigned metadata: not part of what the reconciler decides. */
const SERVER_FIELDS = ["uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"];

function normalize(object: unknown): KubeObject {
  const copy = JSON.parse(JSON.stringify(object)) as KubeObject;
  for (const field of SERVER_FIELDS) delete copy.metadata[field];
  return copy;
}

function withoutTransitionTimes(status: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(status ?? {})) as { conditions?: Array<Record<string, unknown>> };
  for (const condition of copy.conditions ?? []) delete condition.lastTransitionTime;
  return copy;
}

function statusView(object: KubeObject): unknown {
  return {
    metadata: { namespace: object.metadata.namespace, name: object.metadata.name },
    status: withoutTransitionTimes(object.status),
  };
}

export function runTable(title: string, config: BuilderConfig, rows: readonly TableRow[]): void {
  describe(title, () => {
    let server: FakeApiServer;
    let redisServer: TestRedisServer;
    let redis: Redis;
    let unreachable: Redis;
    const keys = streamKeys(STREAM);
    const logger = createLogger("controller-test", { level: "silent" });

    before(async () => {
      server = await FakeApiServer.start();
      redisServer = await startRedisServer();
      redis = connectRedis(parseRedisAddress(redisServer.address), { name: "table" });
      // Nothing listens there: what the controller's fail-fast connection does while Redis is away.
      unreachable = connectRedis(parseRedisAddress(`127.0.0.1:${await freePort()}`), {
        name: "table-unreachable",
        failFast: true,
      });
    });
    after(async () => {
      unreachable.disconnect();
      redis.disconnect();
      await redisServer.cleanup();
      await server.close();
    });

    /** The registry as the row compares it: entries this reconcile wrote have `updatedAt: WRITTEN`. */
    async function registryView(seeded: Record<string, PublishedService>) {
      const view: Record<string, PublishedService> = {};
      for (const [id, value] of Object.entries(await redis.hgetall(keys.services))) {
        const entry = decodeService(value) as PublishedService;
        view[id] = { ...entry, updatedAt: value === JSON.stringify(seeded[id]) ? entry.updatedAt : WRITTEN };
      }
      return view;
    }

    for (const row of rows) {
      it(row.name, async () => {
        server.reset();
        server.seed(...(row.objects ?? []));
        await redis.del(keys.services);
        for (const [id, entry] of Object.entries(row.registry ?? {})) {
          await redis.hset(keys.services, id, JSON.stringify(entry));
        }
        const client = new KubeClient(server.kubeConfig("controller"));
        const ingresses = client.ingressInformer();
        const services = client.serviceInformer();
        await Promise.all([ingresses.start(), services.start()]);
        try {
          server.actions.length = 0;
          for (const failure of row.failures ?? []) server.failNext(failure);
          const reconciler = new IngressReconciler({
            client,
            ingresses,
            services,
            events: new KubeEventRecorder(client, logger, "test"),
            config,
            logger,
            asyncServices: new AsyncServicesWriter(row.registryDown ? unreachable : redis, keys),
          });

          let error: unknown;
          try {
            await reconciler.reconcile(row.key);
          } catch (err) {
            error = err;
          }
          if (row.wantErr) {
            assert.ok(error instanceof Error, "the reconcile should have failed");
            assert.match(error.message, row.wantErr);
          } else if (error !== undefined) {
            throw error;
          }

          const writes = server.actions.filter((a) => a.verb !== "list" && a.verb !== "watch");
          const of = (verb: string, sub?: string) =>
            writes.filter((a) => a.verb === verb && a.resource !== "events" && a.subresource === sub);

          assert.deepEqual(
            of("create").map((a) => normalize(a.object)),
            (row.wantCreates ?? []).map(normalize),
            "creates",
          );
          assert.deepEqual(
            of("update").map((a) => normalize(a.object)),
            (row.wantUpdates ?? []).map(normalize),
            "updates",
          );
          assert.deepEqual(
            of("update", "status").map((a) => statusView(a.object as KubeObject)),
            (row.wantStatusUpdates ?? []).map(statusView),
            "status updates",
          );
          assert.deepEqual(
            writes
              .filter((a) => a.resource === "events" && a.verb === "create")
              .map((a) => {
                const e = a.object as unknown as { type: string; reason: string; message: string };
                return `${e.type} ${e.reason} ${e.message}`;
              }),
            row.wantEvents ?? [],
            "events",
          );
          assert.deepEqual(
            of("get").map((a) => `get ${a.resource} ${a.namespace}/${a.name}`),
            row.wantGets ?? [],
            "fresh reads",
          );
          assert.deepEqual(
            of("delete").map((a) => `${a.resource} ${a.namespace}/${a.name}`),
            row.wantDeletes ?? [],
            "deletes",
          );
          assert.deepEqual(
            writes.filter((a) => a.verb === "patch"),
            [],
            "the reconciler never patches",
          );
          assert.deepEqual(
            await registryView(row.registry ?? {}),
            row.wantRegistry ?? row.registry ?? {},
            "async services registry",
          );
        } finally {
          await Promise.all([ingresses.stop(), services.stop()]);
        }
      });
    }
  });
}
