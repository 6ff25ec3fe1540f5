/**
 * Kubernetes Events about a KIngress (what `kubectl describe kingress` lists): Normal when a child is
 * created or put back, Warning when something failed. Recording is best effort: a failed event is
 * logged and never fails the reconcile.
 */
import type { CoreV1Event } from "@kubernetes/client-node";
import type { Logger } from "../lib/logger.js";
import { isAlreadyExists, type KubeClient } from "./kube.js";
import { EVENT_SOURCE } from "./names.js";
import type { KIngress } from "./types.js";

export type EventType = "Normal" | "Warning";

export interface EventRecorder {
  record(object: KIngress, type: EventType, reason: string, message: string): Promise<void>;
}

/** The API server refuses longer event messages. */
const MAX_MESSAGE = 1024;

export class KubeEventRecorder implements EventRecorder {
  private sequence = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly logger: Logger,
    private readonly instance: string,
  ) {}

  async record(object: KIngress, type: EventType, reason: string, message: string): Promise<void> {
    const now = new Date();
    const namespace = object.metadata.namespace ?? "default";
    // client-go names events `<object>.<unix nanos in hex>`; a counter keeps two in one ms apart.
    const stamp = (BigInt(now.getTime()) * 1_000_000n + BigInt(this.sequence++ % 1_000_000)).toString(16);
    const event: CoreV1Event = {
      metadata: { name: `${object.metadata.name}.${stamp}`, namespace },
      involvedObject: {
        apiVersion: object.apiVersion,
        kind: object.kind,
        name: object.metadata.name,
        namespace,
        uid: object.metadata.uid,
        resourceVersion: object.metadata.resourceVersion,
      },
      type,
      reason,
      message: message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 3)}...` : message,
      source: { component: EVENT_SOURCE },
      reportingComponent: EVENT_SOURCE,
      reportingInstance: this.instance,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    try {
      await this.client.createEvent(event);
    } catch (err) {
      if (isAlreadyExists(err)) return;
      this.logger.warn(
        { err, reason, object: `${namespace}/${object.metadata.name}` },
        "could not record event",
      );
    }
  }
}
