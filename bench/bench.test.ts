/**
 * Tests of the bench's own helpers. Not part of `npm test` (which runs src/ and test/): run them with
 * `node scripts/run-tests.mjs bench`.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { loadBenchConfig } from "./config.js";
import { parseProc, sampleProc } from "./processes.js";
import { area, type CpuProfile, summarize } from "./profile-summary.js";
import { atLeast, atMost, percentile, table } from "./stats.js";
import { makeBody } from "./workload.js";

describe("percentile", () => {
  it("is the nearest rank", () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(percentile(values, 50), 50);
    assert.equal(percentile(values, 99), 99);
    assert.equal(percentile(values, 100), 100);
    assert.equal(percentile([7], 99), 7);
    assert.ok(Number.isNaN(percentile([], 50)));
  });
});

describe("targets", () => {
  it("compare in the direction the issue states them", () => {
    assert.equal(atLeast("rps", 18_000, 18_000).met, true);
    assert.equal(atLeast("rps", 17_999, 18_000).met, false);
    assert.equal(atMost("p99", 10.5, 10, " ms").met, false);
    assert.equal(atMost("p99", 9, 10, " ms").measured, "9.00 ms");
  });
});

describe("table", () => {
  it("pads every column to its widest cell", () => {
    const text = table(["a", "long header"], [["wide cell", "x"]]);
    const lines = text.split("\n");
    assert.equal(lines.length, 3);
    assert.equal(new Set(lines.map((l) => l.length)).size, 1);
  });
});

describe("makeBody", () => {
  it("makes JSON of exactly the size asked for", () => {
    for (const size of [10, 1024, 65_536]) {
      const body = makeBody(size);
      assert.equal(body.length, size);
      JSON.parse(body.toString());
    }
    assert.equal(makeBody(3).length, 3);
  });
});

describe("/proc sampling", () => {
  it("parses status and stat, including a command name with spaces and parentheses", () => {
    const status = "Name:\tnode\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
    const fields = Array.from({ length: 50 }, (_, i) => String(i));
    fields[11] = "250"; // utime
    fields[12] = "50"; // stime
    const stat = `123 (my (odd) cmd) ${fields.join(" ")}`;
    assert.deepEqual(parseProc(status, stat), { rss: 100 * 1024 * 1024, hwm: 200 * 1024 * 1024, cpuS: 3 });
  });

  it("reads this process", () => {
    const sample = sampleProc(process.pid);
    assert.ok(sample);
    assert.ok(sample.rss > 10 * 1024 * 1024);
    assert.ok(sample.hwm >= sample.rss);
    assert.equal(sampleProc(2 ** 22 + 7), undefined);
  });
});

describe("profile summary", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-profile-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("finds the function that burned the CPU in a real --cpu-prof profile", () => {
    const script =
      "function burnCpu(){let x=0;const end=Date.now()+400;while(Date.now()<end){x+=Math.sqrt(x+1)}return x}burnCpu();";
    const run = spawnSync(process.execPath, ["--cpu-prof", "--cpu-prof-dir", dir, "-e", script]);
    assert.equal(run.status, 0, String(run.stderr));
    const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
    assert.ok(file);
    const profile = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
    const summary = summarize(profile, 5);
    assert.equal(summary.functions[0]?.name, "burnCpu");
    assert.ok((summary.functions[0]?.percent ?? 0) > 50);
    assert.ok(summary.busyMs >= 300);
  });

  it("groups code by where it lives", () => {
    assert.equal(area("file:///w/node_modules/ioredis/built/Redis.js", "x"), "ioredis");
    assert.equal(area("file:///w/node_modules/@scope/pkg/a.js", "x"), "@scope/pkg");
    assert.equal(area("file:///w/.bench-tmp/dist/producer/producer.js", "x"), "dist/producer/producer.js");
    assert.equal(area("file:///w/src/producer/producer.ts", "x"), "src/producer/producer.ts");
    assert.equal(area("node:internal/streams/readable", "x"), "node internals");
    assert.equal(area("", "(garbage collector)"), "(garbage collector)");
  });
});

describe("bench config", () => {
  it("has defaults and refuses unknown scenarios", () => {
    const config = loadBenchConfig({});
    assert.deepEqual(config.only, ["ingest", "ingest-size", "drain", "latency", "backlog", "large-body"]);
    assert.equal(config.connections, 50);
    assert.deepEqual(loadBenchConfig({ BENCH_ONLY: "drain, ingest" }).only, ["drain", "ingest"]);
    assert.throws(() => loadBenchConfig({ BENCH_ONLY: "ingest,nope" }), /BENCH_ONLY: unknown scenario nope/);
  });
});
