import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { freePort, waitFor } from "../../test/helpers/net.js";
import { LOOPBACK_TARGETS } from "../../test/helpers/targets.js";
import type { AsyncRequest } from "./envelope.js";
import { ErrorCode } from "./errors.js";
import { listen } from "./http.js";
import type { DeliveryOutcome } from "./outcome.js";
import { appReceivesIdempotencyKey, createReplayer, type Replayer } from "./replay.js";

interface Seen {
  method: string;
  url: string;
  headers: Record<string, string[] | undefined>;
  rawHeaders: string[];
  body: Buffer;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => void;

/** A real HTTP server on port 0 whose behaviour each test sets. */
async function startTarget() {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  let handler: Handler = (_req, res) => res.end("ok");
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headersDistinct,
        rawHeaders: req.rawHeaders,
        body,
      });
      handler(req, res, body);
    });
  });
  server.on("connection", (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  const port = await listen(server, 0, "127.0.0.1");
  return {
    port,
    origin: `http://127.0.0.1:${port}`,
    seen,
    sockets,
    get connections() {
      return connections;
    },
    handle(h: Handler) {
      handler = h;
      seen.length = 0;
    },
    close() {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function envelope(url: string, overrides: Partial<AsyncRequest> = {}): AsyncRequest {
  return { id: "req-1", url, method: "POST", headers: {}, body: Buffer.alloc(0), ...overrides };
}

function assertError(outcome: DeliveryOutcome, code: ErrorCode): void {
  assert.equal(outcome.kind, "error", `expected ${code}, got ${JSON.stringify(outcome)}`);
  assert.equal(outcome.kind === "error" && outcome.code, code, JSON.stringify(outcome));
}

describe("replay", () => {
  let target: Awaited<ReturnType<typeof startTarget>>;
  let replayer: Replayer;

  before(async () => {
    target = await startTarget();
    replayer = createReplayer({
      timeoutMs: 5_000,
      maxTimeoutMs: 10_000,
      connectionsPerOrigin: 8,
      targets: LOOPBACK_TARGETS,
    });
  });
  after(async () => {
    await replayer.close();
    await target.close();
  });

  test("sends method, exact path and query, headers and a byte-exact binary body", async () => {
    target.handle((_req, res) => res.end("done"));
    const body = randomBytes(256 * 1024);
    const path = "/some/path/../x%20y;p?b=2&a=1&a=3&empty=&q=%2F";
    const outcome = await replayer.replay(
      envelope(`${target.origin}${path}`, {
        id: "0191b7c5-request-id",
        method: "PUT",
        body,
        headers: {
          Host: ["hello.example.com"],
          Connection: ["keep-alive, X-Hop-Named"],
          "X-Hop-Named": ["must not pass"],
          "Keep-Alive": ["timeout=5"],
          "Proxy-Authorization": ["Basic eA=="],
          "Proxy-Authenticate": ["Basic"],
          "Proxy-Connection": ["keep-alive"],
          Te: ["trailers"],
          Trailer: ["X-Checksum"],
          "Transfer-Encoding": ["chunked"],
          Upgrade: ["websocket"],
          Expect: ["100-continue"],
          "Content-Length": ["3"],
          "Async-Original-Host": ["hello.default.svc.cluster.local"],
          "Async-Delivery-Policy": ["max-attempts=3"],
          "Async-Request-Id": ["spoofed"],
          Prefer: ["respond-async", "wait=10"],
          "Content-Type": ["application/octet-stream"],
          "X-Multi": ["one", "two, three"],
          Cookie: ["a=1"],
          Authorization: ["Bearer token"],
        },
      }),
      3,
    );
    assert.equal(outcome.kind, "response");
    assert.equal(outcome.kind === "response" && outcome.status, 200);
    assert.equal(target.seen.length, 1);
    const seen = target.seen[0] as Seen;
    assert.equal(seen.method, "PUT");
    assert.equal(seen.url, path);
    assert.ok(seen.body.equals(body), "body is byte-exact");
    const h = seen.headers;
    assert.deepEqual(h["x-multi"], ["one", "two, three"]);
    assert.deepEqual(h["content-type"], ["application/octet-stream"]);
    assert.deepEqual(h.cookie, ["a=1"]);
    assert.deepEqual(h.authorization, ["Bearer token"]);
    assert.deepEqual(h.prefer, ["respond-sync"]);
    assert.deepEqual(h["x-forwarded-host"], ["hello.example.com"]);
    assert.deepEqual(h["async-request-id"], ["0191b7c5-request-id"]);
    assert.deepEqual(h["async-attempt"], ["3"]);
    assert.deepEqual(h.host, [`127.0.0.1:${target.port}`]);
    assert.deepEqual(h["content-length"], [String(body.length)]);
    for (const gone of [
      "x-hop-named",
      "keep-alive",
      "proxy-authorization",
      "proxy-authenticate",
      "proxy-connection",
      "te",
      "trailer",
      "transfer-encoding",
      "upgrade",
      "expect",
      "async-original-host",
      "async-delivery-policy",
    ]) {
      assert.equal(h[gone], undefined, `${gone} is not replayed`);
    }
    // Connection is the pool's own (keep-alive), never the client's list.
    assert.ok(!(h.connection ?? []).join(",").toLowerCase().includes("x-hop-named"));
  });

  test("keeps an existing X-Forwarded-Host and adds none without a Host", async () => {
    target.handle((_req, res) => res.end());
    await replayer.replay(
      envelope(`${target.origin}/`, { headers: { Host: ["a.example"], "X-Forwarded-Host": ["b.example"] } }),
    );
    assert.deepEqual(target.seen[0]?.headers["x-forwarded-host"], ["b.example"]);
    target.handle((_req, res) => res.end());
    await replayer.replay(envelope(`${target.origin}/`));
    assert.equal(target.seen[0]?.headers["x-forwarded-host"], undefined);
    assert.equal(target.seen[0]?.headers["async-attempt"], undefined);
  });

  test("an empty GET carries no body headers, an empty POST says Content-Length: 0", async () => {
    target.handle((_req, res) => res.end());
    await replayer.replay(envelope(`${target.origin}/get`, { method: "GET" }));
    assert.equal(target.seen[0]?.headers["content-length"], undefined);
    assert.equal(target.seen[0]?.headers["transfer-encoding"], undefined);
    target.handle((_req, res) => res.end());
    await replayer.replay(envelope(`${target.origin}/post`, { method: "POST" }));
    assert.deepEqual(target.seen[0]?.headers["content-length"], ["0"]);
  });

  test("a url without a path is sent to /", async () => {
    target.handle((_req, res) => res.end());
    await replayer.replay(envelope(`${target.origin}?x=1`, { method: "GET" }));
    assert.equal(target.seen[0]?.url, "/?x=1");
  });

  test("any HTTP answer is a response outcome: 404, a redirect (not followed), 503 with Retry-After", async () => {
    target.handle((_req, res) => {
      res.writeHead(404).end("nope");
    });
    const notFound = await replayer.replay(envelope(`${target.origin}/missing`));
    assert.equal(notFound.kind, "response");
    assert.equal(notFound.kind === "response" && notFound.status, 404);
    assert.equal(notFound.retryAfterMs, undefined);
    assert.ok(notFound.durationMs >= 0);

    target.handle((_req, res) => {
      res.writeHead(302, { location: "/elsewhere" }).end();
    });
    const redirect = await replayer.replay(envelope(`${target.origin}/old`));
    assert.equal(redirect.kind === "response" && redirect.status, 302);
    assert.equal(target.seen.length, 1, "the redirect is not followed");

    target.handle((_req, res) => {
      res.writeHead(503, { "retry-after": "7" }).end();
    });
    const busy = await replayer.replay(envelope(`${target.origin}/busy`));
    assert.deepEqual(
      { ...busy, durationMs: 0 },
      { kind: "response", status: 503, retryAfterMs: 7000, durationMs: 0 },
    );
  });

  test("a large answer is discarded without failing the replay", async () => {
    const big = Buffer.alloc(3 * 1024 * 1024, 120);
    target.handle((_req, res) => res.end(big));
    const outcome = await replayer.replay(envelope(`${target.origin}/big`));
    assert.equal(outcome.kind === "response" && outcome.status, 200);
  });

  test("a closed port or an unknown host is TargetUnreachable", async () => {
    const port = await freePort();
    assertError(await replayer.replay(envelope(`http://127.0.0.1:${port}/`)), ErrorCode.TargetUnreachable);
    assertError(await replayer.replay(envelope(`http://localhost:${port}/`)), ErrorCode.TargetUnreachable);
    assertError(await replayer.replay(envelope("http://no-such-host.invalid/")), ErrorCode.TargetUnreachable);
  });

  test("a hanging target is TargetTimeout within the timeout and its connection is closed", async () => {
    const fast = createReplayer({ timeoutMs: 300, targets: LOOPBACK_TARGETS });
    try {
      let hung: Socket | undefined;
      target.handle((req) => {
        hung = req.socket;
      });
      const outcome = await fast.replay(envelope(`${target.origin}/hang`));
      assertError(outcome, ErrorCode.TargetTimeout);
      assert.ok(outcome.durationMs >= 290 && outcome.durationMs < 2_000, `took ${outcome.durationMs} ms`);
      assert.ok(hung, "the target received the request");
      await waitFor(() => !target.sockets.has(hung as Socket), {
        timeoutMs: 2_000,
        what: "the timed-out connection to close",
      });
    } finally {
      await fast.close();
    }
  });

  test("a body that stalls after the status line is TargetTimeout", async () => {
    const fast = createReplayer({ timeoutMs: 300, targets: LOOPBACK_TARGETS });
    try {
      target.handle((_req, res) => {
        res.writeHead(200, { "content-length": "100" });
        res.write("partial");
      });
      assertError(await fast.replay(envelope(`${target.origin}/stall`)), ErrorCode.TargetTimeout);
    } finally {
      await fast.close();
    }
  });

  test("the envelope's timeout applies, clamped to the maximum", async () => {
    const replayer2 = createReplayer({ timeoutMs: 5_000, maxTimeoutMs: 400, targets: LOOPBACK_TARGETS });
    try {
      target.handle(() => {});
      const short = await replayer2.replay(envelope(`${target.origin}/`, { policy: { timeoutMs: 150 } }));
      assertError(short, ErrorCode.TargetTimeout);
      assert.ok(short.durationMs >= 140 && short.durationMs < 380, `took ${short.durationMs} ms`);
      const clamped = await replayer2.replay(
        envelope(`${target.origin}/`, { policy: { timeoutMs: 60_000 } }),
      );
      assertError(clamped, ErrorCode.TargetTimeout);
      assert.ok(clamped.durationMs >= 390 && clamped.durationMs < 2_000, `took ${clamped.durationMs} ms`);
    } finally {
      await replayer2.close();
    }
  });

  test("a request still waiting for a connection at its deadline is TargetUnreachable and never sent", async () => {
    const single = createReplayer({ timeoutMs: 5_000, connectionsPerOrigin: 1, targets: LOOPBACK_TARGETS });
    try {
      target.handle(() => {});
      const first = single.replay(envelope(`${target.origin}/first`, { policy: { timeoutMs: 600 } }));
      const queued = await single.replay(envelope(`${target.origin}/queued`, { policy: { timeoutMs: 150 } }));
      assertError(queued, ErrorCode.TargetUnreachable);
      assert.ok(queued.durationMs < 500, `took ${queued.durationMs} ms`);
      assertError(await first, ErrorCode.TargetTimeout);
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(
        target.seen.map((s) => s.url),
        ["/first"],
        "the queued request was dropped, not sent late",
      );
    } finally {
      await single.close();
    }
  });

  test("a connection destroyed after the request was read is TargetFailed", async () => {
    target.handle((req) => req.socket.destroy());
    assertError(await replayer.replay(envelope(`${target.origin}/crash`)), ErrorCode.TargetFailed);
  });

  test("a header HTTP forbids is MalformedEvent, never sent", async () => {
    target.handle((_req, res) => res.end());
    const outcome = await replayer.replay(
      envelope(`${target.origin}/`, { headers: { "X-Bad": ["a\r\nb"] } }),
    );
    assertError(outcome, ErrorCode.MalformedEvent);
    assert.equal(target.seen.length, 0);
  });

  test("sequential replays reuse kept-alive connections", async () => {
    target.handle((_req, res) => res.end("ok"));
    const before = target.connections;
    for (let i = 0; i < 100; i++) {
      const outcome = await replayer.replay(
        envelope(`${target.origin}/n/${i}`, { body: Buffer.from(`#${i}`) }),
      );
      assert.equal(outcome.kind === "response" && outcome.status, 200);
    }
    assert.equal(target.seen.length, 100);
    assert.ok(target.connections - before <= 2, `opened ${target.connections - before} connections`);
  });

  // The dispatcher decides whether retrying a POST is safe from appReceivesIdempotencyKey: it must say
  // exactly what the replay sends, or a request whose key was stripped would be retried as if it had one.
  const keyCases: { name: string; headers: Record<string, string[]>; want: boolean }[] = [
    { name: "a plain key", headers: { "Idempotency-Key": ["k"] }, want: true },
    { name: "a key stored in lower case", headers: { "idempotency-key": ["k"] }, want: true },
    { name: "no key", headers: { "Content-Type": ["text/plain"] }, want: false },
    {
      name: "a key named by Connection",
      headers: { "Idempotency-Key": ["k"], Connection: ["Idempotency-Key"] },
      want: false,
    },
    {
      name: "a key named by Connection among other tokens, in another case",
      headers: { "idempotency-key": ["k"], connection: ["keep-alive , IDEMPOTENCY-KEY"] },
      want: false,
    },
    {
      name: "a key named on a second Connection line",
      headers: { "Idempotency-Key": ["k"], Connection: ["keep-alive", "idempotency-key"] },
      want: false,
    },
    {
      name: "a key beside a Connection that names something else",
      headers: { "Idempotency-Key": ["k"], Connection: ["keep-alive, X-Other"] },
      want: true,
    },
  ];
  for (const { name, headers, want } of keyCases) {
    test(`appReceivesIdempotencyKey agrees with what the app receives: ${name}`, async () => {
      target.handle((_req, res) => res.end());
      const request = envelope(`${target.origin}/key`, { headers });
      assert.equal(appReceivesIdempotencyKey(request), want);
      const outcome = await replayer.replay(request);
      assert.equal(outcome.kind, "response");
      assert.equal(target.seen.length, 1);
      assert.equal(target.seen[0]?.headers["idempotency-key"] !== undefined, want);
    });
  }

  test("connections per origin are bounded", async () => {
    const bounded = createReplayer({ timeoutMs: 5_000, connectionsPerOrigin: 2, targets: LOOPBACK_TARGETS });
    try {
      let active = 0;
      let peak = 0;
      target.handle((_req, res) => {
        active++;
        peak = Math.max(peak, active);
        setTimeout(() => {
          active--;
          res.end();
        }, 30);
      });
      const before = target.connections;
      const outcomes = await Promise.all(
        Array.from({ length: 8 }, (_, i) => bounded.replay(envelope(`${target.origin}/c/${i}`))),
      );
      assert.ok(outcomes.every((o) => o.kind === "response" && o.status === 200));
      assert.ok(peak <= 2, `peak concurrency ${peak}`);
      assert.ok(target.connections - before <= 2);
    } finally {
      await bounded.close();
    }
  });
});
