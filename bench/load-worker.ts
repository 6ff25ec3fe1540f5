/**
 * The load generator, in its own process so it never shares an event loop with what it measures.
 *
 * IPC commands:
 * - `autocannon`: closed-loop load (each connection sends its next request when the last is answered)
 *   for a fixed time; answers a `LoadResult`.
 * - `paced`: open-loop load at a steady rate with undici, recording for every 202 the
 *   `Async-Request-Id` and the hrtime at which its answer arrived; answers a `PacedResult`.
 */
import autocannon from "autocannon";
import { Pool } from "undici";
import { serveCalls } from "./processes.js";
import { percentile } from "./stats.js";
import { makeBody } from "./workload.js";

export interface LoadRequest {
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly bodySize: number;
  readonly connections: number;
  readonly durationS: number;
}

export interface LoadResult {
  readonly durationS: number;
  /** Answers received, any status. */
  readonly answered: number;
  readonly ok: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  readonly rps: number;
  readonly latencyMs: {
    readonly p50: number;
    readonly p99: number;
    readonly max: number;
    readonly mean: number;
  };
  readonly statusCodes: Record<string, number>;
}

export interface PacedRequest extends Omit<LoadRequest, "durationS"> {
  readonly rate: number;
  readonly durationS: number;
}

export interface PacedResult {
  readonly sent: number;
  readonly ok: number;
  readonly failed: number;
  readonly durationS: number;
  /** Client-side time to the 202. */
  readonly answerMs: { readonly p50: number; readonly p99: number; readonly max: number };
  /** `[Async-Request-Id, hrtime ns of the 202]` per accepted request. */
  readonly accepted: [string, string][];
}

async function runAutocannon(req: LoadRequest): Promise<LoadResult> {
  const result = await autocannon({
    url: req.url,
    method: "POST",
    headers: req.headers,
    body: makeBody(req.bodySize),
    connections: req.connections,
    duration: req.durationS,
    pipelining: 1,
    timeout: 30,
  });
  const statusCodes: Record<string, number> = {};
  for (const [code, stats] of Object.entries(result.statusCodeStats ?? {})) {
    statusCodes[code] = Number((stats as { count: number }).count);
  }
  const ok = result["2xx"];
  const answered = ok + result.non2xx;
  return {
    durationS: result.duration,
    answered,
    ok,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    rps: answered / result.duration,
    latencyMs: {
      p50: result.latency.p50,
      p99: result.latency.p99,
      max: result.latency.max,
      mean: result.latency.average,
    },
    statusCodes,
  };
}

async function runPaced(req: PacedRequest): Promise<PacedResult> {
  const url = new URL(req.url);
  const pool = new Pool(url.origin, { connections: req.connections, pipelining: 1 });
  const body = makeBody(req.bodySize);
  const accepted: [string, string][] = [];
  const answerMs: number[] = [];
  let sent = 0;
  let failed = 0;
  const inFlight = new Set<Promise<void>>();

  const fire = () => {
    const t0 = process.hrtime.bigint();
    const p = pool
      .request({ path: url.pathname, method: "POST", headers: req.headers, body })
      .then(async (res) => {
        const t = process.hrtime.bigint();
        const id = res.headers["async-request-id"];
        await res.body.dump();
        if (res.statusCode === 202 && typeof id === "string") {
          accepted.push([id, String(t)]);
          answerMs.push(Number(t - t0) / 1e6);
        } else failed++;
      })
      .catch(() => {
        failed++;
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
    sent++;
  };

  const started = performance.now();
  const total = Math.round(req.rate * req.durationS);
  // Sends whatever is due every millisecond: the schedule follows the clock, not the answers, so a
  // slow answer does not slow the load down (no coordinated omission).
  await new Promise<void>((done) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * req.rate));
      while (sent < due) fire();
      if (sent >= total) done();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const durationS = (performance.now() - started) / 1000;
  await Promise.all([...inFlight]);
  await pool.close();
  answerMs.sort((a, b) => a - b);
  return {
    sent,
    ok: accepted.length,
    failed,
    durationS,
    answerMs: {
      p50: percentile(answerMs, 50),
      p99: percentile(answerMs, 99),
      max: answerMs.at(-1) ?? Number.NaN,
    },
    accepted,
  };
}

serveCalls({ pid: process.pid }, (message) => {
  switch (message.cmd) {
    case "autocannon":
      return runAutocannon(message.request as LoadRequest);
    case "paced":
      return runPaced(message.request as PacedRequest);
    default:
      throw new Error(`unknown command ${String(message.cmd)}`);
  }
});
