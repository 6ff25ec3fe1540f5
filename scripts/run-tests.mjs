#!/usr/bin/env node
// Runs every *.test.ts under src/ and test/ with node's own test runner (Node 20 does not expand globs).
// Extra arguments are passed through, e.g. `npm test -- --test-name-pattern=producer`; arguments that
// name files or folders narrow the run to them.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

function collect(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    if (name === "node_modules") continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) collect(path, out);
    else if (name.endsWith(".test.ts")) out.push(path);
  }
  return out;
}

const args = process.argv.slice(2);
const paths = args.filter((a) => !a.startsWith("-"));
const flags = args.filter((a) => a.startsWith("-"));
const roots = paths.length > 0 ? paths : ["src", "test"];
const files = roots.flatMap((root) => (root.endsWith(".test.ts") ? [root] : collect(root, []))).sort();
if (files.length === 0) {
  console.error("no test files found");
  process.exit(1);
}
const testArgs = [
  "--import",
  "tsx",
  "--test",
  "--test-concurrency=2",
  "--test-timeout=180000",
  ...flags,
  ...files,
];

// The whole suite runs under c8 (V8's own coverage, cheap) and ends with a coverage summary of src/;
// COVERAGE=0 runs the tests alone. c8's report goes to coverage/, and the runner's totals are repeated
// as the last line, so that whoever reads the end of the output sees the test result, not a table.
const coverage = process.env.COVERAGE !== "0" && paths.length === 0;
const command = coverage
  ? [
      join("node_modules", ".bin", "c8"),
      "--reporter=json-summary",
      "--reporter=html",
      "--report-dir=coverage",
      "--include=src/**",
      "--exclude=src/**/*.test.ts",
      process.execPath,
      ...testArgs,
    ]
  : [process.execPath, ...testArgs];

const child = spawn(command[0], command.slice(1), { stdio: ["inherit", "pipe", "inherit"] });
let tail = "";
child.stdout.on("data", (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString("utf8")).slice(-4096);
});
child.on("close", (code, signal) => {
  if (coverage) printCoverage();
  const passed = /^# pass (\d+)$/m.exec(tail)?.[1];
  const failed = /^# fail (\d+)$/m.exec(tail)?.[1];
  if (passed !== undefined && failed !== undefined)
    process.stdout.write(`tests: ${passed} passed, ${failed} failed\n`);
  process.exit(code ?? (signal ? 1 : 0));
});

function printCoverage() {
  try {
    const { total } = JSON.parse(readFileSync(join("coverage", "coverage-summary.json"), "utf8"));
    const pct = (k) => `${k} ${total[k].pct}%`;
    process.stdout.write(
      `coverage of src/ (report in coverage/index.html): ${["lines", "branches", "functions"].map(pct).join(", ")}\n`,
    );
  } catch (err) {
    process.stdout.write(`coverage summary unavailable: ${err.message}\n`);
  }
}
