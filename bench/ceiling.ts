/**
 * The ingest ceiling: plain node:http that reads the whole body and answers 202 with a request id, as the
 * producer does, but stores nothing. Measured in the same run as the producer, it shows what this
 * machine, Node and the load generator allow, so the producer's rate can be read as a ratio of it.
 */
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { serveCalls } from "./processes.js";

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    Buffer.concat(chunks);
    const id = randomUUID();
    const text = JSON.stringify({ id, status: "queued" });
    res.writeHead(202, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      "async-request-id": id,
    });
    res.end(text);
  });
});

server.listen(0, "127.0.0.1", () => {
  serveCalls({ port: (server.address() as AddressInfo).port }, () => true);
});
