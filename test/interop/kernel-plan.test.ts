// The kernel cell's commands as data (src/kernel/plan.ts) and its converger
// against a recording fake: no root needed. The exact argv lists are the
// ones silk-daemon / silk-cni / vxlan-policy-agent results look like in the
// seed (002): routes `via <vtep> dev silk-vtep src <our vtep>`, permanent
// neighbors, `self permanent` FDB entries.
import { describe, expect, it } from 'vitest';
import {
  baseRestorePayload,
  containerHostCommands,
  diffLeases,
  leaseAddCommands,
  leaseDelCommands,
  nextChainName,
  parseCountedRules,
  parseLinkStats,
  policyChainLines,
  policyChainsIn,
  swapRestorePayload,
  vethNames,
  vtepCommands,
  type RemoteLease,
} from '../../src/kernel/plan.js';
import { plan, renderIptables } from '../../src/policy/planner.js';
import { ipToU32 } from '../../src/util/ip.js';
import { FakeExec } from '../../src/testing/fake-exec.js';
import { KernelCell } from '../../src/kernel/kernel-cell.js';
import { FakeContainerNet } from '../../src/testing/fake-container-net.js';
import type { Lease } from '../../src/net/controller-client.js';
import { fakeController } from '../../src/testing/fake-controller.js';

const POLICIES = [
  { source: { id: 'appA', tag: '0001' }, destination: { id: 'appB', tag: '0002', protocol: 'tcp' as const, ports: { start: 8080, end: 8080 } } },
  { source: { id: 'appB', tag: '0002' }, destination: { id: 'appA', tag: '0001', protocol: 'udp' as const, ports: { start: 5000, end: 5010 } } },
];

describe('kernel plan: silk-vtep, leases, veths', () => {
  it('creates silk-vtep as silk-daemon does (seed 002 "VTEP device")', () => {
    const cmds = vtepCommands({ underlayIp: '10.0.32.12', underlayDev: 'eth0', vtepIp: ipToU32('10.255.126.0'), overlayPrefixLen: 16, vni: 1, port: 4789, mtu: 1410 });
    expect(cmds).toEqual([
      ['link', 'add', 'silk-vtep', 'address', 'ee:ee:0a:ff:7e:00', 'mtu', '1410', 'type', 'vxlan', 'id', '1', 'dev', 'eth0', 'local', '10.0.32.12', 'dstport', '4789', 'nolearning', 'gbp'],
      ['addr', 'add', '10.255.126.0/16', 'scope', 'link', 'dev', 'silk-vtep'],
      ['link', 'set', 'dev', 'silk-vtep', 'up'],
    ]);
  });

  it('installs a remote lease as the seed shows route, neighbor and FDB entry', () => {
    const l: RemoteLease = { underlayIp: '10.0.16.14', subnet: ipToU32('10.255.43.0'), prefixLen: 24 };
    expect(leaseAddCommands(l, ipToU32('10.255.108.0'))).toEqual({
      ip: [
        ['neigh', 'replace', '10.255.43.0', 'lladdr', 'ee:ee:0a:ff:2b:00', 'dev', 'silk-vtep', 'nud', 'permanent'],
        ['route', 'replace', '10.255.43.0/24', 'via', '10.255.43.0', 'dev', 'silk-vtep', 'src', '10.255.108.0'],
      ],
      bridge: [['fdb', 'replace', 'ee:ee:0a:ff:2b:00', 'dev', 'silk-vtep', 'dst', '10.0.16.14', 'self', 'permanent']],
    });
    expect(leaseDelCommands(l)).toEqual({
      ip: [
        ['route', 'del', '10.255.43.0/24', 'dev', 'silk-vtep'],
        ['neigh', 'del', '10.255.43.0', 'dev', 'silk-vtep'],
      ],
      bridge: [['fdb', 'del', 'ee:ee:0a:ff:2b:00', 'dev', 'silk-vtep', 'self']],
    });
  });

  it('diffs leases: new and moved ones are (re)installed, vanished ones removed, unchanged ones left alone', () => {
    const a: RemoteLease = { underlayIp: '198.18.0.11', subnet: ipToU32('10.255.1.0'), prefixLen: 24 };
    const b: RemoteLease = { underlayIp: '198.18.0.12', subnet: ipToU32('10.255.2.0'), prefixLen: 24 };
    const bMoved: RemoteLease = { ...b, underlayIp: '198.18.0.99' };
    const c: RemoteLease = { underlayIp: '198.18.0.13', subnet: ipToU32('10.255.3.0'), prefixLen: 24 };
    const applied = new Map([['10.255.1.0/24', a], ['10.255.2.0/24', b]]);
    expect(diffLeases(applied, [a, bMoved, c])).toEqual({ add: [bMoved, c], del: [] });
    expect(diffLeases(applied, [b])).toEqual({ add: [], del: [a] });
  });

  it('names and configures the host side of a container as silk-cni (seed 002 "Veth device")', () => {
    const ip = ipToU32('10.255.108.184');
    expect(vethNames(ip)).toEqual({ host: 's-010255108184', peer: 'c-010255108184' });
    expect(containerHostCommands(ip, 1410)).toEqual({
      create: ['link', 'add', 's-010255108184', 'mtu', '1410', 'address', 'aa:aa:0a:ff:6c:b8', 'type', 'veth', 'peer', 'name', 'c-010255108184', 'mtu', '1410'],
      configure: [
        ['link', 'set', 'dev', 's-010255108184', 'arp', 'off', 'up'],
        ['addr', 'add', '169.254.0.1', 'peer', '10.255.108.184/32', 'dev', 's-010255108184', 'scope', 'link'],
        ['neigh', 'replace', '10.255.108.184', 'lladdr', 'ee:ee:0a:ff:6c:b8', 'dev', 's-010255108184', 'nud', 'permanent'],
      ],
    });
  });
});

describe('kernel plan: iptables make-before-break', () => {
  const p = plan(POLICIES, [
    { handle: 'b0', ip: ipToU32('10.255.2.2'), app: 'appB' },
    { handle: 'a0', ip: ipToU32('10.255.2.3'), app: 'appA' },
  ]);

  it('applies exactly the lines renderIptables prints (the userspace cell\'s `show rules`)', () => {
    const rendered = renderIptables(p, 'vpa--1700000000');
    const chain = policyChainLines(p, 'vpa--1700000000');
    expect(chain).toEqual(rendered.slice(0, rendered.indexOf('-N overlay')));
    const payload = swapRestorePayload(p, 'vpa--1700000000', ['vpa--1699999999']).split('\n');
    expect(payload).toEqual([
      '*filter',
      ':vpa--1700000000 - [0:0]',
      '-A vpa--1700000000 -s 10.255.2.2/32 -m comment --comment "src:appB" -j MARK --set-xmark 0x2/0xffffffff',
      '-A vpa--1700000000 -s 10.255.2.3/32 -m comment --comment "src:appA" -j MARK --set-xmark 0x1/0xffffffff',
      '-A vpa--1700000000 -d 10.255.2.2/32 -p tcp -m tcp --dport 8080 -m mark --mark 0x1 -m comment --comment "src:appA_dst:appB" -j ACCEPT',
      '-A vpa--1700000000 -d 10.255.2.3/32 -p udp -m udp --dport 5000:5010 -m mark --mark 0x2 -m comment --comment "src:appB_dst:appA" -j ACCEPT',
      // new chain first, jump at position 1, then the old one out: make before break
      '-I FORWARD 1 -j vpa--1700000000',
      '-D FORWARD -j vpa--1699999999',
      '-F vpa--1699999999',
      '-X vpa--1699999999',
      'COMMIT',
      '',
    ]);
  });

  it('sets up the overlay chain once, replacing a stale one', () => {
    expect(baseRestorePayload(false, false).split('\n')).toEqual([
      '*filter',
      ':overlay - [0:0]',
      '-A overlay -m state --state RELATED,ESTABLISHED -j ACCEPT',
      '-A overlay -j REJECT --reject-with icmp-port-unreachable',
      '-A FORWARD -o s-+ -j overlay',
      'COMMIT',
      '',
    ]);
    expect(baseRestorePayload(true, true).split('\n').slice(1, 3)).toEqual(['-D FORWARD -o s-+ -j overlay', '-F overlay']);
  });

  it('names chains vpa--<unix seconds>, never reusing the previous name', () => {
    expect(nextChainName(1700000000.9, null)).toBe('vpa--1700000000');
    expect(nextChainName(1700000000.2, 'vpa--1700000000')).toBe('vpa--1700000001');
    expect(nextChainName(1700000005, 'vpa--1700000000')).toBe('vpa--1700000005');
  });

  it('reads iptables 1.8 `-v -S` counters (measured output) and chain names', () => {
    const text = [
      '-N vpa--5',
      '-A vpa--5 -s 10.255.1.2/32 -m comment --comment "src:appA" -c 12 720 -j MARK --set-xmark 0x1/0xffffffff',
      '-A vpa--5 -d 10.255.1.2/32 -p tcp -m tcp --dport 8080 -m mark --mark 0x2 -m comment --comment "src:appB_dst:appA" -c 3 180 -j ACCEPT',
      '',
    ].join('\n');
    expect(parseCountedRules(text)).toEqual([
      { line: '-N vpa--5', packets: 0, bytes: 0 },
      { line: '-A vpa--5 -s 10.255.1.2/32 -m comment --comment "src:appA" -j MARK --set-xmark 0x1/0xffffffff', packets: 12, bytes: 720 },
      { line: '-A vpa--5 -d 10.255.1.2/32 -p tcp -m tcp --dport 8080 -m mark --mark 0x2 -m comment --comment "src:appB_dst:appA" -j ACCEPT', packets: 3, bytes: 180 },
    ]);
    expect(policyChainsIn('-P FORWARD ACCEPT\n-N overlay\n-N vpa--17\n-N vpa--18\n-A FORWARD -j vpa--18\n')).toEqual(['vpa--17', 'vpa--18']);
  });

  it('reads `ip -s -j link` counters and survives junk', () => {
    const j = JSON.stringify([{ ifname: 'silk-vtep', stats64: { rx: { bytes: 296, packets: 5, dropped: 1 }, tx: { bytes: 628, packets: 10, dropped: 0 } } }, { nope: 1 }]);
    expect(parseLinkStats(j)).toEqual([{ ifname: 'silk-vtep', rx_packets: 5, rx_bytes: 296, rx_dropped: 1, tx_packets: 10, tx_bytes: 628, tx_dropped: 0 }]);
    expect(parseLinkStats('not json')).toEqual([]);
  });
});

describe('KernelCell converger (recording fake, no root)', () => {
  const ours: Lease = { underlay_ip: '198.18.0.12', overlay_subnet: '10.255.2.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:02:00' };
  const theirs: Lease = { underlay_ip: '198.18.0.11', overlay_subnet: '10.255.1.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:01:00' };

  it('programs the VTEP, the remote lease and the rules, then swaps make-before-break when a container arrives', async () => {
    const exec = new FakeExec();
    exec.answers.set('iptables -w -S', '-P FORWARD ACCEPT\n-N vpa--3\n-A FORWARD -j vpa--3\n');
    const net = new FakeContainerNet();
    let t = 1700000000;
    const cell = new KernelCell({
      name: 'cell2',
      controller: fakeController(ours, { version: 1, leases: [ours, theirs], policies: POLICIES, tags: [] }),
      underlayIp: '198.18.0.12',
      underlayDev: 'eth0',
      underlayMtu: 1500,
      containerNet: net,
      exec,
      nowSeconds: () => t++,
      sysClassNet: '/nonexistent',
      reapInterval: 3600,
    });
    await cell.start();
    const lines = exec.lines();
    expect(lines.slice(0, 6)).toEqual([
      'ip link del silk-vtep',
      'ip link add silk-vtep address ee:ee:0a:ff:02:00 mtu 1450 type vxlan id 1 dev eth0 local 198.18.0.12 dstport 4789 nolearning gbp',
      'ip addr add 10.255.2.0/16 scope link dev silk-vtep',
      'ip link set dev silk-vtep up',
      'sysctl -q -w net.ipv4.ip_forward=1',
      'iptables -w -S',
    ]);
    expect(lines).toContain('ip route replace 10.255.1.0/24 via 10.255.1.0 dev silk-vtep src 10.255.2.0');
    expect(lines).toContain('bridge fdb replace ee:ee:0a:ff:01:00 dev silk-vtep dst 198.18.0.11 self permanent');
    expect(lines.some((l) => l.includes('10.255.2.0/24 via'))).toBe(false); // never a route to ourselves
    // The stale chain of a dead cell is swapped out with the first plan.
    const firstSwap = exec.calls.filter((c) => c.cmd === 'iptables-restore')[1]!.input!;
    expect(firstSwap).toContain('-I FORWARD 1 -j vpa--1700000000');
    expect(firstSwap).toContain('-D FORWARD -j vpa--3');
    expect(cell.chain).toBe('vpa--1700000000');

    const info = await cell.addContainer({ app: 'appB', netns: 'k-appB-0' });
    expect(info).toEqual({ handle: 'k-appB-0', app: 'appB', ip: '10.255.2.2', mac: 'ee:ee:0a:ff:02:02', netns: 'k-appB-0', cell: 'cell2', tag: '0002' });
    expect(net.attached.get('k-appB-0')).toEqual({ tap: 'c-010255002002', ip: ipToU32('10.255.2.2'), mtu: 1450 });
    const swaps = exec.calls.filter((c) => c.cmd === 'iptables-restore').map((c) => c.input!);
    const last = swaps[swaps.length - 1]!;
    expect(last).toContain('-A vpa--1700000001 -s 10.255.2.2/32 -m comment --comment "src:appB" -j MARK --set-xmark 0x2/0xffffffff');
    expect(last).toContain('-A vpa--1700000001 -d 10.255.2.2/32 -p tcp -m tcp --dport 8080 -m mark --mark 0x1 -m comment --comment "src:appA_dst:appB" -j ACCEPT');
    expect(last.indexOf('-I FORWARD 1 -j vpa--1700000001')).toBeLessThan(last.indexOf('-D FORWARD -j vpa--1700000000'));

    // The same snapshot again changes nothing in the kernel (the converger compares).
    const before = exec.calls.length;
    await cell.applySnapshot({ version: 2, leases: [ours, theirs], policies: POLICIES, tags: [] });
    expect(exec.calls.length).toBe(before);
    // A lease that goes away is removed.
    await cell.applySnapshot({ version: 3, leases: [ours], policies: POLICIES, tags: [] });
    expect(exec.lines().slice(before)).toEqual([
      'ip route del 10.255.1.0/24 dev silk-vtep',
      'ip neigh del 10.255.1.0 dev silk-vtep',
      'bridge fdb del ee:ee:0a:ff:01:00 dev silk-vtep self',
    ]);
    await expect(cell.addContainer({ app: 'bad app', netns: 'x' })).rejects.toThrow(/app must be/);
    await cell.stop();
    expect(exec.lines()).toContain('ip link del s-010255002002');
    expect(exec.lines()[exec.lines().length - 1]).toBe('ip link del silk-vtep');
  });
});

describe('lab --dataplane user|kernel|mixed (plan and state, no root)', async () => {
  const { planLab, cellDataplane } = await import('../../src/lab/topology.js');
  const { validateState, emptyState } = await import('../../src/lab/state.js');

  it('mixed puts silkworm on cell1 and the kernel on cell2; user stays the default', () => {
    expect(planLab({ prefix: 'kx' }).cells.map((c) => c.dataplane)).toEqual(['user', 'user']);
    expect(planLab({ prefix: 'kx', dataplane: 'kernel' }).cells.map((c) => c.dataplane)).toEqual(['kernel', 'kernel']);
    const m = planLab({ prefix: 'kx', dataplane: 'mixed' });
    expect(m.dataplane).toBe('mixed');
    expect(m.cells.map((c) => [c.name, c.dataplane])).toEqual([['cell1', 'user'], ['cell2', 'kernel']]);
    expect(cellDataplane('mixed', 5)).toBe('kernel');
    expect(() => planLab({ prefix: 'kx', dataplane: 'ovs' as never })).toThrow('dataplane must be user, kernel or mixed, got "ovs"');
  });

  it('state.json keeps the mode and each cell\'s data plane, and drops a bogus one', () => {
    const s = { ...emptyState('kx'), dataplane: 'mixed', cells: [{ name: 'cell2', underlayIp: '198.18.0.12', netns: 'kx-cell2', socket: '/x.sock', pid: 42, log: '/x.log', dataplane: 'kernel' }] };
    const v = validateState(JSON.parse(JSON.stringify(s)), 'kx');
    expect(v.dataplane).toBe('mixed');
    expect(v.cells[0]!.dataplane).toBe('kernel');
    const bogus = validateState({ ...JSON.parse(JSON.stringify(s)), dataplane: 'ovs' }, 'kx');
    expect(bogus.dataplane).toBeUndefined();
  });
});
