// TCP receive coalescing for TAP writes (what the kernel's GRO does in
// tcp_gro_receive(), and wireguard-go's tun/offload_linux.go does for its
// TUN): consecutive in-order segments of one TCP flow in a write batch become
// one super-frame, written once with a virtio_net_hdr (IFF_VNET_HDR) saying
// "gso_type TCPV4, gso_size = MSS, checksum partial". The container's stack
// then handles one skb per ~45 segments instead of one per segment.
//
// The planner only plans: it never copies a payload. Its output is a list of
// packets, each = one header piece in `hdrs` (the 10-byte virtio_net_hdr, and
// for a super-frame the first segment's Ethernet/IPv4/TCP headers, rewritten)
// followed by pieces of the caller's slab (whole frames, or each segment's
// payload). The native writeVnet() sends each packet with one writev(), so the
// kernel gathers the payloads straight from the slab.
//
// Merge rules (a segment joins the run started by head H only if all hold;
// otherwise the run ends and the segment starts the next one):
//   - Ethernet: same 14 bytes (addresses, type 0x0800).
//   - IPv4: IHL 5 (no options), not a fragment, protocol TCP, same TOS, TTL,
//     DF, addresses; ID = H's ID + k (the sender's counter, RFC 6864 §4.1) or,
//     with DF set, equal to H's (a fixed ID, which Linux GRO accepts too).
//   - TCP: same ports, G.ACK number, data offset and option bytes (timestamps
//     included: RFC 7323 §4.3 — merging different TSvals would hide the later
//     ones from the receiver); flags exactly G.ACK, or G.ACK|G.PSH; no SYN/FIN/RST/
//     URG/ECE/CWR (they carry per-segment meaning); payload > 0;
//     seq = H's seq + bytes so far (contiguous).
//   - All but the last segment carry exactly gso_size (= H's payload) bytes;
//     a shorter segment or one with G.PSH ends the run (the kernel's resegmenter
//     assumes equal sizes; G.PSH belongs to the last byte).
//   - The super-frame's IP total length stays <= 65535 and it has at most
//     Vnet.MAX_SEGS segments.
//   - Every merged segment's TCP checksum verified first (as kernel GRO does
//     in tcp4_gro_receive): the super-frame goes out checksum-partial, so the
//     receiver will never look at the per-segment checksums again.
//
// Only runs of adjacent frames are merged: one destination TAP's frames in a
// batch are mostly one bulk flow's segments, and keeping the order of every
// frame unchanged needs no flow table.
//
// Allocation: everything is preallocated in the constructor; plan() only
// reads the slab and writes numbers into typed arrays.
//
// With `bytes` (the addon's sumRanges, src/offload/bytes.ts) the TCP segments
// of a plan are summed in one native call before planning; without it each
// is summed in TypeScript as it is classified (fastSum).
import { foldChecksum, internetChecksum, onesComplementSum, pseudoHeaderSum } from '../wire/checksum.js';
import { readU16, readU32, writeU16 } from '../wire/bytes.js';
import type { ByteOps } from './bytes.js';
import { Wire } from '../wire/offsets.js';

/** 16- and 32-bit views of one slab, made once per slab (the cell hands over the same few slabs). */
interface SlabViews {
  u16: Uint16Array;
  u32: Uint32Array;
}
const VIEWS = new WeakMap<ArrayBufferLike, SlabViews>();
// The word views read host order; the swap-back below assumes little-endian.
const HOST_LE = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

function viewsOf(slab: Uint8Array): SlabViews | undefined {
  if (!HOST_LE || (slab.byteOffset & 3) !== 0) return undefined;
  let v = VIEWS.get(slab.buffer);
  if (v === undefined || v.u16.byteOffset !== slab.byteOffset || v.u16.length !== slab.length >>> 1) {
    v = {
      u16: new Uint16Array(slab.buffer, slab.byteOffset, slab.length >>> 1),
      u32: new Uint32Array(slab.buffer, slab.byteOffset, slab.length >>> 2),
    };
    VIEWS.set(slab.buffer, v);
  }
  return v;
}

/**
 * Unfolded one's complement sum of buf[off, off+len) as big-endian words (the value
 * onesComplementSum() returns, up to folding), reading 32-bit little-endian words where it can.
 * RFC 1071 §2(B): the sum is byte-order independent — summing byte-swapped words gives the
 * byte-swapped sum — and §2(C): 32-bit words can be added and folded later. Measured in the lab
 * (perf, iperf3 into a container): verifying every segment with the byte-wise loop was ~14 % of
 * the receiving cell's CPU; this reads a quarter as many elements.
 */
export function fastSum(buf: Uint8Array, off: number, len: number): number {
  return sumWith(viewsOf(buf), buf, off, len);
}

/** fastSum with the views already looked up (once per plan, not per segment). */
function sumWith(v: SlabViews | undefined, buf: Uint8Array, off: number, len: number): number {
  if (v === undefined || (off & 1) !== 0 || len < 8) return onesComplementSum(buf, off, len);
  let i = off;
  const end = off + len;
  let sw = 0; // sum of little-endian (byte-swapped) words
  if ((i & 2) !== 0) {
    sw += v.u16[i >>> 1]!;
    i += 2;
  }
  const u32 = v.u32;
  let w = i >>> 2;
  const wEnd = (end & ~3) >>> 2;
  // Two accumulators halve the dependency chain; each stays below 2^53 for any 64 KiB run.
  let a = 0;
  let b = 0;
  for (; w + 4 <= wEnd; w += 4) {
    a += u32[w]! + u32[w + 2]!;
    b += u32[w + 1]! + u32[w + 3]!;
  }
  for (; w < wEnd; w++) a += u32[w]!;
  sw += a + b;
  i = w << 2;
  if (i + 2 <= end) {
    sw += v.u16[i >>> 1]!;
    i += 2;
  }
  // Fold the swapped sum to 16 bits, then swap it back to big-endian order.
  while (sw > 0xffff) sw = (sw % 0x10000) + Math.floor(sw / 0x10000);
  let sum = ((sw & 0xff) << 8) | (sw >>> 8);
  if (i < end) sum += buf[i]! << 8; // odd final byte, zero-padded (RFC 1071 §4.1)
  return sum;
}

/**
 * struct virtio_net_hdr (include/uapi/linux/virtio_net.h) and the plan's shape, as a const enum: tsc
 * writes the numbers in place (an imported or module-level `const` is a load and a hole check in V8 on
 * the per-packet path). The named exports below are the same numbers for everything else.
 */
export const enum Vnet {
  /** sizeof(struct virtio_net_hdr); the TAP's default vnet header size. */
  VNET_HDR_LEN = 10,
  /** struct virtio_net_hdr fields (little-endian u16s on the TAP: TUN's legacy byte order is the host's). */
  VNET_FLAGS = 0,
  VNET_GSO_TYPE = 1,
  VNET_HDR_LEN_FIELD = 2,
  VNET_GSO_SIZE = 4,
  VNET_CSUM_START = 6,
  VNET_CSUM_OFFSET = 8,
  VIRTIO_NET_HDR_F_NEEDS_CSUM = 1,
  VIRTIO_NET_HDR_F_DATA_VALID = 2,
  VIRTIO_NET_HDR_GSO_NONE = 0,
  VIRTIO_NET_HDR_GSO_TCPV4 = 1,
  /**
   * Segments per super-frame at most. Bounds the plan's arrays; in practice a run is shorter: it never
   * spans two write calls (a cell writes at most BATCH_SIZE frames per call, src/io/types.ts), and the
   * 64 KiB IP length holds 45 segments of 1448 bytes.
   */
  MAX_SEGS = 64,
  /** Words per packet in `pkts`: hdrOff, hdrLen, iovFirst, iovCount (what native writeVnet reads). */
  PKT_WORDS = 4,
}
export const VNET_HDR_LEN = Vnet.VNET_HDR_LEN;
export const VNET_FLAGS = Vnet.VNET_FLAGS;
export const VNET_GSO_TYPE = Vnet.VNET_GSO_TYPE;
export const VNET_HDR_LEN_FIELD = Vnet.VNET_HDR_LEN_FIELD;
export const VNET_GSO_SIZE = Vnet.VNET_GSO_SIZE;
export const VNET_CSUM_START = Vnet.VNET_CSUM_START;
export const VNET_CSUM_OFFSET = Vnet.VNET_CSUM_OFFSET;
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = Vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM;
export const VIRTIO_NET_HDR_F_DATA_VALID = Vnet.VIRTIO_NET_HDR_F_DATA_VALID;
export const VIRTIO_NET_HDR_GSO_NONE = Vnet.VIRTIO_NET_HDR_GSO_NONE;
export const VIRTIO_NET_HDR_GSO_TCPV4 = Vnet.VIRTIO_NET_HDR_GSO_TCPV4;
export const MAX_SEGS = Vnet.MAX_SEGS;
export const PKT_WORDS = Vnet.PKT_WORDS;

/** This file's own numbers (a const enum for the same reason as Vnet). */
const enum G {
  ETH_LEN = Wire.ETH_HEADER_LEN,
  /** IHL 5 only. */
  IP_LEN = Wire.IPV4_HEADER_LEN,
  /** 34: csum_start of every super-frame. */
  TCP_OFF = G.ETH_LEN + G.IP_LEN,
  TCP_CSUM_OFFSET = Wire.TCP_CHECKSUM,
  /** TCP flag bits (byte Wire.TCP_FLAGS). */
  ACK = 0x10,
  PSH = 0x08,
  /** The DF and MF bits and fragment offset of the IPv4 flags word, as bits of its first byte / the whole word. */
  IP_DF_BYTE = Wire.IPV4_FLAG_DF >>> 8,
  IP_FRAG_MASK = Wire.IPV4_FLAG_MF | Wire.IPV4_FRAG_OFFSET_MASK,
  // Fixed header pieces: a zero header (no claim about the frame) and one with
  // DATA_VALID (the TCP checksum was verified here).
  HDR_ZERO = 0,
  HDR_VALID = 16,
  SLOT_BASE = 32,
  /** vnet header + Ethernet + IPv4 (20) + TCP with the largest options (60), rounded up. */
  HDR_SLOT = 112,
  /** Per-frame classification results (see classify()). */
  NOT_TCP = -2,
  BAD_CSUM = -1,
}

export interface GroCounters {
  /** Super-frames planned (each replaces >= 2 frames). */
  superFrames: number;
  /** Frames that went into super-frames. */
  mergedFrames: number;
  /** TCP frames whose checksum did not verify (written without DATA_VALID, never merged). */
  badChecksum: number;
}

export class GroPlanner {
  /** Header pieces: two fixed 10-byte headers, then one G.HDR_SLOT per packet. */
  readonly hdrs: Uint8Array;
  /** Vnet.PKT_WORDS per packet: [hdrOff, hdrLen, iovFirst, iovCount]. */
  readonly pkts: Uint32Array;
  /** Two words per slab piece: [offset, length]. */
  readonly iovs: Uint32Array;
  /** Input frames carried by packet p (1, or the segments of a super-frame). */
  readonly pktFrames: Uint32Array;
  readonly maxPkts: number;
  readonly maxFrames: number;
  npkts = 0;
  niovs = 0;
  readonly counters: GroCounters = { superFrames: 0, mergedFrames: 0, badChecksum: 0 };
  /** Verify TCP checksums (merge and DATA_VALID only for verified segments). */
  verify: boolean;
  /** Merge runs into super-frames (tap-gro); when false every frame is written alone behind its header. */
  merge: boolean;

  // classify() results for the frame at cIdx, so the frame that ends a run is
  // not classified (and checksummed) again when it starts the next one.
  private cIdx = -1;
  private cRes = 0;
  // Word views of the slab being planned (a WeakMap lookup per plan() call, not per segment).
  private views: SlabViews | undefined;
  private readonly bytes: ByteOps | undefined;
  // With bytes: the TCP sums of frames preStart..preStart+preN-1, computed once per plan().
  private readonly preDesc: Uint32Array;
  private readonly preSums: Uint32Array;
  private preStart = 0;
  private preN = 0;

  constructor(maxPkts = 64, maxFrames = 256, verify = true, merge = true, bytes?: ByteOps) {
    this.bytes = bytes;
    this.preDesc = new Uint32Array(bytes === undefined ? 0 : 2 * maxFrames);
    this.preSums = new Uint32Array(bytes === undefined ? 0 : maxFrames);
    this.maxPkts = maxPkts;
    this.maxFrames = maxFrames;
    this.verify = verify;
    this.merge = merge;
    this.hdrs = new Uint8Array(G.SLOT_BASE + maxPkts * G.HDR_SLOT);
    this.hdrs[G.HDR_VALID] = Vnet.VIRTIO_NET_HDR_F_DATA_VALID;
    this.pkts = new Uint32Array(maxPkts * Vnet.PKT_WORDS);
    this.iovs = new Uint32Array(maxFrames * 2);
    this.pktFrames = new Uint32Array(maxPkts);
  }

  /**
   * Plan frames start..count-1 (bytes slab[offs[k]], lens[k]). Fills npkts/pkts/iovs/pktFrames
   * and returns how many frames were planned (fewer than count - start when the plan's arrays are
   * full: call again from start + the return value).
   */
  plan(slab: Uint8Array, offs: Uint32Array, lens: Uint32Array, start: number, count: number): number {
    const pkts = this.pkts;
    const iovs = this.iovs;
    this.npkts = 0;
    this.niovs = 0;
    this.cIdx = -1;
    this.views = this.verify ? viewsOf(slab) : undefined;
    this.preN = 0;
    if (this.verify && this.bytes !== undefined) this.presum(this.bytes, slab, offs, lens, start, count);
    let i = start;
    while (i < count && this.npkts < this.maxPkts && this.niovs < this.maxFrames) {
      const ho = offs[i]!;
      const hl = lens[i]!;
      const hres = this.classifyAt(slab, i, ho, hl);
      const p = this.npkts;
      const pw = p * Vnet.PKT_WORDS;
      // A run can start only at a verified data segment without G.PSH.
      let segs = 1;
      let total = hres;
      if (this.merge && hres > 0 && slab[ho + G.TCP_OFF + Wire.TCP_FLAGS]! === G.ACK) {
        const thl = (slab[ho + G.TCP_OFF + Wire.TCP_DATA_OFF]! >>> 4) * 4;
        const mss = hres;
        const maxPayload = 65535 - G.IP_LEN - thl;
        const maxSegs = Math.min(Vnet.MAX_SEGS, this.maxFrames - this.niovs);
        const headSeq = readU32(slab, ho + G.TCP_OFF + Wire.TCP_SEQ);
        const headId = readU16(slab, ho + G.ETH_LEN + Wire.IPV4_IDENT);
        const df = (slab[ho + G.ETH_LEN + Wire.IPV4_FLAGS_FRAG]! & G.IP_DF_BYTE) !== 0;
        let last = hres;
        let psh = false;
        let j = i + 1;
        while (j < count && segs < maxSegs && last === mss && !psh) {
          const co = offs[j]!;
          const cres = this.classifyAt(slab, j, co, lens[j]!);
          if (cres <= 0 || cres > mss || total + cres > maxPayload) break;
          const flags = slab[co + G.TCP_OFF + Wire.TCP_FLAGS]!;
          // Data offset + reserved bits equal, so the option bytes compared below line up.
          if ((flags & ~G.PSH) !== G.ACK || slab[co + G.TCP_OFF + Wire.TCP_DATA_OFF]! !== slab[ho + G.TCP_OFF + Wire.TCP_DATA_OFF]!) break;
          if (readU32(slab, co + G.TCP_OFF + Wire.TCP_SEQ) !== ((headSeq + total) >>> 0)) break;
          if (!sameHeaders(this.views, slab, ho, co, thl)) break;
          const id = readU16(slab, co + G.ETH_LEN + Wire.IPV4_IDENT);
          if (id !== ((headId + segs) & 0xffff) && !(df && id === headId)) break;
          total += cres;
          last = cres;
          psh = (flags & G.PSH) !== 0;
          segs++;
          j++;
        }
        if (segs > 1) {
          this.emitSuper(slab, offs, i, segs, thl, mss, total, psh);
          i = j;
          continue;
        }
      }
      // A frame on its own, unchanged: DATA_VALID when its TCP checksum was verified here.
      pkts[pw] = hres >= 0 && this.verify ? G.HDR_VALID : G.HDR_ZERO;
      pkts[pw + 1] = Vnet.VNET_HDR_LEN;
      pkts[pw + 2] = this.niovs;
      pkts[pw + 3] = 1;
      iovs[this.niovs * 2] = ho;
      iovs[this.niovs * 2 + 1] = hl;
      this.niovs++;
      this.pktFrames[p] = 1;
      this.npkts++;
      i++;
    }
    return i - start;
  }

  /**
   * Super-frame from frames i..i+segs-1: header piece = vnet header + frame i's headers with the
   * IP total length, IP checksum, G.PSH and the TCP pseudo-header checksum rewritten; then payloads.
   */
  private emitSuper(
    slab: Uint8Array,
    offs: Uint32Array,
    i: number,
    segs: number,
    thl: number,
    mss: number,
    total: number,
    psh: boolean,
  ): void {
    const hdrs = this.hdrs;
    const p = this.npkts;
    const s = G.SLOT_BASE + p * G.HDR_SLOT;
    const headLen = G.TCP_OFF + thl;
    const ho = offs[i]!;
    // struct virtio_net_hdr, little-endian (TUN's legacy byte order is the host's; we run on
    // x86-64/arm64 — TapDevice refuses vnetHdr on big-endian hosts).
    hdrs[s + Vnet.VNET_FLAGS] = Vnet.VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdrs[s + Vnet.VNET_GSO_TYPE] = Vnet.VIRTIO_NET_HDR_GSO_TCPV4;
    writeLe16(hdrs, s + Vnet.VNET_HDR_LEN_FIELD, headLen);
    writeLe16(hdrs, s + Vnet.VNET_GSO_SIZE, mss);
    writeLe16(hdrs, s + Vnet.VNET_CSUM_START, G.TCP_OFF);
    writeLe16(hdrs, s + Vnet.VNET_CSUM_OFFSET, G.TCP_CSUM_OFFSET);
    const h = s + Vnet.VNET_HDR_LEN;
    for (let k = 0; k < headLen; k++) hdrs[h + k] = slab[ho + k]!;
    const ip = h + G.ETH_LEN;
    writeU16(hdrs, ip + Wire.IPV4_TOTAL_LEN, G.IP_LEN + thl + total);
    writeU16(hdrs, ip + Wire.IPV4_CHECKSUM, 0);
    writeU16(hdrs, ip + Wire.IPV4_CHECKSUM, internetChecksum(hdrs, ip, G.IP_LEN));
    const tcp = ip + G.IP_LEN;
    if (psh) hdrs[tcp + Wire.TCP_FLAGS] = hdrs[tcp + Wire.TCP_FLAGS]! | G.PSH;
    // CHECKSUM_PARTIAL convention (Linux tcp_v4_send_check, tcp4_gro_complete): the field holds
    // the folded, uncomplemented pseudo-header sum over the whole super-segment's TCP length;
    // whoever finishes the checksum adds the bytes from csum_start on.
    const src = readU32(hdrs, ip + Wire.IPV4_SRC);
    const dst = readU32(hdrs, ip + Wire.IPV4_DST);
    writeU16(hdrs, tcp + Wire.TCP_CHECKSUM, ~foldChecksum(pseudoHeaderSum(src, dst, Wire.IPPROTO_TCP, thl + total)) & 0xffff);

    const pw = p * Vnet.PKT_WORDS;
    this.pkts[pw] = s;
    this.pkts[pw + 1] = Vnet.VNET_HDR_LEN + headLen;
    this.pkts[pw + 2] = this.niovs;
    this.pkts[pw + 3] = segs;
    const iovs = this.iovs;
    for (let k = 0; k < segs; k++) {
      const o = offs[i + k]!;
      const ipLen = readU16(slab, o + G.ETH_LEN + Wire.IPV4_TOTAL_LEN);
      const n = this.niovs++;
      iovs[n * 2] = o + headLen;
      iovs[n * 2 + 1] = ipLen - G.IP_LEN - thl;
    }
    this.pktFrames[p] = segs;
    this.npkts++;
    this.counters.superFrames++;
    this.counters.mergedFrames += segs;
  }

  /**
   * Sum the TCP segment (header and payload) of every frame start.. that can be one, up to the plan's
   * frame limit, with one native call; classify() then uses preSums instead of reading the bytes.
   */
  private presum(bytes: ByteOps, slab: Uint8Array, offs: Uint32Array, lens: Uint32Array, start: number, count: number): void {
    const n = Math.min(count - start, this.maxFrames);
    const desc = this.preDesc;
    for (let k = 0; k < n; k++) {
      const off = offs[start + k]!;
      const segLen = tcpSegLen(slab, off, lens[start + k]!);
      desc[2 * k] = segLen < 0 ? 0 : off + G.TCP_OFF;
      desc[2 * k + 1] = segLen < 0 ? 0 : segLen;
    }
    bytes.sumRanges(slab, desc, n, this.preSums);
    this.preStart = start;
    this.preN = n;
  }

  private classifyAt(slab: Uint8Array, idx: number, off: number, len: number): number {
    if (idx === this.cIdx) return this.cRes;
    const k = idx - this.preStart;
    const r = this.classify(slab, off, len, k >= 0 && k < this.preN ? this.preSums[k]! : -1);
    this.cIdx = idx;
    this.cRes = r;
    return r;
  }

  /**
   * G.NOT_TCP for anything that is not a whole, option-less IPv4 TCP segment inside slab;
   * G.BAD_CSUM when its TCP checksum fails (only with verify on); else its TCP payload length.
   * `pre`: the segment's sum from presum(), or -1 to read the bytes here.
   */
  private classify(slab: Uint8Array, off: number, len: number, pre: number): number {
    const segLen = tcpSegLen(slab, off, len);
    if (segLen < 0) return G.NOT_TCP;
    const ip = off + G.ETH_LEN;
    const tcp = ip + G.IP_LEN;
    if (this.verify) {
      const pseudo = pseudoHeaderSum(readU32(slab, ip + Wire.IPV4_SRC), readU32(slab, ip + Wire.IPV4_DST), Wire.IPPROTO_TCP, segLen);
      const sum = (pre >= 0 ? pre : sumWith(this.views, slab, tcp, segLen)) + pseudo;
      if (foldChecksum(sum) !== 0) {
        this.counters.badChecksum++;
        return G.BAD_CSUM;
      }
    }
    return segLen - (slab[tcp + Wire.TCP_DATA_OFF]! >>> 4) * 4;
  }
}

/** The TCP length (header + payload) of a whole, option-less, unfragmented IPv4 TCP segment inside slab; else -1. */
function tcpSegLen(slab: Uint8Array, off: number, len: number): number {
  if (len < G.TCP_OFF + Wire.TCP_HEADER_LEN || off + len > slab.length) return -1;
  if (readU16(slab, off + Wire.ETH_TYPE) !== Wire.ETHERTYPE_IPV4) return -1;
  const ip = off + G.ETH_LEN;
  if (slab[ip + Wire.IPV4_VER_IHL]! !== Wire.IPV4_VER_IHL_NO_OPTIONS || slab[ip + Wire.IPV4_PROTOCOL]! !== Wire.IPPROTO_TCP) return -1;
  // MF set or a fragment offset: a fragment, never merged (RFC 791 §3.1).
  if ((readU16(slab, ip + Wire.IPV4_FLAGS_FRAG) & G.IP_FRAG_MASK) !== 0) return -1;
  const ipLen = readU16(slab, ip + Wire.IPV4_TOTAL_LEN);
  // Ethernet may pad a short frame, never truncate one.
  if (ipLen > len - G.ETH_LEN || ipLen < G.IP_LEN + Wire.TCP_HEADER_LEN) return -1;
  const thl = (slab[ip + G.IP_LEN + Wire.TCP_DATA_OFF]! >>> 4) * 4;
  if (thl < Wire.TCP_HEADER_LEN || thl > ipLen - G.IP_LEN) return -1;
  return ipLen - G.IP_LEN;
}

/** Same Ethernet header, IPv4 TOS/DF/TTL/addresses, TCP ports, G.ACK number and option bytes. */
function sameHeaders(v: SlabViews | undefined, slab: Uint8Array, a: number, b: number, thl: number): boolean {
  const ia = a + G.ETH_LEN;
  const ib = b + G.ETH_LEN;
  if (slab[ia + Wire.IPV4_DSCP_ECN] !== slab[ib + Wire.IPV4_DSCP_ECN] || slab[ia + Wire.IPV4_TTL] !== slab[ib + Wire.IPV4_TTL]) return false;
  if ((slab[ia + Wire.IPV4_FLAGS_FRAG]! & G.IP_DF_BYTE) !== (slab[ib + Wire.IPV4_FLAGS_FRAG]! & G.IP_DF_BYTE)) return false;
  if (v !== undefined && ((a | b) & 1) === 0) {
    // Two bytes at a time (equal words are equal byte pairs): Ethernet (words 0-6), IPv4 addresses
    // (13-16), TCP ports (17-18), acknowledgment (21-22), options (27..).
    const w = v.u16;
    const wa = a >>> 1;
    const wb = b >>> 1;
    let k = 0;
    while (k < 7 && w[wa + k] === w[wb + k]) k++;
    if (k < 7) return false;
    for (k = 13; k < 19; k++) if (w[wa + k] !== w[wb + k]) return false;
    if (w[wa + 21] !== w[wb + 21] || w[wa + 22] !== w[wb + 22]) return false;
    const end = (G.TCP_OFF + thl) >>> 1;
    for (k = (G.TCP_OFF + Wire.TCP_HEADER_LEN) >>> 1; k < end; k++) if (w[wa + k] !== w[wb + k]) return false;
    return true;
  }
  for (let k = 0; k < G.ETH_LEN; k++) if (slab[a + k] !== slab[b + k]) return false;
  for (let k = Wire.IPV4_SRC; k < Wire.IPV4_DST + 4; k++) if (slab[ia + k] !== slab[ib + k]) return false; // addresses
  const ta = ia + G.IP_LEN;
  const tb = ib + G.IP_LEN;
  for (let k = 0; k < Wire.TCP_SEQ; k++) if (slab[ta + k] !== slab[tb + k]) return false; // ports
  for (let k = Wire.TCP_ACK; k < Wire.TCP_ACK + 4; k++) if (slab[ta + k] !== slab[tb + k]) return false; // G.ACK number
  for (let k = Wire.TCP_HEADER_LEN; k < thl; k++) if (slab[ta + k] !== slab[tb + k]) return false; // options
  return true;
}

function writeLe16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = v >>> 8;
}

/**
 * Test/debug helper (allocates): the bytes packet p of the last plan puts on the wire, vnet header
 * first — exactly what writeVnet() hands to writev().
 */
export function packetBytes(g: GroPlanner, slab: Uint8Array, p: number): Uint8Array {
  const w = p * Vnet.PKT_WORDS;
  const parts: Uint8Array[] = [g.hdrs.subarray(g.pkts[w]!, g.pkts[w]! + g.pkts[w + 1]!)];
  for (let k = 0; k < g.pkts[w + 3]!; k++) {
    const n = g.pkts[w + 2]! + k;
    parts.push(slab.subarray(g.iovs[n * 2]!, g.iovs[n * 2]! + g.iovs[n * 2 + 1]!));
  }
  const out = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const part of parts) {
    out.set(part, o);
    o += part.length;
  }
  return out;
}
