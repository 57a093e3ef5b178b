// The converger (src/dataplane/state.ts): a snapshot whose plan equals the
// applied one swaps nothing and keeps the rule hit counters; a changed plan is
// swapped in at once, and the rules that survive keep their hit counts.
import { describe, expect, it } from 'vitest';
import { Action } from '../../../src/dataplane/batch.js';
import { carryHits, samePlan } from '../../../src/dataplane/state.js';
import { plan } from '../../../src/policy/planner.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { vxlanPayload, ipPacket } from '../../helpers/packets.js';
import { A0, B0, B1, TAG, U2, policy, runIngress, topology } from '../../helpers/packets-extra.js';

const P8080 = policy('appB', 'appA', 'tcp', 8080);
const P9000 = policy('appB', 'appA', 'tcp', 9000);

/** A new connection appB-0 → appA-0 on `port` (a SYN from another source port each time). */
function hit(t: ReturnType<typeof topology>, port: number, sport: number): void {
  const inner = ipPacket(B0, A0, { proto: 'tcp', sport, dport: port });
  const out = runIngress(t.c1, vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner }), U2, 1);
  expect(out.action).toBe(Action.Tap);
}

function hitsByPort(t: ReturnType<typeof topology>): Record<number, number> {
  const out: Record<number, number> = {};
  t.c1.plan.accepts.forEach((a, i) => (out[a.portStart] = t.c1.ruleHits[i]!));
  return out;
}

describe('converger', () => {
  it('the same policies again: no swap, the compiled policy and hit counters stay', () => {
    const t = topology([P8080, P9000]);
    hit(t, 8080, 40001);
    hit(t, 8080, 40002);
    hit(t, 9000, 40003);
    const compiled = t.c1.policy;
    const swapped = t.c1.converger.swapped;
    t.c1.setPolicies([{ ...P9000 }, { ...P8080 }]);
    expect(t.c1.policy).toBe(compiled);
    expect(t.c1.converger.swapped).toBe(swapped);
    expect(hitsByPort(t)).toEqual({ 8080: 2, 9000: 1 });
  });

  it('a changed plan is swapped in at once; surviving rules keep their hits, new ones start at 0', () => {
    const t = topology([P8080, P9000]);
    hit(t, 8080, 40001);
    hit(t, 9000, 40002);
    hit(t, 9000, 40003);
    const swapped = t.c1.converger.swapped;
    t.c1.setPolicies([P9000, policy('appB', 'appA', 'tcp', 7000)]);
    expect(t.c1.converger.swapped).toBe(swapped + 1);
    expect(hitsByPort(t)).toEqual({ 7000: 0, 9000: 2 });
    hit(t, 7000, 40004);
    expect(hitsByPort(t)).toEqual({ 7000: 1, 9000: 2 });
    // The removed rule no longer admits anything.
    const inner = ipPacket(B0, A0, { proto: 'tcp', sport: 40005, dport: 8080 });
    const out = runIngress(t.c1, vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner }), U2, 1);
    expect(out.action).not.toBe(Action.Tap);
  });

  it('adding a container whose app is in no policy changes no plan; its tag is 0', () => {
    const t = topology([P8080]);
    hit(t, 8080, 40001);
    const compiled = t.c1.policy;
    const p = t.c1.addPort('appZ-0', 'appZ', ipToU32('10.255.1.9'));
    expect(t.c1.policy).toBe(compiled);
    expect(p.tag).toBe(0);
    expect(hitsByPort(t)).toEqual({ 8080: 1 });
  });

  it('adding a container of an app in a policy swaps the plan and tags it; hits survive', () => {
    const t = topology([P8080]);
    hit(t, 8080, 40001);
    const p = t.c1.addPort('appA-1', 'appA', ipToU32('10.255.1.10'));
    expect(p.tag).toBe(TAG.appA);
    expect(t.c1.plan.accepts.map((a) => a.dstIp)).toEqual([ipToU32(A0), ipToU32('10.255.1.10')]);
    expect(Array.from(t.c1.ruleHits)).toEqual([1, 0]);
    expect(t.c1.portByAddress(ipToU32(B1))!.tag).toBe(TAG.appB);
  });

  it('samePlan and carryHits on plain plans', () => {
    const c = [{ handle: 'a', ip: ipToU32(A0), app: 'appA' }];
    const p1 = plan([P8080, P9000], c);
    const p2 = plan([P9000, P8080], c);
    const p3 = plan([P9000], c);
    expect(samePlan(p1, p2)).toBe(true);
    expect(samePlan(p1, p3)).toBe(false);
    expect(Array.from(carryHits(p1, Float64Array.of(5, 7), p3))).toEqual([7]);
    expect(Array.from(carryHits(p3, Float64Array.of(7), p1))).toEqual([0, 7]);
  });
});
