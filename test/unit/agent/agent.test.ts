// The agent without a data plane: a recording Backend and a fake controller.
// What both cells share is tested once here — IPAM, request checks, the
// answer shape, lease parsing, diff-before-enforce, and the queue that keeps
// snapshots and container changes from overlapping.
import { describe, expect, it } from 'vitest';
import { Agent } from '../../../src/agent/agent.js';
import type { AgentHooks, Backend, DesiredState } from '../../../src/agent/backend.js';
import { checkContainerRequest, containerInfo, type ContainerRecord } from '../../../src/agent/containers.js';
import { Converger, diffByKey, samePolicies } from '../../../src/agent/converger.js';
import { nextIp } from '../../../src/agent/ipam.js';
import { parseLeases } from '../../../src/agent/leases.js';
import type { Lease, Snapshot } from '../../../src/net/controller-client.js';
import { fakeController } from '../../../src/testing/fake-controller.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { logger } from '../../../src/util/log.js';

const log = logger('agent-test');
const ours: Lease = { underlay_ip: '198.18.0.11', overlay_subnet: '10.255.1.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:01:00' };
const theirs: Lease = { underlay_ip: '198.18.0.12', overlay_subnet: '10.255.2.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:02:00' };

/** Records every call; each call takes a few ms and fails the test if another one is running at the same time. */
class RecordingBackend implements Backend {
  readonly kind = 'user';
  readonly log = log;
  readonly calls: string[] = [];
  overlaps = 0;
  hooks: AgentHooks | null = null;
  failAttach = false;
  private busy = false;
  private async step(what: string): Promise<void> {
    if (this.busy) this.overlaps++;
    this.busy = true;
    this.calls.push(what);
    await new Promise((r) => setTimeout(r, 3));
    this.busy = false;
  }
  async open(lease: Lease, hooks: AgentHooks): Promise<void> {
    this.hooks = hooks;
    await this.step(`open ${lease.overlay_subnet}`);
  }
  async run(): Promise<void> {
    await this.step('run');
  }
  async apply(s: DesiredState): Promise<void> {
    await this.step(`apply v${s.snapshot.version} leases=${s.leases.length}`);
  }
  async attach(c: ContainerRecord): Promise<void> {
    await this.step(`attach ${c.handle}`);
    if (this.failAttach) throw new Error('ip link set failed');
  }
  async detach(c: ContainerRecord): Promise<void> {
    await this.step(`detach ${c.handle}`);
  }
  tagOf(ip: number): number {
    return ip === ipToU32('10.255.1.2') ? 0x12 : 0;
  }
  async close(): Promise<void> {
    await this.step('close');
  }
}

async function startAgent(snap: Snapshot = { version: 1, leases: [ours, theirs], policies: [], tags: [] }) {
  const backend = new RecordingBackend();
  const agent = new Agent({
    name: 'cell1',
    controller: fakeController(ours, snap),
    underlayIp: '198.18.0.11',
    netnsExists: (ns) => ns.startsWith('ns'),
    backend,
  });
  await agent.start();
  return { agent, backend };
}

describe('IPAM', () => {
  it('gives the lowest free address, skipping the VTEP (.0), the gateway (.1) and broadcast', () => {
    const lease = '10.255.1.0/29';
    expect(nextIp(lease, () => false)).toBe(ipToU32('10.255.1.2'));
    const used = new Set([ipToU32('10.255.1.2'), ipToU32('10.255.1.4')]);
    expect(nextIp(lease, (ip) => used.has(ip))).toBe(ipToU32('10.255.1.3'));
    // .2-.6 taken: .7 is broadcast, never given out.
    expect(() => nextIp(lease, (ip) => ip >= ipToU32('10.255.1.2') && ip <= ipToU32('10.255.1.6'))).toThrow('no free address left in 10.255.1.0/29');
  });
});

describe('container requests and records', () => {
  const a: ContainerRecord = { handle: 'h1', app: 'appA', ip: ipToU32('10.255.1.2'), netns: 'ns1' };
  const exists = (ns: string) => ns !== 'gone';
  it('checks the app, the namespace, and that neither namespace nor handle is taken', () => {
    expect(checkContainerRequest({ app: 'appB', netns: 'ns2' }, [a], exists)).toEqual({ handle: 'ns2', app: 'appB', netns: 'ns2' });
    expect(() => checkContainerRequest({ app: 'bad app!', netns: 'ns2' }, [a], exists)).toThrow('app must be a name of letters, digits, "_.:-"');
    expect(() => checkContainerRequest({ app: 'appB', netns: 'gone' }, [a], exists)).toThrow('network namespace "gone" does not exist');
    expect(() => checkContainerRequest({ app: 'appB', netns: 'ns1' }, [a], exists)).toThrow('namespace ns1 already has a container (h1)');
    expect(() => checkContainerRequest({ app: 'appB', netns: 'ns2', handle: 'h1' }, [a], exists)).toThrow('a container with handle h1 already exists');
  });
  it('shows a record as the API answers it', () => {
    expect(containerInfo(a, 'cell1', 0x2)).toEqual({ handle: 'h1', app: 'appA', ip: '10.255.1.2', mac: 'ee:ee:0a:ff:01:02', netns: 'ns1', cell: 'cell1', tag: '0002' });
    expect(containerInfo(a, 'cell1', 0).tag).toBe('');
  });
});

describe('lease parsing', () => {
  it('turns leases into numbers once and skips the ones that do not parse', () => {
    const bad = { ...theirs, underlay_ip: '198.18.0.300' };
    expect(parseLeases([ours, bad, { ...theirs, overlay_subnet: '10.255.2.7/24' }], log)).toEqual([
      { underlayIp: ipToU32('198.18.0.11'), subnet: ipToU32('10.255.1.0'), prefixLen: 24 },
      { underlayIp: ipToU32('198.18.0.12'), subnet: ipToU32('10.255.2.0'), prefixLen: 24 },
    ]);
  });
});

describe('converger', () => {
  it('diffs by key: changed values are re-added, missing ones removed', () => {
    const applied = new Map([['a', { k: 'a', v: 1 }], ['b', { k: 'b', v: 1 }]]);
    const d = diffByKey(applied, [{ k: 'a', v: 1 }, { k: 'b', v: 2 }, { k: 'c', v: 1 }], (x) => x.k, (x, y) => x.v === y.v);
    expect(d).toEqual({ add: [{ k: 'b', v: 2 }, { k: 'c', v: 1 }], del: [] });
    expect(diffByKey(applied, [], (x) => x.k, (x, y) => x.v === y.v).del.map((x) => x.k)).toEqual(['a', 'b']);
  });
  it('enforces only when the desired state changed, when forced, or after a failure', async () => {
    const enforced: string[] = [];
    let fail = false;
    const c = new Converger<string[]>(
      (rules) => rules.join('\n'),
      async (rules) => {
        if (fail) throw new Error('iptables-restore failed');
        enforced.push(rules.join(','));
      },
    );
    expect(await c.converge(['r1'])).toBe(true);
    expect(await c.converge(['r1'])).toBe(false);
    expect(await c.converge(['r1'], true)).toBe(true);
    fail = true;
    await expect(c.converge(['r1', 'r2'])).rejects.toThrow('iptables-restore failed');
    fail = false;
    expect(await c.converge(['r1', 'r2'])).toBe(true);
    expect(enforced).toEqual(['r1', 'r1', 'r1,r2']);
  });
});

describe('samePolicies', () => {
  const p = (src: string, start: number, tag?: string) => ({
    source: { id: src, ...(tag ? { tag } : {}) },
    destination: { id: 'appA', protocol: 'tcp' as const, ports: { start, end: start } },
  });
  it('is true only for the same ids, tags, protocols and ports in the same order', () => {
    expect(samePolicies([p('appB', 8080, '0001')], [p('appB', 8080, '0001')])).toBe(true);
    expect(samePolicies([p('appB', 8080, '0001')], [p('appB', 8080, '0002')])).toBe(false);
    expect(samePolicies([p('appB', 8080)], [p('appB', 8081)])).toBe(false);
    expect(samePolicies([p('appB', 8080)], [p('appC', 8080)])).toBe(false);
    expect(samePolicies([p('appB', 8080), p('appC', 1)], [p('appC', 1), p('appB', 8080)])).toBe(false);
    expect(samePolicies([p('appB', 8080)], [])).toBe(false);
    const udp = { ...p('appB', 8080), destination: { ...p('appB', 8080).destination, protocol: 'udp' as const } };
    expect(samePolicies([p('appB', 8080)], [udp])).toBe(false);
  });
});

describe('Agent over a Backend', () => {
  it('opens the backend with the lease, applies the first snapshot, then runs it', async () => {
    const { agent, backend } = await startAgent();
    expect(backend.calls).toEqual(['open 10.255.1.0/24', 'apply v1 leases=2', 'run']);
    expect(agent.lease).toEqual(ours);
    await agent.stop();
    expect(backend.calls[backend.calls.length - 1]).toBe('close');
    // A snapshot that arrives after stop never reaches the closed backend.
    await agent.applySnapshot({ version: 9, leases: [ours], policies: [], tags: [] });
    expect(backend.calls[backend.calls.length - 1]).toBe('close');
  });

  it('never runs two changes at once, so concurrent adds get different addresses', async () => {
    const { agent, backend } = await startAgent();
    const [a, b, c] = await Promise.all([
      agent.addContainer({ app: 'appA', netns: 'ns1' }),
      agent.addContainer({ app: 'appA', netns: 'ns2' }),
      agent.applySnapshot({ version: 2, leases: [ours], policies: [], tags: [] }).then(() => agent.addContainer({ app: 'appB', netns: 'ns3', handle: 'c3' })),
    ]);
    expect([a.ip, b.ip, c.ip]).toEqual(['10.255.1.2', '10.255.1.3', '10.255.1.4']);
    expect(a.tag).toBe('0012');
    expect(backend.overlaps).toBe(0);
    expect(agent.listContainers().map((x) => x.handle)).toEqual(['ns1', 'ns2', 'c3']);
    expect(agent.findContainer({ netns: 'ns3' })).toBe('c3');
    await agent.stop();
  });

  it('records nothing when the backend cannot attach, and frees the address', async () => {
    const { agent, backend } = await startAgent();
    backend.failAttach = true;
    await expect(agent.addContainer({ app: 'appA', netns: 'ns1' })).rejects.toThrow('ip link set failed');
    expect(agent.listContainers()).toEqual([]);
    backend.failAttach = false;
    expect((await agent.addContainer({ app: 'appA', netns: 'ns1' })).ip).toBe('10.255.1.2');
    await agent.stop();
  });

  it('removes a container through the backend, and forgets one whose namespace vanished', async () => {
    const { agent, backend } = await startAgent();
    await agent.addContainer({ app: 'appA', netns: 'ns1' });
    await agent.addContainer({ app: 'appB', netns: 'ns2' });
    const removed = await agent.removeContainer('ns1');
    expect(removed.ip).toBe('10.255.1.2');
    expect(backend.calls).toContain('detach ns1');
    await expect(agent.removeContainer('ns1')).rejects.toThrow('no container ns1 on cell cell1');
    backend.hooks!.gone('ns2');
    expect(agent.listContainers()).toEqual([]);
    // The freed addresses are given out again.
    expect((await agent.addContainer({ app: 'appA', netns: 'ns3' })).ip).toBe('10.255.1.2');
    await agent.stop();
  });
});
