/**
 * How an entry reaches the app. Two ways, one interface:
 * - `cloudevent` (the original architecture): POST the entry as a binary-mode CloudEvent to K_SINK, the
 *   consumer, which replays the request and reports what happened (src/lib/outcome.ts);
 * - `direct`: replay the request from the dispatcher itself, saving a hop (src/lib/replay.ts).
 */
import { Agent, request } from "undici";
import type { StreamEntry } from "../lib/entry.js";
import type { AsyncRequest } from "../lib/envelope.js";
import { TokenFile } from "../lib/oidc.js";
import { type DeliveryOutcome, outcomeFromHttp } from "../lib/outcome.js";
import { decodeLoosely } from "../lib/redact.js";
import { createReplayer, refusal } from "../lib/replay.js";
import { send } from "../lib/send.js";
import { type TargetRules, targetChecker } from "../lib/target.js";
import { type EventSource, encodeDeadLetterEvent, encodeStreamEvent } from "../lib/wire/cloudevent.js";
import { type SigningKey, signatureHeaders } from "../lib/wire/signature.js";

export interface Deliverer {
  deliver(
    entry: StreamEntry,
    request: AsyncRequest,
    attempt: number,
    timeoutMs: number,
  ): Promise<DeliveryOutcome>;
  close(): Promise<void>;
}

/** Time the dispatcher waits for the consumer beyond the replay's own timeout. */
const SINK_MARGIN_MS = 10_000;

/**
 * Past this many bytes of a sink's answer body the connection is dropped rather than read to the end:
 * the consumer's answer is a few bytes.
 */
const MAX_SINK_ANSWER_BYTES = 64 * 1024;

/** Names the sink in error messages: `sink: ECONNREFUSED ...`. */
const SINK_PEER = "sink";

/**
 * A sink URL as undici takes it: origin and path apart, and credentials in it (`http://user:pass@host/`)
 * as `Authorization: Basic`, as Go's net/http and curl send them. undici would drop them silently.
 */
function sinkTarget(url: string): { origin: string; path: string; authorization: string | undefined } {
  const sink = new URL(url);
  const credentials = `${decodeLoosely(sink.username)}:${decodeLoosely(sink.password)}`;
  return {
    origin: sink.origin,
    path: `${sink.pathname}${sink.search}`,
    authorization:
      sink.username || sink.password ? `Basic ${Buffer.from(credentials).toString("base64")}` : undefined,
  };
}

export function createCloudEventDeliverer(options: {
  sink: string;
  source: EventSource;
  connections: number;
  /** Checked before the event is sent, though the consumer checks again: neither trusts the entry. */
  targets: TargetRules;
  /** Every event is signed with each (src/lib/wire/signature.ts); none: unsigned. */
  signingKeys: readonly SigningKey[];
  /** An OIDC token (a projected service account token) sent as `Authorization: Bearer`, when set. */
  oidcTokenFile?: string;
}): Deliverer {
  const checkTarget = targetChecker(options.targets);
  const { signingKeys } = options;
  const oidcToken = options.oidcTokenFile === undefined ? undefined : new TokenFile(options.oidcTokenFile);
  const agent = new Agent({ connections: options.connections, pipelining: 1, keepAliveTimeout: 30_000 });
  const { origin, path, authorization } = sinkTarget(options.sink);
  return {
    async deliver(entry, asyncRequest, attempt, timeoutMs) {
      const refused = refusal(checkTarget, asyncRequest.url);
      if (refused !== undefined) return refused;
      const event = encodeStreamEvent(entry, options.source, asyncRequest.id, attempt);
      if (authorization) event.headers.push("authorization", authorization);
      if (oidcToken !== undefined) event.headers.push("authorization", `Bearer ${await oidcToken.token()}`);
      if (signingKeys.length > 0) event.headers.push(...signatureHeaders(signingKeys, entry.id, event.body));
      // The answer is read back as the consumer's report (src/lib/outcome.ts). No deadline of our own:
      // undici's headers and body timeouts, with room for the replay's, bound the wait.
      const timeout = timeoutMs + SINK_MARGIN_MS;
      return send(
        agent,
        {
          origin,
          path,
          method: "POST",
          headers: event.headers,
          body: event.body,
          headersTimeout: timeout,
          bodyTimeout: timeout,
        },
        { peer: SINK_PEER, maxDiscardBytes: MAX_SINK_ANSWER_BYTES, readAnswer: outcomeFromHttp },
      );
    },
    async close() {
      await agent.close();
    },
  };
}

export function createDirectDeliverer(options: {
  timeoutMs: number;
  maxTimeoutMs: number;
  connections: number;
  targets: TargetRules;
}): Deliverer {
  const replayer = createReplayer({
    timeoutMs: options.timeoutMs,
    maxTimeoutMs: options.maxTimeoutMs,
    connectionsPerOrigin: options.connections,
    targets: options.targets,
  });
  return {
    deliver(_entry, asyncRequest, attempt) {
      return replayer.replay(asyncRequest, attempt);
    },
    close() {
      return replayer.close();
    },
  };
}

/** Best-effort CloudEvent to DEAD_LETTER_SINK; the dead-letter stream is the record that counts. */
export async function notifyDeadLetterSink(
  sink: string,
  source: EventSource,
  deadLetterId: string,
  body: Record<string, unknown>,
): Promise<void> {
  const event = encodeDeadLetterEvent(deadLetterId, source, body);
  const { origin, path, authorization } = sinkTarget(sink);
  if (authorization) event.headers.push("authorization", authorization);
  const response = await request(`${origin}${path}`, {
    method: "POST",
    headers: event.headers,
    body: event.body,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  await response.body.dump();
  if (response.statusCode >= 300) throw new Error(`dead-letter sink answered ${response.statusCode}`);
}
