// Ethernet II frame header (IEEE 802.3 clause 3.2, with the EtherType of RFC 894).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                  Destination MAC address                      |
//   +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                               |                               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//   |                    Source MAC address                         |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |           EtherType           |   Payload ...
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//   offset  size  field
//   0       6     destination MAC
//   6       6     source MAC
//   12      2     EtherType (big-endian)
//   14      -     payload
//
// Contract: wrap() only records (buf, offset, length) — it allocates nothing and
// checks nothing, so one view is reused for every frame. check() must return
// WireError.None before any accessor is used; after that no accessor reads or
// writes outside [offset, offset+length). The FCS is not present (TAPs and
// packet sockets strip it). Unknown EtherTypes are plain numbers, not errors.
import { WireError, WireFormatError } from './errors.js';
import { readU16, writeU16 } from './bytes.js';
import { Wire, ETH_HEADER_LEN } from './offsets.js';

export { ETH_HEADER_LEN };
/** The EtherTypes silkworm names (offsets.ts holds the numbers). */
export const EtherType = { Ipv4: Wire.ETHERTYPE_IPV4, Arp: Wire.ETHERTYPE_ARP, Vlan: Wire.ETHERTYPE_VLAN, Ipv6: Wire.ETHERTYPE_IPV6 } as const;

const EMPTY = new Uint8Array(0);

export class EthernetView {
  buf: Uint8Array = EMPTY;
  /** Absolute offset of the frame's first byte in buf. */
  off = 0;
  /** Bytes in the frame (header + payload). */
  len = 0;

  wrap(buf: Uint8Array, offset: number, length: number): this {
    this.buf = buf;
    this.off = offset;
    this.len = length;
    return this;
  }

  check(): WireError {
    if (this.off < 0 || this.len < 0 || this.off + this.len > this.buf.length) return WireError.Truncated;
    if (this.len < Wire.ETH_HEADER_LEN) return WireError.Truncated;
    return WireError.None;
  }

  /** Copy the destination MAC into out[outOff..outOff+6). */
  dstMac(out: Uint8Array, outOff = 0): void {
    copy6(this.buf, this.off + Wire.ETH_DST, out, outOff);
  }
  /** Copy the source MAC into out[outOff..outOff+6). */
  srcMac(out: Uint8Array, outOff = 0): void {
    copy6(this.buf, this.off + Wire.ETH_SRC, out, outOff);
  }
  setDstMac(src: Uint8Array, srcOff = 0): void {
    copy6(src, srcOff, this.buf, this.off + Wire.ETH_DST);
  }
  setSrcMac(src: Uint8Array, srcOff = 0): void {
    copy6(src, srcOff, this.buf, this.off + Wire.ETH_SRC);
  }
  /** Destination MAC as a 48-bit integer (see macKeyAt). */
  get dstKey(): number {
    return macKeyAt(this.buf, this.off + Wire.ETH_DST);
  }
  /** Source MAC as a 48-bit integer (see macKeyAt). */
  get srcKey(): number {
    return macKeyAt(this.buf, this.off + Wire.ETH_SRC);
  }
  /** EtherType: the protocol of the payload. */
  get etherType(): number {
    return readU16(this.buf, this.off + Wire.ETH_TYPE);
  }
  set etherType(v: number) {
    writeU16(this.buf, this.off + Wire.ETH_TYPE, v);
  }
  /** Absolute offset of the payload in buf. */
  get payloadOffset(): number {
    return this.off + Wire.ETH_HEADER_LEN;
  }
  get payloadLen(): number {
    return this.len - Wire.ETH_HEADER_LEN;
  }
}

function copy6(src: Uint8Array, s: number, dst: Uint8Array, d: number): void {
  // Six indexed stores beat set(subarray()) here: subarray allocates a view.
  dst[d] = src[s]!;
  dst[d + 1] = src[s + 1]!;
  dst[d + 2] = src[s + 2]!;
  dst[d + 3] = src[s + 3]!;
  dst[d + 4] = src[s + 4]!;
  dst[d + 5] = src[s + 5]!;
}

/**
 * The 6 bytes at buf[off..off+6) as one integer below 2^48 (exact in a double),
 * for Map keys without building a string per packet.
 */
export function macKeyAt(buf: Uint8Array, off: number): number {
  return (
    ((buf[off]! << 8) | buf[off + 1]!) * 0x100000000 +
    (((buf[off + 2]! << 24) | (buf[off + 3]! << 16) | (buf[off + 4]! << 8) | buf[off + 5]!) >>> 0)
  );
}

/** The EtherType of the Ethernet frame at buf[off..] (the caller checked it holds ETH_HEADER_LEN bytes). */
export function etherTypeAt(buf: Uint8Array, off: number): number {
  return readU16(buf, off + Wire.ETH_TYPE);
}

/** Write a macKeyAt() integer back as 6 bytes. */
export function writeMacKey(buf: Uint8Array, off: number, key: number): void {
  const hi = Math.floor(key / 0x100000000);
  const lo = key >>> 0;
  buf[off] = (hi >>> 8) & 0xff;
  buf[off + 1] = hi & 0xff;
  buf[off + 2] = lo >>> 24;
  buf[off + 3] = (lo >>> 16) & 0xff;
  buf[off + 4] = (lo >>> 8) & 0xff;
  buf[off + 5] = lo & 0xff;
}

/** A macKeyAt() integer as "ee:ee:0a:ff:01:02" (not for the hot path: builds a string). */
export function formatMacKey(key: number): string {
  return (key + 0x1000000000000).toString(16).slice(1).replace(/(..)(?!$)/g, '$1:');
}

/** "ee:ee:0a:ff:01:02" → macKeyAt() integer; throws on anything else. */
export function macKeyFromString(text: string): number {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(text)) {
    throw new Error(`"${text}" is not a MAC address like ee:ee:0a:ff:01:02`);
  }
  return parseInt(text.replace(/:/g, ''), 16);
}

/** An Ethernet header's values. MACs are text ("ee:ee:0a:ff:63:03"): readable in tests and JSON. */
export interface EthernetRepr {
  dst: string;
  src: string;
  etherType: number;
}

export function parseEthernet(view: EthernetView): EthernetRepr {
  const err = view.check();
  if (err !== WireError.None) throw new WireFormatError(err, 'Ethernet');
  return { dst: formatMacKey(view.dstKey), src: formatMacKey(view.srcKey), etherType: view.etherType };
}

/** Write the 14-byte header at buf[off..]; returns ETH_HEADER_LEN. The payload is the caller's. */
export function emitEthernet(repr: EthernetRepr, buf: Uint8Array, off: number): number {
  writeMacKey(buf, off + Wire.ETH_DST, macKeyFromString(repr.dst));
  writeMacKey(buf, off + Wire.ETH_SRC, macKeyFromString(repr.src));
  writeU16(buf, off + Wire.ETH_TYPE, repr.etherType);
  return Wire.ETH_HEADER_LEN;
}

/** Bytes emitEthernet() writes (the header only; Ethernet has no length field). */
export function ethernetBufferLen(_repr: EthernetRepr): number {
  return Wire.ETH_HEADER_LEN;
}
