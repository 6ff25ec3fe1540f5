/**
 * The few HTTP pieces every component shares: the admin endpoints (/healthz, /readyz, /metrics), error
 * answers, and listening and closing servers.
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { errorBody, httpStatusOf } from "./errors.js";

export interface AdminEndpoints {
  readonly registry: Registry;
  /** Resolves true when the component can do its work (for most: Redis answers). */
  readonly ready: () => Promise<boolean>;
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
      (ok) => sendJson(res, ok ? 200 : 503, { status: ok ? "ready" : "not ready" }),
      () => sendJson(res, 503, { status: "not ready" }),
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
