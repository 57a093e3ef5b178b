// Diff before enforce, as silk's vxlan-policy-agent does it: the planner's
// output is plain data; the converger compares it with what was last applied
// and calls the enforcer only when something changed, so a snapshot that
// changes nothing touches nothing (no iptables swap, no counter reset).
import type { PolicyRecord } from '../net/controller-types.js';

/** What to add and what to remove to go from `applied` to `desired`, by key. */
export function diffByKey<T>(
  applied: ReadonlyMap<string, T>,
  desired: readonly T[],
  key: (v: T) => string,
  same: (a: T, b: T) => boolean,
): { add: T[]; del: T[] } {
  const want = new Map(desired.map((v) => [key(v), v]));
  const add: T[] = [];
  const del: T[] = [];
  for (const [k, v] of want) {
    const cur = applied.get(k);
    if (cur === undefined || !same(cur, v)) add.push(v);
  }
  for (const [k, v] of applied) if (!want.has(k)) del.push(v);
  return { add, del };
}

/**
 * Runs `enforce(desired)` only when `key(desired)` differs from the key of the
 * last successful enforce (or when forced). A failed enforce leaves the old
 * key, so the next converge tries again.
 */
export class Converger<T> {
  private applied: string | null = null;

  constructor(
    private readonly key: (desired: T) => string,
    private readonly enforce: (desired: T) => Promise<void>,
  ) {}

  /** True when the enforcer ran. */
  async converge(desired: T, force = false): Promise<boolean> {
    const k = this.key(desired);
    if (!force && k === this.applied) return false;
    await this.enforce(desired);
    this.applied = k;
    return true;
  }
}

/** Do two policy lists say the same, in the same order (ids, tags, protocol, ports)? No allocation. */
export function samePolicies(a: readonly PolicyRecord[], b: readonly PolicyRecord[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    const xd = x?.destination;
    const yd = y?.destination;
    if (!x || !y || !xd || !yd) return false;
    if (x.source?.id !== y.source?.id || x.source?.tag !== y.source?.tag) return false;
    if (xd.id !== yd.id || xd.tag !== yd.tag || xd.protocol !== yd.protocol) return false;
    if (xd.ports?.start !== yd.ports?.start || xd.ports?.end !== yd.ports?.end) return false;
  }
  return true;
}
