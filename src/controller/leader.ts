/**
 * Leader election on a coordination.k8s.io Lease, after client-go's leaderelection: every replica tries
 * to acquire or renew the Lease every RETRY_PERIOD; a Lease held by another is only taken once its
 * record has not changed for LEASE_DURATION as measured on this replica's own clock (so clock skew
 * between nodes does not matter); a leader that could not renew for RENEW_DEADLINE stops leading before
 * anyone else can take over. On shutdown the leader releases the Lease so another takes over at once.
 */
import { type V1Lease, V1MicroTime } from "@kubernetes/client-node";
import type { Logger } from "../lib/logger.js";
import { isAlreadyExists, isConflict, isNotFound, type KubeClient } from "./kube.js";

export interface LeaderElectorOptions {
  readonly client: KubeClient;
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  readonly logger: Logger;
  readonly onStartedLeading: () => void;
  /** Called when leadership is lost or given up; must stop every write at once. */
  readonly onStoppedLeading: () => Promise<void> | void;
}

interface ObservedRecord {
  holder: string;
  renewTime: string;
  transitions: number;
}

export class LeaderElector {
  private leading = false;
  private stopped = true;
  private timer: NodeJS.Timeout | undefined;
  private attempt: Promise<void> = Promise.resolve();
  private observed: ObservedRecord | undefined;
  /** When (on our clock) the Lease record last changed. */
  private observedAt = 0;
  /** When we last renewed successfully, while leading. */
  private renewedAt = 0;

  constructor(private readonly options: LeaderElectorOptions) {}

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops trying; a leader releases the Lease and stops leading. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.attempt;
    if (this.leading) {
      await this.release();
      await this.stopLeading("shutting down");
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.attempt = this.tick().finally(() => {
        // client-go jitters the retry period so that replicas do not try in lockstep.
        this.schedule(this.options.retryPeriodMs * (1 + Math.random() * 0.2));
      });
    }, delayMs);
  }

  private async tick(): Promise<void> {
    let acquired = false;
    try {
      acquired = await this.tryAcquireOrRenew();
    } catch (err) {
      this.options.logger.warn(
        { err, lease: this.options.name },
        "leader election: cannot read or write the Lease",
      );
    }
    if (this.stopped) return;
    const now = Date.now();
    if (acquired) {
      this.renewedAt = now;
      if (!this.leading) {
        this.leading = true;
        this.options.logger.info(
          { identity: this.options.identity, lease: this.options.name },
          "became leader",
        );
        this.options.onStartedLeading();
      }
    } else if (
      this.leading &&
      (this.observed?.holder !== this.options.identity || now - this.renewedAt > this.options.renewDeadlineMs)
    ) {
      await this.stopLeading(
        this.observed?.holder !== this.options.identity
          ? `lease taken by ${this.observed?.holder}`
          : "could not renew the lease in time",
      );
    }
  }

  private async stopLeading(why: string): Promise<void> {
    if (!this.leading) return;
    this.leading = false;
    this.options.logger.info(
      { identity: this.options.identity, lease: this.options.name, why },
      "stopped leading",
    );
    await this.options.onStoppedLeading();
  }

  private leaseDurationSeconds(): number {
    return Math.max(1, Math.ceil(this.options.leaseDurationMs / 1000));
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { client, namespace, name, identity } = this.options;
    const now = new Date();
    let lease: V1Lease;
    try {
      lease = await client.getLease(namespace, name);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        const created = await client.createLease({
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name, namespace },
          spec: {
            holderIdentity: identity,
            leaseDurationSeconds: this.leaseDurationSeconds(),
            acquireTime: new V1MicroTime(now),
            renewTime: new V1MicroTime(now),
            leaseTransitions: 0,
          },
        });
        this.observe(created, Date.now());
        return true;
      } catch (createErr) {
        if (isAlreadyExists(createErr)) return false;
        throw createErr;
      }
    }

    this.observe(lease, now.getTime());
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const heldByOther = holder !== "" && holder !== identity;
    if (heldByOther && this.observedAt + this.options.leaseDurationMs > now.getTime()) return false;

    const update: V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: this.leaseDurationSeconds(),
        renewTime: new V1MicroTime(now),
        acquireTime: holder === identity && spec.acquireTime ? spec.acquireTime : new V1MicroTime(now),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1),
      },
    };
    try {
      const updated = await client.updateLease(update);
      this.observe(updated, Date.now());
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  private observe(lease: V1Lease, at: number): void {
    const record: ObservedRecord = {
      holder: lease.spec?.holderIdentity ?? "",
      renewTime: String(lease.spec?.renewTime ?? ""),
      transitions: lease.spec?.leaseTransitions ?? 0,
    };
    const o = this.observed;
    if (
      o === undefined ||
      o.holder !== record.holder ||
      o.renewTime !== record.renewTime ||
      o.transitions !== record.transitions
    ) {
      this.observed = record;
      this.observedAt = at;
    }
  }

  /** Gives the Lease up so that another replica can take it without waiting for it to expire. */
  private async release(): Promise<void> {
    const { client, namespace, name, identity } = this.options;
    try {
      const lease = await client.getLease(namespace, name);
      if (lease.spec?.holderIdentity !== identity) return;
      const now = new V1MicroTime();
      await client.updateLease({
        ...lease,
        spec: {
          ...lease.spec,
          holderIdentity: "",
          leaseDurationSeconds: 1,
          renewTime: now,
          acquireTime: now,
        },
      });
    } catch (err) {
      this.options.logger.warn({ err, lease: name }, "leader election: could not release the Lease");
    }
  }
}
