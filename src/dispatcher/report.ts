/**
 * What one attempt tells the outside: the metrics, the log, and the onAttempt hook (the all-in-one mode
 * prints these).
 */
import type { StreamEntry } from "../lib/entry.js";
import type { AsyncRequest } from "../lib/envelope.js";
import type { Logger } from "../lib/logger.js";
import type { DeliveryOutcome } from "../lib/outcome.js";
import type { Decision } from "./decide.js";
import type { DispatcherMetrics } from "./metrics.js";

export interface AttemptInfo {
  readonly requestId: string;
  readonly entryId: string;
  readonly method: string;
  readonly url: string;
  readonly attempt: number;
  readonly outcome: DeliveryOutcome;
  readonly decision: Decision;
  /** False when another dispatcher had taken the entry over meanwhile; it decides instead. */
  readonly applied: boolean;
  readonly durationMs: number;
  /** From acceptance by the producer to this outcome, when the producer recorded when it accepted. */
  readonly ageMs?: number;
}

/** An attempt whose outcome is recorded (or was not, when `applied` is false). */
export interface FinishedAttempt {
  readonly entry: StreamEntry;
  readonly request: AsyncRequest;
  readonly attempt: number;
  readonly outcome: DeliveryOutcome;
  readonly decision: Decision;
  readonly applied: boolean;
  /** When the attempt started (ms). */
  readonly started: number;
}

export interface AttemptObservers {
  readonly metrics: Pick<DispatcherMetrics, "observeAttempt">;
  readonly logger: Logger;
  readonly onAttempt: ((info: AttemptInfo) => void) | undefined;
}

export function reportAttempt(finished: FinishedAttempt, observers: AttemptObservers): void {
  const { entry, request, attempt, outcome, decision, applied } = finished;
  const { logger } = observers;
  const durationMs = Date.now() - finished.started;
  const ageMs = request.acceptedAt === undefined ? undefined : Date.now() - request.acceptedAt;
  observers.metrics.observeAttempt({ outcome, decision, applied, ageMs });
  if (!applied) {
    logger.warn(
      { entryId: entry.id, requestId: request.id },
      "another dispatcher took this entry over; leaving it to it",
    );
  } else if (logger.isLevelEnabled("debug")) {
    logger.debug(
      { entryId: entry.id, requestId: request.id, attempt, outcome, decision },
      "attempt finished",
    );
  }
  observers.onAttempt?.({
    requestId: request.id,
    entryId: entry.id,
    method: request.method,
    url: request.url,
    attempt,
    outcome,
    decision,
    applied,
    durationMs,
    ...(ageMs === undefined ? {} : { ageMs }),
  });
}
