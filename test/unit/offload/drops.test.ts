// The TSO segmenter's drops reach the cell's drop-reason table under their
// reasons, once per dropped packet, next to its own counters.
import { describe, expect, it } from 'vitest';
import { FrameBatch } from '../../../src/dataplane/batch.js';
import { Drop } from '../../../src/dataplane/counters.js';
import { GsoSegmenter } from '../../../src/offload/gso.js';
import { seedBytes } from '../../vectors/seed002.js';

const SEED = seedBytes('SRC_CONTAINER_ETH0');

/** A raw TAP packet: 10-byte virtio_net_hdr (flags, gso_type, gso_size) then `frame`. */
function rawPacket(flags: number, gsoType: number, gsoSize: number, frame: Uint8Array, csumStart = 0, csumOffset = 0): Uint8Array {
  const p = new Uint8Array(10 + frame.length);
  p[0] = flags;
  p[1] = gsoType;
  p[4] = gsoSize & 0xff;
  p[5] = gsoSize >>> 8;
  p[6] = csumStart & 0xff;
  p[7] = csumStart >>> 8;
  p[8] = csumOffset & 0xff;
  p[9] = csumOffset >>> 8;
  p.set(frame, 10);
  return p;
}

describe('GsoSegmenter drops', () => {
  it('counts malformed, unsupported and oversize packets under tap-rx-bad-vnet, -unsupported-gso, -oversize', () => {
    const raw = new Uint8Array(70000);
    const batch = new FrameBatch(8, 256, 64);
    const drops = new Float64Array(Drop.Count);
    const seg = new GsoSegmenter(raw, batch, drops);
    const put = (p: Uint8Array) => {
      raw.set(p, 0);
      return seg.begin(0, p.length);
    };
    // Unknown virtio flag bit 0x80: malformed.
    expect(put(rawPacket(0x80, 0, 0, SEED))).toBe(false);
    // GSO UDPv4 (3): not ours to segment.
    expect(put(rawPacket(1, 3, 1000, SEED, 34, 6))).toBe(false);
    // A plain frame longer than a slot (256 - 64 headroom).
    expect(put(rawPacket(0, 0, 0, new Uint8Array(600)))).toBe(false);
    // And a good plain frame passes.
    expect(put(rawPacket(0, 0, 0, SEED))).toBe(true);
    expect(drops[Drop.TapRxBadVnet]).toBe(1);
    expect(drops[Drop.TapRxUnsupportedGso]).toBe(1);
    expect(drops[Drop.TapRxOversize]).toBe(1);
    expect(seg.counters).toMatchObject({ dropMalformed: 1, dropUnsupported: 1, dropTooBig: 1 });
    expect(Array.from(drops).reduce((a, b) => a + b, 0)).toBe(3);
  });
});
