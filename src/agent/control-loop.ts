// The control half of a cell, without a data plane: acquire the subnet
// lease, keep renewing it, and follow the controller by long-poll watch,
// handing each new state to `onSnapshot`. The watch asks for deltas (only the
// changes since the version the cell has) and applies them to its copy
// (watch-state.ts); a full snapshot comes when the controller no longer has
// the changes, or on the first call. Both the userspace Cell and the kernel
// cell run on it.
import { ControllerClient, type Lease, type Snapshot, type WatchDelta } from '../net/controller-client.js';
import type { Logger } from '../util/log.js';
import { WatchState } from './watch-state.js';

export interface ControlLoopOptions {
  client: ControllerClient;
  underlayIp: string;
  log: Logger;
  /** Seconds between lease renewals (silk-daemon: lease_poll_interval). */
  renewInterval?: number;
  /**
   * Called with every snapshot whose version differs from the last one, in
   * order, never concurrently with itself. After a delta, `touchedApps` names
   * the apps whose policies or tags changed (absent: anything may have).
   */
  onSnapshot: (snap: Snapshot, touchedApps?: ReadonlySet<string>) => Promise<void> | void;
}

export class ControlLoop {
  lease!: Lease;
  version = -1;
  /** Wall-clock ms when a snapshot with a new version was last applied. */
  lastSnapshotAt = 0;
  /**
   * Wall-clock ms of the last successful round-trip with the controller: the
   * first snapshot, then every watch that returned — with a change, or with
   * the same version when the controller's hold ran out. What staleness is
   * measured from: on a healthy idle cell it stays under the hold time (a
   * change-based clock grows without bound while nothing changes).
   */
  lastContactAt = 0;
  watchErrors = 0;
  renewFailures = 0;
  /** Watch answers that were deltas / full snapshots. */
  deltasApplied = 0;
  snapshotsApplied = 0;
  private readonly state = new WatchState();
  private stopped = false;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | null = null;
  private readonly o: ControlLoopOptions;

  constructor(o: ControlLoopOptions) {
    this.o = o;
    o.client.onFailover ??= (from, to) => o.log.warn({ from, to }, 'controller-failover');
  }

  /** Acquire the lease (throws if the controller refuses). Does not start watching. */
  async acquire(): Promise<Lease> {
    this.lease = await this.o.client.acquireLease(this.o.underlayIp);
    this.o.log.info({ lease: this.lease }, 'lease-acquired');
    return this.lease;
  }

  /** Apply the current snapshot now, then follow changes and renew in the background. */
  async start(): Promise<void> {
    const first = await this.o.client.snapshot();
    this.lastContactAt = Date.now();
    await this.handle(first);
    void this.watchLoop();
    const every = (this.o.renewInterval ?? 30) * 1000;
    this.timer = setInterval(() => void this.renew(), every);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    if (this.timer) clearInterval(this.timer);
  }

  private async handle(snap: Snapshot): Promise<void> {
    this.state.reset(snap);
    this.snapshotsApplied++;
    await this.deliver(snap);
  }

  private async handleDelta(d: WatchDelta): Promise<void> {
    if (!this.state.apply(d)) {
      // Not a continuation of what we have (another replica, a gap): start over from a snapshot.
      this.o.log.info({ have: this.state.version, since: d.since, version: d.version }, 'watch-delta-resync');
      await this.handle(await this.o.client.snapshot());
      return;
    }
    this.deltasApplied++;
    await this.deliver(this.state.snapshot(), this.state.lastTouched ?? undefined);
  }

  private async deliver(snap: Snapshot, touchedApps?: ReadonlySet<string>): Promise<void> {
    await this.o.onSnapshot(snap, touchedApps);
    this.version = snap.version;
    this.lastSnapshotAt = Date.now();
    const ours = snap.leases.some((l) => l.underlay_ip === this.o.underlayIp && l.overlay_subnet === this.lease.overlay_subnet);
    if (!ours && !this.stopped) {
      this.o.log.warn({ lease: this.lease }, 'lease-missing-from-snapshot');
      void this.renew();
    }
  }

  private async watchLoop(): Promise<void> {
    let backoff = 100;
    while (!this.stopped) {
      try {
        const ans = await this.o.client.watchDelta(this.version, this.abort.signal);
        if (this.stopped) return;
        this.lastContactAt = Date.now();
        if ('changes' in ans) {
          if (ans.version !== this.version) await this.handleDelta(ans);
        } else if (ans.version !== this.version) await this.handle(ans);
        backoff = 100;
      } catch (err) {
        if (this.stopped) return;
        this.watchErrors++;
        this.o.log.warn({ err: (err as Error).message }, 'watch-failed');
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  async renew(): Promise<void> {
    try {
      this.lease = await this.o.client.renewLease(this.lease);
    } catch (err) {
      this.renewFailures++;
      this.o.log.warn({ err: (err as Error).message }, 'lease-renew-failed');
      try {
        const again = await this.o.client.acquireLease(this.o.underlayIp);
        // Containers keep their addresses; a different subnet makes them
        // unreachable until restarted. Say it loudly; never renumber live ones.
        if (again.overlay_subnet !== this.lease.overlay_subnet) this.o.log.error({ old: this.lease, new: again }, 'lease-changed');
        this.lease = again;
      } catch (err2) {
        this.o.log.error({ err: (err2 as Error).message }, 'lease-reacquire-failed');
      }
    }
  }
}
