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
  private keys: Uint32Array;
  private vals: Int32Array;
  private mask: number;
  private shift: number;
  private count = 0;

  constructor(initialCapacity = 16) {
    let cap = 8;
    while (cap < initialCapacity * 2) cap *= 2;
    this.keys = new Uint32Array(cap);
    this.vals = new Int32Array(cap).fill(EMPTY);
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
    key = key >>> 0;
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = this.slot(key);
    for (;;) {
      const v = vals[i]!;
      if (v === EMPTY) return EMPTY;
      if (keys[i] === key) return v;
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
    key = key >>> 0;
    if ((this.count + 1) * 2 > this.vals.length) this.grow();
    const mask = this.mask;
    let i = this.slot(key);
    for (;;) {
      const v = this.vals[i]!;
      if (v === EMPTY) {
        this.keys[i] = key;
        this.vals[i] = value;
        this.count++;
        return;
      }
      if (this.keys[i] === key) {
        this.vals[i] = value;
        return;
      }
      i = (i + 1) & mask;
    }
  }

  /** Remove `key`; returns whether it was present. */
  delete(key: number): boolean {
    key = key >>> 0;
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    let i = this.slot(key);
    for (;;) {
      if (vals[i] === EMPTY) return false;
      if (keys[i] === key) break;
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: pull later members of the probe chain into the
    // hole when their home slot does not lie cyclically in (hole, j].
    let hole = i;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (vals[j] === EMPTY) break;
      const home = this.slot(keys[j]!);
      const movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (movable) {
        keys[hole] = keys[j]!;
        vals[hole] = vals[j]!;
        hole = j;
      }
    }
    vals[hole] = EMPTY;
    this.count--;
    return true;
  }

  clear(): void {
    this.vals.fill(EMPTY);
    this.count = 0;
  }

  /** Visit every (key, value); not for the hot path. */
  forEach(fn: (value: number, key: number) => void): void {
    for (let i = 0; i < this.vals.length; i++) {
      if (this.vals[i] !== EMPTY) fn(this.vals[i]!, this.keys[i]!);
    }
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    const cap = oldVals.length * 2;
    this.keys = new Uint32Array(cap);
    this.vals = new Int32Array(cap).fill(EMPTY);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.count = 0;
    for (let i = 0; i < oldVals.length; i++) {
      if (oldVals[i] !== EMPTY) this.set(oldKeys[i]!, oldVals[i]!);
    }
  }
}
