// The control half of a cell, without a data plane: acquire the subnet
// lease, keep renewing it, and follow the controller's snapshots by
// long-poll watch (every change resyncs the whole snapshot), handing each
// new one to `onSnapshot`. Both the userspace Cell and the kernel cell run
// on it.
import { ControllerClient, type Lease, type Snapshot } from '../net/controller-client.js';
import type { Logger } from '../util/log.js';

export interface ControlLoopOptions {
  client: ControllerClient;
  underlayIp: string;
  log: Logger;
  /** Seconds between lease renewals (silk-daemon: lease_poll_interval). */
  renewInterval?: number;
  /** Called with every snapshot whose version differs from the last one, in order, never concurrently with itself. */
  onSnapshot: (snap: Snapshot) => Promise<void> | void;
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
  private stopped = false;
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | null = null;
  private readonly o: ControlLoopOptions;

  constructor(o: ControlLoopOptions) {
    this.o = o;
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
    await this.o.onSnapshot(snap);
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
        const snap = await this.o.client.watch(this.version, this.abort.signal);
        if (this.stopped) return;
        this.lastContactAt = Date.now();
        if (snap.version !== this.version) await this.handle(snap);
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
