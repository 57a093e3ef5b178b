// Which ICMP types are errors is decided in one place (src/wire/icmp.ts
// isIcmpErrorType, the kernel's icmp_is_err()), and the pipeline, `trace` and
// the wire view all follow it. Every type 0..255 goes through:
//   - ingress from another cell, denied by policy (no tag, no tracked flow);
//   - egress to a container on the same cell, denied by policy;
//   - a trace of the ingress case;
// and must be treated as an error (dropped as unrelated-icmp-error, never
// answered) exactly when the wire layer says it is one; otherwise it is a
// query that policy rejects with ICMP port unreachable.
//
// The drift this guards against: the pipeline once left Redirect (type 5) out
// of its own list, so a policy-denied inbound Redirect was answered with
// port unreachable — an error answered with an error (RFC 1122 §3.2.2).
import { describe, expect, it } from 'vitest';
import { Action } from '../../../src/dataplane/batch.js';
import { DROP_NAMES } from '../../../src/dataplane/counters.js';
import { runTrace } from '../../../src/cell/trace.js';
import { IcmpView, isIcmpErrorType } from '../../../src/wire/icmp.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { containerFrame, ipPacket, vxlanPayload } from '../../helpers/packets.js';
import { A0, B0, B1, GATEWAY, TAG, U2, dropDelta, expectIcmpError, icmpErrorPacket, policy, runEgress, runIngress, snap, topology, wirePayload } from '../../helpers/packets-extra.js';

const POLICIES = [policy('appB', 'appA', 'tcp', 8080), policy('appA', 'appB', 'udp', 5000, 5010)];
const TYPES = Array.from({ length: 256 }, (_, t) => t);

/** An ICMP message of `type` from `src` to `dst`, quoting a UDP packet dst → src that no cell tracks. */
function icmpOfType(src: string, dst: string, type: number): Uint8Array {
  const quoted = ipPacket(dst, src, { proto: 'udp', sport: 41000, dport: 5999 });
  return icmpErrorPacket(src, dst, type, 0, quoted);
}

function inbound(type: number): Uint8Array {
  return vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: 0, inner: icmpOfType(B0, A0, type) });
}

describe('ICMP error types: one list', () => {
  it('wire/icmp.ts names the five error types of the kernel (icmp_is_err): 3, 4, 5, 11, 12', () => {
    expect(TYPES.filter(isIcmpErrorType)).toEqual([3, 4, 5, 11, 12]);
    const v = new IcmpView();
    const b = new Uint8Array(8);
    for (const t of TYPES) {
      b[0] = t;
      expect(v.wrap(b, 0, 8).isError).toBe(isIcmpErrorType(t));
    }
  });

  it('ingress, denied by policy: every type is dropped unanswered exactly when it is an error, else rejected', () => {
    const t = topology(POLICIES);
    const verdicts: string[] = [];
    for (const type of TYPES) {
      const before = snap(t.c1);
      // A fresh time per packet keeps the ICMP rate limit out of the way.
      const out = runIngress(t.c1, inbound(type), U2, 1000 + type);
      const err = isIcmpErrorType(type);
      if (err) {
        expect(out.action, `type ${type}`).toBe(Action.Drop);
        expect(DROP_NAMES[out.target], `type ${type}`).toBe('unrelated-icmp-error');
        expect(dropDelta(t.c1, before), `type ${type}`).toEqual({ 'unrelated-icmp-error': 1 });
      } else {
        expect(out.action, `type ${type}`).toBe(Action.Underlay);
        expect(dropDelta(t.c1, before), `type ${type}`).toEqual({ 'policy-denied': 1 });
        // Port unreachable (3/3) from the VTEP back to the sender, quoting the message.
        const inner = wirePayload(out).subarray(8 + 14);
        expect([inner[20], inner[21]], `type ${type}`).toEqual([3, 3]);
      }
      verdicts.push(`${type}:${err ? 'error' : 'query'}`);
    }
    expect(verdicts.filter((v) => v.endsWith('error'))).toEqual(['3:error', '4:error', '5:error', '11:error', '12:error']);
  });

  it('same cell, denied by policy: the same split', () => {
    const t = topology(POLICIES);
    for (const type of TYPES) {
      const before = snap(t.c1);
      const frame = containerFrame(B1, A0, { proto: 'icmp', icmpType: type, payload: ipPacket(A0, B1, { proto: 'udp', sport: 41000, dport: 5999 }).slice(0, 28) });
      const out = runEgress(t.c1, t.appB1, frame, 1000 + type);
      if (isIcmpErrorType(type)) {
        expect(dropDelta(t.c1, before), `type ${type}`).toEqual({ 'unrelated-icmp-error': 1 });
        expect(out.action).toBe(Action.Drop);
      } else {
        expect(dropDelta(t.c1, before), `type ${type}`).toEqual({ 'policy-denied': 1 });
        expect(out.action).toBe(Action.Tap);
        expectIcmpError(out.bytes, 14, { src: GATEWAY, dst: ipToU32(B1), type: 3, code: 3, ttl: 64, offending: frame.subarray(14) });
      }
    }
  });

  it('trace says the same for every type: an unrelated error, or a reject', () => {
    const t = topology(POLICIES);
    for (const type of TYPES) {
      const { steps, result } = runTrace(t.c1, 'ingress', inbound(type), { srcIp: U2, now: 5 });
      const policyStep = steps.find((s) => s.step === 'policy')!;
      if (isIcmpErrorType(type)) {
        expect(policyStep.text, `type ${type}`).toBe('DENY: ICMP error not related to any tracked connection → DROP (an ICMP error is never answered with another)');
        expect(steps.map((s) => s.step)).toEqual(['decapsulate', 'lookup-container', 'policy', 'drop']);
        expect(steps.at(-1)!.detail).toEqual({ reason: 'unrelated-icmp-error' });
        expect(result.action).toBe('drop');
      } else {
        expect(policyStep.detail.why, `type ${type}`).toBe('no Group Policy ID on the packet and no tracked connection');
        expect(steps.map((s) => s.step)).toEqual(['decapsulate', 'lookup-container', 'policy', 'icmp-error']);
        expect(result.action).toBe('underlay');
      }
    }
  });

  it('a Redirect quoting a tracked flow is let in as RELATED, as the kernel does', () => {
    const t = topology(POLICIES);
    // appA-0 → appB-0 udp 5000 opens the flow at cell 1's egress.
    const sent = runEgress(t.c1, t.appA0, containerFrame(A0, B0, { proto: 'udp', sport: 40000, dport: 5000 }), 1);
    expect(sent.action).toBe(Action.Underlay);
    const quoted = ipPacket(A0, B0, { proto: 'udp', sport: 40000, dport: 5000, ttl: 63 });
    const redirect = icmpErrorPacket(B0, A0, 5, 1, quoted);
    const before = snap(t.c1);
    const out = runIngress(t.c1, vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, inner: redirect }), U2, 2);
    expect(out.action).toBe(Action.Tap);
    expect(out.target).toBe(t.appA0.index);
    expect(dropDelta(t.c1, before)).toEqual({});
  });
});
