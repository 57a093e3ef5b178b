// Capture files: the classic pcap format and pcapng, read (and written, for
// tests and tools) without libpcap. Not on the hot path.
//
// pcap (tcpdump's file, the "libpcap file format"):
//
//   offset  size  field (global header, 24 bytes)
//   0       4     magic: 0xa1b2c3d4 (microsecond timestamps) or 0xa1b23c4d
//                 (nanosecond); read in the writer's byte order, so the bytes
//                 d4 c3 b2 a1 mean a little-endian file
//   4       2     major version (2)
//   6       2     minor version (4)
//   8       4     time zone offset (0 in practice)
//   12      4     timestamp accuracy (0 in practice)
//   16      4     snapshot length
//   20      4     link type (low 16 bits; the high bits may carry the FCS length)
//
//   offset  size  field (record header, 16 bytes, then the captured bytes)
//   0       4     timestamp, seconds
//   4       4     timestamp, micro- or nanoseconds
//   8       4     captured length (bytes in the file)
//   12      4     original length (bytes on the wire)
//
// pcapng (draft-ietf-opsawg-pcapng): a sequence of blocks, each
//
//   0       4     block type
//   4       4     block total length (a multiple of 4, header and trailer included)
//   8       -     body
//   -4      4     block total length again
//
// Section Header Block (0x0a0d0d0a): byte-order magic 0x1a2b3c4d, version 1.0,
// section length, options; every later number in the section is in its byte
// order. Interface Description Block (1): link type (16 bits), reserved,
// snap length, options (if_tsresol, code 9). Enhanced Packet Block (6):
// interface, timestamp (high, low), captured length, original length, data
// padded to 4 bytes, options. Simple Packet Block (3): original length, data
// (captured length = min(original, interface 0's snap length, what the block
// holds)). The obsolete Packet Block (2) is read too. Every other block
// (name resolution, statistics, custom, ...) is skipped, as tshark does; only
// packet blocks are numbered as frames.
//
// Contract: readCapture() never throws on a damaged file. It returns the
// frames read so far and, if the file stops making sense, one error with the
// byte offset where it did. Each frame's `data` is a subarray of the input
// (no copy). Link types other than those in LINK_TYPES are reported per
// frame, so the caller can refuse them with a clear message.

export const PCAP_MAGIC_USEC = 0xa1b2c3d4;
export const PCAP_MAGIC_NSEC = 0xa1b23c4d;
export const PCAPNG_SHB = 0x0a0d0d0a;
export const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
export const PCAP_HEADER_LEN = 24;
export const PCAP_RECORD_LEN = 16;

const PCAPNG_IDB = 1;
const PCAPNG_PB = 2;
const PCAPNG_SPB = 3;
const PCAPNG_EPB = 6;
const PCAPNG_OPT_END = 0;
const PCAPNG_OPT_IF_TSRESOL = 9;

/** Link types (tcpdump.org/linktypes.html) the dissector starts from. */
export const LinkType = {
  /** LINKTYPE_ETHERNET: IEEE 802.3 Ethernet. */
  Ethernet: 1,
  /** LINKTYPE_RAW: a raw IPv4 or IPv6 packet, version from the first nibble. */
  Raw: 101,
  /** LINKTYPE_IPV4: a raw IPv4 packet. */
  Ipv4: 228,
} as const;

export const LINK_TYPE_NAMES: Record<number, string> = {
  [LinkType.Ethernet]: 'Ethernet',
  [LinkType.Raw]: 'raw IP',
  [LinkType.Ipv4]: 'raw IPv4',
  0: 'BSD loopback',
  113: 'Linux cooked (SLL)',
  276: 'Linux cooked v2 (SLL2)',
  127: '802.11 radiotap',
};

/** Well beyond any real frame: refuse a record header that claims more (a corrupt file, not a jumbo frame). */
const MAX_RECORD = 256 * 1024 * 1024;

export type CaptureFormat = 'pcap' | 'pcapng';

export interface CaptureFrame {
  /** 1-based, in file order, as tshark numbers frames (frame.number). */
  number: number;
  /** Byte offset in the file of the frame's record (pcap) or block (pcapng). */
  fileOffset: number;
  /** Byte offset in the file of the frame's first captured byte. */
  dataOffset: number;
  linkType: number;
  /** pcapng interface id (0 for pcap). */
  interfaceId: number;
  /** Seconds since the epoch, as a decimal string with 9 digits after the point (frame.time_epoch). */
  time: string;
  capturedLength: number;
  originalLength: number;
  /** The captured bytes (a subarray of the input). */
  data: Uint8Array;
}

export interface CaptureError {
  /** Byte offset in the file where reading stopped. */
  offset: number;
  message: string;
}

export interface Capture {
  format: CaptureFormat;
  /** pcap: 'little' or 'big' as the file was written; pcapng: of the first section. */
  byteOrder: 'little' | 'big';
  frames: CaptureFrame[];
  error: CaptureError | null;
}

/** Which capture format the bytes start with, by their magic; null if neither. */
export function captureFormat(b: Uint8Array): CaptureFormat | null {
  if (b.length < 4) return null;
  const be = u32(b, 0, false);
  const le = u32(b, 0, true);
  if (be === PCAP_MAGIC_USEC || be === PCAP_MAGIC_NSEC || le === PCAP_MAGIC_USEC || le === PCAP_MAGIC_NSEC) return 'pcap';
  if (be === PCAPNG_SHB) return 'pcapng'; // a palindrome: the same in both byte orders
  return null;
}

/** Read every frame of a pcap or pcapng file. Never throws: see the contract above. */
export function readCapture(b: Uint8Array): Capture {
  const format = captureFormat(b);
  if (format === 'pcap') return readPcap(b);
  if (format === 'pcapng') return readPcapng(b);
  const magic = b.length >= 4 ? Array.from(b.subarray(0, 4), (x) => x.toString(16).padStart(2, '0')).join(' ') : 'too short';
  return {
    format: 'pcap',
    byteOrder: 'little',
    frames: [],
    error: { offset: 0, message: `not a pcap or pcapng file (magic ${magic})` },
  };
}

function u16(b: Uint8Array, o: number, le: boolean): number {
  return le ? b[o]! | (b[o + 1]! << 8) : (b[o]! << 8) | b[o + 1]!;
}

function u32(b: Uint8Array, o: number, le: boolean): number {
  return le
    ? (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0
    : ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** seconds + fraction (in units of 10^-digits s) as "S.FFFFFFFFF". */
function epoch(sec: bigint, frac: bigint, unitsPerSec: bigint): string {
  const ns = (frac * 1_000_000_000n) / unitsPerSec;
  const s = sec + ns / 1_000_000_000n;
  return `${s}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}

function readPcap(b: Uint8Array): Capture {
  const le = u32(b, 0, true) === PCAP_MAGIC_USEC || u32(b, 0, true) === PCAP_MAGIC_NSEC;
  const magic = u32(b, 0, le);
  const cap: Capture = { format: 'pcap', byteOrder: le ? 'little' : 'big', frames: [], error: null };
  if (b.length < PCAP_HEADER_LEN) {
    cap.error = { offset: 0, message: `pcap global header is truncated: ${b.length} bytes, ${PCAP_HEADER_LEN} needed` };
    return cap;
  }
  const major = u16(b, 4, le);
  if (major !== 2) {
    cap.error = { offset: 4, message: `pcap version ${major}.${u16(b, 6, le)} is not 2.x` };
    return cap;
  }
  const linkType = u32(b, 20, le) & 0xffff;
  const perSec = magic === PCAP_MAGIC_NSEC ? 1_000_000_000n : 1_000_000n;
  let o = PCAP_HEADER_LEN;
  while (o < b.length) {
    if (b.length - o < PCAP_RECORD_LEN) {
      cap.error = { offset: o, message: `pcap record header at byte ${o} is cut short: ${b.length - o} bytes, ${PCAP_RECORD_LEN} needed` };
      break;
    }
    const caplen = u32(b, o + 8, le);
    const origlen = u32(b, o + 12, le);
    if (caplen > MAX_RECORD) {
      cap.error = { offset: o + 8, message: `pcap record at byte ${o} claims ${caplen} captured bytes (corrupt file?)` };
      break;
    }
    const data = o + PCAP_RECORD_LEN;
    if (data + caplen > b.length) {
      cap.error = {
        offset: o,
        message: `pcap record at byte ${o} is cut short in the middle of a packet: ${caplen} bytes captured, ${b.length - data} in the file`,
      };
      break;
    }
    cap.frames.push({
      number: cap.frames.length + 1,
      fileOffset: o,
      dataOffset: data,
      linkType,
      interfaceId: 0,
      time: epoch(BigInt(u32(b, o, le)), BigInt(u32(b, o + 4, le)), perSec),
      capturedLength: caplen,
      originalLength: Math.max(origlen, caplen),
      data: b.subarray(data, data + caplen),
    });
    o = data + caplen;
  }
  return cap;
}

interface Iface {
  linkType: number;
  snaplen: number;
  /** Timestamp units per second (if_tsresol; default 10^6). */
  perSec: bigint;
}

function readPcapng(b: Uint8Array): Capture {
  const cap: Capture = { format: 'pcapng', byteOrder: 'little', frames: [], error: null };
  let le = true;
  let ifaces: Iface[] = [];
  let first = true;
  let o = 0;
  const stop = (offset: number, message: string) => {
    cap.error = { offset, message };
  };
  while (o < b.length) {
    if (b.length - o < 12) {
      stop(o, `pcapng block at byte ${o} is cut short: ${b.length - o} bytes, at least 12 needed`);
      break;
    }
    const type0 = u32(b, o, false);
    if (type0 === PCAPNG_SHB) {
      const bom = u32(b, o + 8, true);
      if (bom === PCAPNG_BYTE_ORDER_MAGIC) le = true;
      else if (u32(b, o + 8, false) === PCAPNG_BYTE_ORDER_MAGIC) le = false;
      else {
        stop(o + 8, `pcapng section header at byte ${o} has no byte-order magic 1a2b3c4d`);
        break;
      }
      if (first) cap.byteOrder = le ? 'little' : 'big';
      ifaces = [];
    } else if (first) {
      stop(o, 'a pcapng file must start with a section header block');
      break;
    }
    first = false;
    const type = u32(b, o, le);
    const total = u32(b, o + 4, le);
    if (total < 12 || total % 4 !== 0) {
      stop(o + 4, `pcapng block at byte ${o} has length ${total}: not a multiple of 4 of at least 12`);
      break;
    }
    if (o + total > b.length) {
      stop(o, `pcapng block at byte ${o} is cut short in the middle: length ${total}, ${b.length - o} bytes in the file`);
      break;
    }
    if (u32(b, o + total - 4, le) !== total) {
      stop(o + total - 4, `pcapng block at byte ${o} ends with length ${u32(b, o + total - 4, le)}, not the ${total} it started with`);
      break;
    }
    const body = o + 8;
    const bodyEnd = o + total - 4;
    const need = (n: number, what: string): boolean => {
      if (bodyEnd - body >= n) return true;
      stop(o, `pcapng ${what} at byte ${o} is too short: ${bodyEnd - body} body bytes, ${n} needed`);
      return false;
    };
    if (type === PCAPNG_SHB) {
      if (!need(16, 'section header block')) break;
      const major = u16(b, body + 4, le);
      if (major !== 1) {
        stop(body + 4, `pcapng version ${major}.${u16(b, body + 6, le)} at byte ${o} is not 1.x`);
        break;
      }
    } else if (type === PCAPNG_IDB) {
      if (!need(8, 'interface description block')) break;
      const iface: Iface = { linkType: u16(b, body, le), snaplen: u32(b, body + 4, le), perSec: 1_000_000n };
      // options: code (2), length (2), value padded to 4
      let p = body + 8;
      while (p + 4 <= bodyEnd) {
        const code = u16(b, p, le);
        const len = u16(b, p + 2, le);
        if (code === PCAPNG_OPT_END) break;
        if (p + 4 + len > bodyEnd) break;
        if (code === PCAPNG_OPT_IF_TSRESOL && len >= 1) {
          const r = b[p + 4]!;
          iface.perSec = r & 0x80 ? 2n ** BigInt(r & 0x7f) : 10n ** BigInt(r & 0x7f);
        }
        p += 4 + ((len + 3) & ~3);
      }
      ifaces.push(iface);
    } else if (type === PCAPNG_EPB || type === PCAPNG_PB) {
      if (!need(20, type === PCAPNG_EPB ? 'enhanced packet block' : 'packet block')) break;
      const ifId = type === PCAPNG_EPB ? u32(b, body, le) : u16(b, body, le);
      const iface = ifaces[ifId];
      if (!iface) {
        stop(body, `pcapng packet block at byte ${o} names interface ${ifId}, but the section describes ${ifaces.length}`);
        break;
      }
      const caplen = u32(b, body + 12, le);
      const origlen = u32(b, body + 16, le);
      const data = body + 20;
      if (data + caplen > bodyEnd) {
        stop(body + 12, `pcapng packet block at byte ${o} claims ${caplen} captured bytes, but holds ${bodyEnd - data}`);
        break;
      }
      const ts = (BigInt(u32(b, body + 4, le)) << 32n) | BigInt(u32(b, body + 8, le));
      cap.frames.push({
        number: cap.frames.length + 1,
        fileOffset: o,
        dataOffset: data,
        linkType: iface.linkType,
        interfaceId: ifId,
        time: epoch(ts / iface.perSec, ts % iface.perSec, iface.perSec),
        capturedLength: caplen,
        originalLength: Math.max(origlen, caplen),
        data: b.subarray(data, data + caplen),
      });
    } else if (type === PCAPNG_SPB) {
      if (!need(4, 'simple packet block')) break;
      const iface = ifaces[0];
      if (!iface) {
        stop(o, `pcapng simple packet block at byte ${o} comes before any interface description block`);
        break;
      }
      const origlen = u32(b, body, le);
      const data = body + 4;
      let caplen = Math.min(origlen, bodyEnd - data);
      if (iface.snaplen > 0) caplen = Math.min(caplen, iface.snaplen);
      cap.frames.push({
        number: cap.frames.length + 1,
        fileOffset: o,
        dataOffset: data,
        linkType: iface.linkType,
        interfaceId: 0,
        time: '0.000000000', // a simple packet block carries no timestamp
        capturedLength: caplen,
        originalLength: Math.max(origlen, caplen),
        data: b.subarray(data, data + caplen),
      });
    }
    o += total;
  }
  return cap;
}

// ---------------------------------------------------------------- writing

export interface FrameToWrite {
  data: Uint8Array;
  /** Bytes on the wire (default: data.length); larger than data.length for a snaplen-truncated frame. */
  originalLength?: number;
  /** Seconds since the epoch (default 0). */
  sec?: number;
  /** Microseconds (pcap) or the sub-second part in the file's unit. */
  frac?: number;
}

function put32(out: Uint8Array, o: number, v: number, le: boolean): void {
  if (le) {
    out[o] = v & 0xff;
    out[o + 1] = (v >>> 8) & 0xff;
    out[o + 2] = (v >>> 16) & 0xff;
    out[o + 3] = (v >>> 24) & 0xff;
  } else {
    out[o] = (v >>> 24) & 0xff;
    out[o + 1] = (v >>> 16) & 0xff;
    out[o + 2] = (v >>> 8) & 0xff;
    out[o + 3] = v & 0xff;
  }
}

function put16(out: Uint8Array, o: number, v: number, le: boolean): void {
  if (le) {
    out[o] = v & 0xff;
    out[o + 1] = (v >>> 8) & 0xff;
  } else {
    out[o] = (v >>> 8) & 0xff;
    out[o + 1] = v & 0xff;
  }
}

/** A pcap file of `frames` (microsecond timestamps unless `nsec`), in either byte order. */
export function writePcap(
  frames: FrameToWrite[],
  o: { linkType?: number; snaplen?: number; byteOrder?: 'little' | 'big'; nsec?: boolean } = {},
): Uint8Array {
  const le = (o.byteOrder ?? 'little') === 'little';
  const size = PCAP_HEADER_LEN + frames.reduce((n, f) => n + PCAP_RECORD_LEN + f.data.length, 0);
  const out = new Uint8Array(size);
  put32(out, 0, o.nsec ? PCAP_MAGIC_NSEC : PCAP_MAGIC_USEC, le);
  put16(out, 4, 2, le);
  put16(out, 6, 4, le);
  put32(out, 16, o.snaplen ?? 262144, le);
  put32(out, 20, o.linkType ?? LinkType.Ethernet, le);
  let p = PCAP_HEADER_LEN;
  for (const f of frames) {
    put32(out, p, f.sec ?? 0, le);
    put32(out, p + 4, f.frac ?? 0, le);
    put32(out, p + 8, f.data.length, le);
    put32(out, p + 12, f.originalLength ?? f.data.length, le);
    out.set(f.data, p + PCAP_RECORD_LEN);
    p += PCAP_RECORD_LEN + f.data.length;
  }
  return out;
}

/**
 * A pcapng file: one section, one interface (microsecond timestamps), one
 * Enhanced Packet Block per frame — or Simple Packet Blocks with `simple`.
 */
export function writePcapng(
  frames: FrameToWrite[],
  o: { linkType?: number; snaplen?: number; byteOrder?: 'little' | 'big'; simple?: boolean } = {},
): Uint8Array {
  const le = (o.byteOrder ?? 'little') === 'little';
  const pad = (n: number) => (n + 3) & ~3;
  const blocks: Uint8Array[] = [];
  const block = (type: number, bodyLen: number, fill: (out: Uint8Array, body: number) => void) => {
    const total = 12 + pad(bodyLen);
    const out = new Uint8Array(total);
    put32(out, 0, type, le);
    put32(out, 4, total, le);
    fill(out, 8);
    put32(out, total - 4, total, le);
    blocks.push(out);
  };
  block(PCAPNG_SHB, 16, (out, p) => {
    put32(out, p, PCAPNG_BYTE_ORDER_MAGIC, le);
    put16(out, p + 4, 1, le);
    put16(out, p + 6, 0, le);
    put32(out, p + 8, 0xffffffff, le); // section length -1: not given
    put32(out, p + 12, 0xffffffff, le);
  });
  block(PCAPNG_IDB, 8, (out, p) => {
    put16(out, p, o.linkType ?? LinkType.Ethernet, le);
    put32(out, p + 4, o.snaplen ?? 262144, le);
  });
  for (const f of frames) {
    if (o.simple) {
      block(PCAPNG_SPB, 4 + f.data.length, (out, p) => {
        put32(out, p, f.originalLength ?? f.data.length, le);
        out.set(f.data, p + 4);
      });
      continue;
    }
    block(PCAPNG_EPB, 20 + f.data.length, (out, p) => {
      const ts = BigInt(f.sec ?? 0) * 1_000_000n + BigInt(f.frac ?? 0);
      put32(out, p, 0, le);
      put32(out, p + 4, Number(ts >> 32n), le);
      put32(out, p + 8, Number(ts & 0xffffffffn), le);
      put32(out, p + 12, f.data.length, le);
      put32(out, p + 16, f.originalLength ?? f.data.length, le);
      out.set(f.data, p + 20);
    });
  }
  const size = blocks.reduce((n, x) => n + x.length, 0);
  const out = new Uint8Array(size);
  let p = 0;
  for (const x of blocks) {
    out.set(x, p);
    p += x.length;
  }
  return out;
}
