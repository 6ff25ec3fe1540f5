/** The all-in-one mode's one-line-per-event output. */
import type { AttemptInfo } from "../dispatcher/dispatcher.js";
import { maskUrl } from "../lib/redact.js";
import type { AcceptedInfo } from "../producer/producer.js";

function clock(): string {
  return new Date().toISOString().slice(11, 23);
}

/** The path and query, with secret-looking parameters (`?token=`) masked. */
function pathOf(url: string): string {
  try {
    const u = new URL(url);
    return maskUrl(`${u.pathname}${u.search}`);
  } catch {
    return maskUrl(url);
  }
}

export function formatAccepted(info: AcceptedInfo): string {
  return `${clock()}  queued       ${info.id}  ${info.method} ${pathOf(info.url)}  (${info.bytes} bytes)`;
}

export function formatAttempt(info: AttemptInfo): string {
  const answer =
    info.outcome.kind === "response"
      ? `${info.outcome.status}`
      : `${info.outcome.code} (${info.outcome.message})`;
  const took = `in ${Math.round(info.outcome.durationMs)} ms`;
  const age = info.ageMs === undefined ? "" : `, ${(info.ageMs / 1000).toFixed(2)} s after queued`;
  const head = `${clock()}  `;
  switch (info.decision.action) {
    case "ack":
      return `${head}delivered    ${info.requestId}  ${answer} ${took}${age} (attempt ${info.attempt})`;
    case "retry":
      return `${head}retrying     ${info.requestId}  ${answer} ${took}; next attempt in ${(info.decision.delayMs / 1000).toFixed(1)} s (attempt ${info.attempt})`;
    default:
      return `${head}dead-letter  ${info.requestId}  ${answer} ${took}; ${info.decision.reason} after ${info.attempt} attempt(s), see: knative-async dlq list`;
  }
}
