// The VTEP's forwarding database: inner destination MAC → underlay IP of the
// cell that owns it (silk's walkthrough shows `bridge fdb`: "ee:ee:0a:ff:2b:00
// dev silk-vtep dst 10.0.16.14 self permanent"). silk runs the VTEP with `nolearning` and installs every
// entry, so entries are static: no ageing, no learning.
//
// A MAC is keyed as one number, hi16 * 2^32 + lo32 (exact in a double, 48
// bits < 2^53), stored in a Float64Array hash table with linear probing, so a
// lookup from packet bytes reads six bytes and probes typed arrays: no string,
// no object. `getByMac(buf, off)` skips even building the key.
import { formatMac, u32ToIp } from '../util/ip.js';

export interface FdbEntry {
  mac: Uint8Array;
  /** Underlay IPv4 (u32) of the cell behind this MAC. */
  dst: number;
  dev: string;
}

const TWO32 = 4294967296;

/** The 48-bit MAC at buf[off..off+6) as a number: hi16 * 2^32 + lo32. */
import { macKeyAt as macKey } from '../wire/ethernet.js';

export { macKey };

function hash2(hi: number, lo: number): number {
  // Mix both halves; the low bytes carry the container IP, which is what varies.
  let h = Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1);
  h ^= h >>> 15;
  return h >>> 0;
}

const EMPTY = -1;

export class Fdb {
  private keys = new Float64Array(16);
  private vals = new Int32Array(16).fill(EMPTY);
  private mask = 15;
  private count = 0;
  private slots: (FdbEntry | undefined)[] = [];
  private free: number[] = [];

  /** Add or replace the entry for `mac` (`bridge fdb replace … dst D self permanent`). The MAC is copied. */
  set(mac: Uint8Array, dst: number, dev: string): void {
    if (!(mac instanceof Uint8Array) || mac.length !== 6) throw new TypeError('a MAC address is 6 bytes');
    if (!Number.isInteger(dst) || dst < 0 || dst > 0xffffffff) {
      throw new RangeError(`fdb dst must be an IPv4 address as u32, got ${dst}`);
    }
    if (typeof dev !== 'string' || dev.length === 0) throw new TypeError('fdb entry needs a device name');
    const e: FdbEntry = { mac: Uint8Array.from(mac), dst: dst >>> 0, dev };
    const key = macKey(mac, 0);
    const i = this.find(key);
    if (i >= 0) {
      this.slots[this.vals[i]!] = e;
      return;
    }
    if ((this.count + 1) * 2 > this.vals.length) this.grow();
    const s = this.free.length > 0 ? this.free.pop()! : this.slots.length;
    this.slots[s] = e;
    this.insert(key, s);
  }

  delete(mac: Uint8Array): boolean {
    if (!(mac instanceof Uint8Array) || mac.length !== 6) return false;
    const i = this.find(macKey(mac, 0));
    if (i < 0) return false;
    const s = this.vals[i]!;
    this.slots[s] = undefined;
    this.free.push(s);
    this.removeAt(i);
    return true;
  }

  /** Look up by `macKey(...)`. Allocation-free; returns the stored entry. */
  getByKey(key: number): FdbEntry | undefined {
    const i = this.find(key);
    return i >= 0 ? this.slots[this.vals[i]!] : undefined;
  }

  /** Look up the MAC at buf[off..off+6) without building a key. */
  getByMac(buf: Uint8Array, off: number): FdbEntry | undefined {
    return this.getByKey(macKey(buf, off));
  }

  /** All entries sorted by MAC (copies). */
  entries(): FdbEntry[] {
    const out: FdbEntry[] = [];
    for (const e of this.slots) if (e) out.push({ mac: Uint8Array.from(e.mac), dst: e.dst, dev: e.dev });
    return out.sort((a, b) => macKey(a.mac, 0) - macKey(b.mac, 0));
  }

  clear(): void {
    this.vals.fill(EMPTY);
    this.count = 0;
    this.slots = [];
    this.free = [];
  }

  get size(): number {
    return this.count;
  }

  private home(key: number): number {
    const lo = key >>> 0; // ToUint32 takes the key modulo 2^32: the low 32 bits
    const hi = (key - lo) / TWO32;
    return hash2(hi, lo) & this.mask;
  }

  private find(key: number): number {
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = this.home(key);
    for (;;) {
      if (vals[i] === EMPTY) return -1;
      if (keys[i] === key) return i;
      i = (i + 1) & mask;
    }
  }

  private insert(key: number, value: number): void {
    let i = this.home(key);
    while (this.vals[i] !== EMPTY) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.vals[i] = value;
    this.count++;
  }

  /** Backward-shift deletion (see u32map.ts): no tombstones. */
  private removeAt(i: number): void {
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (vals[j] === EMPTY) break;
      const h = this.home(keys[j]!);
      const movable = hole <= j ? h <= hole || h > j : h <= hole && h > j;
      if (movable) {
        keys[hole] = keys[j]!;
        vals[hole] = vals[j]!;
        hole = j;
      }
    }
    vals[hole] = EMPTY;
    this.count--;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    const cap = oldVals.length * 2;
    this.keys = new Float64Array(cap);
    this.vals = new Int32Array(cap).fill(EMPTY);
    this.mask = cap - 1;
    this.count = 0;
    for (let i = 0; i < oldVals.length; i++) if (oldVals[i] !== EMPTY) this.insert(oldKeys[i]!, oldVals[i]!);
  }
}

/** One line as `bridge fdb show` prints it: `ee:ee:0a:ff:2b:00 dev silk-vtep dst 10.0.16.14 self permanent`. */
export function formatFdb(e: FdbEntry): string {
  return `${formatMac(e.mac)} dev ${e.dev} dst ${u32ToIp(e.dst)} self permanent`;
}

export interface FdbJson {
  mac: string;
  dev: string;
  dst: string;
  flags: string[];
  state: string;
}

/** The shape `bridge -j fdb show` prints for one entry. */
export function fdbJson(e: FdbEntry): FdbJson {
  return { mac: formatMac(e.mac), dev: e.dev, dst: u32ToIp(e.dst), flags: ['self'], state: 'permanent' };
}
