/**
 * The local stand-in for the networking layer: routes requests the way the child KIngress written by the
 * controller does on a cluster.
 * - conditional mode: `Prefer: respond-async` goes to the producer with `Async-Original-Host` set to the
 *   app; everything else goes straight to the app;
 * - always mode: only `Prefer: respond-sync` goes straight to the app; everything else to the producer.
 * Like the real route, it overwrites any Async-Original-Host the client sent.
 */
import { Agent, createServer, type IncomingMessage, request, type Server } from "node:http";
import { closeServer, HOP_BY_HOP_HEADERS, listen } from "../lib/http.js";
import { ORIGINAL_HOST, PREFER, RESPOND_ASYNC, RESPOND_SYNC } from "../lib/wire/headers.js";
import { hasPreference } from "../lib/wire/prefer.js";

export interface GatewayOptions {
  readonly port: number;
  readonly host: string;
  readonly always: boolean;
  /** host:port of the producer and of the app. */
  readonly producer: string;
  readonly app: string;
}

export interface RunningGateway {
  readonly port: number;
  close(): Promise<void>;
}

function routeToProducer(req: IncomingMessage, always: boolean): boolean {
  const prefer = req.headersDistinct[PREFER];
  return always ? !hasPreference(prefer, RESPOND_SYNC) : hasPreference(prefer, RESPOND_ASYNC);
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const server: Server = createServer((req, res) => {
    const toProducer = routeToProducer(req, options.always);
    const upstream = toProducer ? options.producer : options.app;
    const [hostname, port] = splitHostPort(upstream);
    const headers: Record<string, string | string[]> = {};
    const connectionNamed = new Set(
      (req.headersDistinct.connection ?? []).flatMap((v) => v.split(",").map((s) => s.trim().toLowerCase())),
    );
    for (const [name, values] of Object.entries(req.headersDistinct)) {
      if (values && !HOP_BY_HOP_HEADERS.has(name) && !connectionNamed.has(name) && name !== ORIGINAL_HOST) {
        headers[name] = values;
      }
    }
    // Node sends list values as repeated header lines, but Host must be one string.
    if (req.headers.host !== undefined) headers.host = req.headers.host;
    if (toProducer) headers[ORIGINAL_HOST] = options.app;
    const proxied = request(
      { hostname, port, method: req.method, path: req.url, headers, agent: keepAlive },
      (upstreamRes) => {
        const responseHeaders: Record<string, string[]> = {};
        for (const [name, values] of Object.entries(upstreamRes.headersDistinct)) {
          if (values && !HOP_BY_HOP_HEADERS.has(name)) responseHeaders[name] = values;
        }
        res.writeHead(upstreamRes.statusCode ?? 502, responseHeaders);
        upstreamRes.pipe(res);
      },
    );
    proxied.on("error", (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`gateway: ${toProducer ? "producer" : "app"} unreachable: ${err.message}\n`);
      } else {
        res.destroy();
      }
    });
    req.pipe(proxied);
  });
  const port = await listen(server, options.port, options.host);
  return {
    port,
    async close() {
      await closeServer(server, 2000);
    },
  };
}

const keepAlive = new Agent({ keepAlive: true, maxSockets: 256 });

function splitHostPort(hostPort: string): [string, number] {
  const at = hostPort.lastIndexOf(":");
  return [hostPort.slice(0, at), Number(hostPort.slice(at + 1))];
}
