// Diff before enforce, as silk's vxlan-policy-agent does it: the planner's
// output is plain data; the converger compares it with what was last applied
// and calls the enforcer only when something changed, so a snapshot that
// changes nothing touches nothing (no iptables swap, no counter reset).

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
