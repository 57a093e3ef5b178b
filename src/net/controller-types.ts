// The controller's data shapes, exactly as they travel on the wire:
// cf-networking's policy server (external and internal APIs) and
// silk-controller's leases. Field names are snake_case because the JSON is.

/**
 * A policy as the policy server stores and serves it. On the external API the
 * tags are absent; on the internal API both tags are filled.
 * Same shape as src/policy/types.ts's PolicyRecord (kept here so the control
 * plane does not depend on the data plane's modules).
 */
export interface PolicyRecord {
  source: { id: string; tag?: string };
  destination: {
    id: string;
    tag?: string;
    protocol: 'tcp' | 'udp';
    ports: { start: number; end: number };
  };
}

/** One cell's subnet lease, silk-controller's `controller.Lease`. */
export interface Lease {
  underlay_ip: string;
  overlay_subnet: string;
  overlay_hardware_addr: string;
}

/** A tag as the external tags API shows it: `{"id":"appA","tag":"0001"}`. */
export interface TagRecord {
  id: string;
  tag: string;
}

/** A tag with its group type, as the policy server's api.Tag: `{"id":"appA","tag":"0001","type":"app"}`. */
export interface TypedTagRecord extends TagRecord {
  type: string;
}

/**
 * The full state a cell needs, keyed by a version that grows by one on every
 * acknowledged change. Cells resync from it whole, so a missed version is
 * harmless.
 */
export interface Snapshot {
  version: number;
  /** The controller's wall clock (ms) when this version was made. */
  changed_at?: number;
  leases: Lease[];
  policies: PolicyRecord[];
  tags: TagRecord[];
}

/** One version's change, as GET /watch?since=V&delta=1 lists them. */
export interface WatchChange {
  version: number;
  /** Internal shape (both tags filled). */
  add_policies?: PolicyRecord[];
  /** External shape (no tags). */
  delete_policies?: PolicyRecord[];
  add_tags?: TagRecord[];
  /** App ids whose tag is gone. */
  delete_tags?: string[];
  /** New or moved leases (a lease is replaced by underlay_ip). */
  add_leases?: Lease[];
  /** Underlay IPs. */
  delete_leases?: string[];
}

/** The answer of GET /watch?since=V&delta=1 when the controller still has the changes after V. */
export interface WatchDelta {
  version: number;
  changed_at?: number;
  since: number;
  /** In version order: since + 1 … version. */
  changes: WatchChange[];
}

/** Filters of `GET /networking/v1/external/policies` (each comma-separated on the wire). */
export interface PolicyFilter {
  /** Policies where the app is source or destination. */
  id?: string[];
  source_id?: string[];
  dest_id?: string[];
}
