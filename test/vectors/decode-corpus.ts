// A corpus of frames for checking `silkworm decode --json` against
// `tshark -T json` field by field, and the comparison itself (used by
// test/unit/decode-tshark.test.ts on crafted frames and by
// test/e2e/decode-lab.test.ts on a capture of a lab curl).
//
// The frames are real bytes: test/vectors/seed002.ts (six captures of one TCP segment
// crossing two kernel silk cells), kernel ICMP/ARP frames, and frames built
// here with src/wire's emitters, well-formed and malformed.
import { execFileSync } from 'node:child_process';
import { emitIpv4, type Ipv4Repr } from '../../src/wire/ipv4.js';
import { emitTcp } from '../../src/wire/tcp.js';
import { emitUdp } from '../../src/wire/udp.js';
import { writeVxlanHeader } from '../../src/wire/vxlan.js';
import { internetChecksum } from '../../src/wire/checksum.js';
import { parseHexDump } from '../../src/wire/hex.js';
import type { FrameToWrite } from '../../src/wire/pcap.js';
import type { DecodedFrame } from '../../src/cli/decode.js';
import type { Layer } from '../../src/wire/dissect.js';
import { SEED002_DUMPS } from './seed002.js';

const ip4 = (s: string) => s.split('.').reduce((a, b) => a * 256 + Number(b), 0) >>> 0;
const mac = (s: string) => Uint8Array.from(s.split(':').map((h) => parseInt(h, 16)));

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function eth(dst: string, src: string, type: number, payload: Uint8Array): Uint8Array {
  return concat(mac(dst), mac(src), Uint8Array.of(type >>> 8, type & 0xff), payload);
}

function ipv4(src: string, dst: string, protocol: number, l4: Uint8Array, o: Partial<Ipv4Repr> = {}): Uint8Array {
  const repr: Ipv4Repr = {
    src: ip4(src),
    dst: ip4(dst),
    protocol,
    ttl: 64,
    payloadLen: l4.length,
    dscpEcn: 0,
    ident: 0x1234,
    dontFrag: true,
    moreFrags: false,
    fragOffset: 0,
    options: new Uint8Array(0),
    ...o,
  };
  const b = new Uint8Array(20 + repr.options.length + l4.length);
  const hl = emitIpv4(repr, b, 0);
  b.set(l4, hl);
  return b;
}

/** A UDP datagram whose checksum covers the pseudo-header with `csumDst` (the final hop under a source route). */
function udp(src: string, csumDst: string, sport: number, dport: number, data: Uint8Array, checksum = true): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  b.set(data, 8);
  emitUdp({ srcPort: sport, dstPort: dport, payloadLen: data.length }, b, 0, ip4(src), ip4(csumDst), checksum);
  return b;
}

function tcp(src: string, dst: string, o: { sport: number; dport: number; flags: number; seq: number; ack: number; options?: number[]; data?: Uint8Array }): Uint8Array {
  const options = Uint8Array.from(o.options ?? []);
  const data = o.data ?? new Uint8Array(0);
  const b = new Uint8Array(20 + options.length + data.length);
  b.set(data, 20 + options.length);
  emitTcp(
    { srcPort: o.sport, dstPort: o.dport, seq: o.seq, ack: o.ack, flags: o.flags, window: 64240, urgent: 0, options, payloadLen: data.length },
    b,
    0,
    ip4(src),
    ip4(dst),
  );
  return b;
}

function icmp(type: number, code: number, rest: number, data: Uint8Array): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  b[0] = type;
  b[1] = code;
  b[4] = rest >>> 24;
  b[5] = (rest >>> 16) & 0xff;
  b[6] = (rest >>> 8) & 0xff;
  b[7] = rest & 0xff;
  b.set(data, 8);
  const c = internetChecksum(b, 0, b.length);
  b[2] = c >>> 8;
  b[3] = c & 0xff;
  return b;
}

function vxlan(flags: number, gbpFlags: number, gpid: number, vni: number, inner: Uint8Array, reserved = 0): Uint8Array {
  const h = new Uint8Array(8);
  writeVxlanHeader(h, 0, vni, gpid);
  h[0] = flags;
  h[1] = gbpFlags;
  h[7] = reserved;
  return concat(h, inner);
}

const text = (s: string) => new TextEncoder().encode(s);

const M1 = '02:42:c6:12:00:01';
const M2 = '02:42:c6:12:00:02';
const U1 = '198.18.0.1';
const U2 = '198.18.0.2';

/** The inner frame every VXLAN case carries: container 10.255.1.2 → 10.255.2.2:8080, a SYN with the usual options. */
function innerSyn(): Uint8Array {
  const seg = tcp('10.255.1.2', '10.255.2.2', {
    sport: 40001,
    dport: 8080,
    flags: 0x002,
    seq: 123456789,
    ack: 0,
    options: [2, 4, 0x05, 0x78, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7],
  });
  return eth('ee:ee:0a:ff:02:00', 'ee:ee:0a:ff:01:02', 0x0800, ipv4('10.255.1.2', '10.255.2.2', 6, seg, { ttl: 63 }));
}

function underlay(vx: Uint8Array, sport = 51000, dport = 4789): Uint8Array {
  return eth(M2, M1, 0x0800, ipv4(U1, U2, 17, udp(U1, U2, sport, dport, vx, false), { dontFrag: false }));
}

export interface CorpusFrame extends FrameToWrite {
  name: string;
}

/** Crafted and recorded frames, well-formed and not. */
export function buildCorpus(): CorpusFrame[] {
  const frames: CorpusFrame[] = [];
  const add = (name: string, data: Uint8Array, originalLength?: number) =>
    frames.push({ name, data, ...(originalLength === undefined ? {} : { originalLength }), sec: 1764460800 + frames.length, frac: 1000 * frames.length });

  for (const [name, dump] of Object.entries(SEED002_DUMPS)) add(`seed002 ${name}`, parseHexDump(dump));
  // kernel frames: ICMP echo request, a port unreachable quoting a UDP datagram, an ARP request (padded to 60 by the NIC)
  add('kernel ICMP echo', parseHexDump('327e5e04257c6e633ae16f0b080045000028b34440004001 6b67c612c801c612c8020800bab51f250001000102030405060708090a0b'));
  add(
    'kernel ICMP port unreachable',
    parseHexDump(
      '6e633ae16f0b327e5e04257c080045c0003f927900004001cb5bc612c802c612c8010303d910000000004500002375a840004011a8f8c612c801c612c802aa400009000f1c4a6869207369 6c6b',
    ),
  );
  add('ARP request', parseHexDump('ffffffffffff6e633ae16f0b08060001080006040001 6e633ae16f0bc612c801000000000000c612c802'));

  add('VXLAN-GBP, Group Policy ID 0x1234, D and A set', underlay(vxlan(0x88, 0x48, 0x1234, 7, innerSyn())));
  add('VXLAN untagged (flags 0x08)', underlay(vxlan(0x08, 0, 0, 1, innerSyn())));
  add('VXLAN on UDP source port 4789', underlay(vxlan(0x88, 0, 5, 1, innerSyn()), 4789, 51000));
  add('VXLAN without the I flag', underlay(vxlan(0x80, 0, 5, 1, innerSyn())));
  add('VXLAN with a reserved flag bit (0x8c)', underlay(vxlan(0x8c, 0, 5, 1, innerSyn())));
  add('VXLAN with reserved byte 7 set', underlay(vxlan(0x88, 0, 5, 1, innerSyn(), 0x01)));

  // TSO: a super-frame captured before segmentation, IPv4 total length 0
  const tsoSeg = tcp(U1, U2, { sport: 40000, dport: 5201, flags: 0x018, seq: 1000, ack: 2000, data: new Uint8Array(3000).fill(0x61) });
  const tso = eth(M2, M1, 0x0800, ipv4(U1, U2, 6, tsoSeg));
  tso[14 + 2] = 0;
  tso[14 + 3] = 0;
  tso[14 + 10] = 0;
  tso[14 + 11] = 0;
  const c = internetChecksum(tso, 14, 20);
  tso[14 + 10] = c >>> 8;
  tso[14 + 11] = c & 0xff;
  add('TSO super-frame, IPv4 total length 0', tso);

  // snaplen: the seed's underlay frame cut at 96 of its 141 bytes, and a TCP segment cut inside its header
  const full = parseHexDump(SEED002_DUMPS.SRC_HOST_ETH0);
  add('snaplen 96 of a VXLAN frame', full.slice(0, 96), full.length);
  add('snaplen 90: cut inside the inner TCP header', full.slice(0, 90), full.length);
  const big = eth(M2, M1, 0x0800, ipv4(U1, U2, 17, udp(U1, U2, 5000, 5001, text('x'.repeat(200)))));
  add('snaplen 64 of a UDP datagram', big.slice(0, 64), big.length);

  // ICMP errors quoting less than an IPv4 header
  const quoted = ipv4(U2, U1, 17, udp(U2, U1, 3000, 4000, text('x')));
  add('ICMP port unreachable quoting 12 bytes', eth(M2, M1, 0x0800, ipv4(U1, U2, 1, icmp(3, 3, 0, quoted.slice(0, 12)))));
  add('ICMP time exceeded quoting 24 bytes', eth(M2, M1, 0x0800, ipv4(U1, U2, 1, icmp(11, 0, 0, quoted.slice(0, 24)))));
  add('ICMP fragmentation needed, MTU 1400', eth(M2, M1, 0x0800, ipv4(U1, U2, 1, icmp(3, 4, 1400, quoted.slice(0, 28)))));

  // source routes (RFC 791 §3.1): the UDP checksum covers the route's last hop
  const lsrr = Uint8Array.of(0x83, 11, 4, 198, 18, 0, 7, 198, 18, 0, 9, 1);
  add('LSRR, UDP checksum over the final hop', eth(M2, M1, 0x0800, ipv4(U1, U2, 17, udp(U1, '198.18.0.9', 1000, 2000, text('hello')), { options: lsrr })));
  add('LSRR, UDP checksum over the header destination (wrong)', eth(M2, M1, 0x0800, ipv4(U1, U2, 17, udp(U1, U2, 1000, 2000, text('hello')), { options: lsrr })));
  const ssrr = Uint8Array.of(0x89, 7, 4, 198, 18, 0, 9, 0);
  add('SSRR, UDP checksum over the final hop', eth(M2, M1, 0x0800, ipv4(U1, U2, 17, udp(U1, '198.18.0.9', 1000, 2000, text('hello')), { options: ssrr })));

  // 802.1Q, a bad IPv4 header checksum, a plain UDP datagram
  add('802.1Q VLAN 100, priority 5', concat(mac(M2), mac(M1), Uint8Array.of(0x81, 0x00, 0xa0, 0x64, 0x08, 0x00), ipv4(U1, U2, 17, udp(U1, U2, 53000, 7777, text('vlan')))));
  const badsum = eth(M2, M1, 0x0800, ipv4(U1, U2, 17, udp(U1, U2, 53000, 7777, text('bad header checksum'))));
  badsum[14 + 11] ^= 0x5a;
  add('IPv4 header checksum wrong', badsum);
  add('TCP RST+ACK', eth(M2, M1, 0x0800, ipv4(U1, U2, 6, tcp(U1, U2, { sport: 8080, dport: 40001, flags: 0x014, seq: 0, ack: 123456790 }))));

  // malformed: decode stops with an error at the byte offset
  const udpLie = underlay(vxlan(0x88, 0, 5, 1, innerSyn()));
  udpLie[38] = 0x0f; // UDP length far beyond the datagram
  add('malformed: UDP length beyond the datagram', udpLie);
  const tcpOff = eth(M2, M1, 0x0800, ipv4(U1, U2, 6, tcp(U1, U2, { sport: 1, dport: 2, flags: 0x002, seq: 1, ack: 0 })));
  tcpOff[34 + 12] = 0x30; // data offset 3 words
  add('malformed: TCP data offset 12', tcpOff);
  const ihl = eth(M2, M1, 0x0800, ipv4(U1, U2, 17, udp(U1, U2, 1, 2, text('ihl'))));
  ihl[14] = 0x43;
  add('malformed: IPv4 IHL 3', ihl);
  return frames;
}

// ---------------------------------------------------------------- tshark

/**
 * Fields where decode deliberately differs from tshark, and why (the same
 * list, in prose, is docs/decode-differences.md). Keyed by field name; the
 * value says when the difference applies.
 */
export const DELIBERATE_DIFFERENCES: Record<string, { when: (f: TsharkCompareContext) => boolean; why: string }> = {
  'ip.len': {
    when: (c) => c.layer.fields.tso === true,
    why: 'TSO (total length 0): tshark shows the length it used instead; decode shows the 0 on the wire and says which length it used',
  },
};

export interface TsharkCompareContext {
  layer: Layer;
  frameTruncated: boolean;
  tso: boolean;
}

/** The tshark options the comparison runs with: VXLAN on 4789, checksums verified, absolute sequence numbers. */
export const TSHARK_ARGS = [
  '-T',
  'json',
  '-x',
  '--no-duplicate-keys',
  '-d',
  'udp.port==4789,vxlan',
  '-o',
  'ip.check_checksum:TRUE',
  '-o',
  'udp.check_checksum:TRUE',
  '-o',
  'tcp.check_checksum:TRUE',
  '-o',
  'tcp.relative_sequence_numbers:FALSE',
  '-o',
  'tcp.analyze_sequence_numbers:FALSE',
];

export function haveTshark(): boolean {
  try {
    execFileSync('tshark', ['--version'], { stdio: 'ignore', timeout: 20_000 });
    return true;
  } catch {
    return false;
  }
}

export function runTshark(file: string): TsharkPacket[] {
  const out = execFileSync('tshark', ['-r', file, ...TSHARK_ARGS], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] });
  return JSON.parse(out) as TsharkPacket[];
}

export interface TsharkPacket {
  _source: { layers: Record<string, unknown> };
}

interface TField {
  value: string;
  offset?: number;
  length?: number;
}

/** Every field in one protocol instance of tshark's JSON, subtrees (and nested protocols, e.g. an ICMP error's quoted IP) flattened. */
export function flattenTshark(node: unknown): Map<string, TField[]> {
  const out = new Map<string, TField[]>();
  const add = (name: string, f: TField) => {
    const list = out.get(name) ?? [];
    list.push(f);
    out.set(name, list);
  };
  const walk = (o: Record<string, unknown>) => {
    for (const [k, v] of Object.entries(o)) {
      if (k.endsWith('_raw') || k === '_ws.expert') continue;
      const raw = o[k + '_raw'];
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
        walk(v as Record<string, unknown>);
        continue;
      }
      const values = Array.isArray(v) ? v : [v];
      const raws = Array.isArray(raw) && Array.isArray(raw[0]) ? (raw as unknown[][]) : raw ? [raw as unknown[]] : [];
      values.forEach((val, i) => {
        if (val !== null && typeof val === 'object') {
          walk(val as Record<string, unknown>);
          return;
        }
        const r = raws[i];
        add(k, r && typeof r[1] === 'number' ? { value: String(val), offset: r[1] as number, length: r[2] as number } : { value: String(val) });
      });
    }
  };
  if (node && typeof node === 'object') walk(node as Record<string, unknown>);
  return out;
}

const TSHARK_PROTO: Record<string, string> = {
  ethernet: 'eth',
  vlan: 'vlan',
  arp: 'arp',
  ipv4: 'ip',
  udp: 'udp',
  tcp: 'tcp',
  icmp: 'icmp',
  vxlan: 'vxlan',
  payload: 'data',
};

function sameValue(mine: number | string, theirs: string): boolean {
  if (typeof mine === 'string') return mine.toLowerCase() === theirs.toLowerCase();
  if (/^0x[0-9a-f]+$/i.test(theirs)) return parseInt(theirs, 16) === mine;
  if (/^-?\d+$/.test(theirs)) return Number(theirs) === mine;
  return false;
}

export interface Comparison {
  /** Fields compared and equal (value, and byte offset/length where tshark gives them). */
  matched: number;
  /** Fields skipped under DELIBERATE_DIFFERENCES, by name. */
  skipped: Record<string, number>;
  mismatches: string[];
}

/**
 * Compare decode's frames with tshark's packets: frame numbers, lengths and
 * times; the protocol sequence; then every field decode gives, by name (value,
 * offset, length) — and, the other way, every field tshark gives that decode
 * knows (a name decode emits for some frame of the corpus) under the layer's
 * own prefix.
 */
export function compareWithTshark(frames: DecodedFrame[], packets: TsharkPacket[]): Comparison {
  const res: Comparison = { matched: 0, skipped: {}, mismatches: [] };
  const known = new Set<string>();
  for (const f of frames) for (const l of f.layers) for (const w of l.wire) known.add(w.name);
  if (frames.length !== packets.length) res.mismatches.push(`decode read ${frames.length} frames, tshark ${packets.length}`);
  for (let i = 0; i < Math.min(frames.length, packets.length); i++) {
    const f = frames[i]!;
    const L = packets[i]!._source.layers;
    const where = `frame ${f.number}`;
    const fr = flattenTshark(L.frame);
    const fv = (n: string) => fr.get(n)?.[0]?.value;
    const check = (what: string, mine: number | string, theirs: string | undefined) => {
      if (theirs !== undefined && sameValue(mine, theirs)) res.matched++;
      else res.mismatches.push(`${where}: ${what} is ${mine} in decode, ${theirs} in tshark`);
    };
    check('frame.number', f.number, fv('frame.number'));
    check('frame.len', f.originalLength, fv('frame.len'));
    check('frame.cap_len', f.capturedLength, fv('frame.cap_len'));
    check('frame.time_epoch', f.time, fv('frame.time_epoch'));

    // protocol sequence: decode's layers are a prefix of tshark's (decode stops at the payload or an error)
    const theirs = (fv('frame.protocols') ?? '').split(':').filter((p) => p !== 'ethertype' && p !== '_ws.short' && p !== '_ws.malformed');
    const mine = f.layers.filter((l) => l.wire.length > 0).map((l) => TSHARK_PROTO[l.layer]!);
    for (let k = 0; k < mine.length; k++) {
      if (mine[k] === 'data' && k < theirs.length && theirs[k] !== 'data' && k === mine.length - 1) continue; // an application protocol tshark knows
      if (theirs[k] !== mine[k]) {
        res.mismatches.push(`${where}: layer ${k + 1} is ${mine[k]} in decode, ${theirs[k]} in tshark (${theirs.join(':')})`);
        break;
      }
    }

    const seen = new Map<string, number>();
    for (const layer of f.layers) {
      if (layer.wire.length === 0) continue;
      const proto = TSHARK_PROTO[layer.layer]!;
      const nth = seen.get(proto) ?? 0;
      seen.set(proto, nth + 1);
      const inst = L[proto];
      const node = Array.isArray(inst) ? inst[nth] : nth === 0 ? inst : undefined;
      if (node === undefined) {
        if (proto !== 'data') res.mismatches.push(`${where}: tshark has no ${proto} layer #${nth + 1}`);
        continue;
      }
      const tf = flattenTshark(node);
      const ctx: TsharkCompareContext = { layer, frameTruncated: f.truncated, tso: f.layers.some((l) => l.fields.tso === true) };
      const used = new Set<string>();
      for (const w of layer.wire) {
        const diff = DELIBERATE_DIFFERENCES[w.name];
        if (diff && diff.when(ctx)) {
          res.skipped[w.name] = (res.skipped[w.name] ?? 0) + 1;
          used.add(w.name);
          continue;
        }
        const cands = tf.get(w.name) ?? [];
        const t = cands.find((c) => c.offset === w.offset) ?? cands[0];
        used.add(w.name);
        if (!t) {
          res.mismatches.push(`${where} ${proto}#${nth + 1}: ${w.name} = ${w.value} @${w.offset} in decode, absent in tshark`);
          continue;
        }
        if (!sameValue(w.value, t.value)) {
          res.mismatches.push(`${where} ${proto}#${nth + 1}: ${w.name} is ${w.value} in decode, ${t.value} in tshark`);
          continue;
        }
        if (w.offset >= 0 && t.offset !== undefined && (t.offset !== w.offset || t.length !== w.length)) {
          res.mismatches.push(`${where} ${proto}#${nth + 1}: ${w.name} spans ${w.offset}+${w.length} in decode, ${t.offset}+${t.length} in tshark`);
          continue;
        }
        res.matched++;
      }
      for (const name of tf.keys()) {
        if (!name.startsWith(proto + '.') || used.has(name) || !known.has(name)) continue;
        const diff = DELIBERATE_DIFFERENCES[name];
        if (diff && diff.when(ctx)) {
          res.skipped[name] = (res.skipped[name] ?? 0) + 1;
          continue;
        }
        res.mismatches.push(`${where} ${proto}#${nth + 1}: tshark shows ${name} = ${tf.get(name)![0]!.value}, decode does not`);
      }
    }
  }
  return res;
}
