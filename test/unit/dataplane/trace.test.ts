// `silkworm trace` on the cell side (src/cell/trace.ts over Dataplane.trace):
// the steps, their text and their JSON detail for a set of walks through both
// cells, compared with a golden file recorded from the pipeline before it was
// split into rooms. The CLI prints exactly `step` and `text` (and --json the
// whole document), so equal documents mean equal output.
//
// A trace must also leave no trace: no conntrack entry, no counter, no rule hit,
// no ICMP token spent.
import { describe, expect, it } from 'vitest';
import { runTrace } from '../../../src/cell/trace.js';
import { buildProbe } from '../../../src/dataplane/probe.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { containerFrame, ipPacket, vxlanPayload } from '../../helpers/packets.js';
import { A0, B0, B1, STRANGER, TAG, U1, U2, icmpErrorPacket, policy, runEgress, topology } from '../../helpers/packets-extra.js';

const POLICIES = [policy('appB', 'appA', 'tcp', 8080), policy('appA', 'appB', 'udp', 5000, 5010), policy('appA', 'appB', 'tcp', 9000)];
const NOW = 100;

type Walk = ReturnType<typeof runTrace>;

function walks(): Record<string, Walk | Walk[]> {
  const t = topology(POLICIES);
  const out: Record<string, Walk | Walk[]> = {};
  const a0 = ipToU32(A0);
  // Source cell, then the destination cell with the datagram the first produced.
  const twoHops = (dst: string, proto: 'tcp' | 'udp' | 'icmp', dport: number): Walk[] => {
    const first = runTrace(t.c1, 'egress', buildProbe(a0, ipToU32(dst), proto, 40000, dport), { port: t.appA0.index, now: NOW });
    if (first.result.action !== 'underlay') return [first];
    const payload = first.result.output.subarray(28);
    return [first, runTrace(t.c2, 'ingress', payload, { srcIp: U1, now: NOW })];
  };
  out['remote udp allowed'] = twoHops(B0, 'udp', 5000);
  out['remote tcp allowed'] = twoHops(B0, 'tcp', 9000);
  out['remote tcp denied'] = twoHops(B0, 'tcp', 7777);
  out['remote icmp echo (no policy for icmp)'] = twoHops(B0, 'icmp', 0);
  out['same cell allowed'] = twoHops(B1, 'tcp', 9000);
  out['same cell denied'] = twoHops(B1, 'udp', 53);
  out['no route'] = twoHops('10.9.9.9', 'tcp', 80);
  out['to the cell'] = twoHops('10.255.1.0', 'tcp', 80);
  out['port gone'] = runTrace(t.c1, 'egress', buildProbe(a0, ipToU32(B0), 'tcp', 40000, 9000), { port: 99, now: NOW });
  out['ttl 1'] = runTrace(t.c1, 'egress', buildProbe(a0, ipToU32(B0), 'udp', 40000, 5000, 1), { port: t.appA0.index, now: NOW });
  out['too big'] = runTrace(t.c1, 'egress', containerFrame(A0, B0, { proto: 'udp', sport: 1, dport: 5000, payload: new Uint8Array(1500) }), { port: t.appA0.index, now: NOW });
  const inner = (src: string, dst: string, l4: Parameters<typeof ipPacket>[2]) => ipPacket(src, dst, l4);
  const ingress = (payload: Uint8Array, from = U2) => runTrace(t.c1, 'ingress', payload, { srcIp: from, now: NOW });
  out['ingress tag allowed'] = ingress(vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner: inner(B0, A0, { proto: 'tcp', dport: 8080 }) }));
  out['ingress no tag'] = ingress(vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: 0, inner: inner(B0, A0, { proto: 'tcp', dport: 8080 }) }));
  out['ingress bad flags'] = ingress(vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, flags: 0x89, inner: inner(B0, A0, { proto: 'tcp', dport: 8080 }) }));
  out['ingress wrong vni'] = ingress(vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, vni: 7, inner: inner(B0, A0, { proto: 'tcp', dport: 8080 }) }));
  out['ingress stranger'] = ingress(vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner: inner(B0, A0, { proto: 'tcp', dport: 8080 }) }), STRANGER);
  out['ingress no container'] = ingress(vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner: inner(B0, '10.255.1.77', { proto: 'tcp', dport: 8080 }) }));
  out['ingress ttl 1'] = ingress(vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner: inner(B0, A0, { proto: 'tcp', dport: 8080, ttl: 1 }) }));
  // A FIN without ACK: conntrack calls it INVALID at both cells (not tracked; the reject would come back unrelated).
  const fin = runTrace(t.c1, 'egress', containerFrame(A0, B0, { proto: 'tcp', sport: 40000, dport: 7777, flags: 0x01 }), { port: t.appA0.index, now: NOW });
  out['remote tcp FIN without ACK (INVALID), denied'] = [fin, runTrace(t.c2, 'ingress', fin.result.output.subarray(28), { srcIp: U1, now: NOW })];
  const quoted = ipPacket(A0, B0, { proto: 'udp', sport: 40000, dport: 5000 });
  out['ingress unrelated icmp error'] = ingress(vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: 0, inner: icmpErrorPacket(B0, A0, 3, 3, quoted) }));
  return out;
}

/** What src/cli/trace.ts prints and what --json carries: everything but the raw output bytes (the hex is kept). */
function printable(w: Walk | Walk[]): unknown {
  if (Array.isArray(w)) return w.map(printable);
  const { output: _o, ...result } = w.result;
  return { steps: w.steps, result };
}

describe('trace', () => {
  it('prints the same steps, text and JSON detail as before the split', async () => {
    const docs: Record<string, unknown> = {};
    for (const [name, w] of Object.entries(walks())) docs[name] = printable(w);
    await expect(JSON.stringify(docs, null, 2) + '\n').toMatchFileSnapshot('./trace.golden.json');
  });

  it('leaves no conntrack entry, counter, rule hit or ICMP token behind', () => {
    const t = topology(POLICIES);
    const a0 = ipToU32(A0);
    const cells = [t.c1, t.c2];
    const before = cells.map((c) => ({ ct: c.conntrack.size, drops: c.counters.drops.slice(), stats: c.counters.stats.slice(), hits: c.ruleHits.slice() }));
    const first = runTrace(t.c1, 'egress', buildProbe(a0, ipToU32(B0), 'udp', 40000, 5000), { port: t.appA0.index, now: NOW });
    runTrace(t.c2, 'ingress', first.result.output.subarray(28), { srcIp: U1, now: NOW });
    runTrace(t.c1, 'egress', buildProbe(a0, ipToU32(B1), 'tcp', 40000, 9000), { port: t.appA0.index, now: NOW });
    cells.forEach((c, i) => {
      expect(c.conntrack.size).toBe(before[i]!.ct);
      expect(Array.from(c.counters.drops)).toEqual(Array.from(before[i]!.drops));
      expect(Array.from(c.counters.stats)).toEqual(Array.from(before[i]!.stats));
    });
  });

  it('changes no existing connection either: a traced RST does not delete an unanswered one, a traced reply does not answer it', () => {
    const t = topology(POLICIES);
    // A live SYN from appA-0: cell 1 tracks it (SYN_SENT, no reply yet).
    runEgress(t.c1, t.appA0, containerFrame(A0, B0, { proto: 'tcp', sport: 40000, dport: 9000, flags: 0x02 }), NOW);
    const listing = () => t.c1.conntrack.entries(NOW + 5).map((e) => [e.tcpState, e.seenReply, e.expires]);
    const before = listing();
    expect(before).toEqual([['SYN_SENT', false, NOW + 120]]);
    // A live RST would delete it (before any reply); traced, nothing happens.
    runTrace(t.c1, 'egress', containerFrame(A0, B0, { proto: 'tcp', sport: 40000, dport: 9000, flags: 0x04 }), { port: t.appA0.index, now: NOW + 5 });
    const synack = vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner: ipPacket(B0, A0, { proto: 'tcp', sport: 9000, dport: 40000, flags: 0x12 }) });
    runTrace(t.c1, 'ingress', synack, { srcIp: U2, now: NOW + 5 });
    expect(listing()).toEqual(before);
  });
});
