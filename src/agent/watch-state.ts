// A cell's copy of the controller's snapshot, kept up to date by delta
// watches (GET /watch?since=V&delta=1): each change edits the maps, and the
// snapshot handed to the backend is rebuilt from them without parsing or
// copying the policies that did not change. A full snapshot replaces it all.
import type { Lease, PolicyRecord, Snapshot, TagRecord, WatchDelta } from '../net/controller-types.js';

function policyKey(p: PolicyRecord): string {
  const d = p.destination;
  return `${p.source.id}\0${d.id}\0${d.protocol}\0${d.ports.start}\0${d.ports.end}`;
}

export class WatchState {
  version = -1;
  changedAt: number | undefined;
  private policies = new Map<string, PolicyRecord>();
  private tags = new Map<string, string>();
  private leases = new Map<string, Lease>();
  // The lists last handed out, kept while their maps do not change: a lease
  // change hands the backend the same policies array (it then skips the rules).
  private policyList: PolicyRecord[] | null = null;
  private leaseList: Lease[] | null = null;
  private tagList: TagRecord[] | null = null;
  /**
   * Apps named by the policies and tags the last apply() changed; null after
   * reset() (everything may have changed). A backend whose containers belong
   * to none of them keeps its rules as they are.
   */
  lastTouched: Set<string> | null = null;

  /** Replace everything with a full snapshot. */
  reset(snap: Snapshot): void {
    this.version = snap.version;
    this.changedAt = snap.changed_at;
    this.policies = new Map();
    for (const p of snap.policies) this.policies.set(policyKey(p), p);
    this.tags = new Map(snap.tags.map((t) => [t.id, t.tag]));
    this.leases = new Map(snap.leases.map((l) => [l.underlay_ip, l]));
    this.policyList = snap.policies;
    this.leaseList = snap.leases;
    this.tagList = snap.tags;
    this.lastTouched = null;
  }

  /**
   * Apply a delta. False (and nothing changed) when it does not continue this
   * copy's version: the caller asks for a full snapshot then.
   */
  apply(d: WatchDelta): boolean {
    if (d.since !== this.version) return false;
    let v = this.version;
    for (const c of d.changes) {
      if (c.version !== v + 1) return false;
      v = c.version;
    }
    const touched = new Set<string>();
    for (const c of d.changes) {
      if (c.delete_policies?.length || c.add_policies?.length) this.policyList = null;
      for (const p of c.delete_policies ?? []) {
        this.policies.delete(policyKey(p));
        touched.add(p.source.id).add(p.destination.id);
      }
      if (c.delete_tags?.length || c.add_tags?.length) this.tagList = null;
      for (const id of c.delete_tags ?? []) {
        this.tags.delete(id);
        touched.add(id);
      }
      for (const t of c.add_tags ?? []) {
        this.tags.set(t.id, t.tag);
        touched.add(t.id);
      }
      for (const p of c.add_policies ?? []) {
        this.policies.set(policyKey(p), p);
        touched.add(p.source.id).add(p.destination.id);
      }
      if (c.delete_leases?.length || c.add_leases?.length) this.leaseList = null;
      for (const ip of c.delete_leases ?? []) this.leases.delete(ip);
      for (const l of c.add_leases ?? []) this.leases.set(l.underlay_ip, l);
    }
    this.version = d.version;
    this.changedAt = d.changed_at;
    this.lastTouched = touched;
    return true;
  }

  snapshot(): Snapshot {
    this.policyList ??= [...this.policies.values()];
    this.leaseList ??= [...this.leases.values()];
    this.tagList ??= [...this.tags].map(([id, tag]) => ({ id, tag }));
    const s: Snapshot = { version: this.version, leases: this.leaseList, policies: this.policyList, tags: this.tagList };
    if (this.changedAt !== undefined) s.changed_at = this.changedAt;
    return s;
  }
}
