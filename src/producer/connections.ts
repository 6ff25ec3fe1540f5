/**
 * The producer's connections: the header limits and timeouts it sets on its server, and its answer when
 * the bytes on a connection stop being HTTP.
 *
 * Header limits, set deliberately rather than left to Node's defaults: at most MAX_HEADER_BYTES of
 * header fields (Node's default is 16 KiB; Envoy, in front of Knative Services, lets 60 KiB through, and
 * the original producer took 1 MiB) and at most MAX_HEADERS fields. Past either limit the request is
 * refused with 431 ASYNC_ERR_HEADERS_TOO_LARGE and nothing is stored. Node would cut the field list past
 * about a thousand instead (`maxHeadersCount`), silently: the request would be stored without the rest.
 *
 * Timeouts, set deliberately too: Node's defaults let a request take 60 s for its headers and 5 minutes
 * in all, and check them only every 30 s. A connection that sends headers slowly holds a socket; one
 * that sends its body slowly holds memory (see budget.ts). HEADERS_TIMEOUT (10 s) bounds the headers,
 * REQUEST_READ_TIMEOUT (60 s) the whole request, both from its first byte, and they are checked every
 * second at most. Past either, the answer is 408 ASYNC_ERR_REQUEST_TIMEOUT and the connection closes.
 * A body that stops coming is cut sooner, after BODY_IDLE_TIMEOUT (the request flow, accept.ts).
 *
 * Bytes after a request: Node's parser reads what follows a request's declared body as the next request
 * on the connection. When it is not one (a client that sent more than its Content-Length), Node answers
 * 400 at once and closes, ahead of the answer to the request before it, which is still being stored:
 * the client reads that 400 as the answer to its request, while its request is stored and delivered.
 * RFC 9112 has a server close a connection it cannot parse (section 2.2) and answer requests in order
 * (section 9.3.2), so no answer may overtake the earlier request's. Here, when the parse error follows a
 * complete request whose answer is not finished:
 * - no 400 is written for the stray bytes; the connection closes once that request is answered
 *   (`Connection: close`): one answer, the request's own;
 * - the request flow asks `unreadable(req)` before it stores: when the bytes put the body's length in
 *   doubt (anything but a next request that is too large or too slow), the request is refused with
 *   400 ASYNC_ERR_BAD_FRAMING and nothing is stored. Storing the declared bytes would deliver a body the
 *   client most likely meant to be longer;
 * - once the write has begun, the answer is what the store says: 202 when stored, then the close.
 * With no request in flight, or an error inside a request's own framing, the answer is Node's (400, 408,
 * 413 or 431, then close), the 431 with our code.
 */
import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { AsyncError, ErrorCode, errorBody, httpStatusOf } from "../lib/errors.js";

/** Most header bytes a request may carry (request line and fields): `createServer`'s `maxHeaderSize`. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Most header fields a request may carry; Node is told to keep them all (see `watch`). */
export const MAX_HEADERS = 1000;

/** How often Node looks for requests past their timeouts, at most (its default is every 30 s). */
const TIMEOUT_CHECK_MS = 1000;

/** Options for the producer's `createServer`: header limits and timeouts. */
export function serverOptions(timeouts: { headersTimeoutMs: number; requestReadTimeoutMs: number }) {
  const { headersTimeoutMs, requestReadTimeoutMs } = timeouts;
  return {
    maxHeaderSize: MAX_HEADER_BYTES,
    headersTimeout: headersTimeoutMs,
    requestTimeout: requestReadTimeoutMs,
    // A check every second cuts a request at most a second late; shorter timeouts are checked sooner.
    connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_MS, Math.ceil(headersTimeoutMs / 4)),
  };
}

/** Parse errors that concern only a next request (too large, too slow): the one before it is intact. */
const NEXT_REQUEST_ONLY: ReadonlySet<string> = new Set([
  "HPE_HEADER_OVERFLOW",
  "HPE_CHUNK_EXTENSIONS_OVERFLOW",
  "ERR_HTTP_REQUEST_TIMEOUT",
]);

/** Node's own answers, by error code, where we have no error of ours (`ownError`); anything else is a 400. */
const NODE_STATUS: Readonly<Record<string, number>> = {
  HPE_CHUNK_EXTENSIONS_OVERFLOW: 413,
};

export function headersTooLarge(what: string): AsyncError {
  return new AsyncError(ErrorCode.HeadersTooLarge, `the request has ${what}; nothing was stored`);
}

/** True when the request carries more header fields than MAX_HEADERS. */
export function hasTooManyHeaders(req: IncomingMessage): boolean {
  return req.rawHeaders.length > 2 * MAX_HEADERS;
}

interface Exchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
}

/** Keeps, for each connection, the request being answered, so a parse error after it is handled in order. */
export class ConnectionGuard {
  /** The last request read on each connection, until its answer is finished. */
  readonly #current = new WeakMap<Duplex, Exchange>();
  /** Requests followed on their connection by bytes that put their body's length in doubt. */
  readonly #unreadable = new WeakSet<IncomingMessage>();
  /** Connections that end after the answer in progress. */
  readonly #ending = new WeakSet<Duplex>();

  /** Installs the guard on the producer's server (created with `serverOptions`). */
  watch(server: Server): void {
    // 0 = keep every field: the count is checked by the request flow (hasTooManyHeaders), and the
    // header bytes (`serverOptions`) bound how many there can be.
    server.maxHeadersCount = 0;
    server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) =>
      this.#onClientError(err, socket),
    );
  }

  /** Called first for every request the server emits. */
  track(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    this.#current.set(socket, { req, res });
    const done = () => {
      if (this.#current.get(socket)?.req === req) this.#current.delete(socket);
    };
    res.once("finish", done);
    res.once("close", done);
  }

  /** True when the request must not be stored: what followed it on its connection is not HTTP. */
  unreadable(req: IncomingMessage): boolean {
    return this.#unreadable.has(req);
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    // The parser stays in error, so more bytes bring more calls: the first one decides.
    if (socket.writableEnded || this.#ending.has(socket)) return;
    const exchange = this.#current.get(socket);
    if (exchange?.req.complete && !exchange.res.writableFinished) {
      // The request before the bad bytes is whole and still being answered: it keeps its answer, and
      // the connection ends after it.
      this.#ending.add(socket);
      if (!NEXT_REQUEST_ONLY.has(err.code ?? "")) this.#unreadable.add(exchange.req);
      const { res } = exchange;
      if (!res.headersSent) res.setHeader("connection", "close");
      else res.once("finish", () => socket.end());
      return;
    }
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    // An answer already on its way is left to finish; otherwise Node's answer, ours for a 431 or a 408.
    const answer = exchange?.res.headersSent ? "" : rawAnswer(err.code);
    socket.end(answer, () => socket.destroy());
  }
}

/** The whole answer to bytes that could not be parsed, written to the socket as it is. */
function rawAnswer(code: string | undefined): string {
  const err = ownError(code);
  const status = err === undefined ? (NODE_STATUS[code ?? ""] ?? 400) : httpStatusOf(err);
  const body = err === undefined ? "" : errorBody(err);
  const content =
    body === "" ? "" : `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
  return `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n${content}\r\n${body}`;
}

/** Our error for what Node cut, where we have one: it tells the client more than Node's empty answer. */
function ownError(code: string | undefined): AsyncError | undefined {
  if (code === "HPE_HEADER_OVERFLOW") {
    return headersTooLarge(`more than ${MAX_HEADER_BYTES} bytes of header fields`);
  }
  if (code === "ERR_HTTP_REQUEST_TIMEOUT") {
    return new AsyncError(
      ErrorCode.RequestTimeout,
      "the request did not arrive in time (HEADERS_TIMEOUT for its headers, REQUEST_READ_TIMEOUT in all); nothing was stored",
    );
  }
  return undefined;
}
