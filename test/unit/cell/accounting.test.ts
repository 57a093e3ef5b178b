// Every frame counted once: a whole cell over in-memory devices is fed a
// crafted mix — good and bad frames from its containers' TAPs, good and bad
// datagrams on its underlay socket (zero-length and 3-byte ones included),
// ICMP errors made and suppressed by the rate limit, a TAP whose queue is
// full — and afterwards
//
//   frames injected + datagrams sent to it + icmp-sent = delivered + sent + Σ drops
//
// with each drop under the reason it should have, `delivered`/`sent` equal to
// what the devices really took, and icmp-rate-limited a stat, not a drop.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cell } from '../../../src/cell/cell.js';
import { startController, type RunningController } from '../../../src/control/server.js';
import { Drop, DROP_NAMES, Stat, STAT_NAMES } from '../../../src/dataplane/counters.js';
import { ControllerClient } from '../../../src/net/controller-client.js';
import { memoryCellIo } from '../../../src/testing/cell-io.js';
import { FakeContainerNet } from '../../../src/testing/fake-container-net.js';
import { MemoryUnderlay, type MemoryDatagramSocket } from '../../../src/testing/memory.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { containerFrame, ipPacket, vxlanPayload } from '../../helpers/packets.js';
import { until } from '../../helpers/until.js';

let ctl: RunningController | undefined;
let cell: Cell | undefined;
let dir = '';

afterEach(async () => {
  await cell?.stop();
  cell = undefined;
  await ctl?.close();
  ctl = undefined;
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const U1 = '198.18.0.11';
const U2 = '198.18.0.12';
const U3 = '198.18.0.99';
const A = '10.255.1.2';
const B = '10.255.1.3';
const REMOTE = '10.255.2.2';

/** A full IPv4/UDP packet carrying `payload` to port 4789 (UDP checksum 0, allowed by RFC 7348 §5). */
function udpTo4789(src: string, dst: string, payload: Uint8Array): Uint8Array {
  const len = 28 + payload.length;
  const p = new Uint8Array(len);
  const s = ipToU32(src);
  const d = ipToU32(dst);
  p.set([0x45, 0, len >> 8, len & 0xff, 0, 0, 0, 0, 64, 17, 0, 0, s >>> 24, (s >>> 16) & 0xff, (s >>> 8) & 0xff, s & 0xff, d >>> 24, (d >>> 16) & 0xff, (d >>> 8) & 0xff, d & 0xff]);
  p.set([0x9c, 0x40, 0x12, 0xb5, (len - 20) >> 8, (len - 20) & 0xff, 0, 0], 20);
  p.set(payload, 28);
  return p;
}

function send(sock: MemoryDatagramSocket, from: string, to: string, payloads: Uint8Array[]): number {
  const slot = 4096;
  const slab = new Uint8Array(payloads.length * slot);
  const offs = new Uint32Array(payloads.length);
  const lens = new Uint32Array(payloads.length);
  const dsts = new Uint32Array(payloads.length).fill(ipToU32(to));
  payloads.forEach((pl, i) => {
    const pkt = udpTo4789(from, to, pl);
    offs[i] = i * slot;
    lens[i] = pkt.length;
    slab.set(pkt, i * slot);
  });
  return sock.send(slab, offs, lens, dsts, payloads.length);
}

const sum = (a: Float64Array) => a.reduce((s, v) => s + v, 0);

describe('every frame counted once', () => {
  it('a crafted mix from TAPs and the underlay: injected + ICMP errors made = delivered + sent + Σ drops, each under its reason', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swacct-'));
    ctl = await startController({ listen: path.join(dir, 'c.sock'), store: ':memory:', watchHoldMs: 2000 });
    const client = new ControllerClient(ctl.address);
    const hub = new MemoryUnderlay({ delivery: 'sync' });
    const io = memoryCellIo(hub);
    // A fixed clock: the ICMP bucket holds 3 tokens and never refills during the test.
    cell = new Cell({ name: 'cell1', controller: new ControllerClient(ctl.address), underlayIp: U1, io, containerNet: new FakeContainerNet(), dataplane: { icmpRate: 0.001, icmpBurst: 3 }, now: () => 100 });
    await cell.start();
    await cell.addContainer({ app: 'appA', netns: 'ns-a' });
    await cell.addContainer({ app: 'appB', netns: 'ns-b' });
    // The peer cell is only a lease holder and a socket: what cell1 sends it is counted here.
    const peerLease = await client.acquireLease(U2);
    expect(peerLease.overlay_subnet).toBe('10.255.2.0/24');
    const peer = hub.join(ipToU32(U2));
    let peerGot = 0;
    peer.start((b) => (peerGot += b.count));
    const stranger = hub.join(ipToU32(U3));
    await client.addPolicies([{ source: { id: 'appB' }, destination: { id: 'appA', protocol: 'tcp', ports: { start: 8080, end: 8080 } } }]);
    await until(() => cell!.dp.plan.accepts.length === 1 && cell!.dp.routes.lookup(ipToU32(REMOTE)) !== undefined);
    const tagB = cell.dp.policy.tagFor(ipToU32(B));
    expect(tagB).toBeGreaterThan(0);

    const tapA = io.taps.get('s-010255001002')!;
    const tapB = io.taps.get('s-010255001003')!;
    const c = cell.dp.counters;
    expect(sum(c.drops)).toBe(0);
    const syn = (dport = 8080, sport = 40000) => ({ proto: 'tcp' as const, sport, dport, flags: 0x02 });

    // ---- from the containers' TAPs
    const badIpCsum = containerFrame(A, B, syn(8080, 40003));
    badIpCsum[14 + 10] ^= 0xff;
    const ipv6 = containerFrame(A, B, syn());
    ipv6[12] = 0x86;
    ipv6[13] = 0xdd;
    const arp = containerFrame(A, B, syn());
    arp[12] = 0x08;
    arp[13] = 0x06;
    const fromA = [
      containerFrame(A, B, syn(8080, 40001)), // no policy appA → appB: policy-denied, port unreachable (token 1) back to appA
      containerFrame(A, REMOTE, syn(8080, 40002)), // encapsulated → sent to the peer
      new Uint8Array(10), // truncated
      arp, // arp
      ipv6, // not-ipv4
      badIpCsum, // bad-ip-checksum
      containerFrame('10.255.1.9', B, syn()), // spoofed-source
      containerFrame(A, REMOTE, { ...syn(8080, 40004), ttl: 1 }), // ttl-exceeded, time exceeded (token 2)
      containerFrame(A, '169.254.0.1', syn()), // to-cell
      containerFrame(A, '10.254.0.1', syn()), // no-route, net unreachable (token 3)
      containerFrame(A, REMOTE, { ...syn(8080, 40005), ttl: 1 }), // ttl-exceeded, no token: icmp-rate-limited
      containerFrame(A, REMOTE, { ...syn(8080, 40006), ttl: 1 }), // ttl-exceeded, no token: icmp-rate-limited
      new Uint8Array(tapA.batch.maxFrame + 100), // tap-rx-oversize (the device)
    ];
    const fromB = [containerFrame(B, A, syn(8080, 41000))]; // policy appB → appA: delivered on the same cell
    expect(tapA.inject(...fromA)).toBe(fromA.length - 1);
    expect(tapB.inject(...fromB)).toBe(1);

    // ---- on the underlay, from the peer (a lease holder) unless said otherwise
    const good = ipPacket(REMOTE, A, syn(8080, 42000));
    const vx = (inner: Uint8Array, o: { gpid?: number; vni?: number; flags?: number; to?: string } = {}) =>
      vxlanPayload({ fromVtep: '10.255.2.0', toVtep: o.to ?? '10.255.1.0', gpid: o.gpid ?? tagB, vni: o.vni, flags: o.flags, inner });
    const datagrams = [
      new Uint8Array(0), // zero-length: bad-vxlan
      Uint8Array.of(0x08, 0, 0), // 3 bytes: bad-vxlan
      vx(good).subarray(0, 8), // a VXLAN header and nothing after it: truncated
      vx(good, { flags: 0x0c }), // bad-vxlan-flags
      vx(good, { vni: 7 }), // wrong-vni
      vx(good, { to: '10.255.9.0' }), // wrong-inner-mac
      vx(ipPacket('10.255.3.5', A, syn(8080, 42001))), // spoofed-inner-source
      vx(ipPacket(REMOTE, '10.255.1.99', syn(8080, 42002))), // no-container
      vx(ipPacket(REMOTE, A, syn(9999, 42003))), // policy-denied, no token left: icmp-rate-limited
      vx(good), // delivered from remote to appA ...
      vx(ipPacket(REMOTE, A, syn(8080, 42004))), // ... and this one too, but appA's TAP queue is full: tap-tx-full
      new Uint8Array(3000), // longer than a slot: underlay-rx-oversize (the socket)
    ];
    tapA.writeBudget = 1;
    expect(send(peer, U2, U1, datagrams)).toBe(datagrams.length);
    tapA.writeBudget = Infinity;
    expect(send(stranger, U3, U1, [vx(good)])).toBe(1); // unknown-underlay-source

    const injected = fromA.length + fromB.length + datagrams.length + 1;
    const drops: Record<string, number> = {};
    for (let i = 0; i < Drop.Count; i++) if (c.drops[i]) drops[DROP_NAMES[i]!] = c.drops[i]!;
    expect(drops).toEqual({
      'policy-denied': 2,
      truncated: 2,
      arp: 1,
      'not-ipv4': 1,
      'bad-ip-checksum': 1,
      'spoofed-source': 1,
      'ttl-exceeded': 3,
      'to-cell': 1,
      'no-route': 1,
      'tap-rx-oversize': 1,
      'bad-vxlan': 2,
      'bad-vxlan-flags': 1,
      'wrong-vni': 1,
      'wrong-inner-mac': 1,
      'spoofed-inner-source': 1,
      'no-container': 1,
      'tap-tx-full': 1,
      'underlay-rx-oversize': 1,
      'unknown-underlay-source': 1,
    });
    const stat = (s: Stat) => c.stats[s]!;
    expect(STAT_NAMES[Stat.IcmpRateLimited]).toBe('icmp-rate-limited');
    expect(DROP_NAMES).not.toContain('icmp-rate-limited');
    expect(stat(Stat.IcmpSent)).toBe(3);
    expect(stat(Stat.IcmpRateLimited)).toBe(3);
    // Final outcomes are what the devices took.
    expect(stat(Stat.Delivered)).toBe(tapA.written.length + tapB.written.length);
    expect(stat(Stat.Sent)).toBe(peerGot);
    // appA got its 3 ICMP errors, appB's frame and one remote frame; appB nothing; the peer one encapsulated SYN.
    expect(tapA.written).toHaveLength(5);
    expect(tapB.written).toHaveLength(0);
    expect(peerGot).toBe(1);
    // The pipeline's verdict stats say what it decided; tap-tx-full took one of its deliveries.
    expect(stat(Stat.DeliveredLocal) + stat(Stat.DeliveredRemote) + stat(Stat.IcmpSent) - c.drops[Drop.TapTxFull]!).toBe(stat(Stat.Delivered));
    // Every frame and datagram once; every ICMP error we made once more.
    expect(stat(Stat.Delivered) + stat(Stat.Sent) + sum(c.drops)).toBe(injected + stat(Stat.IcmpSent));
    // And what reached the pipeline is what was injected, less what the devices dropped on the way in.
    expect(stat(Stat.EgressPackets) + stat(Stat.IngressPackets)).toBe(injected - c.drops[Drop.TapRxOversize]! - c.drops[Drop.UnderlayRxOversize]!);
  });

  it("a frame for a container whose device is already gone is counted as tap-tx-gone, not lost", async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swacct-'));
    ctl = await startController({ listen: path.join(dir, 'c.sock'), store: ':memory:', watchHoldMs: 2000 });
    const hub = new MemoryUnderlay({ delivery: 'sync' });
    const io = memoryCellIo(hub);
    cell = new Cell({ name: 'cell1', controller: new ControllerClient(ctl.address), underlayIp: U1, io, containerNet: new FakeContainerNet(), now: () => 100 });
    await cell.start();
    await cell.addContainer({ app: 'appA', netns: 'ns-a' });
    await cell.addContainer({ app: 'appB', netns: 'ns-b' });
    const client = new ControllerClient(ctl.address);
    await client.addPolicies([{ source: { id: 'appB' }, destination: { id: 'appA', protocol: 'tcp', ports: { start: 8080, end: 8080 } } }]);
    await until(() => cell!.dp.plan.accepts.length === 1);
    const tapA = io.taps.get('s-010255001002')!;
    const tapB = io.taps.get('s-010255001003')!;
    // The pipeline still has appA's port while its device slot is cleared (the window between the two).
    (cell as unknown as { fw: { dropDevice(i: number): void } }).fw.dropDevice(cell.dp.portByAddress(ipToU32(A))!.index);
    tapB.inject(containerFrame(B, A, { proto: 'tcp', sport: 41000, dport: 8080, flags: 0x02 }));
    const c = cell.dp.counters;
    expect(c.drops[Drop.TapTxGone]).toBe(1);
    expect(c.stats[Stat.Delivered]).toBe(0);
    expect(tapA.written).toHaveLength(0);
    expect(c.stats[Stat.Delivered]! + c.stats[Stat.Sent]! + sum(c.drops)).toBe(1 + c.stats[Stat.IcmpSent]!);
  });
});
