/**
 * The README is the user's manual: its configuration reference must name every variable the components
 * read (and none they do not), and its two commands must be the ones package.json and CI run.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { consumerEnvSchema } from "../src/consumer/config.js";
import { controllerEnvSchema } from "../src/controller/config.js";
import { devEnvSchema } from "../src/dev/config.js";
import { dispatcherEnvSchema } from "../src/dispatcher/config.js";
import { dlqEnvSchema } from "../src/dlq/config.js";
import { producerEnvSchema } from "../src/producer/config.js";
import { sampleAppEnvSchema } from "../src/sample-app/config.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const reference = readme.slice(
  readme.indexOf("## Configuration reference"),
  readme.indexOf("## Observability"),
);

test("every environment variable the components read is documented, and nothing else", () => {
  const read = new Set(
    [
      producerEnvSchema,
      dispatcherEnvSchema,
      consumerEnvSchema,
      controllerEnvSchema,
      sampleAppEnvSchema,
      dlqEnvSchema,
      devEnvSchema,
    ].flatMap((schema) => Object.keys(schema.shape)),
  );
  const documented = new Set(
    [...reference.matchAll(/^\| `([A-Z][A-Z0-9_]+)` \|/gm)].map((m) => m[1] as string),
  );
  const missing = [...read].filter((name) => !documented.has(name));
  const unknown = [...documented].filter((name) => !read.has(name));
  assert.deepEqual(missing, [], "read but not documented");
  assert.deepEqual(unknown, [], "documented but not read");
});

test("the README's two commands are the ones that exist", () => {
  assert.match(readme, /npm ci && npm run dev/);
  assert.match(readme, /npm ci && npm test/);
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.match(pkg.scripts.dev, /knative-async\.js dev/);
  assert.ok(pkg.scripts.test);
  assert.match(readFileSync(new URL("../.ci/run", import.meta.url), "utf8"), /npm test/);
});
