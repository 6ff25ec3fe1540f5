/**
 * The manifests under config/ agree with the code: every file parses; each container runs a real command
 * of the one image, sets only the environment variables that command's config schema reads, with values
 * its loader accepts; ports, probes and Services line up; the controller's RBAC is exactly the calls
 * declared in src/controller/rbac.ts; names that cross files (producer, consumer, Redis, stream) match.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseAllDocuments } from "yaml";
import type { z } from "zod";
import { rbacRules } from "../src/controller/rbac.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const configDir = join(root, "config");

/** The one image placeholder every manifest uses (see docs/install.md). */
const IMAGE_PLACEHOLDER = "knative-async:latest";

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML
type Doc = Record<string, any>;

interface Manifest {
  readonly file: string;
  readonly text: string;
  readonly doc: Doc;
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return yamlFiles(path);
      return /\.ya?ml$/.test(name) ? [path] : [];
    })
    .sort();
}

function loadManifests(): Manifest[] {
  return yamlFiles(configDir).flatMap((path) => {
    const text = readFileSync(path, "utf8");
    return parseAllDocuments(text).map((d) => {
      assert.deepEqual(d.errors, [], `${relative(root, path)} parses`);
      return { file: relative(root, path), text, doc: d.toJS() as Doc };
    });
  });
}

const manifests = loadManifests();
const all = (kind: string) => manifests.filter((m) => m.doc.kind === kind);
const one = (kind: string, name: string): Manifest => {
  const found = manifests.find((m) => m.doc.kind === kind && m.doc.metadata?.name === name);
  assert.ok(found, `a ${kind} named ${name} in config/`);
  return found;
};

interface Workload {
  readonly manifest: Manifest;
  readonly knative: boolean;
  readonly namespace: string;
  readonly podLabels: Record<string, string>;
  readonly podSecurity: Doc;
  readonly container: Doc;
}

/** Every container of a Deployment or a Knative Service. */
function workloads(): Workload[] {
  return manifests.flatMap((manifest) => {
    const { doc } = manifest;
    const knative = doc.kind === "Service" && String(doc.apiVersion).startsWith("serving.knative.dev/");
    if (doc.kind !== "Deployment" && !knative) return [];
    const pod = doc.spec.template;
    return (pod.spec.containers as Doc[]).map((container) => ({
      manifest,
      knative,
      namespace: doc.metadata.namespace,
      podLabels: pod.metadata?.labels ?? {},
      podSecurity: pod.spec.securityContext ?? {},
      container,
    }));
  });
}
const ours = () => workloads().filter((w) => w.container.image === IMAGE_PLACEHOLDER);

/** What the environment of a container looks like inside the pod (downward API and secrets filled in). */
function envOf(w: Workload): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of (w.container.env ?? []) as Doc[]) {
    if (entry.value !== undefined) env[entry.name] = String(entry.value);
    else if (entry.valueFrom?.fieldRef?.fieldPath === "metadata.namespace") env[entry.name] = w.namespace;
    else if (entry.valueFrom?.fieldRef?.fieldPath === "metadata.name")
      env[entry.name] = `${w.manifest.doc.metadata.name}-7d9f8-abcde`;
    else if (entry.valueFrom?.secretKeyRef)
      env[entry.name] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    else assert.fail(`${w.manifest.file}: env ${entry.name} has a source this test does not know`);
  }
  return env;
}

interface ComponentConfig {
  readonly schema: z.ZodObject;
  readonly load: (env: Record<string, string>) => unknown;
}

/** `src/<command>/config.ts`, with its `<command>EnvSchema` and `load<Command>Config`. */
async function componentConfig(command: string): Promise<ComponentConfig | string> {
  const path = join(root, "src", command, "config.ts");
  if (!existsSync(path)) return `src/${command}/config.ts does not exist yet`;
  const camel = command.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  const module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const schema = module[`${camel}EnvSchema`] as z.ZodObject | undefined;
  const load = module[`load${camel[0]?.toUpperCase()}${camel.slice(1)}Config`] as
    | ComponentConfig["load"]
    | undefined;
  assert.ok(schema, `src/${command}/config.ts exports ${camel}EnvSchema`);
  assert.ok(load, `src/${command}/config.ts exports its load function`);
  return { schema, load };
}

const commandOf = (w: Workload): string => String((w.container.args as string[] | undefined)?.[0]);

describe("manifests under config/", () => {
  it("every file parses and every object has apiVersion, kind and a name", () => {
    assert.ok(manifests.length >= 10);
    for (const { file, doc } of manifests) {
      assert.ok(
        doc.apiVersion && doc.kind && doc.metadata?.name,
        `${file}: ${JSON.stringify(doc).slice(0, 80)}`,
      );
    }
  });

  it("every object carries app.kubernetes.io/part-of: knative-async", () => {
    for (const { file, doc } of manifests) {
      assert.equal(
        doc.metadata.labels?.["app.kubernetes.io/part-of"],
        "knative-async",
        `${file}: ${doc.kind} ${doc.metadata.name}`,
      );
    }
  });

  it("our containers use the one image placeholder and run a real command of the CLI", () => {
    const cli = readFileSync(join(root, "src/cli.ts"), "utf8");
    const found = ours();
    assert.deepEqual([...new Set(found.map(commandOf))].sort(), [
      "consumer",
      "controller",
      "dispatcher",
      "producer",
      "sample-app",
    ]);
    for (const w of workloads()) {
      if (w.manifest.doc.metadata.namespace === "redis") continue;
      assert.equal(w.container.image, IMAGE_PLACEHOLDER, `${w.manifest.file}: one image placeholder`);
      assert.match(
        cli,
        new RegExp(`["']?${commandOf(w)}["']?: \\{`),
        `${commandOf(w)} is a knative-async command`,
      );
    }
  });

  it("env names are exactly ones the command's config schema reads, with values its loader accepts", async (t) => {
    for (const w of ours()) {
      const command = commandOf(w);
      const config = await componentConfig(command);
      if (typeof config === "string") {
        t.diagnostic(`not checked: ${config}`);
        continue;
      }
      const env = envOf(w);
      const known = new Set(Object.keys(config.schema.shape));
      for (const name of Object.keys(env)) {
        assert.ok(known.has(name), `${w.manifest.file}: ${command} does not read ${name}`);
      }
      // Knative sets PORT itself and refuses a Service that sets it.
      if (w.knative) assert.equal(env.PORT, undefined, `${w.manifest.file}: PORT is Knative's to set`);
      assert.doesNotThrow(() => config.load(env), `${w.manifest.file}: ${command} accepts its environment`);
    }
  });

  it("ports line up: the container listens where it says, probes and Services point at declared ports", async () => {
    for (const w of ours()) {
      const config = await componentConfig(commandOf(w));
      assert.notEqual(typeof config, "string");
      const { schema } = config as ComponentConfig;
      const ports = (w.container.ports ?? []) as Doc[];
      assert.equal(ports.length, 1, `${w.manifest.file}: one port`);
      const port = ports[0] as Doc;
      // Knative passes the containerPort as PORT; a Deployment gets the schema's default or its env.
      const listens = w.knative
        ? port.containerPort
        : Number(envOf(w).PORT ?? schema.shape.PORT?.parse(undefined));
      assert.equal(
        port.containerPort,
        listens,
        `${w.manifest.file}: containerPort is where ${commandOf(w)} listens`,
      );
      for (const probe of [w.container.livenessProbe, w.container.readinessProbe].filter(Boolean) as Doc[]) {
        assert.match(probe.httpGet.path, /^\/(healthz|readyz)$/);
        if (probe.httpGet.port !== undefined)
          assert.ok([port.name, port.containerPort].includes(probe.httpGet.port));
      }
    }
    for (const svc of all("Service").filter((m) => m.doc.apiVersion === "v1")) {
      const selected = workloads().filter((w) =>
        Object.entries(svc.doc.spec.selector ?? {}).every(([k, v]) => w.podLabels[k] === v),
      );
      assert.ok(selected.length > 0, `${svc.file}: Service ${svc.doc.metadata.name} selects a workload`);
      for (const p of svc.doc.spec.ports as Doc[]) {
        for (const w of selected) {
          const declared = ((w.container.ports ?? []) as Doc[]).some(
            (c) => c.name === p.targetPort || c.containerPort === p.targetPort,
          );
          assert.ok(
            declared,
            `${svc.file}: targetPort ${p.targetPort} is a port of ${w.manifest.doc.metadata.name}`,
          );
        }
      }
    }
  });

  it("containers run restricted: non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp", () => {
    for (const w of workloads()) {
      const c = w.container.securityContext ?? {};
      const where = `${w.manifest.file}: ${w.manifest.doc.metadata.name}`;
      assert.equal(c.runAsNonRoot ?? w.podSecurity.runAsNonRoot, true, where);
      assert.equal(c.allowPrivilegeEscalation, false, where);
      assert.deepEqual(c.capabilities?.drop, ["ALL"], where);
      assert.equal((c.seccompProfile ?? w.podSecurity.seccompProfile)?.type, "RuntimeDefault", where);
    }
  });

  it("RBAC grants exactly the calls the controller makes, to the controller's service account", () => {
    const clusterRole = all("ClusterRole");
    const role = all("Role");
    assert.equal(clusterRole.length, 1);
    assert.equal(role.length, 1);
    const normalize = (rules: Doc[]) =>
      rules
        .map((r) => ({
          apiGroups: [...r.apiGroups].sort(),
          resources: [...r.resources].sort(),
          verbs: [...r.verbs].sort(),
        }))
        .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    assert.deepEqual(normalize((clusterRole[0] as Manifest).doc.rules), normalize(rbacRules("cluster")));
    assert.deepEqual(normalize((role[0] as Manifest).doc.rules), normalize(rbacRules("system")));

    const controller = one("Deployment", "async-controller").doc;
    const account = controller.spec.template.spec.serviceAccountName;
    one("ServiceAccount", account);
    const systemNamespace = controller.metadata.namespace;
    assert.equal(
      (role[0] as Manifest).doc.metadata.namespace,
      systemNamespace,
      "the Lease Role is in SYSTEM_NAMESPACE",
    );
    for (const binding of [...all("ClusterRoleBinding"), ...all("RoleBinding")]) {
      assert.deepEqual(binding.doc.subjects, [
        { kind: "ServiceAccount", name: account, namespace: systemNamespace },
      ]);
    }
    assert.equal(
      one("ClusterRoleBinding", "knative-async-controller").doc.roleRef.name,
      (clusterRole[0] as Manifest).doc.metadata.name,
    );
    assert.equal(
      one("RoleBinding", "knative-async-controller-leases").doc.roleRef.name,
      (role[0] as Manifest).doc.metadata.name,
    );
  });

  it("the controller runs two replicas with its namespace and pod name from the downward API", () => {
    const controller = one("Deployment", "async-controller").doc;
    assert.equal(controller.spec.replicas, 2);
    const env = controller.spec.template.spec.containers[0].env as Doc[];
    const from = (name: string) => env.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath;
    assert.equal(from("SYSTEM_NAMESPACE"), "metadata.namespace");
    assert.equal(from("POD_NAME"), "metadata.name");
  });

  it("names that cross files agree: producer, consumer, Redis and stream", () => {
    const byCommand = (command: string) => ours().find((w) => commandOf(w) === command) as Workload;
    const controller = byCommand("controller");
    const producer = byCommand("producer");
    const dispatcher = byCommand("dispatcher");
    const consumer = byCommand("consumer");

    // The controller routes to the producer Knative Service it names.
    const controllerEnv = envOf(controller);
    assert.equal(controllerEnv.PRODUCER_NAME ?? "async-producer", producer.manifest.doc.metadata.name);
    assert.equal(controllerEnv.PRODUCER_NAMESPACE ?? controller.namespace, producer.namespace);
    assert.equal(envOf(producer).PRODUCER_NAME, producer.manifest.doc.metadata.name);
    assert.equal(envOf(producer).SYSTEM_NAMESPACE, producer.namespace);

    // The dispatcher delivers to the consumer.
    assert.equal(
      envOf(dispatcher).K_SINK,
      `http://${consumer.manifest.doc.metadata.name}.${consumer.namespace}.svc.cluster.local`,
    );

    // Producer and dispatcher share the stream, on the example Redis; the controller publishes the async
    // services registry next to it (its keys are derived from the stream name).
    const redis = one("Service", "redis").doc;
    const redisAddress = `${redis.metadata.name}.${redis.metadata.namespace}.svc.cluster.local:${redis.spec.ports[0].port}`;
    for (const w of [producer, dispatcher, controller]) {
      assert.equal(envOf(w).REDIS_ADDRESS, redisAddress, commandOf(w));
      assert.equal(envOf(w).REDIS_STREAM_NAME, envOf(producer).REDIS_STREAM_NAME, commandOf(w));
      assert.ok(
        (w.container.env as Doc[]).some((e) => e.name === "TLS_CERT" && e.valueFrom?.secretKeyRef?.optional),
        `${commandOf(w)} takes the Redis CA from the optional secret`,
      );
    }

    // The optional RedisStreamSource reads the same stream into the same consumer.
    const source = one("RedisStreamSource", "async-stream").doc;
    assert.equal(source.spec.stream, envOf(producer).REDIS_STREAM_NAME);
    assert.equal(source.spec.address, `redis://${redisAddress}`);
    assert.equal(source.spec.sink.ref.name, consumer.manifest.doc.metadata.name);
    assert.equal(source.spec.sink.ref.namespace, consumer.namespace);
  });

  it("the producer's NetworkPolicy selects exactly the producer's pods and admits only named peers", () => {
    const policy = one("NetworkPolicy", "async-producer");
    assert.equal(policy.file, "config/optional/producer-network-policy.yaml", "optional: the gateway varies");
    assert.equal(policy.doc.apiVersion, "networking.k8s.io/v1");
    const producer = ours().find((w) => commandOf(w) === "producer") as Workload;
    assert.equal(policy.doc.metadata.namespace, producer.namespace);
    const selector = policy.doc.spec.podSelector.matchLabels as Record<string, string>;
    const selects = (w: Workload) =>
      w.namespace === policy.doc.metadata.namespace &&
      Object.entries(selector).every(([k, v]) => w.podLabels[k] === v);
    assert.deepEqual(
      ours()
        .filter(selects)
        .map((w) => commandOf(w)),
      ["producer"],
    );
    assert.deepEqual(policy.doc.spec.policyTypes, ["Ingress"]);
    const rules = policy.doc.spec.ingress as Doc[];
    for (const rule of rules) {
      assert.ok(Array.isArray(rule.from) && rule.from.length > 0, "no rule admits everyone");
      for (const peer of rule.from as Doc[]) {
        assert.ok(peer.podSelector || peer.namespaceSelector, "each peer is a selector, not an address");
        const empty = (s: Doc | undefined) =>
          s !== undefined && !s.matchLabels && !(s.matchExpressions as Doc[] | undefined)?.length;
        assert.ok(!empty(peer.podSelector) && !empty(peer.namespaceSelector), "no selector matches all");
      }
    }
    // Knative routes to a producer scaled to zero through the activator: without it, no request arrives.
    const admitsInOwnNamespace = (app: string) =>
      rules.some((r) =>
        (r.from as Doc[]).some(
          (peer) =>
            !peer.namespaceSelector &&
            (peer.podSelector?.matchExpressions as Doc[] | undefined)?.some(
              (e) => e.key === "app" && e.operator === "In" && e.values.includes(app),
            ),
        ),
      );
    assert.ok(admitsInOwnNamespace("activator"), "the activator");
    assert.ok(admitsInOwnNamespace("autoscaler"), "the autoscaler");
    const gateways = rules.flatMap((r) =>
      (r.from as Doc[]).map((peer) => peer.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"]),
    );
    assert.ok(
      gateways.some((ns) => ["istio-system", "kourier-system", "contour-internal"].includes(ns)),
      "a networking layer's gateways",
    );
  });

  it("the sample app is asynchronous by its ingress class, with always mode shown commented out", () => {
    const sample = one("Service", "helloworld-sleep");
    assert.equal(
      sample.doc.metadata.annotations["networking.knative.dev/ingress.class"],
      "async.ingress.networking.knative.dev",
    );
    assert.equal(sample.doc.metadata.annotations["async.knative.dev/mode"], undefined);
    assert.match(sample.text, /^\s*# async\.knative\.dev\/mode: always\.async\.knative\.dev$/m);
  });

  it("the Dockerfile builds one image for every command", () => {
    const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");
    assert.match(dockerfile, /^FROM node:20\b/m);
    assert.match(dockerfile, /npm ci/);
    assert.match(dockerfile, /npm run build/);
    assert.match(dockerfile, /^ENTRYPOINT \["node", "bin\/knative-async\.js"\]$/m);
    assert.match(dockerfile, /^USER 1000/m, "numeric user, so runAsNonRoot can be verified");
    assert.ok(existsSync(join(root, "bin/knative-async.js")));
  });
});
