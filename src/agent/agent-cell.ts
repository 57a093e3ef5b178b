// A whole cell: the agent plus the backend that moves its packets. The
// userspace Cell (src/cell) and the KernelCell (src/kernel) extend this: each
// is a Backend, and this base gives both the same face — start/stop, the
// lease and watch state, and the container calls the admin socket and the
// tests use — all answered by the one Agent.
import type { ControllerClient, Lease, Snapshot } from '../net/controller-client.js';
import type { Logger } from '../util/log.js';
import { Agent, type UpstreamControl } from './agent.js';
import type { AgentHooks, Backend, DesiredState } from './backend.js';
import type { ContainerInfo, ContainerKey, ContainerRecord, ContainerRequest } from './containers.js';
import type { ControlLoop } from './control-loop.js';
import type { StateDir } from './state-dir.js';
import type { SilkPollLoop } from './silk-loop.js';

export interface AgentCellOptions {
  name: string;
  controller: ControllerClient;
  underlayIp: string;
  /** Only asked whether a namespace exists (the backend sets the container up). */
  containerNet: { exists(netns: string): boolean };
  /** Seconds between lease renewals. */
  renewInterval?: number;
  /** The cell's state directory, already locked (see src/agent/state-dir.ts); none: nothing survives a restart. */
  state?: StateDir;
  /** Poll an unmodified silk-controller and policy server instead of watching silkworm's controller. */
  upstream?: UpstreamControl;
}

export abstract class AgentCell implements Backend {
  abstract readonly kind: 'user' | 'kernel';
  readonly name: string;
  readonly log: Logger;
  /** Lease, renewals, the watch and the container records. */
  readonly agent: Agent;
  private readonly underlayAddr: string;

  constructor(o: AgentCellOptions, log: Logger) {
    this.name = o.name;
    this.log = log;
    this.underlayAddr = o.underlayIp;
    this.agent = new Agent({
      name: o.name,
      controller: o.controller,
      underlayIp: o.underlayIp,
      netnsExists: (ns) => o.containerNet.exists(ns),
      backend: this,
      renewInterval: o.renewInterval,
      state: o.state,
      upstream: o.upstream,
    });
  }

  get loop(): ControlLoop | SilkPollLoop {
    return this.agent.loop;
  }
  get lease(): Lease {
    return this.agent.lease;
  }
  get underlayIp(): string {
    return this.underlayAddr;
  }
  get version(): number {
    return this.loop.version;
  }
  get lastSnapshotAt(): number {
    return this.loop.lastSnapshotAt;
  }
  /** Wall-clock ms of the last successful round-trip with the controller (0 = none yet). */
  get lastContactAt(): number {
    return this.loop.lastContactAt;
  }
  get watchErrors(): number {
    return this.loop.watchErrors;
  }
  get renewFailures(): number {
    return this.loop.renewFailures;
  }

  start(): Promise<void> {
    return this.agent.start();
  }
  stop(): Promise<void> {
    return this.agent.stop();
  }
  /** Apply a controller snapshot now (after any change already queued). */
  applySnapshot(snap: Snapshot): Promise<void> {
    return this.agent.applySnapshot(snap);
  }
  listContainers(): ContainerInfo[] {
    return this.agent.listContainers();
  }
  findContainer(key: ContainerKey): string | undefined {
    return this.agent.findContainer(key);
  }
  addContainer(req: ContainerRequest): Promise<ContainerInfo> {
    return this.agent.addContainer(req);
  }
  removeContainer(handle: string): Promise<ContainerInfo> {
    return this.agent.removeContainer(handle);
  }
  removeIfPresent(key: ContainerKey): Promise<ContainerInfo | undefined> {
    return this.agent.removeIfPresent(key);
  }

  // The Backend: what each data plane does.
  abstract open(lease: Lease, hooks: AgentHooks): Promise<void>;
  abstract run(): Promise<void>;
  abstract apply(state: DesiredState): Promise<void> | void;
  abstract attach(c: ContainerRecord): Promise<Record<string, unknown> | void>;
  abstract detach(c: ContainerRecord): Promise<void>;
  abstract tagOf(ip: number): number;
  abstract close(): Promise<void>;
}
