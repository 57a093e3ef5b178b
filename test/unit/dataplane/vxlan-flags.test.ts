// VXLAN flags: the pipeline drops exactly the headers wire/vxlan.ts says the
// kernel's vxlan_rcv would drop (vxlanFlagsAcceptable), for all 256 values of
// byte 0; `decode` reads the same rule.
import { describe, expect, it } from 'vitest';
import { Action } from '../../../src/dataplane/batch.js';
import { DROP_NAMES } from '../../../src/dataplane/counters.js';
import { VXLAN_FLAGS_KNOWN, VxlanView, vxlanFlagsAcceptable } from '../../../src/wire/vxlan.js';
import { VXLAN_FLAG_G, VXLAN_FLAG_I } from '../../../src/wire/offsets.js';
import { ipPacket, vxlanPayload } from '../../helpers/packets.js';
import { A0, B0, TAG, U2, policy, runIngress, topology } from '../../helpers/packets-extra.js';

describe('VXLAN flags the kernel accepts', () => {
  it('are I, with or without G, and nothing else', () => {
    const ok = Array.from({ length: 256 }, (_, f) => f).filter(vxlanFlagsAcceptable);
    expect(ok).toEqual([VXLAN_FLAG_I, VXLAN_FLAG_I | VXLAN_FLAG_G]);
    expect(VXLAN_FLAGS_KNOWN).toBe(0x88);
    const v = new VxlanView().wrap(Uint8Array.of(0x89, 0, 0, 0, 0, 0, 1, 0), 0, 8);
    expect(v.kernelAccepts).toBe(false);
  });

  it('the pipeline drops every other byte 0 as bad-vxlan-flags, and only those', () => {
    const t = topology([policy('appB', 'appA', 'tcp', 8080)]);
    for (let flags = 0; flags < 256; flags++) {
      const inner = ipPacket(B0, A0, { proto: 'tcp', sport: 30000 + flags, dport: 8080 });
      const out = runIngress(t.c1, vxlanPayload({ fromVtep: '10.255.2.0', toVtep: '10.255.1.0', gpid: TAG.appB, flags, inner }), U2, 1);
      if (vxlanFlagsAcceptable(flags)) {
        expect(DROP_NAMES[out.target] ?? '', `flags 0x${flags.toString(16)}`).not.toBe('bad-vxlan-flags');
        if (out.action === Action.Drop) expect(flags & VXLAN_FLAG_G).toBe(0); // without G there is no tag: rejected, not dropped here
      } else {
        expect(out.action, `flags 0x${flags.toString(16)}`).toBe(Action.Drop);
        expect(DROP_NAMES[out.target], `flags 0x${flags.toString(16)}`).toBe('bad-vxlan-flags');
      }
    }
  });
});
