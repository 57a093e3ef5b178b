import { describe, expect, it } from 'vitest';
import { Ecn, EcnDecap, TOS_INHERIT, ecnDecapDecision, ecnDecapsulateIpv4, ecnEncapsulate, vxlanOuterTos } from '../../../src/dataplane/ecn.js';
import { emitIpv4 } from '../../../src/wire/ipv4.js';
import { internetChecksum, referenceChecksum } from '../../../src/wire/checksum.js';
import { decap, encap } from '../../vectors/kernel-vxlan-ecn.js';

const INNER_IP = 20 + 8 + 8 + 14;

describe('ecn: encapsulation as the kernel vxlan device does it', () => {
  it('INET_ECN_encapsulate: ECN copied, CE → ECT(0), outer DSCP kept', () => {
    expect(ecnEncapsulate(0, Ecn.NotEct)).toBe(0);
    expect(ecnEncapsulate(0, Ecn.Ect1)).toBe(1);
    expect(ecnEncapsulate(0, Ecn.Ect0)).toBe(2);
    expect(ecnEncapsulate(0, Ecn.Ce)).toBe(2);
    expect(ecnEncapsulate(0xb8 | 3, 0x01)).toBe(0xb9);
  });

  it('default device (tos 0): outer DSCP 0, outer ECN from inner; tos inherit copies DSCP; fixed tos kept', () => {
    expect(vxlanOuterTos(0xbb)).toBe(0x02);
    expect(vxlanOuterTos(0xb9)).toBe(0x01);
    expect(vxlanOuterTos(0xbb, TOS_INHERIT)).toBe(0xba);
    expect(vxlanOuterTos(0x03, 0x28)).toBe(0x2a);
    expect(vxlanOuterTos(-1, TOS_INHERIT)).toBe(0);
  });

  it('matches every captured kernel packet: outer DS byte, TTL 64, DF clear', () => {
    expect(encap.length).toBe(8);
    for (const { outer } of encap) {
      const innerTos = outer[INNER_IP + 1]!;
      expect(vxlanOuterTos(innerTos), `inner 0x${innerTos.toString(16)}`).toBe(outer[1]);
      expect(outer[8]).toBe(64);
      expect(outer[6]! & 0x40).toBe(0);
    }
  });
});

describe('ecn: decapsulation (RFC 6040 §4.2 as INET_ECN_decapsulate)', () => {
  it('the whole table', () => {
    const N = Ecn.NotEct, E1 = Ecn.Ect1, E0 = Ecn.Ect0, CE = Ecn.Ce;
    // rows: inner; columns: outer Not-ECT, ECT(0), ECT(1), CE
    const table: [number, EcnDecap[]][] = [
      [N, [EcnDecap.Unchanged, EcnDecap.LogNotEct, EcnDecap.LogNotEct, EcnDecap.DropCeOnNotEct]],
      [E0, [EcnDecap.Unchanged, EcnDecap.Unchanged, EcnDecap.SetEct1, EcnDecap.SetCe]],
      [E1, [EcnDecap.Unchanged, EcnDecap.Unchanged, EcnDecap.Unchanged, EcnDecap.SetCe]],
      [CE, [EcnDecap.Unchanged, EcnDecap.Unchanged, EcnDecap.Unchanged, EcnDecap.Unchanged]],
    ];
    for (const [inner, row] of table) {
      [N, E0, E1, CE].forEach((outer, i) => expect(ecnDecapDecision(0xb8 | outer, 0x28 | inner), `inner ${inner} outer ${outer}`).toBe(row[i]));
    }
  });

  it('matches the captured kernel: outer CE marks ECT inner packets CE (checksum updated), drops Not-ECT ones', () => {
    expect(decap.length).toBe(6);
    for (const { outer, delivered } of decap) {
      const inner = outer.slice(INNER_IP);
      const d = ecnDecapsulateIpv4(outer[1]!, inner, 0);
      if (delivered === null) {
        expect(d).toBe(EcnDecap.DropCeOnNotEct);
      } else {
        expect(d).not.toBe(EcnDecap.DropCeOnNotEct);
        expect(Buffer.from(inner).toString('hex')).toBe(Buffer.from(delivered).toString('hex'));
      }
    }
  });

  it('in-place rewrite at a non-zero offset keeps the header checksum valid (compared with a full recompute)', () => {
    for (let tos = 0; tos < 256; tos++) {
      for (const outer of [Ecn.Ect1, Ecn.Ce]) {
        const buf = new Uint8Array(64).fill(0xa5);
        emitIpv4({ src: 0x0aff6303 + tos, dst: 0x0aff8402, protocol: 17, ttl: 63, payloadLen: 8, dscpEcn: tos, ident: tos * 257, dontFrag: true, moreFrags: false, fragOffset: 0, options: new Uint8Array(0) }, buf, 11);
        const d = ecnDecapsulateIpv4(outer, buf, 11);
        if (d === EcnDecap.SetCe) expect(buf[12]! & 3).toBe(3);
        if (d === EcnDecap.SetEct1) expect(buf[12]! & 3).toBe(1);
        expect(referenceChecksum(buf.subarray(11, 31))).toBe(0);
        const c = (buf[21]! << 8) | buf[22]!;
        buf[21] = 0;
        buf[22] = 0;
        expect(c).toBe(internetChecksum(buf, 11, 20));
      }
    }
  });
});
