// What a data plane must do for the agent. The agent (src/agent/agent.ts)
// owns everything the two kinds of cell share — the lease and its renewals,
// the controller watch, the container records, address management, request
// validation and the admin API's container routes — and drives a Backend:
//   - src/cell:   the userspace data plane (TAPs, UDP 4789, the pipeline);
//   - src/kernel: the Linux kernel programmed as silk programs it (silk-vtep,
//                 veths, iptables), the reference peer.
// Every call the agent makes on a backend is serialised (one at a time, in
// order): snapshots, container changes and close never overlap.
import type { Lease, Snapshot } from '../net/controller-types.js';
import type { Logger } from '../util/log.js';
import type { ContainerRecord } from './containers.js';
import type { LeaseInfo } from './leases.js';
import type { StateDir } from './state-dir.js';

/** The desired state from one controller snapshot. */
export interface DesiredState {
  /** The snapshot as the controller sent it (policies unvalidated, version, changed_at). */
  snapshot: Snapshot;
  /** Every lease that parses, this cell's own included. */
  leases: LeaseInfo[];
  /**
   * When set, only these apps' policies and tags differ from the state
   * applied before (a delta watch); a backend with no container of any of
   * them may keep its rules without planning again.
   */
  touchedApps?: ReadonlySet<string>;
}

/** What the agent offers a backend. */
export interface AgentHooks {
  /** Run `fn` in the agent's queue, after every change already queued (a backend's background work). */
  serial<T>(fn: () => Promise<T>): Promise<T>;
  /** A container's namespace vanished and took its device along: the backend has let go of it; forget the record. */
  gone(handle: string, fields?: Record<string, unknown>): void;
}

export interface Backend {
  /** `user` or `kernel`, as `--dataplane` names them. */
  readonly kind: 'user' | 'kernel';
  /** The cell's logger (the agent logs its events on it too). */
  readonly log: Logger;
  /** Set up for the cell's own lease, before the first snapshot is applied; throws if it cannot. */
  open(lease: Lease, hooks: AgentHooks): Promise<void>;
  /** After the first snapshot is applied: start moving packets and any background work. */
  run(): Promise<void>;
  /** Make the data plane match the controller's leases and policies. */
  apply(state: DesiredState): Promise<void> | void;
  /**
   * Give the container its device in its namespace and start moving its
   * packets. On failure undo whatever was done and throw one sentence.
   * May return extra fields for the `container-added` log event.
   */
  attach(c: ContainerRecord): Promise<Record<string, unknown> | void>;
  /** Take the container's device away (its namespace may already be gone). */
  detach(c: ContainerRecord): Promise<void>;
  /** The container app's current tag (0: the app is in no policy). */
  tagOf(ip: number): number;
  /**
   * Stop: let go of everything `open` made. Containers keep their devices
   * (only `container del` takes one away), so a restarted cell can re-attach them.
   */
  close(): Promise<void>;
  /**
   * After a restart: adopt the device an earlier process of this cell left in
   * the container's namespace and start moving its packets. Resolves false
   * when the device is not there (the agent then forgets the container).
   * A backend without it cannot re-attach: recorded containers are dropped.
   */
  reattach?(c: ContainerRecord): Promise<boolean>;
  /** Read what `saveState` wrote (called after `open`, before any packet moves). */
  loadState?(dir: StateDir): void;
  /**
   * Write what the backend keeps across a restart (the userspace cell: its
   * tracked connections). `final`: the process is stopping, write it all now;
   * otherwise the backend may finish the write in the background.
   */
  saveState?(dir: StateDir, final?: boolean): void;
}
