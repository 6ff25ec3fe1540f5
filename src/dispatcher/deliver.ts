/**
 * How an entry reaches the app. Two ways, one interface:
 * - `cloudevent` (the original architecture): POST the entry as a binary-mode CloudEvent to K_SINK, the
 *   consumer, which replays the request and reports what happened (src/lib/outcome.ts);
 * - `direct`: replay the request from the dispatcher itself, saving a hop (src/lib/replay.ts).
 */
import { Agent, type Dispatcher, errors, request } from "undici";
import type { StreamEntry } from "../lib/entry.js";
import type { AsyncRequest } from "../lib/envelope.js";
import { ErrorCode } from "../lib/errors.js";
import { type DeliveryOutcome, outcomeFromHttp } from "../lib/outcome.js";
import { createReplayer } from "../lib/replay.js";

export interface Deliverer {
  deliver(
    entry: StreamEntry,
    request: AsyncRequest,
    attempt: number,
    timeoutMs: number,
  ): Promise<DeliveryOutcome>;
  close(): Promise<void>;
}

/** The CloudEvent type eventing-redis's RedisStreamSource sends; the consumer accepts either sender. */
export const STREAM_EVENT_TYPE = "dev.knative.sources.redisstream";

/** Time the dispatcher waits for the consumer beyond the replay's own timeout. */
const SINK_MARGIN_MS = 10_000;

/** Past this many bytes of a sink's answer body the connection is dropped rather than read to the end. */
const MAX_SINK_ANSWER_BYTES = 64 * 1024;

export function createCloudEventDeliverer(options: {
  sink: string;
  source: string;
  connections: number;
}): Deliverer {
  const agent = new Agent({ connections: options.connections, pipelining: 1, keepAliveTimeout: 30_000 });
  const sink = new URL(options.sink);
  const origin = sink.origin;
  const path = `${sink.pathname}${sink.search}`;
  return {
    deliver(entry, asyncRequest, attempt, timeoutMs) {
      const started = performance.now();
      const timeout = timeoutMs + SINK_MARGIN_MS;
      // undici's low-level dispatch with a small handler, as src/lib/replay.ts does: request() would
      // build a response stream per event only for it to be drained.
      return new Promise<DeliveryOutcome>((resolve) => {
        let settled = false;
        let status = 0;
        let headers: Record<string, string | string[] | undefined> = {};
        let discarded = 0;
        const settle = (outcome: DeliveryOutcome) => {
          if (settled) return;
          settled = true;
          resolve(outcome);
        };
        const answered = () => settle(outcomeFromHttp(status, headers, performance.now() - started));
        const handler: Dispatcher.DispatchHandler = {
          // undici takes a handler for its new (controller) interface only when it has this method.
          onRequestStart() {},
          onResponseStart(_c, statusCode, responseHeaders) {
            if (statusCode < 200) return;
            status = statusCode;
            headers = responseHeaders;
          },
          onResponseData(c, chunk) {
            // The consumer's answer is a few bytes; a sink that sends more is not read to the end.
            discarded += chunk.length;
            if (discarded > MAX_SINK_ANSWER_BYTES) {
              answered();
              c.abort(new Error("sink answer too large to discard"));
            }
          },
          onResponseEnd() {
            answered();
          },
          onResponseError(_c, err) {
            settle(sinkErrorOutcome(err, performance.now() - started));
          },
        };
        try {
          agent.dispatch(
            {
              origin,
              path,
              method: "POST",
              headers: [
                "content-type",
                "application/json",
                "ce-specversion",
                "1.0",
                "ce-type",
                STREAM_EVENT_TYPE,
                "ce-id",
                entry.id,
                "ce-source",
                options.source,
                "ce-time",
                new Date().toISOString(),
                "ce-asyncrequestid",
                asyncRequest.id,
                "ce-asyncattempt",
                String(attempt),
              ],
              body: JSON.stringify(entry.fields),
              headersTimeout: timeout,
              bodyTimeout: timeout,
            },
            handler,
          );
        } catch (err) {
          settle(sinkErrorOutcome(err, performance.now() - started));
        }
      });
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
}): Deliverer {
  const replayer = createReplayer({
    timeoutMs: options.timeoutMs,
    maxTimeoutMs: options.maxTimeoutMs,
    connectionsPerOrigin: options.connections,
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

const CONNECT_ERRORS = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

/** The sink itself failed: when it was never reached, neither was the app. */
function sinkErrorOutcome(err: unknown, durationMs: number): DeliveryOutcome {
  const code = (err as { code?: string }).code ?? "";
  const message = `sink: ${(err as Error).message ?? String(err)}`;
  if (CONNECT_ERRORS.has(code) || err instanceof errors.ConnectTimeoutError) {
    return { kind: "error", code: ErrorCode.TargetUnreachable, message, durationMs };
  }
  if (err instanceof errors.HeadersTimeoutError || err instanceof errors.BodyTimeoutError) {
    return { kind: "error", code: ErrorCode.TargetTimeout, message, durationMs };
  }
  return { kind: "error", code: ErrorCode.TargetFailed, message, durationMs };
}

/** Best-effort CloudEvent to DEAD_LETTER_SINK; the dead-letter stream is the record that counts. */
export async function notifyDeadLetterSink(
  sink: string,
  source: string,
  deadLetterId: string,
  body: Record<string, unknown>,
): Promise<void> {
  const response = await request(sink, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "ce-specversion": "1.0",
      "ce-type": "dev.knative.async.deadletter",
      "ce-id": deadLetterId,
      "ce-source": source,
      "ce-time": new Date().toISOString(),
    },
    body: JSON.stringify(body),
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
  });
  await response.body.dump();
  if (response.statusCode >= 300) throw new Error(`dead-letter sink answered ${response.statusCode}`);
}
