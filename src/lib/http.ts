/**
 * The few HTTP pieces every component shares: the admin endpoints (/healthz, /readyz, /metrics), error
 * answers, and listening and closing servers.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { AsyncError, ErrorCode, errorBody, httpStatusOf } from "./errors.js";

/** A readiness answer with the reason why not, for a component that knows it. */
export interface Readiness {
  readonly ready: boolean;
  /** Why not, in a few words, with the underlying error: shown in the /readyz body. */
  readonly reason?: string;
}

export interface AdminEndpoints {
  readonly registry: Registry;
  /** Resolves true (or ready) when the component can do its work (for most: Redis answers). */
  readonly ready: () => Promise<boolean | Readiness>;
}

export const ADMIN_PATHS: ReadonlySet<string> = new Set(["/healthz", "/readyz", "/metrics"]);

/**
 * Answers /healthz, /readyz and /metrics. Returns false (and writes nothing) for any other path, so the
 * caller can go on with its own routing.
 */
export function serveAdmin(req: IncomingMessage, res: ServerResponse, admin: AdminEndpoints): boolean {
  const path = (req.url ?? "/").split("?", 1)[0];
  if (path === "/healthz") {
    sendJson(res, 200, { status: "ok" });
    return true;
  }
  if (path === "/readyz") {
    admin.ready().then(
      (answer) => {
        const { ready, reason } = typeof answer === "boolean" ? { ready: answer, reason: undefined } : answer;
        const body = { status: ready ? "ready" : "not ready", ready, ...(reason ? { reason } : {}) };
        sendJson(res, ready ? 200 : 503, body);
      },
      () => sendJson(res, 503, { status: "not ready", ready: false }),
    );
    return true;
  }
  if (path === "/metrics") {
    admin.registry.metrics().then(
      (text) => {
        res.writeHead(200, { "content-type": admin.registry.contentType });
        res.end(text);
      },
      () => sendJson(res, 500, { error: "metrics unavailable" }),
    );
    return true;
  }
  return false;
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string | string[]> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/** Writes the error's status and stable code; closes the connection when the request body was not read. */
export function sendError(
  res: ServerResponse,
  err: unknown,
  options: { closeConnection?: boolean } = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = errorBody(err);
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    ...((err as { headers?: Record<string, string> }).headers ?? {}),
  };
  if (options.closeConnection) headers.connection = "close";
  res.writeHead(httpStatusOf(err), headers);
  res.end(text);
}

/** Listens and resolves with the bound port (useful with port 0). */
export function listen(server: Server, port: number, host?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/**
 * Stops accepting connections, lets in-flight requests finish for up to `graceMs`, then closes what is
 * left. Idle keep-alive connections are closed at once so that close() does not wait on them.
 */
export function closeServer(server: Server, graceMs = 10_000): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

export interface BodyLimit {
  /** Largest body accepted, in bytes. */
  readonly limit: number;
  /** The 413 error to reject with. */
  readonly tooLarge: () => AsyncError;
  /**
   * What to do with the rest of a body that passed the limit: `drain` reads and drops it, so that a
   * trusted sender reads the 413 rather than a reset; `stop` leaves it unread, so that an untrusted
   * client cannot make us read an endless upload, and the caller answers and closes the connection.
   */
  readonly afterLimit: "drain" | "stop";
  /** Room for the body as it arrives (the producer's budget of bytes in flight): see BodyAdmission. */
  readonly admission?: BodyAdmission;
  /**
   * A body that brings no byte for `ms` is refused with `error()` (the rest left as `afterLimit` says).
   * Time paused by the admission does not count: then the client is not the one who stopped.
   */
  readonly idle?: { readonly ms: number; readonly error: () => AsyncError };
}

/**
 * What a body asks before it keeps each chunk: one object per request (the producer's budget hold),
 * rather than closures made for each request on the hot path.
 */
export interface BodyAdmission {
  /**
   * Asked with each chunk's size: undefined keeps it; an error refuses the body there (the rest is left
   * as `afterLimit` says); a promise keeps the chunk aside and pauses the body until it resolves, or
   * refuses the body with its rejection.
   */
  admit(bytes: number): AsyncError | Promise<void> | undefined;
  /**
   * Called as reading starts with a function that refuses the body at once with the error it is given
   * (the rest left as `afterLimit` says), for an admission that may stop a body between its chunks.
   */
  started?(stop: (err: AsyncError) => void): void;
}

/**
 * Reads a whole body, refusing it as soon as it is known to be larger than the limit: from
 * Content-Length when declared, else while it streams. No more than `limit` bytes are ever held, and
 * memory follows the bytes that arrived, never the length declared: a client that declares a large
 * body and sends little must not make us allocate the rest.
 */
export function readBody(req: IncomingMessage, options: BodyLimit): Promise<Buffer> {
  const { limit, idle, admission } = options;
  const refuse = (err: AsyncError = options.tooLarge()) => {
    if (options.afterLimit === "drain") req.resume();
    else req.pause();
    return err;
  };
  const declaredText = req.headers["content-length"];
  if (declaredText !== undefined && Number(declaredText) > limit) return Promise.reject(refuse());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    /** A chunk waits for the admission; the end, if it comes meanwhile, waits for it. */
    let admitting = false;
    let ended = false;
    let idleTimer: NodeJS.Timeout | undefined;
    const armIdle = () => {
      if (idle === undefined) return;
      if (idleTimer === undefined) idleTimer = setTimeout(() => fail(refuse(idle.error())), idle.ms);
      else idleTimer.refresh();
    };
    const stopIdle = () => {
      clearTimeout(idleTimer);
      idleTimer = undefined;
    };
    const cleanup = () => {
      settled = true;
      stopIdle();
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };
    const fail = (err: AsyncError) => {
      cleanup();
      reject(err);
    };
    const finish = () => {
      cleanup();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    };
    const keep = (chunk: Buffer) => {
      chunks.push(chunk);
      armIdle();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return fail(refuse());
      const admitted = admission?.admit(chunk.length);
      if (admitted === undefined) return keep(chunk);
      if (admitted instanceof AsyncError) return fail(refuse(admitted));
      req.pause();
      stopIdle();
      admitting = true;
      admitted.then(
        () => {
          if (settled) return;
          admitting = false;
          keep(chunk);
          if (ended) finish();
          else req.resume();
        },
        (err: AsyncError) => {
          if (!settled) fail(refuse(err));
        },
      );
    };
    const onEnd = () => {
      if (admitting) ended = true;
      else finish();
    };
    const onError = (err: Error) => {
      fail(new AsyncError(ErrorCode.BodyAborted, "the body was not received completely", { cause: err }));
    };
    const onClose = () => {
      if (!req.complete) onError(new Error("connection closed before the body ended"));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
    admission?.started?.((err) => {
      if (!settled) fail(refuse(err));
    });
    armIdle();
  });
}

/** Hop-by-hop headers (RFC 9110 section 7.6.1), plus Proxy-Connection, which some clients still send. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);
