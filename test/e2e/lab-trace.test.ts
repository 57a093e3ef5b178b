// `silkworm trace` against what really happens: for 20 generated cases
// (source, destination, port, protocol, policy set) the trace's verdict
// (delivered / rejected / dropped) and its hop list must agree with what a
// real probe observes — curl for tcp, scripts/udp-ping.mjs for udp — and with
// the cells' counters (which cells the packet touched, where it was rejected
// or dropped, whether it reached appA's container). Where the destination is
// appA, the verdict must also be the one silk's policy semantics demand
// (docs/ARCHITECTURE.md, Policy): delivered iff a policy appB → appA covers the protocol
// and port, otherwise rejected.
//
// Sources: appB-0 on cell2 (cross-cell) and a second appB container on cell1
// (same cell). Destinations: appA on 8080–8082 tcp/udp (listeners on all of
// them, so "delivered" is really answered), plus an address in cell1's lease
// with no container and one outside every lease. Cases come from a seeded
// generator (SEED below), so a failure names a reproducible case.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  background,
  cellGet,
  cleanup,
  curl,
  delta,
  ipSync,
  isRoot,
  labUp,
  moved,
  silkworm,
  silkwormJson,
  silkwormOk,
  tcpdump,
  udpPing,
  uniquePrefix,
  UDP_PING,
  waitFor,
  type Background,
  type CountersJson,
  type Lab,
} from '../helpers/lab.js';

const P = uniquePrefix('t');
const EXTRA_NS = `${P}-appB-1`;
const SEED = 0x5117c0de;
const PORTS = [8080, 8081, 8082];
/** curl's bound for a case that may be dropped (a drop is observed as this timeout). */
const TCP_MAX_S = 1;
const UDP_TIMEOUT_MS = 800;

type Proto = 'tcp' | 'udp';
type Verdict = 'delivered' | 'rejected' | 'dropped';
interface Policy {
  protocol: Proto;
  start: number;
  end: number;
}
interface Case {
  n: number;
  phase: number;
  source: 'appB-0' | 'appB-1';
  dest: 'appA' | 'no-container' | 'no-route';
  port: number;
  protocol: Proto;
}

/** Policy sets appB → appA, one per phase; each phase keeps appB in some policy once it has one (its tag stays). */
const PHASES: Policy[][] = [
  [],
  [
    { protocol: 'tcp', start: 8080, end: 8080 },
    { protocol: 'udp', start: 8081, end: 8081 },
  ],
  [
    { protocol: 'tcp', start: 8081, end: 8082 },
    { protocol: 'udp', start: 8080, end: 8082 },
  ],
  [
    { protocol: 'tcp', start: 8080, end: 8080 },
    { protocol: 'udp', start: 8082, end: 8082 },
  ],
];

/** mulberry32: a tiny deterministic PRNG, so the generated cases are reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generateCases(): Case[] {
  const rnd = prng(SEED);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  // One "special" destination per phase, rotating sources and protocols, so
  // the no-container and no-route paths are always covered; the rest random.
  const specials: Pick<Case, 'source' | 'dest' | 'protocol'>[] = [
    { source: 'appB-0', dest: 'no-container', protocol: 'tcp' },
    { source: 'appB-1', dest: 'no-route', protocol: 'udp' },
    { source: 'appB-1', dest: 'no-container', protocol: 'udp' },
    { source: 'appB-0', dest: 'no-route', protocol: 'tcp' },
  ];
  const out: Case[] = [];
  for (let phase = 0; phase < PHASES.length; phase++) {
    const slot = Math.floor(rnd() * 5);
    for (let i = 0; i < 5; i++) {
      const base = i === slot ? specials[phase]! : { source: pick(['appB-0', 'appB-1'] as const), dest: 'appA' as const, protocol: pick(['tcp', 'udp'] as const) };
      out.push({ n: out.length + 1, phase, ...base, port: pick(PORTS) });
    }
  }
  return out;
}

const CASES = generateCases();

function covered(policies: Policy[], protocol: Proto, port: number): boolean {
  return policies.some((p) => p.protocol === protocol && port >= p.start && port <= p.end);
}

interface TraceJson {
  verdict: string;
  hops: { cell: string; steps: { step: string }[]; result: { action: string; reason?: string; container?: string } }[];
}

interface Observation {
  verdict: Verdict;
  detail: string;
}

describe.skipIf(!isRoot())(`trace agrees with curl / UDP probes (prefix ${P})`, () => {
  let lab: Lab;
  let secondIp = '';
  let appAHandle = '';
  const listeners: Background[] = [];
  let current: Policy[] = [];

  const destIp = (c: Case): string => {
    if (c.dest === 'appA') return lab.appA.ip;
    const lease1 = lab.appA.ip.split('.').slice(0, 3).join('.');
    return c.dest === 'no-container' ? `${lease1}.200` : '10.255.250.9';
  };
  const srcNs = (c: Case) => (c.source === 'appB-0' ? lab.ns.appB : EXTRA_NS);
  const srcIp = (c: Case) => (c.source === 'appB-0' ? lab.appB.ip : secondIp);
  const srcCell = (c: Case) => (c.source === 'appB-0' ? 'cell2' : 'cell1');

  const policyArgs = (p: Policy) => ['appB', 'appA', '--protocol', p.protocol, ...(p.start === p.end ? ['--port', String(p.start)] : ['--ports', `${p.start}-${p.end}`]), '--lab', P];
  const same = (a: Policy, b: Policy) => a.protocol === b.protocol && a.start === b.start && a.end === b.end;

  /** Move from the current policy set to `want`: add first, then remove, so appB's tag never lapses mid-phase. */
  async function applyPolicies(want: Policy[]): Promise<void> {
    await Promise.all(want.filter((p) => !current.some((q) => same(p, q))).map((p) => silkwormOk(['policy', 'add', ...policyArgs(p)])));
    await Promise.all(current.filter((p) => !want.some((q) => same(p, q))).map((p) => silkwormOk(['policy', 'remove', ...policyArgs(p)])));
    current = want;
    const key = (protocol: string, s: number, e: number) => `${protocol}:${s}-${e}`;
    const wanted = want.map((p) => key(p.protocol, p.start, p.end)).sort().join(',');
    type Rules = { marks: { ip: string; app: string; tag: number }[]; accepts: { src_app: string; dst_app: string; protocol: string; ports: { start: number; end: number } }[] };
    // Wait until both cells hold the new plan (by watch: should be quick).
    await waitFor(`cells to apply policies [${wanted}]`, async () => {
      const [r1, r2] = await Promise.all([cellGet<Rules>(P, 'cell1', '/rules'), cellGet<Rules>(P, 'cell2', '/rules')]);
      const have = r1.accepts.filter((a) => a.src_app === 'appB' && a.dst_app === 'appA').map((a) => key(a.protocol, a.ports.start, a.ports.end)).sort().join(',');
      if (have !== wanted) return undefined;
      if (want.length === 0) return true;
      // Sources are marked with appB's tag on both cells.
      const m1 = r1.marks.some((m) => m.ip === secondIp && m.app === 'appB' && m.tag > 0);
      const m2 = r2.marks.some((m) => m.ip === lab.appB.ip && m.app === 'appB' && m.tag > 0);
      return m1 && m2 ? true : undefined;
    }, 8000, 50);
  }

  async function observe(c: Case): Promise<Observation> {
    const ip = destIp(c);
    if (c.protocol === 'tcp') {
      const r = await curl(srcNs(c), `http://${ip}:${c.port}/`, TCP_MAX_S);
      if (r.code === 0) return { verdict: 'delivered', detail: `curl body ${JSON.stringify(r.body.trim())}` };
      if (r.code === 7) return { verdict: 'rejected', detail: `curl exit 7 (${r.connectError}) after ${r.ms.toFixed(0)} ms` };
      if (r.code === 28) return { verdict: 'dropped', detail: `curl timed out after ${r.ms.toFixed(0)} ms` };
      throw new Error(`case ${c.n}: curl exit ${r.code}: ${r.stderr}`);
    }
    const r = await udpPing(srcNs(c), ip, c.port, 1, UDP_TIMEOUT_MS);
    if (r.received === 1) return { verdict: 'delivered', detail: 'udp echo came back' };
    if (r.refused === 1 || r.unreachable === 1) return { verdict: 'rejected', detail: r.refused ? 'ECONNREFUSED (ICMP port unreachable)' : 'ICMP net/host unreachable' };
    if (r.lost !== 1) throw new Error(`case ${c.n}: udp-ping said ${JSON.stringify(r)}`);
    // Linux reports ICMP net/host unreachable to a UDP socket only with
    // IP_RECVERR (they are "soft" errors, RFC 1122 §4.1.3.3), which Node's
    // dgram does not set: look at the wire in the source container instead.
    const cap = tcpdump(srcNs(c), ['-n', '-i', 'eth0', '-c', '1', `icmp and icmp[icmptype] == icmp-unreach and dst host ${srcIp(c)}`], 5000);
    await cap.ready;
    const again = await udpPing(srcNs(c), ip, c.port, 1, UDP_TIMEOUT_MS);
    const seen = again.received === 1 ? null : (await Promise.race([cap.done, new Promise<null>((res) => setTimeout(() => res(null), 300))]));
    await cap.stop();
    if (again.received === 1) return { verdict: 'delivered', detail: 'udp echo came back on the second probe' };
    const line = seen?.stdout.trim() ?? '';
    if (line) return { verdict: 'rejected', detail: `no socket error, but tcpdump in the source saw: ${line}` };
    return { verdict: 'dropped', detail: `no answer in ${UDP_TIMEOUT_MS} ms and no ICMP error on the source's eth0` };
  }

  beforeAll(async () => {
    await cleanup(P, [EXTRA_NS]);
    lab = await labUp(P);
    appAHandle = lab.status.containers.find((x) => x.app === 'appA')!.handle ?? lab.appA.netns;
    ipSync(['netns', 'add', EXTRA_NS]);
    const added = await silkwormJson<{ ip: string }>(['container', 'add', '--cell', 'cell1', '--app', 'appB', '--netns', EXTRA_NS, '--lab', P]);
    secondIp = added.ip;
    // appA answers on every port a case may use: the lab's HTTP app on 8080,
    // small HTTP servers on 8081/8082, UDP echo on all three.
    const http = `const h=require('http');const ps=process.argv.slice(1).map(Number);let n=0;for(const p of ps)h.createServer((q,r)=>r.end('appA '+p)).listen(p,()=>{if(++n===ps.length)console.log('listening tcp')});setTimeout(()=>process.exit(0),120000);`;
    listeners.push(await background(lab.ns.appA, process.execPath, ['-e', http, '8081', '8082'], /listening tcp/));
    listeners.push(
      await background(lab.ns.appA, process.execPath, [UDP_PING, 'server', ...PORTS.flatMap((p) => ['--port', String(p)]), '--seconds', '120'], /listening udp/),
    );
  }, 120_000);

  afterAll(async () => {
    for (const l of listeners) await l.stop().catch(() => {});
    await cleanup(P, [EXTRA_NS]);
  }, 120_000);

  it('the generated cases cover both sources, both protocols, every port and every kind of destination', () => {
    expect(CASES.length).toBe(20);
    expect(new Set(CASES.map((c) => c.source)).size).toBe(2);
    expect(new Set(CASES.map((c) => c.protocol)).size).toBe(2);
    expect(new Set(CASES.filter((c) => c.dest === 'appA').map((c) => c.port)).size).toBe(PORTS.length);
    expect(new Set(CASES.map((c) => c.dest))).toEqual(new Set(['appA', 'no-container', 'no-route']));
    // Under some policy, at least one appA case is covered and one is not.
    const appA = CASES.filter((c) => c.dest === 'appA');
    expect(appA.some((c) => covered(PHASES[c.phase]!, c.protocol, c.port))).toBe(true);
    expect(appA.some((c) => !covered(PHASES[c.phase]!, c.protocol, c.port))).toBe(true);
  });

  it('for 20 cases, trace --json\'s verdict and hops agree with curl / UDP probes and the cells\' counters', async () => {
    const seen = new Set<Verdict>();
    const failures: string[] = [];
    for (let phase = 0; phase < PHASES.length; phase++) {
      await applyPolicies(PHASES[phase]!);
      const cases = CASES.filter((c) => c.phase === phase);
      // Traces are dry runs inside the cells: take them all at once up front.
      const traces = await Promise.all(
        cases.map(async (c) => {
          const r = await silkworm(['trace', '--from', `${P}-${c.source}`, '--to', `${destIp(c)}:${c.port}/${c.protocol}`, '--lab', P, '--json']);
          if (r.code !== 0) throw new Error(`case ${c.n}: trace exited ${r.code}: ${r.stderr}`);
          return JSON.parse(r.stdout) as TraceJson;
        }),
      );
      let before: { cell1: CountersJson; cell2: CountersJson } = await snapshot();
      for (let i = 0; i < cases.length; i++) {
        const c = cases[i]!;
        const t = traces[i]!;
        const obs = await observe(c);
        const after = await snapshot();
        const label = `case ${c.n} (phase ${c.phase}, policies ${JSON.stringify(PHASES[c.phase])}): ${c.source} → ${c.dest} ${destIp(c)}:${c.port}/${c.protocol}`;
        const problems = check(c, t, obs, before, after);
        if (problems.length) failures.push(`${label}\n  trace: ${t.verdict} via ${t.hops.map((h) => `${h.cell}[${h.steps.map((s) => s.step).join(',')}→${h.result.action}${h.result.reason ? ':' + h.result.reason : ''}]`).join(' ')}\n  observed: ${obs.verdict} (${obs.detail})\n  - ${problems.join('\n  - ')}`);
        seen.add(obs.verdict);
        before = after;
      }
    }
    expect(failures, failures.join('\n\n')).toEqual([]);
    // The cases really exercised all three outcomes.
    expect([...seen].sort()).toEqual(['delivered', 'dropped', 'rejected']);
  }, 90_000);

  async function snapshot() {
    // The admin socket's /counters: the document `show counters --json` prints.
    const [cell1, cell2] = await Promise.all([cellGet<CountersJson>(P, 'cell1', '/counters'), cellGet<CountersJson>(P, 'cell2', '/counters')]);
    return { cell1, cell2 };
  }

  /** Every way the trace can disagree with the world, as sentences (empty = agreement). */
  function check(c: Case, t: TraceJson, obs: Observation, before: { cell1: CountersJson; cell2: CountersJson }, after: { cell1: CountersJson; cell2: CountersJson }): string[] {
    const out: string[] = [];
    if (t.verdict !== obs.verdict) out.push(`trace says ${t.verdict}, the probe saw ${obs.verdict}`);
    if (c.dest === 'appA') {
      const want: Verdict = covered(PHASES[c.phase]!, c.protocol, c.port) ? 'delivered' : 'rejected';
      if (obs.verdict !== want) out.push(`silk's policy semantics say ${want}, the probe saw ${obs.verdict}`);
    }
    const cells = ['cell1', 'cell2'] as const;
    const d = Object.fromEntries(
      cells.map((k) => [k, { stats: moved(delta(before[k].stats, after[k].stats)), drops: moved(delta(before[k].drops, after[k].drops)) }]),
    ) as Record<(typeof cells)[number], { stats: Record<string, number>; drops: Record<string, number> }>;
    const touched = cells.filter((k) => Object.keys(d[k].stats).length + Object.keys(d[k].drops).length > 0);
    const hops = t.hops.map((h) => h.cell);
    if (hops[0] !== srcCell(c)) out.push(`first hop is ${hops[0]}, the source is on ${srcCell(c)}`);
    if ([...new Set(hops)].sort().join(',') !== [...touched].sort().join(',')) {
      out.push(`trace hops [${hops.join(', ')}] but the counters of [${touched.join(', ')}] moved: ${JSON.stringify(d)}`);
    }
    const last = t.hops[t.hops.length - 1];
    if (!last) return [...out, 'trace has no hops'];
    const lastCell = last.cell as (typeof cells)[number];
    if (t.verdict === 'delivered') {
      const rxBefore = before.cell1.containers.find((x) => x.ip === lab.appA.ip)?.rx_packets ?? 0;
      const rxAfter = after.cell1.containers.find((x) => x.ip === lab.appA.ip)?.rx_packets ?? 0;
      if (last.result.container !== appAHandle) out.push(`trace delivers to ${last.result.container}, not appA's ${appAHandle}`);
      if (!(rxAfter > rxBefore)) out.push(`trace says delivered but appA's container received nothing on cell1`);
    } else if (t.verdict === 'rejected') {
      const rejecting = t.hops.find((h) => h.steps.some((s) => s.step === 'icmp-error'));
      if (!rejecting) out.push('a rejected trace names no icmp-error step');
      else if (!((d[rejecting.cell as 'cell1'].stats['icmp-sent'] ?? 0) >= 1)) out.push(`trace rejects on ${rejecting.cell} but its icmp-sent did not move`);
    } else if (t.verdict === 'dropped') {
      const reason = last.result.reason ?? '';
      if (!reason) out.push('a dropped trace names no reason');
      else if (!((d[lastCell].drops[reason] ?? 0) >= 1)) out.push(`trace drops on ${lastCell} for ${reason} but that counter did not move: ${JSON.stringify(d[lastCell].drops)}`);
    } else {
      out.push(`unknown verdict ${t.verdict}`);
    }
    return out;
  }
});
