// The controller's state machine: policies with their tags (cf-networking's
// policy server) and subnet leases (silk-controller), behind one version
// number that grows by one with every visible change. No HTTP here: api.ts
// maps requests onto these methods, and unit tests drive them directly over a
// MemoryStore.
//
// Every mutation works the same way: plan the change from the in-memory state,
// commit it to the store in one transaction, and only then apply it in memory
// and wake the watchers. If the store throws, memory is untouched (tags taken
// for the plan are given back), so a failed request changes nothing.
import { formatCidr, ipToU32, parseCidr, formatMac, macFromIp } from '../util/ip.js';
import { logger, type Logger } from '../util/log.js';
import { TagAllocator, formatTag } from '../policy/tags.js';
import type { ControllerStore, StoreCommit, StoredLease } from './store.js';
import { policyKeyString, policyRecord, type PolicyKey } from './validate.js';
import type { Lease, PolicyFilter, PolicyRecord, Snapshot, TagRecord, TypedTagRecord } from '../net/controller-types.js';

/**
 * A request that conflicts with the state (HTTP 409): lease mismatch, none
 * free, tags exhausted. `message` says what and why; `upstream` is the text
 * silk-controller answers for the same case, which the HTTP API sends.
 */
export class ConflictError extends Error {
  readonly upstream: string;
  constructor(message: string, upstream?: string) {
    super(message);
    this.name = 'ConflictError';
    this.upstream = upstream ?? message;
  }
}

export interface ControllerOptions {
  store: ControllerStore;
  /** Overlay network leases are cut from (silk's `network`). Default 10.255.0.0/16. */
  overlayNetwork?: string;
  /** Prefix length of one cell's lease (silk's `subnet_prefix_length`). Default 24. */
  subnetPrefixLength?: number;
  /** A lease not renewed for this long may be reclaimed. Default 168 h, silk-controller's subnet_lease_expiration_hours. */
  leaseExpirySeconds?: number;
  /** Clock in epoch ms; a parameter so tests can move time. */
  now?: () => number;
  log?: Logger;
}

export const DEFAULT_OVERLAY_NETWORK = '10.255.0.0/16';
export const DEFAULT_SUBNET_PREFIX_LENGTH = 24;
export const DEFAULT_LEASE_EXPIRY_SECONDS = 168 * 3600;

interface HeldLease {
  /** Canonical text, e.g. "10.255.1.0/24" or "10.255.0.7/32". */
  subnet: string;
  base: number;
  len: number;
  expiresAt: number;
}

export class Controller {
  private version_: number;
  private readonly store: ControllerStore;
  private readonly log: Logger;
  private readonly now: () => number;

  // Policies in creation order, keyed by policyKeyString.
  private readonly policies = new Map<string, PolicyKey>();
  // How many policies name each app (as source or destination): its tag lives while > 0.
  private readonly appRefs = new Map<string, number>();
  private readonly tagOf = new Map<string, number>();
  // Group types other than "app" (PUT /networking/v1/internal/tags can name any).
  private readonly typeOf = new Map<string, string>();
  // Tags made by PUT /networking/v1/internal/tags that no policy has named yet.
  private readonly pinned = new Set<string>();
  private readonly allocator = new TagAllocator();
  /** Epoch ms of the last policy change (policies_last_updated); the start time until one happens. */
  private policiesUpdatedAt: number;

  // Leases: block i is the i-th /P inside the overlay network; 0 is skipped as
  // silk does (its addresses are the single-IP pool).
  readonly networkAddr: number;
  readonly networkLen: number;
  readonly prefixLength: number;
  readonly leaseExpiryMs: number;
  private readonly subnetCount: number;
  private readonly blockSize: number;
  private readonly leaseByIp = new Map<string, HeldLease>();
  private readonly holderBySubnet = new Map<string, string>();

  // Watchers wait for the version to move; woken all at once by bump().
  private readonly waiters = new Set<() => void>();
  private snapshotCache: { version: number; json: Buffer } | undefined;
  private internalCache: { version: number; json: Buffer } | undefined;
  private externalCache: { version: number; json: Buffer } | undefined;
  // Each policy's internal-shape JSON, made once: an app's tag cannot change
  // while it has a policy, so the text is fixed for the policy's lifetime.
  // Joining 60,000 of these takes ~15 ms; re-serialising objects took ~190 ms
  // (measured with scripts/bench-scale.mjs), and every change needs a snapshot.
  private readonly fragments = new Map<string, string>();

  constructor(opts: ControllerOptions) {
    this.store = opts.store;
    this.log = opts.log ?? logger('controller');
    this.now = opts.now ?? Date.now;
    const net = parseCidr(opts.overlayNetwork ?? DEFAULT_OVERLAY_NETWORK);
    const plen = opts.subnetPrefixLength ?? DEFAULT_SUBNET_PREFIX_LENGTH;
    if (!Number.isInteger(plen) || plen <= net.len || plen > 30) {
      throw new Error(
        `subnet prefix length ${plen} must be longer than the overlay network's /${net.len} and at most 30`,
      );
    }
    if (plen - net.len > 16) {
      throw new Error(`the overlay network /${net.len} cut into /${plen} leases makes more than 65536 subnets; use a longer network prefix`);
    }
    this.networkAddr = net.addr;
    this.networkLen = net.len;
    this.prefixLength = plen;
    this.subnetCount = 2 ** (plen - net.len);
    this.blockSize = 2 ** (32 - plen);
    const expiry = opts.leaseExpirySeconds ?? DEFAULT_LEASE_EXPIRY_SECONDS;
    if (!(expiry > 0)) throw new Error(`lease expiry must be a positive number of seconds, got ${expiry}`);
    this.leaseExpiryMs = Math.round(expiry * 1000);

    const state = this.store.load();
    this.version_ = state.version;
    for (const t of state.tags) {
      this.allocator.reserve(t.tag);
      this.tagOf.set(t.id, t.tag);
      if (t.type !== undefined && t.type !== 'app') this.typeOf.set(t.id, t.type);
      if (t.pinned) this.pinned.add(t.id);
    }
    this.policiesUpdatedAt = this.now();
    for (const p of state.policies) {
      this.policies.set(policyKeyString(p), p);
      this.ref(p.source, 1);
      this.ref(p.dest, 1);
    }
    // A store written by a crashed older build could hold a policy app without a tag: give it one now.
    const missing = [...this.appRefs.keys()].filter((id) => !this.tagOf.has(id));
    const orphans = [...this.tagOf.keys()].filter((id) => !this.appRefs.has(id) && !this.pinned.has(id));
    if (missing.length || orphans.length) {
      const addTags = missing.map((id) => ({ id, tag: this.allocator.allocate() }));
      this.store.commit({ version: this.version_ + 1, addTags, deleteTags: orphans });
      for (const t of addTags) this.tagOf.set(t.id, t.tag);
      for (const id of orphans) {
        this.allocator.free(this.tagOf.get(id)!);
        this.tagOf.delete(id);
        this.typeOf.delete(id);
      }
      this.version_++;
      this.log.warn({ missing: missing.length, orphans: orphans.length }, 'tags-repaired');
    }
    // Leases from an older overlay network stay (silk keeps them too): their
    // cells renew them until they acquire again.
    const dropped: string[] = [];
    for (const l of state.leases) {
      let h: HeldLease;
      try {
        h = this.held(l.subnet, l.expiresAt);
      } catch {
        dropped.push(l.underlayIp);
        continue;
      }
      if (this.holderBySubnet.has(h.subnet)) {
        dropped.push(l.underlayIp);
        continue;
      }
      this.hold(l.underlayIp, h);
    }
    if (dropped.length) {
      this.store.commit({ version: this.version_ + 1, deleteLeases: dropped });
      this.version_++;
      this.log.warn({ leases: dropped }, 'leases-dropped-unreadable');
    }
  }

  get version(): number {
    return this.version_;
  }

  get policyCount(): number {
    return this.policies.size;
  }

  // -------------------------------------------------------------------------
  // Policies and tags

  /** Create policies; duplicates (of stored ones or within the list) are ignored. Returns how many were new. */
  addPolicies(keys: PolicyKey[]): number {
    const fresh = new Map<string, PolicyKey>();
    for (const k of keys) {
      const s = policyKeyString(k);
      if (!this.policies.has(s) && !fresh.has(s)) fresh.set(s, k);
    }
    if (fresh.size === 0) return 0;

    // Apps that appear for the first time get a tag, in order of appearance
    // (source before destination), lowest free first.
    const newApps: string[] = [];
    const seen = new Set<string>();
    for (const k of fresh.values()) {
      for (const id of [k.source, k.dest]) {
        if (!this.appRefs.has(id) && !seen.has(id)) {
          seen.add(id);
          newApps.push(id);
        }
      }
    }
    const addTags: { id: string; tag: number }[] = [];
    // A tag made by PUT .../internal/tags becomes an ordinary one once a policy names it.
    const unpin: string[] = [];
    for (const k of fresh.values()) {
      for (const id of [k.source, k.dest]) if (this.pinned.has(id) && !unpin.includes(id)) unpin.push(id);
    }
    try {
      for (const id of newApps) if (!this.tagOf.has(id)) addTags.push({ id, tag: this.allocator.allocate() });
      const c: StoreCommit = { version: this.version_ + 1, addPolicies: [...fresh.values()], addTags };
      if (unpin.length) c.unpinTags = unpin;
      this.store.commit(c);
    } catch (e) {
      for (const t of addTags) this.allocator.free(t.tag);
      if (e instanceof Error && e.name === 'TagExhaustedError') throw new ConflictError(e.message);
      throw e;
    }
    for (const [s, k] of fresh) {
      this.policies.set(s, k);
      this.ref(k.source, 1);
      this.ref(k.dest, 1);
    }
    for (const t of addTags) this.tagOf.set(t.id, t.tag);
    for (const id of unpin) this.pinned.delete(id);
    this.policiesUpdatedAt = this.now();
    this.bump();
    this.log.info({ created: fresh.size, tagsAllocated: addTags.length, version: this.version_ }, 'policy-created');
    return fresh.size;
  }

  /** Delete policies; ones that do not exist are ignored. Returns how many were deleted. */
  deletePolicies(keys: PolicyKey[]): number {
    const gone = new Map<string, PolicyKey>();
    for (const k of keys) {
      const s = policyKeyString(k);
      if (this.policies.has(s)) gone.set(s, k);
    }
    if (gone.size === 0) return 0;
    const delta = new Map<string, number>();
    for (const k of gone.values()) {
      delta.set(k.source, (delta.get(k.source) ?? 0) + 1);
      delta.set(k.dest, (delta.get(k.dest) ?? 0) + 1);
    }
    const freed: string[] = [];
    for (const [id, d] of delta) if (this.appRefs.get(id) === d) freed.push(id);
    this.store.commit({ version: this.version_ + 1, deletePolicies: [...gone.values()], deleteTags: freed });
    for (const [s, k] of gone) {
      this.policies.delete(s);
      this.fragments.delete(s);
      this.ref(k.source, -1);
      this.ref(k.dest, -1);
    }
    for (const id of freed) {
      this.allocator.free(this.tagOf.get(id)!);
      this.tagOf.delete(id);
      this.typeOf.delete(id);
    }
    this.policiesUpdatedAt = this.now();
    this.bump();
    this.log.info({ deleted: gone.size, tagsFreed: freed.length, version: this.version_ }, 'policy-deleted');
    return gone.size;
  }

  /**
   * External list with the policy server's filters (cf-networking-release:
   * src/code.cloudfoundry.org/policy-server/handlers/policies_index.go): `id`
   * (source or destination) wins over the others; `source_id` and `dest_id`
   * together must both match; either alone filters its side.
   */
  listPolicies(filter: PolicyFilter = {}): PolicyRecord[] {
    const id = filter.id?.length ? new Set(filter.id) : undefined;
    const src = !id && filter.source_id?.length ? new Set(filter.source_id) : undefined;
    const dst = !id && filter.dest_id?.length ? new Set(filter.dest_id) : undefined;
    const out: PolicyRecord[] = [];
    for (const k of this.policies.values()) {
      if (id && !id.has(k.source) && !id.has(k.dest)) continue;
      if (src && !src.has(k.source)) continue;
      if (dst && !dst.has(k.dest)) continue;
      out.push(policyRecord(k));
    }
    return out;
  }

  /** Internal list (the policy server's internal API shape): both tags filled; `ids` keeps policies naming any of them. */
  internalPolicies(ids?: string[]): PolicyRecord[] {
    const set = ids ? new Set(ids) : undefined;
    const out: PolicyRecord[] = [];
    for (const k of this.policies.values()) {
      if (set && !set.has(k.source) && !set.has(k.dest)) continue;
      out.push(policyRecord(k, formatTag(this.tagOf.get(k.source)!), formatTag(this.tagOf.get(k.dest)!)));
    }
    return out;
  }

  /** The unfiltered internal list as JSON bytes, built once per version (cells and the CLI share it). */
  internalPoliciesJson(): Buffer {
    if (this.internalCache?.version !== this.version_) {
      this.internalCache = {
        version: this.version_,
        json: Buffer.from(`{"total_policies":${this.policies.size},"policies":[${this.joinFragments()}]}`),
      };
    }
    return this.internalCache.json;
  }

  /** The unfiltered external list as JSON bytes, built once per version. */
  externalPoliciesJson(): Buffer {
    if (this.externalCache?.version !== this.version_) {
      const policies = this.listPolicies();
      this.externalCache = {
        version: this.version_,
        json: Buffer.from(JSON.stringify({ total_policies: policies.length, policies })),
      };
    }
    return this.externalCache.json;
  }

  private joinFragments(): string {
    const parts: string[] = new Array(this.policies.size);
    let i = 0;
    for (const [s, k] of this.policies) {
      let f = this.fragments.get(s);
      if (f === undefined) {
        f = JSON.stringify(policyRecord(k, formatTag(this.tagOf.get(k.source)!), formatTag(this.tagOf.get(k.dest)!)));
        this.fragments.set(s, f);
      }
      parts[i++] = f;
    }
    return parts.join(',');
  }

  /** Every tag, lowest first. */
  tags(): TagRecord[] {
    return [...this.tagOf]
      .sort((a, b) => a[1] - b[1])
      .map(([id, tag]) => ({ id, tag: formatTag(tag) }));
  }

  /** The external and internal tag shape, with the group type ("app" for every tag a policy made). */
  typedTags(): TypedTagRecord[] {
    return [...this.tagOf]
      .sort((a, b) => a[1] - b[1])
      .map(([id, tag]) => ({ id, tag: formatTag(tag), type: this.typeOf.get(id) ?? 'app' }));
  }

  /**
   * PUT /networking/v1/internal/tags: the tag of `id`, made if it has none
   * (the policy server's tag_store.go CreateTag). A made tag stays without
   * policies until a policy names it and that policy is deleted.
   */
  createTag(id: string, type: string): TypedTagRecord {
    const have = this.tagOf.get(id);
    if (have !== undefined) return { id, tag: formatTag(have), type: this.typeOf.get(id) ?? 'app' };
    let tag: number;
    try {
      tag = this.allocator.allocate();
    } catch (e) {
      if (e instanceof Error && e.name === 'TagExhaustedError') throw new ConflictError(e.message, 'database create failed');
      throw e;
    }
    try {
      this.store.commit({ version: this.version_ + 1, addTags: [{ id, tag, type, pinned: true }] });
    } catch (e) {
      this.allocator.free(tag);
      throw e;
    }
    this.tagOf.set(id, tag);
    if (type !== 'app') this.typeOf.set(id, type);
    this.pinned.add(id);
    this.bump();
    this.log.info({ id, type, tag: formatTag(tag), version: this.version_ }, 'tag-created');
    return { id, tag: formatTag(tag), type };
  }

  /**
   * GET /networking/v1/internal/policies_last_updated: the last policy change
   * in Unix nanoseconds, as the policy server's store.LastUpdated gives it.
   * Kept in memory: after a restart it is the start time, so a policy agent
   * polls the full list once more, which is harmless.
   */
  policiesLastUpdatedNanos(): string {
    return (BigInt(this.policiesUpdatedAt) * 1_000_000n).toString();
  }

  tagFor(id: string): string | undefined {
    const t = this.tagOf.get(id);
    return t === undefined ? undefined : formatTag(t);
  }

  private ref(id: string, d: number): void {
    const n = (this.appRefs.get(id) ?? 0) + d;
    if (n <= 0) this.appRefs.delete(id);
    else this.appRefs.set(id, n);
  }

  // -------------------------------------------------------------------------
  // Leases
  //
  // As silk-controller's leaser (silk-release: src/code.cloudfoundry.org/silk/
  // controller/leaser/lease_controller.go): the pool is the network's /P
  // blocks except the first, and for single-IP cells the /32s inside that
  // first block. A lease from an older overlay network is kept, listed and
  // renewable (silk's integration tests: "renews the same lease in the old
  // network", "returns all the leases"); only its holder acquiring again moves
  // it into the current network.

  /** A cell asks for a subnet (or, with `singleIp`, one /32); the same underlay IP gets its lease back. */
  acquireLease(underlayIp: string, singleIp = false): Lease {
    const now = this.now();
    const held = this.leaseByIp.get(underlayIp);
    let moved: HeldLease | undefined;
    if (held) {
      if (this.isMember(held.subnet)) {
        // Asking again refreshes the lease; nothing visible changes, so no new version.
        held.expiresAt = now + this.leaseExpiryMs;
        this.store.commit({ version: this.version_, putLeases: [this.stored(underlayIp, held)] });
        this.log.info({ underlayIp, subnet: held.subnet }, 'lease-reacquired');
        return this.lease(underlayIp, held);
      }
      moved = held; // from an older overlay network: silk deletes it and leases anew
    }
    // Lowest free first; only when none is free, take over the longest-expired
    // one of the same kind (its cell stopped renewing, but might still come back).
    let subnet = singleIp ? this.firstFreeSingle() : this.firstFreeBlock();
    let evict: string | undefined;
    if (subnet === undefined) {
      let oldest: { ip: string; h: HeldLease } | undefined;
      for (const [ip, h] of this.leaseByIp) {
        if (h.expiresAt > now || ip === underlayIp || (h.len === 32) !== singleIp || !this.isMember(h.subnet)) continue;
        if (!oldest || h.expiresAt < oldest.h.expiresAt || (h.expiresAt === oldest.h.expiresAt && h.base < oldest.h.base)) {
          oldest = { ip, h };
        }
      }
      if (oldest) {
        subnet = oldest.h.subnet;
        evict = oldest.ip;
      }
    }
    if (subnet === undefined) {
      const net = formatCidr(this.networkAddr, this.networkLen);
      throw new ConflictError(
        singleIp
          ? `no single overlay IP is free: all ${this.blockSize - 1} /32 addresses in ${formatCidr(this.networkAddr, this.prefixLength)} are held`
          : `no overlay subnet is free: all ${this.subnetCount - 1} /${this.prefixLength} leases in ${net} are held`,
        'no lease available',
      );
    }
    const lease = this.held(subnet, now + this.leaseExpiryMs);
    const deletes: string[] = [];
    if (evict !== undefined) deletes.push(evict);
    const c: StoreCommit = { version: this.version_ + 1, putLeases: [this.stored(underlayIp, lease)] };
    if (deletes.length) c.deleteLeases = deletes;
    this.store.commit(c);
    if (moved) {
      this.unhold(underlayIp);
      this.log.info({ underlayIp, subnet: moved.subnet }, 'lease-deleted-other-network');
    }
    if (evict !== undefined) {
      this.unhold(evict);
      this.log.info({ underlayIp: evict, subnet }, 'lease-expired');
    }
    this.hold(underlayIp, lease);
    this.bump();
    this.log.info({ underlayIp, subnet, version: this.version_ }, 'lease-acquired');
    return this.lease(underlayIp, lease);
  }

  /**
   * Extend a lease. The lease must be the one the controller holds for that
   * underlay IP (in any overlay network, current or older); if it holds none
   * (say, the store was replaced) and the subnet is free and in the pool, the
   * lease is re-created, as silk-controller does, so cells survive a
   * controller that lost its state. Otherwise 409 ("lease mismatch").
   */
  renewLease(l: { underlay_ip: string; overlay_subnet: string; overlay_hardware_addr?: string }): Lease {
    const upstream = 'renew-subnet-lease: lease mismatch';
    const held = this.leaseByIp.get(l.underlay_ip);
    const same = held !== undefined && held.subnet === l.overlay_subnet;
    if (!same && !this.isMember(l.overlay_subnet)) {
      throw new ConflictError(
        `lease mismatch: ${l.overlay_subnet} is not a /${this.prefixLength} lease inside ${formatCidr(this.networkAddr, this.networkLen)}`,
        upstream,
      );
    }
    const want = this.hwAddr(ipToU32(l.overlay_subnet.slice(0, l.overlay_subnet.indexOf('/'))));
    if (l.overlay_hardware_addr !== undefined && l.overlay_hardware_addr.toLowerCase() !== want) {
      throw new ConflictError(
        `lease mismatch: overlay_hardware_addr ${l.overlay_hardware_addr} does not belong to ${l.overlay_subnet} (want ${want})`,
        upstream,
      );
    }
    const now = this.now();
    if (held) {
      if (!same) {
        throw new ConflictError(`lease mismatch: the controller holds ${held.subnet} for ${l.underlay_ip}, not ${l.overlay_subnet}`, upstream);
      }
      held.expiresAt = now + this.leaseExpiryMs;
      this.store.commit({ version: this.version_, putLeases: [this.stored(l.underlay_ip, held)] });
      this.log.debug({ underlayIp: l.underlay_ip, subnet: l.overlay_subnet }, 'lease-renewed');
      return this.lease(l.underlay_ip, held);
    }
    const holder = this.holderBySubnet.get(l.overlay_subnet);
    if (holder !== undefined && this.leaseByIp.get(holder)!.expiresAt > now) {
      throw new ConflictError(`lease mismatch: ${l.overlay_subnet} is leased to another cell (${holder})`, upstream);
    }
    const lease = this.held(l.overlay_subnet, now + this.leaseExpiryMs);
    const c: StoreCommit = { version: this.version_ + 1, putLeases: [this.stored(l.underlay_ip, lease)] };
    if (holder !== undefined) c.deleteLeases = [holder];
    this.store.commit(c);
    if (holder !== undefined) this.unhold(holder);
    this.hold(l.underlay_ip, lease);
    this.bump();
    this.log.info({ underlayIp: l.underlay_ip, subnet: l.overlay_subnet, version: this.version_ }, 'lease-recreated');
    return this.lease(l.underlay_ip, lease);
  }

  /** Give a lease back. Releasing a lease the controller does not hold is not an error. */
  releaseLease(l: { underlay_ip: string; overlay_subnet?: string }): boolean {
    const held = this.leaseByIp.get(l.underlay_ip);
    if (!held) return false;
    if (l.overlay_subnet !== undefined && l.overlay_subnet !== held.subnet) {
      throw new ConflictError(
        `lease mismatch: the controller holds ${held.subnet} for ${l.underlay_ip}, not ${l.overlay_subnet}`,
        'lease mismatch',
      );
    }
    this.store.commit({ version: this.version_ + 1, deleteLeases: [l.underlay_ip] });
    this.unhold(l.underlay_ip);
    this.bump();
    this.log.info({ underlayIp: l.underlay_ip, subnet: held.subnet, version: this.version_ }, 'lease-released');
    return true;
  }

  /** Leases that have not expired (any overlay network, current or older), by address. */
  leases(): Lease[] {
    const now = this.now();
    const out: { h: HeldLease; lease: Lease }[] = [];
    for (const [ip, h] of this.leaseByIp) {
      if (h.expiresAt > now) out.push({ h, lease: this.lease(ip, h) });
    }
    return out.sort((a, b) => a.h.base - b.h.base || a.h.len - b.h.len).map((x) => x.lease);
  }

  /** Drop expired leases (one commit); returns how many. Driven by the server's coarse timer. */
  sweepExpiredLeases(): number {
    const now = this.now();
    const expired: string[] = [];
    for (const [ip, h] of this.leaseByIp) if (h.expiresAt <= now) expired.push(ip);
    if (expired.length === 0) return 0;
    this.store.commit({ version: this.version_ + 1, deleteLeases: expired });
    for (const ip of expired) {
      const h = this.leaseByIp.get(ip)!;
      this.unhold(ip);
      this.log.info({ underlayIp: ip, subnet: h.subnet }, 'lease-expired');
    }
    this.bump();
    return expired.length;
  }

  /** Whether `text` is exactly one of the current pool's leases: a /P block other than the first, or a /32 inside the first. */
  isMember(text: string): boolean {
    let p: { addr: number; len: number };
    try {
      p = parseCidr(text);
    } catch {
      return false;
    }
    if (ipToU32(text.slice(0, text.indexOf('/'))) !== p.addr) return false;
    const off = (p.addr - this.networkAddr) >>> 0;
    if (p.len === 32) return off >= 1 && off < this.blockSize;
    if (p.len !== this.prefixLength) return false;
    const index = off / this.blockSize;
    return index >= 1 && index < this.subnetCount;
  }

  // Numbered slots of the current pool that are held: block indices and
  // single-IP offsets. Scanning numbers, not formatted subnets, keeps an
  // acquire in a nearly full /12 of /24s under a millisecond.
  private readonly takenBlocks = new Set<number>();
  private readonly takenSingles = new Set<number>();

  /** The pool slot of a lease: a block index or a single-IP offset; undefined outside the current pool. */
  private slot(h: HeldLease): { single: boolean; n: number } | undefined {
    if (!this.isMember(h.subnet)) return undefined;
    const off = (h.base - this.networkAddr) >>> 0;
    return h.len === 32 ? { single: true, n: off } : { single: false, n: off / this.blockSize };
  }

  private hold(ip: string, h: HeldLease): void {
    this.leaseByIp.set(ip, h);
    this.holderBySubnet.set(h.subnet, ip);
    const s = this.slot(h);
    if (s) (s.single ? this.takenSingles : this.takenBlocks).add(s.n);
  }

  private unhold(ip: string): void {
    const h = this.leaseByIp.get(ip);
    if (!h) return;
    this.leaseByIp.delete(ip);
    if (this.holderBySubnet.get(h.subnet) === ip) this.holderBySubnet.delete(h.subnet);
    const s = this.slot(h);
    if (s) (s.single ? this.takenSingles : this.takenBlocks).delete(s.n);
  }

  private firstFreeBlock(): string | undefined {
    for (let i = 1; i < this.subnetCount; i++) {
      if (!this.takenBlocks.has(i)) return formatCidr((this.networkAddr + i * this.blockSize) >>> 0, this.prefixLength);
    }
    return undefined;
  }

  private firstFreeSingle(): string | undefined {
    for (let i = 1; i < this.blockSize; i++) {
      if (!this.takenSingles.has(i)) return formatCidr((this.networkAddr + i) >>> 0, 32);
    }
    return undefined;
  }

  private held(subnet: string, expiresAt: number): HeldLease {
    const p = parseCidr(subnet);
    return { subnet: formatCidr(p.addr, p.len), base: p.addr, len: p.len, expiresAt };
  }
  /** silk's VTEP MAC: ee:ee + the lease's first address (silk: leaser/hardware_address_generator.go). */
  private hwAddr(base: number): string {
    return formatMac(macFromIp(0xeeee, base));
  }
  private lease(underlayIp: string, h: HeldLease): Lease {
    return { underlay_ip: underlayIp, overlay_subnet: h.subnet, overlay_hardware_addr: this.hwAddr(h.base) };
  }
  private stored(underlayIp: string, h: HeldLease): StoredLease {
    return { underlayIp, subnet: h.subnet, expiresAt: h.expiresAt };
  }

  // -------------------------------------------------------------------------
  // Watch

  snapshot(): Snapshot {
    return { version: this.version_, changed_at: this.changedAt, leases: this.leases(), policies: this.internalPolicies(), tags: this.tags() };
  }

  /**
   * The snapshot as JSON bytes, built once per version: every watching cell
   * gets the same buffer, so N cells cost one serialisation per change.
   * (Lease expiry alone does not change the version; the sweep does.)
   * Same text as JSON.stringify(snapshot()).
   */
  snapshotJson(): Buffer {
    if (this.snapshotCache?.version !== this.version_) {
      const json =
        `{"version":${this.version_},"changed_at":${this.changedAt},"leases":${JSON.stringify(this.leases())},` +
        `"policies":[${this.joinFragments()}],"tags":${JSON.stringify(this.tags())}}`;
      this.snapshotCache = { version: this.version_, json: Buffer.from(json) };
    }
    return this.snapshotCache.json;
  }

  /**
   * Resolve when the version differs from `since` (at once if it already
   * does: a cell ahead of a controller whose store was replaced must resync,
   * not hang), or after `holdMs`, or when `signal` aborts. True if changed.
   */
  waitForChange(since: number, holdMs: number, signal?: AbortSignal): Promise<boolean> {
    if (since !== this.version_) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (changed: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        signal?.removeEventListener('abort', onAbort);
        resolve(changed);
      };
      const wake = () => done(true);
      const onAbort = () => done(false);
      const timer = setTimeout(() => done(false), holdMs);
      this.waiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  get watcherCount(): number {
    return this.waiters.size;
  }

  /** Wake every watcher now (shutdown): they answer with the current snapshot. */
  wakeAll(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Wall-clock ms of the last change (cells report their watch lag against it). */
  changedAt = Date.now();

  private bump(): void {
    this.version_++;
    this.changedAt = Date.now();
    // Wake synchronously: the watchers' responses are written in the same
    // turn of the event loop as the change's own response (no poll interval).
    for (const w of [...this.waiters]) w();
  }

  close(): void {
    this.wakeAll();
    this.store.close();
  }
}

