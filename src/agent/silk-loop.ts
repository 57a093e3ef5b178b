// The control half of a cell that joins an upstream foundation: an
// unmodified silk-controller for the leases and an unmodified policy server's
// internal API for the policies. Neither has silkworm's /watch, so this polls
// them the way their own agents do:
//
// - leases, as silk-daemon (silk-release: src/code.cloudfoundry.org/silk/
//   daemon/planner/vxlan_planner.go, DoCycle): every lease poll interval
//   renew the lease it holds (silk answers `{}`: the held lease stays the
//   lease), then GET /leases for every routable lease. A 409 on renew is
//   silk's NonRetriableError (controller/client.go): fatal at once, as the
//   daemon's FatalErrorDetector (planner/fatal_error_detector.go) makes it;
//   other failures are fatal only after the partition tolerance has passed
//   without a success.
// - policies, as vxlan-policy-agent (vxlan-policy-agent/converger/
//   converger.go, DoPolicyCycleWithLastUpdatedCheck): every policy poll
//   interval GET /networking/v1/internal/policies_last_updated and skip the
//   round unless it moved (or this is the first round, or it failed); then
//   GET /networking/v1/internal/policies?id=<the local apps> (planner.go asks
//   by the IDs of its containers). A change in the local apps also refetches.
//
// Each change of leases or policies becomes a Snapshot (the same shape the
// watch gives), so the backends cannot tell the two control planes apart.
import type { ControllerClient, Lease, PolicyRecord, Snapshot } from '../net/controller-client.js';
import type { Logger } from '../util/log.js';
import { ControllerError } from '../net/controller-client.js';

export interface SilkLoopOptions {
  /** silk-controller (leases). */
  client: ControllerClient;
  /** The policy server's internal API. */
  policyServer: ControllerClient;
  underlayIp: string;
  log: Logger;
  /** silk-daemon's lease_poll_interval_seconds (default 30). */
  leasePollS?: number;
  /** vxlan-policy-agent's policy_poll_interval_seconds (default 5). */
  policyPollS?: number;
  /** silk-daemon's partition_tolerance_hours, in seconds (default 168 h). */
  partitionToleranceS?: number;
  /** The app IDs of the local containers, asked every policy round. */
  localApps: () => string[];
  onSnapshot: (snap: Snapshot) => Promise<void> | void;
  /** A fatal error (409 on renew, or the partition tolerance passed): silk-daemon exits here. */
  onFatal: (err: Error) => void;
}

/** The lease renewal was refused with 409: silk-daemon's NonRetriableError. */
export class LeaseConflictError extends Error {
  constructor(message: string) {
    super(`non-retriable: ${message}`);
    this.name = 'LeaseConflictError';
  }
}

export class SilkPollLoop {
  lease!: Lease;
  version = -1;
  lastSnapshotAt = 0;
  /** Wall-clock ms of the last poll the controller answered (leases or policies): what staleness counts from. */
  lastContactAt = 0;
  /** Failed polls (leases or policies); the watch's counter in silkworm mode. */
  watchErrors = 0;
  renewFailures = 0;
  /** Policy rounds skipped because policies_last_updated did not move (as vxlan-policy-agent's "skipping-poll-cycle"). */
  skippedPolicyRounds = 0;
  private stopped = false;
  private leases: Lease[] = [];
  private policies: PolicyRecord[] = [];
  private lastUpdated = 0n;
  private appsKey = '';
  private lastSuccess = Date.now();
  private published = '';
  private timers: NodeJS.Timeout[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private readonly o: SilkLoopOptions;

  constructor(o: SilkLoopOptions) {
    this.o = o;
  }

  async acquire(): Promise<Lease> {
    this.lease = await this.o.client.acquireLease(this.o.underlayIp);
    this.o.log.info({ lease: this.lease, api: 'silk' }, 'lease-acquired');
    return this.lease;
  }

  /** One lease round and one policy round now, then both on their intervals. */
  async start(): Promise<void> {
    await this.leaseRound();
    await this.policyRound();
    await this.publish();
    const every = (s: number | undefined, d: number) => Math.max(0.05, s ?? d) * 1000;
    const t1 = setInterval(() => void this.serial(() => this.leaseRound().then(() => this.publish())), every(this.o.leasePollS, 30));
    const t2 = setInterval(() => void this.serial(() => this.policyRound().then(() => this.publish())), every(this.o.policyPollS, 5));
    for (const t of [t1, t2]) t.unref();
    this.timers.push(t1, t2);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** silk-daemon's renew, as a method (the agent calls it when its lease is missing). */
  async renew(): Promise<void> {
    await this.serial(() => this.leaseRound());
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** vxlan_planner.go DoCycle: renew, then list. */
  private async leaseRound(): Promise<void> {
    if (this.stopped) return;
    try {
      // silk answers a renew with {}: the lease held stays the lease.
      await this.o.client.renewLease(this.lease);
      this.lastSuccess = Date.now();
    } catch (err) {
      this.renewFailures++;
      if (err instanceof ControllerError && err.status === 409) {
        const fatal = new LeaseConflictError(err.message);
        this.o.log.error({ lease: this.lease, err: fatal.message }, 'lease-renew-conflict');
        this.stop();
        this.o.onFatal(fatal);
        return;
      }
      const tolerance = (this.o.partitionToleranceS ?? 168 * 3600) * 1000;
      this.o.log.warn({ err: (err as Error).message }, 'lease-renew-failed');
      if (Date.now() - this.lastSuccess >= tolerance) {
        const fatal = new Error(`renew lease: no success for ${Math.round(tolerance / 1000)} s: ${(err as Error).message}`);
        this.stop();
        this.o.onFatal(fatal);
      }
      return;
    }
    try {
      this.leases = await this.o.client.leases();
      this.lastContactAt = Date.now();
    } catch (err) {
      this.watchErrors++;
      this.o.log.warn({ err: (err as Error).message }, 'leases-poll-failed');
    }
  }

  /** converger.go DoPolicyCycleWithLastUpdatedCheck. */
  private async policyRound(): Promise<void> {
    if (this.stopped) return;
    const apps = [...new Set(this.o.localApps())].sort();
    const appsKey = apps.join(',');
    let remote: bigint | undefined;
    try {
      remote = await this.o.policyServer.policiesLastUpdated();
      this.lastContactAt = Date.now();
    } catch (err) {
      // As the agent: a failed check runs the full cycle.
      this.watchErrors++;
      this.o.log.warn({ err: (err as Error).message }, 'error-getting-policies-last-updated');
    }
    if (remote !== undefined && this.lastUpdated !== 0n && remote <= this.lastUpdated && appsKey === this.appsKey) {
      this.skippedPolicyRounds++;
      return;
    }
    try {
      // planner.go: no containers, no policies to ask for (GetPoliciesByID refuses an empty list).
      this.policies = apps.length === 0 ? [] : await this.o.policyServer.internalPolicies(apps);
      if (apps.length > 0) this.lastContactAt = Date.now();
      if (remote !== undefined) this.lastUpdated = remote;
      this.appsKey = appsKey;
    } catch (err) {
      this.watchErrors++;
      this.o.log.warn({ err: (err as Error).message }, 'policies-poll-failed');
    }
  }

  /** A new snapshot when leases or policies changed. */
  private async publish(): Promise<void> {
    if (this.stopped) return;
    const tags = new Map<string, string>();
    for (const p of this.policies) {
      if (p.source.tag) tags.set(p.source.id, p.source.tag);
      if (p.destination.tag) tags.set(p.destination.id, p.destination.tag);
    }
    const body = {
      leases: this.leases,
      policies: this.policies,
      tags: [...tags].map(([id, tag]) => ({ id, tag })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
    };
    const text = JSON.stringify(body);
    if (text === this.published) return;
    this.published = text;
    const snap: Snapshot = { version: this.version + 1, changed_at: Date.now(), ...body };
    await this.o.onSnapshot(snap);
    this.version = snap.version;
    this.lastSnapshotAt = Date.now();
  }

  /** Ask for a policy round now (a container came or went). */
  poke(): void {
    void this.serial(() => this.policyRound().then(() => this.publish()));
  }
}
