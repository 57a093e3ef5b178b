// Issue 12, "Done means", in a user-mode lab: UDP datagrams of 3,000 and
// 9,000 bytes (the containers' kernels fragment them at MTU 1450) cross under
// a UDP policy in both directions (udp-ping's echo comes back fragmented too)
// and between two containers of one cell; without the policy the sender sees
// ICMP port unreachable (ECONNREFUSED), as through kernel silk. A flood of
// never-completed fragments with random ids leaves the cell's reassembly
// memory bounded and is counted. ECN: the inner ECN bits appear on the outer
// header as the kernel's vxlan puts them (DSCP not copied, CE as ECT(0)), and
// CE set on the outer header by the underlay reaches the inner packet (and a
// Not-ECT inner packet under an outer CE is dropped, RFC 6040).
//
// Root only; the lab's prefix is this file's own.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  background,
  cleanup,
  counters,
  inNetns,
  ipSync,
  isRoot,
  labUp,
  silkwormJson,
  silkwormOk,
  tcpdump,
  uniquePrefix,
  UDP_PING,
  type Background,
  type Lab,
  type UdpPingResult,
} from '../helpers/lab.js';

const P = uniquePrefix('fr');
const EXTRA_NS = `${P}-appB-1`;

async function ping(ns: string, host: string, port: number, size: number, count = 3): Promise<UdpPingResult> {
  const r = await inNetns(
    ns,
    process.execPath,
    [UDP_PING, 'client', '--host', host, '--port', String(port), '--count', String(count), '--size', String(size), '--timeout-ms', '1500', '--json'],
    { timeoutMs: count * 1500 + 10_000 },
  );
  return JSON.parse(r.stdout) as UdpPingResult;
}

/** Send UDP datagrams with a given DS byte from a namespace (python: node's dgram cannot set IP_TOS). */
function sendTos(ns: string, host: string, port: number, tos: number, count = 3) {
  const py = `import socket,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP,socket.IP_TOS,${tos})
for i in range(${count}):
  s.sendto(b'ecn'*20,('${host}',${port}))
  time.sleep(0.05)`;
  return inNetns(ns, 'python3', ['-c', py], { timeoutMs: 10_000 });
}

/** Raw first fragments (MF, offset 0) with random ids, never completed. */
function flood(ns: string, src: string, dst: string, n: number) {
  const py = `import socket,struct,random
random.seed(12)
s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW)
src=socket.inet_aton('${src}'); dst=socket.inet_aton('${dst}')
body=struct.pack('!HHHH',40000,7000,3008,0)+bytes(1392)
for i in range(${n}):
  h=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(body),random.randrange(65536),0x2000,64,17,0,src,dst)
  s.sendto(h+body,('${dst}',0))`;
  return inNetns(ns, 'python3', ['-c', py], { timeoutMs: 60_000 });
}

describe.skipIf(!isRoot())(`fragments and ECN across a user-mode lab (prefix ${P})`, () => {
  let lab: Lab;
  let servers: Background[] = [];
  let cellOfA = '';
  let cellOfB = '';
  let secondIp = '';

  beforeAll(async () => {
    await cleanup(P, [EXTRA_NS]);
    lab = await labUp(P);
    cellOfA = lab.status.containers.find((c) => c.app === 'appA')!.cell;
    cellOfB = lab.status.containers.find((c) => c.app === 'appB')!.cell;
    servers.push(await background(lab.ns.appA, process.execPath, [UDP_PING, 'server', '--port', '7000', '--port', '7001', '--seconds', '170'], /listening/, 180_000));
    ipSync(['netns', 'add', EXTRA_NS]);
    const added = await silkwormJson<{ ip: string }>(['container', 'add', '--cell', cellOfA, '--app', 'appB', '--netns', EXTRA_NS, '--lab', P]);
    secondIp = added.ip;
  }, 120_000);

  afterAll(async () => {
    for (const s of servers) await s.stop().catch(() => undefined);
    servers = [];
    await cleanup(P, [EXTRA_NS]);
  }, 60_000);

  it('without a policy: 3,000- and 9,000-byte datagrams are refused (ICMP port unreachable), none delivered', async () => {
    for (const size of [3000, 9000]) {
      const r = await ping(lab.ns.appB, lab.appA.ip, 7000, size, 2);
      expect(r.received, `size ${size}`).toBe(0);
      expect(r.refused, `size ${size}`).toBe(2);
      const same = await ping(EXTRA_NS, lab.appA.ip, 7000, size, 2);
      expect(same.received, `same-cell size ${size}`).toBe(0);
      expect(same.refused, `same-cell size ${size}`).toBe(2);
    }
    const c = await counters(P, cellOfA);
    expect(c.drops['policy-denied']).toBeGreaterThanOrEqual(8);
  }, 120_000);

  it('under a UDP policy: they cross in both directions (the echo comes back fragmented), across cells and on one cell', async () => {
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'udp', '--port', '7000', '--lab', P]);
    await new Promise((r) => setTimeout(r, 1500));
    const before = await counters(P, cellOfB);
    for (const size of [3000, 9000]) {
      const r = await ping(lab.ns.appB, lab.appA.ip, 7000, size, 3);
      expect(r.received, `size ${size}: ${JSON.stringify(r)}`).toBe(3);
      const same = await ping(EXTRA_NS, lab.appA.ip, 7000, size, 3);
      expect(same.received, `same-cell size ${size}: ${JSON.stringify(same)}`).toBe(3);
    }
    const after = await counters(P, cellOfB);
    // appB's cell sent 3 + 3 datagrams of 3 and 7 fragments and received as many back.
    expect(after.stats['encapsulated']! - before.stats['encapsulated']!).toBeGreaterThanOrEqual(6);
    expect(after.stats['delivered-from-remote']! - before.stats['delivered-from-remote']!).toBeGreaterThanOrEqual(6);
  }, 120_000);

  it('a flood of never-completed fragments (random ids) is bounded and counted', async () => {
    const before = await counters(P, cellOfB);
    const r = await flood(lab.ns.appB, lab.appB.ip, lab.appA.ip, 4000);
    expect(r.code, r.stderr).toBe(0);
    await new Promise((res) => setTimeout(res, 1000));
    const after = await silkwormJson<{ drops: Record<string, number>; fragments: { queues: number; bytes: number } }>(['show', 'counters', '--cell', cellOfB, '--lab', P]);
    expect(after.fragments.bytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(after.fragments.queues).toBeLessThanOrEqual(4096);
    const memory = after.drops['fragment-memory']! - (before.drops['fragment-memory'] ?? 0);
    expect(memory).toBeGreaterThan(1000);
    expect(memory + after.fragments.queues).toBeGreaterThanOrEqual(3900);
    // The cell still moves ordinary traffic.
    const ok = await ping(lab.ns.appB, lab.appA.ip, 7000, 100, 2);
    expect(ok.received).toBe(2);
  }, 120_000);

  it('inner ECN bits appear on the outer header as the kernel puts them (DSCP 0, CE as ECT(0))', async () => {
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'udp', '--port', '7001', '--lab', P]);
    await new Promise((r) => setTimeout(r, 1500));
    for (const [inner, outer] of [
      [0xba, '0x2'],
      [0xbb, '0x2'],
      [0xb9, '0x1'],
      [0xb8, '0x0'],
    ] as const) {
      const cap = tcpdump(lab.ns.underlay, ['-i', 'any', '-n', '-v', '-c', '1', 'udp dst port 4789 and greater 100'], 10_000);
      await cap.ready;
      await sendTos(lab.ns.appB, lab.appA.ip, 7001, inner, 3);
      const out = await cap.done;
      expect(out.stdout, `inner 0x${inner.toString(16)}`).toMatch(new RegExp(`tos ${outer},`));
    }
  }, 120_000);

  it('CE on the outer header reaches an ECT inner packet; a Not-ECT one is dropped (RFC 6040)', async () => {
    const ns = `${P}-${cellOfB}`;
    const rule = ['-t', 'mangle', 'POSTROUTING', '-p', 'udp', '--dport', '4789', '-j', 'TOS', '--set-tos', '0x03/0x03'];
    const ipt = (op: string) => inNetns(ns, 'iptables', [rule[0]!, rule[1]!, op, ...rule.slice(2)]);
    expect((await ipt('-A')).code).toBe(0);
    try {
      const cap = tcpdump(lab.ns.appA, ['-i', 'any', '-n', '-v', '-c', '1', 'udp dst port 7001'], 10_000);
      await cap.ready;
      await sendTos(lab.ns.appB, lab.appA.ip, 7001, 0x0a, 3);
      const out = await cap.done;
      expect(out.stdout).toMatch(/tos 0xb,/);
      const before = await counters(P, cellOfA);
      await sendTos(lab.ns.appB, lab.appA.ip, 7001, 0x00, 3);
      await new Promise((r) => setTimeout(r, 500));
      const after = await counters(P, cellOfA);
      expect(after.drops['ecn-ce-on-not-ect']! - (before.drops['ecn-ce-on-not-ect'] ?? 0)).toBe(3);
    } finally {
      await ipt('-D');
    }
  }, 120_000);
});
