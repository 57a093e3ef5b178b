// A hash map from u32 keys to non-negative int32 values over typed arrays.
//
// Why not `Map<number, …>`: V8 keeps integers above 2^30 (most IPv4
// addresses, e.g. 198.18.0.1) as heap numbers, so building such a key on the
// hot path and hashing it can allocate. Here keys live in a Uint32Array and a
// lookup is a few typed-array reads: no allocation, no boxing.
//
// Open addressing with linear probing (cache-friendly at low load) and
// backward-shift deletion (no tombstones, so probe chains never rot after
// many add/remove cycles). Load is kept at or below 1/2 by doubling.
// Fibonacci hashing (Knuth, TAOCP 6.4): multiply by 2^32/φ, keep the top bits.
// Keys here come from configuration (routes, neighbors, leases), not from the
// wire, so no secret seed is needed; conntrack, whose keys come from the wire,
// has its own seeded hash.

const EMPTY = -1;

export class U32Map {
  // Interleaved slots: tab[2i] = key (as int32), tab[2i + 1] = value (-1 = empty).
  // Key and value share a cache line, so a probe into a table bigger than the
  // cache costs one miss, not two (scripts/bench-lookup.mjs, "cold" rows).
  private tab: Int32Array;
  private mask: number;
  private shift: number;
  private count = 0;

  constructor(initialCapacity = 16) {
    let cap = 8;
    while (cap < initialCapacity * 2) cap *= 2;
    this.tab = new Int32Array(cap * 2).fill(EMPTY);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
  }

  get size(): number {
    return this.count;
  }

  private slot(key: number): number {
    return Math.imul(key, 0x9e3779b1) >>> this.shift;
  }

  /** The value stored for `key`, or -1. Allocation-free. */
  get(key: number): number {
    const k = key | 0;
    const tab = this.tab;
    const mask = this.mask;
    let i = this.slot(k);
    for (;;) {
      const v = tab[2 * i + 1]!;
      if (v === EMPTY) return EMPTY;
      if (tab[2 * i] === k) return v;
      i = (i + 1) & mask;
    }
  }

  has(key: number): boolean {
    return this.get(key) !== EMPTY;
  }

  /** Store `value` (must be a non-negative int32) under `key`, replacing any previous value. */
  set(key: number, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
      throw new RangeError(`U32Map values must be non-negative int32, got ${value}`);
    }
    const k = key | 0;
    if ((this.count + 1) * 4 > this.tab.length) this.grow();
    const tab = this.tab;
    const mask = this.mask;
    let i = this.slot(k);
    for (;;) {
      if (tab[2 * i + 1] === EMPTY) {
        tab[2 * i] = k;
        tab[2 * i + 1] = value;
        this.count++;
        return;
      }
      if (tab[2 * i] === k) {
        tab[2 * i + 1] = value;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  /** Remove `key`; returns whether it was present. */
  delete(key: number): boolean {
    const k = key | 0;
    const tab = this.tab;
    const mask = this.mask;
    let i = this.slot(k);
    for (;;) {
      if (tab[2 * i + 1] === EMPTY) return false;
      if (tab[2 * i] === k) break;
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: pull later members of the probe chain into the
    // hole when their home slot does not lie cyclically in (hole, j].
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (tab[2 * j + 1] === EMPTY) break;
      const home = this.slot(tab[2 * j]!);
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        tab[2 * hole] = tab[2 * j]!;
        tab[2 * hole + 1] = tab[2 * j + 1]!;
        hole = j;
      }
    }
    tab[2 * hole + 1] = EMPTY;
    this.count--;
    return true;
  }

  clear(): void {
    this.tab.fill(EMPTY);
    this.count = 0;
  }

  /** Visit every (key, value) with the key as u32; not for the hot path. */
  forEach(fn: (value: number, key: number) => void): void {
    const tab = this.tab;
    for (let i = 0; i < tab.length; i += 2) {
      if (tab[i + 1] !== EMPTY) fn(tab[i + 1]!, tab[i]! >>> 0);
    }
  }

  private grow(): void {
    const old = this.tab;
    const cap = old.length; // slots double: old.length / 2 * 2
    this.tab = new Int32Array(cap * 2).fill(EMPTY);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) {
      if (old[i + 1] !== EMPTY) this.set(old[i]!, old[i + 1]!);
    }
  }
}
