/**
 * Informers that restart themselves: a list or watch that fails is started again after a backoff, which
 * resets as soon as the informer delivers an object again.
 */
import type { KubernetesObject, ListWatch } from "@kubernetes/client-node";
import { Backoff } from "../lib/backoff.js";
import type { Logger } from "../lib/logger.js";

/** Backoff for restarting an informer whose list or watch failed. */
const INFORMER_RETRY = { baseMs: 200, maxMs: 30_000 };

export interface RestartingInformerOptions<T extends KubernetesObject> {
  readonly resource: string;
  readonly informer: ListWatch<T>;
  /** Called for every object added, updated or deleted. */
  readonly handler: (object: T) => void;
  readonly logger: Logger;
  readonly closing: () => boolean;
  /** Called once a list has filled the cache. */
  readonly onSynced: () => void;
  readonly onRestart: () => void;
}

/** Hooks the handlers up and returns the function that starts (and after an error restarts) it. */
export function restartingInformer<T extends KubernetesObject>(
  options: RestartingInformerOptions<T>,
): () => Promise<void> {
  const { resource, informer, handler, logger, closing } = options;
  const backoff = new Backoff(INFORMER_RETRY);
  const seen = (object: T) => {
    backoff.reset();
    handler(object);
  };
  informer.on("add", seen);
  informer.on("update", seen);
  informer.on("delete", seen);
  const start = async () => {
    await informer.start();
    // The informer only has a resourceVersion once a list succeeded: the cache is filled from then on.
    if (informer.latestResourceVersion() !== "") options.onSynced();
  };
  informer.on("error", (err) => {
    if (closing()) return;
    options.onRestart();
    const delay = backoff.next();
    logger.warn({ err, resource, retryInMs: delay }, "list or watch failed; restarting");
    const timer = setTimeout(() => {
      if (!closing()) start().catch((e) => logger.error({ err: e, resource }, "informer restart failed"));
    }, delay);
    timer.unref();
  });
  return start;
}

/**
 * `restartingInformer` with what every informer of one controller shares, keyed by resource name: a
 * function that hooks up one informer and returns its start.
 */
export function informerWatcher<R extends string>(shared: {
  readonly logger: Logger;
  readonly closing: () => boolean;
  readonly onSynced: (resource: R) => void;
  readonly onRestart: (resource: R) => void;
}) {
  return <T extends KubernetesObject>(resource: R, informer: ListWatch<T>, handler: (object: T) => void) =>
    restartingInformer({
      resource,
      informer,
      handler,
      logger: shared.logger,
      closing: shared.closing,
      onSynced: () => shared.onSynced(resource),
      onRestart: () => shared.onRestart(resource),
    });
}
