/**
 * Small real HTTP servers for tests: a target app or sink that records what it receives and answers as
 * each test tells it to.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage["headers"];
  readonly headersDistinct: Record<string, string[]>;
  readonly body: Buffer;
  readonly at: number;
}

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

/** Answers by returning (or resolving to) an Answer, or by writing to `res` itself. */
// biome-ignore lint/suspicious/noConfusingVoidType: responders that write to `res` themselves return nothing.
export type Responder = (received: Received, res: ServerResponse) => void | Answer | Promise<void | Answer>;

export interface RecordingServer {
  readonly port: number;
  readonly url: string;
  readonly received: Received[];
  respond: Responder;
  close(): Promise<void>;
}

export async function startRecordingServer(
  respond: Responder = () => ({ status: 200 }),
): Promise<RecordingServer> {
  const received: Received[] = [];
  const state: { respond: Responder } = { respond };
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const item: Received = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      headersDistinct: req.headersDistinct as Record<string, string[]>,
      body: Buffer.concat(chunks),
      at: Date.now(),
    };
    received.push(item);
    try {
      const answer = await state.respond(item, res);
      if (answer && !res.headersSent) {
        res.writeHead(answer.status, answer.headers ?? {});
        res.end(answer.body ?? "");
      }
    } catch {
      if (!res.headersSent) res.writeHead(500).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}/`,
    received,
    get respond() {
      return state.respond;
    },
    set respond(r: Responder) {
      state.respond = r;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
