/**
 * `knative-async render [FILE|-] [-o yaml|json] [--any-class]`: prints the child KIngress and Service the
 * controller would write for a KIngress, for users who want to see before they apply. Reads YAML or JSON
 * (one or several documents, or a `kubectl get -o yaml` List) from a file or stdin, and uses the same
 * configuration (INGRESS_CLASS_NAME, PRODUCER_NAME, PRODUCER_NAMESPACE, SYSTEM_NAMESPACE) and the same
 * pure builders as the controller, so what it prints is what the controller writes.
 */
import { readFile } from "node:fs/promises";
import { parseAllDocuments, stringify } from "yaml";
import { ConfigError, type Env } from "../lib/config.js";
import { type BuilderConfig, loadControllerConfig } from "./config.js";
import { ASYNC_INGRESS_CLASS, INGRESS_CLASS_ANNOTATION, INGRESS_KIND, NETWORKING_GROUP } from "./names.js";
import { makeChildIngress } from "./resources/ingress.js";
import { isAsyncIngress, keyOf } from "./resources/meta.js";
import { makeProducerService } from "./resources/service.js";
import { readAsyncSettings } from "./resources/settings.js";
import type { KIngress } from "./types.js";

const USAGE = `usage: knative-async render [FILE|-] [-o yaml|json] [--any-class]

Prints the child KIngress and Service the controller would write for each KIngress in FILE (or stdin),
e.g.  kubectl get kingress hello -o yaml | knative-async render

  -o, --output yaml|json   output format (default yaml)
  --any-class              render KIngresses whatever their ingress class (the controller only
                           reconciles ${ASYNC_INGRESS_CLASS})

Settings come from the controller's environment variables: INGRESS_CLASS_NAME, PRODUCER_NAME,
PRODUCER_NAMESPACE, SYSTEM_NAMESPACE.
`;

export interface RenderOptions {
  readonly format: "yaml" | "json";
  readonly anyClass: boolean;
}

export interface RenderResult {
  /** The rendered objects, in the chosen format. */
  readonly output: string;
  /** One line per KIngress skipped or refused, for stderr. */
  readonly notes: string[];
  /** False when some KIngress could not be rendered (bad annotations, not a KIngress). */
  readonly ok: boolean;
}

/** Pure: text in, text out. */
export function renderText(text: string, config: BuilderConfig, options: RenderOptions): RenderResult {
  const notes: string[] = [];
  let ok = true;
  const objects: unknown[] = [];

  const inputs: unknown[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) {
      return { output: "", notes: [`cannot parse input: ${doc.errors[0]?.message}`], ok: false };
    }
    const value = doc.toJS();
    if (value === null || value === undefined) continue;
    const items = (value as { items?: unknown }).items;
    if (Array.isArray(items) && /List$/.test(String((value as { kind?: unknown }).kind ?? "")))
      inputs.push(...items);
    else inputs.push(value);
  }
  if (inputs.length === 0) return { output: "", notes: ["no objects in the input"], ok: false };

  for (const input of inputs) {
    const object = input as Partial<KIngress>;
    if (object.kind !== INGRESS_KIND || !String(object.apiVersion ?? "").startsWith(`${NETWORKING_GROUP}/`)) {
      notes.push(
        `skipped ${object.kind ?? "an object"} ${keyOf(object)}: not a KIngress (${NETWORKING_GROUP})`,
      );
      ok = false;
      continue;
    }
    const parent: KIngress = {
      ...object,
      metadata: object.metadata ?? {},
      spec: object.spec ?? {},
    } as KIngress;
    if (!isAsyncIngress(parent) && !options.anyClass) {
      const cls = parent.metadata.annotations?.[INGRESS_CLASS_ANNOTATION] ?? "(none)";
      notes.push(
        `skipped KIngress ${keyOf(parent)}: its class is ${cls}, so the controller ignores it (pass --any-class to render it anyway)`,
      );
      continue;
    }
    const settings = readAsyncSettings(parent);
    if (!settings.ok) {
      notes.push(
        `KIngress ${keyOf(parent)}: Ready=False ${settings.problem.reason}: ${settings.problem.message}`,
      );
      ok = false;
      continue;
    }
    if (!parent.metadata.uid) {
      notes.push(
        `KIngress ${keyOf(parent)} has no uid: ownerReferences are left out (on a cluster they point to it)`,
      );
    }
    objects.push(makeChildIngress(parent, config), makeProducerService(parent, config));
  }

  const output =
    objects.length === 0
      ? ""
      : options.format === "json"
        ? `${JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }, null, 2)}\n`
        : objects.map((o) => stringify(o, { lineWidth: 0 })).join("---\n");
  return { output, notes, ok };
}

export function parseRenderArgs(
  argv: string[],
): { file: string; options: RenderOptions } | { error: string } | "help" {
  let file: string | undefined;
  let format: "yaml" | "json" = "yaml";
  let anyClass = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "-h" || arg === "--help") return "help";
    if (arg === "--any-class") anyClass = true;
    else if (arg === "-o" || arg === "--output" || arg.startsWith("--output=") || arg.startsWith("-o=")) {
      const value = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : argv[++i];
      if (value !== "yaml" && value !== "json")
        return { error: `-o must be yaml or json (got ${JSON.stringify(value)})` };
      format = value;
    } else if (arg !== "-" && arg.startsWith("-")) return { error: `unknown option ${arg}` };
    else if (file === undefined) file = arg;
    else return { error: `only one input file, got ${JSON.stringify(file)} and ${JSON.stringify(arg)}` };
  }
  return { file: file ?? "-", options: { format, anyClass } };
}

async function readInput(file: string): Promise<string> {
  if (file !== "-") return readFile(file, "utf8");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function runRender(argv: string[], env: Env): Promise<number> {
  const args = parseRenderArgs(argv);
  if (args === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  if ("error" in args) {
    process.stderr.write(`knative-async render: ${args.error}\n\n${USAGE}`);
    return 2;
  }
  let config: BuilderConfig;
  try {
    config = loadControllerConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`knative-async render: ${err.message}\n`);
    return 1;
  }
  let text: string;
  try {
    text = await readInput(args.file);
  } catch (err) {
    process.stderr.write(`knative-async render: cannot read ${args.file}: ${(err as Error).message}\n`);
    return 1;
  }
  const result = renderText(text, config, args.options);
  process.stdout.write(result.output);
  for (const note of result.notes) process.stderr.write(`knative-async render: ${note}\n`);
  return result.ok ? 0 : 1;
}

export async function main(argv: string[]): Promise<void> {
  process.exitCode = await runRender(argv, process.env);
}
