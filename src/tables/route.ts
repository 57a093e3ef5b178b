// The cell's IPv4 route table: longest-prefix match, as the kernel's FIB does
// for silk (`ip route` on a silk cell: "10.255.43.0/24 via 10.255.43.0 dev
// silk-vtep src 10.255.108.0": overlay packets reach the VTEP through an
// ordinary route table).
//
// Structure: one hash table per prefix length (key = masked prefix), probed
// from the longest populated length to the shortest. A lookup costs one
// hash probe per *populated* length, independent of how many routes there
// are: a silk cell populates few lengths (/32 for local containers, /24 per
// remote lease, maybe a /16 and the default), so a lookup is 2–4 probes
// whether the table has 10 or 100,000 routes (scripts/bench-lookup.mjs). A
// multibit trie (DIR-24-8 / poptrie) would give at most 2–3 reads, but costs
// tens of MB once /25–/32 routes are spread over the address space; the
// per-length hash keeps memory proportional to the routes.
//
// Lookups return the stored entry object itself: nothing is allocated.
import { formatCidr, prefixMask, u32ToIp } from '../util/ip.js';
import { U32Map } from './u32map.js';

export interface RouteEntry {
  /** Network address, masked to `len` (u32, host order). */
  prefix: number;
  /** Prefix length 0–32. */
  len: number;
  /** Gateway; 0 = directly connected. */
  via: number;
  /** Output device name (e.g. `silk-vtep`, `s-010255001002`). */
  dev: string;
  /** Preferred source address; 0 = none. */
  src: number;
}

const MASKS: Uint32Array = (() => {
  const m = new Uint32Array(33);
  for (let l = 0; l <= 32; l++) m[l] = prefixMask(l);
  return m;
})();

function checkEntry(e: RouteEntry): void {
  if (!Number.isInteger(e.len) || e.len < 0 || e.len > 32) {
    throw new RangeError(`route prefix length must be 0-32, got ${e.len}`);
  }
  for (const [name, v] of [['prefix', e.prefix], ['via', e.via], ['src', e.src]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new RangeError(`route ${name} must be an IPv4 address as u32, got ${v}`);
    }
  }
  if (typeof e.dev !== 'string' || e.dev.length === 0) throw new TypeError('route needs a device name');
}

/** A copy of `e` with its prefix masked to its length (as `ip route add` does). */
function normalized(e: RouteEntry): RouteEntry {
  checkEntry(e);
  return { prefix: (e.prefix & MASKS[e.len]!) >>> 0, len: e.len, via: e.via >>> 0, dev: e.dev, src: e.src >>> 0 };
}

/** Order `ip route` prints the main table in: by prefix address, then longer prefix first (fib_trie leaf order). */
function routeOrder(a: RouteEntry, b: RouteEntry): number {
  return a.prefix - b.prefix || b.len - a.len;
}

export class RouteTable {
  /** Per prefix length: masked prefix → index into `slots`. Created on first use. */
  private readonly byLen: (U32Map | undefined)[] = new Array(33).fill(undefined);
  /** Populated lengths, longest first; `nLens` of them are valid. */
  private readonly lens = new Int32Array(33);
  private nLens = 0;
  private slots: (RouteEntry | undefined)[] = [];
  private free: number[] = [];
  private count = 0;

  /** Add a route, replacing one with the same prefix/len (`ip route replace`). The entry is copied. */
  add(e: RouteEntry): void {
    const n = normalized(e);
    let map = this.byLen[n.len];
    if (!map) {
      map = new U32Map();
      this.byLen[n.len] = map;
    }
    const existing = map.get(n.prefix);
    if (existing >= 0) {
      this.slots[existing] = n;
      return;
    }
    const slot = this.free.length > 0 ? this.free.pop()! : this.slots.length;
    this.slots[slot] = n;
    map.set(n.prefix, slot);
    this.count++;
    if (map.size === 1) this.rebuildLens();
  }

  /** Remove the route for exactly this prefix/len; returns whether one existed. */
  remove(prefix: number, len: number): boolean {
    if (!Number.isInteger(len) || len < 0 || len > 32) return false;
    const map = this.byLen[len];
    if (!map) return false;
    const key = (prefix & MASKS[len]!) >>> 0;
    const slot = map.get(key);
    if (slot < 0) return false;
    map.delete(key);
    this.slots[slot] = undefined;
    this.free.push(slot);
    this.count--;
    if (map.size === 0) this.rebuildLens();
    return true;
  }

  /** Longest-prefix match for `ip` (u32). Allocation-free; returns the stored entry. */
  lookup(ip: number): RouteEntry | undefined {
    const lens = this.lens;
    const byLen = this.byLen;
    for (let k = 0; k < this.nLens; k++) {
      const len = lens[k]!;
      const slot = byLen[len]!.get((ip & MASKS[len]!) >>> 0);
      if (slot >= 0) return this.slots[slot];
    }
    return undefined;
  }

  /** Exact-match get (for `ip route get`-style tooling and tests). */
  get(prefix: number, len: number): RouteEntry | undefined {
    if (!Number.isInteger(len) || len < 0 || len > 32) return undefined;
    const slot = this.byLen[len]?.get((prefix & MASKS[len]!) >>> 0) ?? -1;
    return slot >= 0 ? this.slots[slot] : undefined;
  }

  /** All routes, sorted as `ip route` prints them. Copies; not for the hot path. */
  entries(): RouteEntry[] {
    const out: RouteEntry[] = [];
    for (const e of this.slots) if (e) out.push({ ...e });
    return out.sort(routeOrder);
  }

  clear(): void {
    for (const m of this.byLen) m?.clear();
    this.slots = [];
    this.free = [];
    this.count = 0;
    this.nLens = 0;
  }

  get size(): number {
    return this.count;
  }

  private rebuildLens(): void {
    let n = 0;
    for (let l = 32; l >= 0; l--) {
      if ((this.byLen[l]?.size ?? 0) > 0) this.lens[n++] = l;
    }
    this.nLens = n;
  }
}

/**
 * The slow, obviously-correct reference: scan every route, keep the longest
 * match. Tests check RouteTable against it on random tables.
 */
export class LinearRouteTable {
  private routes: RouteEntry[] = [];

  add(e: RouteEntry): void {
    const n = normalized(e);
    const i = this.routes.findIndex((r) => r.prefix === n.prefix && r.len === n.len);
    if (i >= 0) this.routes[i] = n;
    else this.routes.push(n);
  }

  remove(prefix: number, len: number): boolean {
    const key = (prefix & prefixMask(len)) >>> 0;
    const i = this.routes.findIndex((r) => r.prefix === key && r.len === len);
    if (i < 0) return false;
    this.routes.splice(i, 1);
    return true;
  }

  lookup(ip: number): RouteEntry | undefined {
    let best: RouteEntry | undefined;
    for (const r of this.routes) {
      if (((ip & prefixMask(r.len)) >>> 0) === r.prefix && (!best || r.len > best.len)) best = r;
    }
    return best;
  }

  entries(): RouteEntry[] {
    return this.routes.map((r) => ({ ...r })).sort(routeOrder);
  }

  get size(): number {
    return this.routes.length;
  }
}

/** The destination as `ip route` prints it: `default`, a bare host address for /32, else a CIDR. */
function routeDst(e: RouteEntry): string {
  if (e.len === 0) return 'default';
  if (e.len === 32) return u32ToIp(e.prefix);
  return formatCidr(e.prefix, e.len);
}

/**
 * One line as `ip route` prints it:
 * `10.255.43.0/24 via 10.255.43.0 dev silk-vtep src 10.255.108.0`;
 * a directly connected route gets `scope link`, as iproute2 shows routes without a gateway.
 */
export function formatRoute(e: RouteEntry): string {
  let s = routeDst(e);
  if (e.via !== 0) s += ` via ${u32ToIp(e.via)}`;
  s += ` dev ${e.dev}`;
  if (e.via === 0) s += ' scope link';
  if (e.src !== 0) s += ` src ${u32ToIp(e.src)}`;
  return s;
}

export interface RouteJson {
  dst: string;
  gateway?: string;
  dev: string;
  scope?: 'link';
  prefsrc?: string;
  flags: string[];
}

/** The shape `ip -j route` prints for one route (same key order as iproute2). */
export function routeJson(e: RouteEntry): RouteJson {
  const j: RouteJson = { dst: routeDst(e) } as RouteJson;
  if (e.via !== 0) j.gateway = u32ToIp(e.via);
  j.dev = e.dev;
  if (e.via === 0) j.scope = 'link';
  if (e.src !== 0) j.prefsrc = u32ToIp(e.src);
  j.flags = [];
  return j;
}
