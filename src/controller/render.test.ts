import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import type { BuilderConfig } from "./config.js";
import { parseRenderArgs, renderText } from "./render.js";

const config: BuilderConfig = {
  ingressClassName: "istio.ingress.networking.knative.dev",
  producerName: "async-producer",
  producerNamespace: "knative-serving",
};

const kingress = (
  name: string,
  annotations: Record<string, string> = {},
  klass = "async.ingress.networking.knative.dev",
) => `
apiVersion: networking.internal.knative.dev/v1alpha1
kind: Ingress
metadata:
  name: ${name}
  namespace: default
  uid: 0b4d6c1e-1111-4222-8333-444455556666
  annotations:
    networking.knative.dev/ingress.class: ${klass}
${Object.entries(annotations)
  .map(([k, v]) => `    ${k}: "${v}"`)
  .join("\n")}
spec:
  rules:
  - hosts: [${name}.default.example.com]
    visibility: ExternalIP
    http:
      paths:
      - splits:
        - {serviceName: ${name}-00001, serviceNamespace: default, servicePort: 80, percent: 100}
`;

const yes = { format: "yaml", anyClass: false } as const;

describe("render (dry run)", () => {
  it("prints the child KIngress and the async Service, as YAML documents", () => {
    const result = renderText(kingress("hello"), config, yes);
    assert.equal(result.ok, true);
    assert.deepEqual(result.notes, []);
    const docs = parseAllDocuments(result.output).map((d) => d.toJS());
    assert.deepEqual(
      docs.map((d) => `${d.kind} ${d.metadata.name}`),
      ["Ingress hello-new", "Service hello-async"],
    );
    assert.equal(docs[0].spec.rules[0].http.paths[0].headers.Prefer.exact, "respond-async");
  });

  it("reads JSON, several documents and kubectl Lists; prints a JSON List with -o json", () => {
    const list = JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: parseAllDocuments(`${kingress("a")}---${kingress("b")}`).map((d) => d.toJS()),
    });
    const result = renderText(list, config, { format: "json", anyClass: false });
    assert.equal(result.ok, true);
    const out = JSON.parse(result.output);
    assert.deepEqual(
      out.items.map((o: { metadata: { name: string } }) => o.metadata.name),
      ["a-new", "a-async", "b-new", "b-async"],
    );
  });

  it("skips other classes with a note, unless --any-class", () => {
    const other = kingress("x", {}, "kourier.ingress.networking.knative.dev");
    const skipped = renderText(other, config, yes);
    assert.equal(skipped.output, "");
    assert.match(
      skipped.notes[0] as string,
      /class is kourier\.ingress\.networking\.knative\.dev.*--any-class/,
    );
    assert.equal(skipped.ok, true);
    assert.match(renderText(other, config, { format: "yaml", anyClass: true }).output, /name: x-new/);
  });

  it("refuses bad annotations with the status the controller would set", () => {
    const result = renderText(kingress("bad", { "async.knative.dev/mode": "nope" }), config, yes);
    assert.equal(result.ok, false);
    assert.match(
      result.notes[0] as string,
      /Ready=False InvalidAnnotation: annotation async\.knative\.dev\/mode is "nope"/,
    );
  });

  it("reports input that is not YAML or not a KIngress", () => {
    assert.equal(renderText("a: [unclosed", config, yes).ok, false);
    const svc = renderText("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n", config, yes);
    assert.equal(svc.ok, false);
    assert.match(svc.notes[0] as string, /not a KIngress/);
    assert.equal(renderText("", config, yes).ok, false);
  });

  it("parses its arguments", () => {
    assert.deepEqual(parseRenderArgs([]), { file: "-", options: { format: "yaml", anyClass: false } });
    assert.deepEqual(parseRenderArgs(["f.yaml", "-o", "json", "--any-class"]), {
      file: "f.yaml",
      options: { format: "json", anyClass: true },
    });
    assert.deepEqual(parseRenderArgs(["--output=json"]), {
      file: "-",
      options: { format: "json", anyClass: false },
    });
    assert.equal(parseRenderArgs(["-h"]), "help");
    assert.ok("error" in (parseRenderArgs(["-o", "xml"]) as object));
    assert.ok("error" in (parseRenderArgs(["a", "b"]) as object));
    assert.ok("error" in (parseRenderArgs(["--frobnicate"]) as object));
  });

  it("works as `knative-async render` on stdin, with the controller's environment", async () => {
    const bin = join(dirname(fileURLToPath(import.meta.url)), "../../bin/knative-async.js");
    const run = (args: string[], input: string, env: Record<string, string> = {}) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, [bin, "render", ...args], { env: { ...process.env, ...env } });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (c) => {
          stdout += c;
        });
        child.stderr.on("data", (c) => {
          stderr += c;
        });
        const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        child.on("error", reject);
        child.on("close", (code) => {
          clearTimeout(timer);
          resolve({ code, stdout, stderr });
        });
        child.stdin.end(input);
      });

    const ok = await run(["-"], kingress("hello"), {
      INGRESS_CLASS_NAME: "contour.ingress.networking.knative.dev",
      PRODUCER_NAMESPACE: "async",
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      /networking\.knative\.dev\/ingress\.class: contour\.ingress\.networking\.knative\.dev/,
    );
    assert.match(ok.stdout, /externalName: async-producer\.async\.svc\.cluster\.local/);

    const bad = await run([], kingress("bad", { "async.knative.dev/mode": "nope" }));
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /InvalidAnnotation/);

    const config = await run([], kingress("hello"), {
      INGRESS_CLASS_NAME: "async.ingress.networking.knative.dev",
    });
    assert.equal(config.code, 1);
    assert.match(
      config.stderr,
      /^knative-async render: invalid controller configuration: INGRESS_CLASS_NAME/,
    );

    const usage = await run(["--frobnicate"], "");
    assert.equal(usage.code, 2);
  });
});
