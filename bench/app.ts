/**
 * The no-op target app of the benchmark, run as its own process by the bench: reads each request's body
 * and answers 200 at once. It counts what arrives, by `Async-Request-Id`, and when asked keeps the
 * receive time of each id (process.hrtime, CLOCK_MONOTONIC, which is the same clock in every process on
 * the machine, so it can be compared with the load generator's 202 times).
 *
 * IPC commands: `reset` (forget everything; `times: true` to keep receive times), `stats`, `times`.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { serveCalls } from "./processes.js";

export interface AppStats {
  /** Requests received (bench control traffic excluded). */
  readonly received: number;
  /** Distinct Async-Request-Id values among them. */
  readonly distinct: number;
  /** Requests without an Async-Request-Id (the load generator's direct requests). */
  readonly anonymous: number;
  /** hrtime (ns, as a string) of the first and last request with an id; "0" when none. */
  readonly firstNs: string;
  readonly lastNs: string;
}

const ANSWER = Buffer.from('{"ok":true}');

let received = 0;
let anonymous = 0;
let firstNs = 0n;
let lastNs = 0n;
let ids = new Set<string>();
let times: Map<string, bigint> | undefined;

const server = createServer((req, res) => {
  const now = process.hrtime.bigint();
  const id = req.headers["async-request-id"];
  received++;
  if (typeof id === "string") {
    if (firstNs === 0n) firstNs = now;
    lastNs = now;
    ids.add(id);
    if (times !== undefined && !times.has(id)) times.set(id, now);
  } else {
    anonymous++;
  }
  req.on("data", () => {});
  req.on("end", () => {
    res.writeHead(200, { "content-type": "application/json", "content-length": ANSWER.length });
    res.end(ANSWER);
  });
});
server.keepAliveTimeout = 60_000;

server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  serveCalls({ port }, (message) => {
    switch (message.cmd) {
      case "reset":
        received = 0;
        anonymous = 0;
        firstNs = 0n;
        lastNs = 0n;
        ids = new Set();
        times = message.times === true ? new Map() : undefined;
        return true;
      case "stats":
        return {
          received,
          distinct: ids.size,
          anonymous,
          firstNs: String(firstNs),
          lastNs: String(lastNs),
        } satisfies AppStats;
      case "times":
        return [...(times ?? new Map<string, bigint>())].map(([id, ns]) => [id, String(ns)]);
      default:
        throw new Error(`unknown command ${String(message.cmd)}`);
    }
  });
});
