// 100k random and mutated inputs (truncated, bit-flipped, length fields lying)
// through every view's check() + getters and through decodeFrame(). Views are
// wrapped over a Proxy that throws on any index outside the wrapped region, so
// "after check() returns None no accessor leaves the buffer" is tested, not
// assumed (a plain Uint8Array would silently return undefined → 0).
import { describe, expect, it } from 'vitest';
import { CliError } from '../../../src/cli/util.js';
import { decodeFrame, type DecodeStart } from '../../../src/cli/decode.js';
import { ArpView } from '../../../src/wire/arp.js';
import { WireError } from '../../../src/wire/errors.js';
import { EthernetView } from '../../../src/wire/ethernet.js';
import { parseHexDump } from '../../../src/wire/hex.js';
import { IcmpView } from '../../../src/wire/icmp.js';
import { Ipv4View } from '../../../src/wire/ipv4.js';
import { TcpView } from '../../../src/wire/tcp.js';
import { UdpView } from '../../../src/wire/udp.js';
import { VxlanView } from '../../../src/wire/vxlan.js';
import { SEED002_DUMPS } from '../../vectors/seed002.js';

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ICMP_ERR = parseHexDump(
  '6e633ae16f0b327e5e04257c080045c0003f927900004001cb5bc612c802c612c801 0303d910000000004500002375a84000 4011a8f8c612c801c612c802aa400009000f1c4a686920 73696c6b',
);
const ARP = parseHexDump('ffffffffffff6e633ae16f0b0806000108000604 00016e633ae16f0bc612c801000000000000c612c802');
const CORPUS = [...Object.values(SEED002_DUMPS).map((d) => parseHexDump(d)), ICMP_ERR, ARP];
// offsets of length-ish fields in the seed's VXLAN frame (outer IHL/totalLen, UDP len, inner IHL/totalLen, TCP offset)
const LENGTH_FIELDS = [14, 16, 17, 38, 39, 42, 64, 66, 67, 96, 0, 12, 13, 20, 21];

function mutate(r: () => number): Uint8Array {
  const kind = Math.floor(r() * 6);
  if (kind === 0) {
    const b = new Uint8Array(Math.floor(r() * 160));
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
    return b;
  }
  const base = CORPUS[Math.floor(r() * CORPUS.length)]!;
  let b = base.slice();
  if (kind === 1 || r() < 0.3) b = b.slice(0, Math.floor(r() * (b.length + 1)));
  if (kind === 2 || r() < 0.3) {
    const flips = 1 + Math.floor(r() * 4);
    for (let k = 0; k < flips && b.length; k++) b[Math.floor(r() * b.length)]! ^= 1 << Math.floor(r() * 8);
  }
  if (kind === 3 || r() < 0.3) {
    const at = LENGTH_FIELDS[Math.floor(r() * LENGTH_FIELDS.length)]!;
    if (at < b.length) b[at] = Math.floor(r() * 256);
  }
  if (kind === 4) {
    for (let k = 0; k < 8 && b.length; k++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256);
  }
  if (kind === 5) b = b.slice(Math.floor(r() * Math.min(60, b.length)));
  return b;
}

/** A Uint8Array stand-in that throws on any element access outside [lo, hi). */
function guarded(buf: Uint8Array, lo: number, hi: number): Uint8Array {
  return new Proxy(buf, {
    get(t, k) {
      if (typeof k === 'string' && /^-?\d+$/.test(k)) {
        const i = Number(k);
        if (i < lo || i >= hi) throw new RangeError(`read of byte ${i} outside [${lo}, ${hi})`);
        return t[i];
      }
      const v = Reflect.get(t, k, t);
      return typeof v === 'function' ? v.bind(t) : v;
    },
    set(t, k, v) {
      if (typeof k === 'string' && /^-?\d+$/.test(k)) {
        const i = Number(k);
        if (i < lo || i >= hi) throw new RangeError(`write of byte ${i} outside [${lo}, ${hi})`);
        t[i] = v as number;
        return true;
      }
      return Reflect.set(t, k, v, t);
    },
  });
}

type AnyView = { wrap(b: Uint8Array, o: number, l: number): unknown; check(): WireError };
const VIEWS: [string, AnyView][] = [
  ['ethernet', new EthernetView()],
  ['arp', new ArpView()],
  ['ipv4', new Ipv4View()],
  ['udp', new UdpView()],
  ['tcp', new TcpView()],
  ['icmp', new IcmpView()],
  ['vxlan', new VxlanView()],
];
const GETTERS = new Map(
  VIEWS.map(([name, v]) => {
    const proto = Object.getPrototypeOf(v) as object;
    const names = Object.entries(Object.getOwnPropertyDescriptors(proto))
      .filter(([, d]) => d.get)
      .map(([n]) => n);
    return [name, names];
  }),
);

function exerciseView(name: string, v: AnyView, bytes: Uint8Array, r: () => number): WireError {
  // region [pad, end of buffer): guard bytes in front; the proxy refuses both sides
  const pad = 1 + Math.floor(r() * 8);
  const buf = new Uint8Array(bytes.length + pad).fill(0xa5);
  buf.set(bytes, pad);
  // sometimes claim more bytes than exist: check() must refuse without reading them
  const lie = r() < 0.1 ? 1 + Math.floor(r() * 40) : 0;
  const g = guarded(buf, pad, pad + bytes.length);
  v.wrap(g, pad, bytes.length + lie);
  const err = v.check();
  if (lie) expect(err, `${name} accepted a view longer than its buffer`).toBe(WireError.Truncated);
  if (err !== WireError.None) return err;
  const obj = v as unknown as Record<string, unknown>;
  for (const key of GETTERS.get(name)!) {
    const val = obj[key];
    if (typeof val === 'number') expect(Number.isFinite(val), `${name}.${key}`).toBe(true);
  }
  if (v instanceof Ipv4View) v.verifyChecksum();
  if (v instanceof IcmpView) v.verifyChecksum();
  if (v instanceof UdpView) {
    v.verifyChecksum(0x0a000001, 0x0a000002);
    v.computeChecksum(1, 2);
  }
  if (v instanceof TcpView) {
    v.verifyChecksum(0x0a000001, 0x0a000002);
    v.computeChecksum(1, 2);
  }
  // every view's payload (and so the next layer's region) stays inside the view after check()
  const pv = v as unknown as { payloadOffset?: number; payloadLen?: number };
  if (pv.payloadOffset !== undefined) {
    expect(pv.payloadOffset, `${name}.payloadOffset`).toBeGreaterThanOrEqual(pad);
    expect(pv.payloadLen!, `${name}.payloadLen`).toBeGreaterThanOrEqual(0);
    expect(pv.payloadOffset + pv.payloadLen!, `${name} payload end`).toBeLessThanOrEqual(pad + bytes.length);
  }
  return err;
}

function hasNaN(x: unknown): boolean {
  if (typeof x === 'number') return Number.isNaN(x);
  if (x === undefined) return false;
  if (Array.isArray(x)) return x.some(hasNaN);
  if (x && typeof x === 'object') return Object.values(x).some(hasNaN);
  return false;
}

describe('fuzz', () => {
  it('100k mutated inputs: views never read outside their region; decodeFrame throws only CliError', async () => {
    const r = rng(0x5eed);
    const froms: DecodeStart[] = ['auto', 'ethernet', 'ip', 'vxlan'];
    const stats = { accepted: 0, refused: 0, decoded: 0, cliErrors: 0 };
    const unexpected: string[] = [];
    for (let n = 0; n < 100_000; n++) {
      // Give the event loop a turn now and then: a minute of synchronous work
      // starves vitest's worker RPC on a loaded machine.
      if (n % 2000 === 0) await new Promise((resolve) => setImmediate(resolve));
      const bytes = mutate(r);
      // each input through one view with the bounds-checking proxy (rotating), all views every 10th input
      const which = n % 10 === 0 ? VIEWS : [VIEWS[n % VIEWS.length]!];
      for (const [name, v] of which) {
        try {
          if (exerciseView(name, v, bytes, r) === WireError.None) stats.accepted++;
          else stats.refused++;
        } catch (e) {
          unexpected.push(`${name}: ${(e as Error).message} on ${Buffer.from(bytes).toString('hex')}`);
        }
      }
      try {
        const layers = decodeFrame(bytes, froms[n % 4]!);
        stats.decoded++;
        if (hasNaN(layers)) unexpected.push(`decode produced NaN on ${Buffer.from(bytes).toString('hex')}`);
      } catch (e) {
        if (e instanceof CliError && !/\n/.test(e.message)) stats.cliErrors++;
        else unexpected.push(`decode: ${(e as Error).stack} on ${Buffer.from(bytes).toString('hex')}`);
      }
      if (unexpected.length > 5) break;
    }
    expect(unexpected).toEqual([]);
    // the corpus must exercise both paths, or the test proves nothing
    expect(stats.accepted).toBeGreaterThan(10_000);
    expect(stats.refused).toBeGreaterThan(10_000);
    expect(stats.decoded).toBeGreaterThan(10_000);
    expect(stats.cliErrors).toBeGreaterThan(10_000);
  }, 120_000);
});
