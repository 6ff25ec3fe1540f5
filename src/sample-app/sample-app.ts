/**
 * The sample app: a stand-in for a slow Knative Service, like the original's test/app. Every request
 * (any method, any path) sleeps `SLEEP` and then answers a small JSON document; `?sleep=250ms` changes
 * the sleep for one request and `?status=503` the status, which is how retries are tried by hand.
 *
 * With `RECORD=true` it keeps every request it received, byte for byte, and serves them at
 * GET /_received (bodies base64), so tests running it in another process can check what arrived;
 * DELETE /_received forgets them.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { formatDuration, parseDuration } from "../lib/durations.js";
import { AsyncError, ErrorCode } from "../lib/errors.js";
import { closeServer, listen, sendError, sendJson } from "../lib/http.js";
import type { Logger } from "../lib/logger.js";
import { REQUEST_ID } from "../lib/wire/headers.js";
import type { SampleAppConfig } from "./config.js";

export interface RecordedRequest {
  readonly method: string;
  /** Path and query, as received. */
  readonly url: string;
  /** Node's `headersDistinct`: lower-case names, every value kept. */
  readonly headers: Readonly<Record<string, string[]>>;
  readonly body: Buffer;
  /** When the request was received, ms since the epoch. */
  readonly receivedAt: number;
}

export interface SampleAppDeps {
  readonly logger: Logger;
  /** Called for every request once its body is read, before the sleep. */
  readonly onRequest?: (request: RecordedRequest) => void;
}

export interface RunningSampleApp {
  readonly port: number;
  /** What was received, in order; stays empty unless `config.record`. */
  readonly received: RecordedRequest[];
  close(): Promise<void>;
}

const RECEIVED_PATH = "/_received";

/** A test app holds bodies in memory; this keeps a runaway client from exhausting it. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const MAX_SLEEP_MS = 60 * 60 * 1000;
/** On close, requests still sleeping get this long before their connections are cut. */
const CLOSE_GRACE_MS = 2_000;

export async function startSampleApp(
  config: SampleAppConfig,
  deps: SampleAppDeps,
): Promise<RunningSampleApp> {
  const { logger } = deps;
  const received: RecordedRequest[] = [];
  const sleeping = new Set<NodeJS.Timeout>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? "/";
    const queryAt = url.indexOf("?");
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    const query = new URLSearchParams(queryAt < 0 ? "" : url.slice(queryAt + 1));

    if (config.record && path === RECEIVED_PATH) {
      serveReceived(req, res, received);
      return;
    }

    const sleepMs = parseSleep(query.get("sleep"), config.sleepMs);
    const status = parseStatus(query.get("status"));
    if (sleepMs === undefined || status === undefined) {
      req.resume();
      sendJson(res, 400, {
        error: "bad query",
        message: "sleep must be a duration like 250ms, status a code 200-599",
      });
      return;
    }

    const body = await readBody(req);
    const recorded: RecordedRequest = {
      method: req.method ?? "GET",
      url,
      headers: req.headersDistinct as Record<string, string[]>,
      body,
      receivedAt: Date.now(),
    };
    if (config.record) received.push(recorded);
    deps.onRequest?.(recorded);
    const requestId = req.headers[REQUEST_ID];
    logger.info(
      { method: recorded.method, url, bytes: body.length, asyncRequestId: requestId },
      `received a request, sleeping ${formatDuration(sleepMs)}`,
    );

    await sleep(sleepMs, sleeping);
    if (res.destroyed) return;
    sendJson(res, status, {
      message: "hello from the knative-async sample app",
      method: recorded.method,
      url,
      sleptMs: sleepMs,
      ...(typeof requestId === "string" ? { asyncRequestId: requestId } : {}),
    });
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!(err instanceof AsyncError)) logger.error({ err }, "unexpected error");
      sendError(res, err, { closeConnection: true });
    });
  });
  const port = await listen(server, config.port);
  logger.info({ port, sleep: formatDuration(config.sleepMs), record: config.record }, "sample app listening");

  let closed: Promise<void> | undefined;
  return {
    port,
    received,
    close() {
      closed ??= (async () => {
        await closeServer(server, CLOSE_GRACE_MS);
        for (const timer of sleeping) clearTimeout(timer);
        sleeping.clear();
      })();
      return closed;
    },
  };
}

function serveReceived(req: IncomingMessage, res: ServerResponse, received: RecordedRequest[]): void {
  req.resume();
  if (req.method === "DELETE") {
    received.length = 0;
    res.writeHead(204).end();
    return;
  }
  if (req.method !== "GET") {
    sendError(res, new AsyncError(ErrorCode.MethodNotAllowed, `${RECEIVED_PATH} answers GET and DELETE`));
    return;
  }
  sendJson(
    res,
    200,
    received.map((r) => ({ ...r, body: r.body.toString("base64") })),
  );
}

function parseSleep(value: string | null, defaultMs: number): number | undefined {
  if (value === null) return defaultMs;
  const ms = parseDuration(value);
  return ms === undefined || ms > MAX_SLEEP_MS ? undefined : ms;
}

function parseStatus(value: string | null): number | undefined {
  if (value === null) return 200;
  if (!/^\d{3}$/.test(value)) return undefined;
  const status = Number(value);
  return status >= 200 && status <= 599 ? status : undefined;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        req.removeAllListeners("data");
        req.resume();
        reject(new AsyncError(ErrorCode.BodyTooLarge, `body larger than ${MAX_BODY_BYTES} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks, size)));
    req.on("error", reject);
  });
}

function sleep(ms: number, timers: Set<NodeJS.Timeout>): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      resolve();
    }, ms);
    timers.add(timer);
  });
}
