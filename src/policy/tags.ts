// Policy tags: the 16-bit number that identifies a source app on the wire
// (the VXLAN Group Policy ID, draft-smith-vxlan-group-policy §2.1) and in
// silk's iptables marks. The policy server shows them as four upper-case hex
// digits ("0004", as cf-networking's policy server prints them). Tag 0 is never handed out: a packet with GBP ID 0
// (or no G bit) means "no tag", as the kernel does for mark 0.

export const MIN_TAG = 1;
export const MAX_TAG = 0xffff;

/** 4 → "0004" (cf-networking's `%04X`). */
export function formatTag(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > MAX_TAG) throw new RangeError(`tag ${n} is not a 16-bit number`);
  return n.toString(16).toUpperCase().padStart(4, '0');
}

/** "0004" → 4. Exactly four hex digits (either case); anything else throws. */
export function parseTag(text: string): number {
  if (!/^[0-9a-fA-F]{4}$/.test(text)) throw new RangeError(`"${text}" is not a tag: want four hex digits like 0004`);
  return parseInt(text, 16);
}

/** Lenient form for data from the wire or a store: 1..FFFF in 1-4 hex digits, else undefined. */
export function tryParseTag(tag: string | undefined): number | undefined {
  if (typeof tag !== 'string' || !/^[0-9a-fA-F]{1,4}$/.test(tag)) return undefined;
  const n = parseInt(tag, 16);
  return n >= 1 && n <= MAX_TAG ? n : undefined;
}

export class TagExhaustedError extends Error {
  constructor(max: number) {
    super(`all ${max} policy tags are in use: delete policies of apps that are gone to free some`);
    this.name = 'TagExhaustedError';
  }
}

/**
 * Hands out tags lowest free first, so a freed tag is the next one reused
 * (what users of cf-networking see: tags stay small and dense). Pure state: a
 * bitmap of 65,536 bits (8 KiB) plus a hint below which every tag is taken,
 * so allocate() is O(1) while tags are only added and at worst one scan of
 * 2,048 words after a free.
 */
export class TagAllocator {
  private readonly used: Uint32Array;
  private lowestMaybeFree: number;
  private count = 0;

  constructor(readonly max: number = MAX_TAG) {
    if (!Number.isInteger(max) || max < MIN_TAG || max > MAX_TAG) {
      throw new RangeError(`tag allocator size must be 1..${MAX_TAG}, got ${max}`);
    }
    this.used = new Uint32Array((max >>> 5) + 1);
    this.lowestMaybeFree = MIN_TAG;
  }

  /** How many tags are taken. */
  get size(): number {
    return this.count;
  }

  has(tag: number): boolean {
    if (!Number.isInteger(tag) || tag < MIN_TAG || tag > this.max) return false;
    return (this.used[tag >>> 5]! & (1 << (tag & 31))) !== 0;
  }

  /** The tag allocate() would return, without taking it; -1 if none is free. */
  peek(): number {
    for (let t = this.lowestMaybeFree; t <= this.max; ) {
      const word = this.used[t >>> 5]!;
      if (word === 0xffffffff) {
        t = (t | 31) + 1; // whole word taken: skip to the next one
        continue;
      }
      if ((word & (1 << (t & 31))) === 0) return t;
      t++;
    }
    return -1;
  }

  /** Take the lowest free tag. Throws TagExhaustedError when all are in use. */
  allocate(): number {
    const t = this.peek();
    if (t < 0) {
      this.lowestMaybeFree = this.max + 1;
      throw new TagExhaustedError(this.max);
    }
    this.mark(t);
    this.lowestMaybeFree = t + 1;
    return t;
  }

  /** Mark a known tag as taken (loading a store). Throws if it is out of range or taken. */
  reserve(tag: number): void {
    if (!Number.isInteger(tag) || tag < MIN_TAG || tag > this.max) {
      throw new RangeError(`tag ${tag} is outside ${MIN_TAG}..${this.max}`);
    }
    if (this.has(tag)) throw new Error(`tag ${formatTag(tag)} is already taken`);
    this.mark(tag);
  }

  /** Give a tag back; the lowest freed tag is reused first. Freeing a free tag is a no-op. */
  free(tag: number): void {
    if (!this.has(tag)) return;
    this.used[tag >>> 5]! &= ~(1 << (tag & 31));
    this.count--;
    if (tag < this.lowestMaybeFree) this.lowestMaybeFree = tag;
  }

  private mark(tag: number): void {
    this.used[tag >>> 5]! |= 1 << (tag & 31);
    this.count++;
  }
}
