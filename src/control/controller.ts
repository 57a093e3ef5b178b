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
import { type ControllerStore, type SharedStore, type StoreCommit, type StoredLease, type StoreNotice, type StoreState } from './store.js';
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
  store: ControllerStore | SharedStore;
  /** A shared store's state, loaded beforehand (Controller.open does it). */
  state?: StoreState;
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

/**
 * How far back GET /watch?since=V&delta=1 can answer with changes only: the
 * last DELTA_KEEP_VERSIONS versions, and no more than DELTA_KEEP_BYTES of
 * change text. A cell further behind gets the full snapshot.
 */
export const DELTA_KEEP_VERSIONS = 4096;
export const DELTA_KEEP_BYTES = 32 * 1024 * 1024;

/** A planned change: the commit to store (none: nothing changes), the answer, and what to log once applied. */
interface Planned<T> {
  commit?: StoreCommit;
  result: T;
  after?: () => void;
}

interface HeldLease {
  /** Canonical text, e.g. "10.255.1.0/24" or "10.255.0.7/32". */
  subnet: string;
  base: number;
  len: number;
  expiresAt: number;
}

export class Controller {
  private version_: number;
  private readonly store: ControllerStore | SharedStore;
  private readonly log: Logger;
  private readonly now: () => number;

  // Policies in creation order, keyed by policyKeyString.
  private policies = new Map<string, PolicyKey>();
  // How many policies name each app (as source or destination): its tag lives while > 0.
  private appRefs = new Map<string, number>();
  private tagOf = new Map<string, number>();
  // Group types other than "app" (PUT /networking/v1/internal/tags can name any).
  private typeOf = new Map<string, string>();
  // Tags made by PUT /networking/v1/internal/tags that no policy has named yet.
  private pinned = new Set<string>();
  private allocator = new TagAllocator();
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
  private leaseByIp = new Map<string, HeldLease>();
  private holderBySubnet = new Map<string, string>();

  // Recent changes as delta-watch JSON: deltas[i] is version deltaBase + 1 + i.
  private deltaBase = 0;
  private deltas: string[] = [];
  private deltaBytes = 0;
  // A shared store's notices trigger one catch-up at a time.
  private catchingUp: Promise<void> | null = null;
  private catchUpAgain = false;
  private closed = false;

  // Watchers wait for the version to move; woken all at once by applyCommit().
  private readonly waiters = new Set<() => void>();
  private snapshotCache: { version: number; json: Buffer } | undefined;
  private internalCache: { version: number; json: Buffer } | undefined;
  private externalCache: { version: number; json: Buffer } | undefined;
  // Each policy's internal-shape JSON, made once: an app's tag cannot change
  // while it has a policy, so the text is fixed for the policy's lifetime.
  // Joining 60,000 of these takes ~15 ms; re-serialising objects took ~190 ms
  // (measured with scripts/bench-scale.mjs), and every change needs a snapshot.
  private fragments = new Map<string, string>();

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

    const store = this.store;
    const state = opts.state ?? (store.shared ? undefined : store.load());
    if (!state) throw new Error('a shared store is loaded before the controller is made: use Controller.open');
    this.version_ = state.version;
    this.policiesUpdatedAt = this.now();
    this.loadState(state, !store.shared);
    this.deltaBase = this.version_;
  }

  /**
   * A controller on any store: a shared store's state is loaded first, and
   * the controller follows the changes other replicas make from then on.
   */
  static async open(opts: ControllerOptions): Promise<Controller> {
    const store = opts.store;
    if (!store.shared) return new Controller(opts);
    const state = opts.state ?? (await store.load());
    const c = new Controller({ ...opts, state });
    store.onNotice((n) => c.onNotice(n));
    // A change made between load() and onNotice() would wait for the next notice: catch up once now.
    c.scheduleCatchUp();
    return c;
  }

  /** Fill memory from stored state; with `repair`, fix what an older build left inconsistent (one commit each). */
  private loadState(state: StoreState, repair: boolean): void {
    this.version_ = state.version;
    for (const t of state.tags) {
      this.allocator.reserve(t.tag);
      this.tagOf.set(t.id, t.tag);
      if (t.type !== undefined && t.type !== 'app') this.typeOf.set(t.id, t.type);
      if (t.pinned) this.pinned.add(t.id);
    }
    for (const p of state.policies) {
      this.policies.set(policyKeyString(p), p);
      this.ref(p.source, 1);
      this.ref(p.dest, 1);
    }
    // A store written by a crashed older build could hold a policy app without a tag: give it one now.
    const missing = [...this.appRefs.keys()].filter((id) => !this.tagOf.has(id));
    const orphans = [...this.tagOf.keys()].filter((id) => !this.appRefs.has(id) && !this.pinned.has(id));
    if (missing.length && !repair) {
      // A shared store writes tags and policies in one transaction; this cannot come from silkworm.
      throw new Error(`the store holds policies of ${missing.length} apps without a tag (first: ${missing[0]}); it was not written by silkworm`);
    }
    if (repair && (missing.length || orphans.length)) {
      const store = this.store as ControllerStore;
      const addTags = missing.map((id) => ({ id, tag: this.allocator.allocate() }));
      store.commit({ version: this.version_ + 1, addTags, deleteTags: orphans });
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
    if (dropped.length && !repair) this.log.warn({ leases: dropped }, 'leases-unreadable');
    if (dropped.length && repair) {
      (this.store as ControllerStore).commit({ version: this.version_ + 1, deleteLeases: dropped });
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
  //
  // Every mutation is a plan (reads memory, changes nothing) that yields one
  // StoreCommit, then the commit is written, then applied to memory by
  // applyCommit — the same function that applies a change another replica
  // made (read back from a shared store). So a replica's memory is always
  // "the store's commits applied in version order", whoever wrote them.

  /** Create policies; duplicates (of stored ones or within the list) are ignored. Returns how many were new. */
  addPolicies(keys: PolicyKey[]): number {
    return this.runSync(this.planAddPolicies(keys));
  }
  addPoliciesAsync(keys: PolicyKey[]): Promise<number> {
    return this.run(() => this.planAddPolicies(keys));
  }

  private planAddPolicies(keys: PolicyKey[]): Planned<number> {
    const fresh = new Map<string, PolicyKey>();
    for (const k of keys) {
      const s = policyKeyString(k);
      if (!this.policies.has(s) && !fresh.has(s)) fresh.set(s, k);
    }
    if (fresh.size === 0) return { result: 0 };

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
    } catch (e) {
      if (e instanceof Error && e.name === 'TagExhaustedError') throw new ConflictError(e.message);
      throw e;
    } finally {
      // Planning takes nothing: applyCommit takes the tags once the change is stored.
      for (const t of addTags) this.allocator.free(t.tag);
    }
    const c: StoreCommit = { version: this.version_ + 1, addPolicies: [...fresh.values()], addTags };
    if (unpin.length) c.unpinTags = unpin;
    return {
      commit: c,
      result: fresh.size,
      after: () => this.log.info({ created: fresh.size, tagsAllocated: addTags.length, version: this.version_ }, 'policy-created'),
    };
  }

  /** Delete policies; ones that do not exist are ignored. Returns how many were deleted. */
  deletePolicies(keys: PolicyKey[]): number {
    return this.runSync(this.planDeletePolicies(keys));
  }
  deletePoliciesAsync(keys: PolicyKey[]): Promise<number> {
    return this.run(() => this.planDeletePolicies(keys));
  }

  private planDeletePolicies(keys: PolicyKey[]): Planned<number> {
    const gone = new Map<string, PolicyKey>();
    for (const k of keys) {
      const s = policyKeyString(k);
      if (this.policies.has(s)) gone.set(s, k);
    }
    if (gone.size === 0) return { result: 0 };
    const delta = new Map<string, number>();
    for (const k of gone.values()) {
      delta.set(k.source, (delta.get(k.source) ?? 0) + 1);
      delta.set(k.dest, (delta.get(k.dest) ?? 0) + 1);
    }
    const freed: string[] = [];
    for (const [id, d] of delta) if (this.appRefs.get(id) === d) freed.push(id);
    return {
      commit: { version: this.version_ + 1, deletePolicies: [...gone.values()], deleteTags: freed },
      result: gone.size,
      after: () => this.log.info({ deleted: gone.size, tagsFreed: freed.length, version: this.version_ }, 'policy-deleted'),
    };
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
    for (const [s, k] of this.policies) parts[i++] = this.fragment(s, k);
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
    return this.runSync(this.planCreateTag(id, type));
  }
  createTagAsync(id: string, type: string): Promise<TypedTagRecord> {
    return this.run(() => this.planCreateTag(id, type));
  }

  private planCreateTag(id: string, type: string): Planned<TypedTagRecord> {
    const have = this.tagOf.get(id);
    if (have !== undefined) return { result: { id, tag: formatTag(have), type: this.typeOf.get(id) ?? 'app' } };
    let tag: number;
    try {
      tag = this.allocator.peek();
      if (tag < 0) tag = this.allocator.allocate(); // throws TagExhaustedError
    } catch (e) {
      if (e instanceof Error && e.name === 'TagExhaustedError') throw new ConflictError(e.message, 'database create failed');
      throw e;
    }
    return {
      commit: { version: this.version_ + 1, addTags: [{ id, tag, type, pinned: true }] },
      result: { id, tag: formatTag(tag), type },
      after: () => this.log.info({ id, type, tag: formatTag(tag), version: this.version_ }, 'tag-created'),
    };
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
    return this.runSync(this.planAcquireLease(underlayIp, singleIp));
  }
  acquireLeaseAsync(underlayIp: string, singleIp = false): Promise<Lease> {
    return this.run(() => this.planAcquireLease(underlayIp, singleIp), true);
  }

  private planAcquireLease(underlayIp: string, singleIp: boolean): Planned<Lease> {
    const now = this.now();
    const held = this.leaseByIp.get(underlayIp);
    let moved: HeldLease | undefined;
    if (held) {
      if (this.isMember(held.subnet)) {
        // Asking again refreshes the lease; nothing visible changes, so no new version.
        const fresh = { ...held, expiresAt: now + this.leaseExpiryMs };
        return {
          commit: { version: this.version_, putLeases: [this.stored(underlayIp, fresh)] },
          result: this.lease(underlayIp, held),
          after: () => this.log.info({ underlayIp, subnet: held.subnet }, 'lease-reacquired'),
        };
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
    const c: StoreCommit = { version: this.version_ + 1, putLeases: [this.stored(underlayIp, lease)] };
    if (evict !== undefined) c.deleteLeases = [evict];
    const got = subnet;
    return {
      commit: c,
      result: this.lease(underlayIp, lease),
      after: () => {
        if (moved) this.log.info({ underlayIp, subnet: moved.subnet }, 'lease-deleted-other-network');
        if (evict !== undefined) this.log.info({ underlayIp: evict, subnet: got }, 'lease-expired');
        this.log.info({ underlayIp, subnet: got, version: this.version_ }, 'lease-acquired');
      },
    };
  }

  /**
   * Extend a lease. The lease must be the one the controller holds for that
   * underlay IP (in any overlay network, current or older); if it holds none
   * (say, the store was replaced) and the subnet is free and in the pool, the
   * lease is re-created, as silk-controller does, so cells survive a
   * controller that lost its state. Otherwise 409 ("lease mismatch").
   */
  renewLease(l: { underlay_ip: string; overlay_subnet: string; overlay_hardware_addr?: string }): Lease {
    return this.runSync(this.planRenewLease(l));
  }
  renewLeaseAsync(l: { underlay_ip: string; overlay_subnet: string; overlay_hardware_addr?: string }): Promise<Lease> {
    return this.run(() => this.planRenewLease(l), true);
  }

  private planRenewLease(l: { underlay_ip: string; overlay_subnet: string; overlay_hardware_addr?: string }): Planned<Lease> {
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
      const fresh = { ...held, expiresAt: now + this.leaseExpiryMs };
      return {
        commit: { version: this.version_, putLeases: [this.stored(l.underlay_ip, fresh)] },
        result: this.lease(l.underlay_ip, held),
        after: () => this.log.debug({ underlayIp: l.underlay_ip, subnet: l.overlay_subnet }, 'lease-renewed'),
      };
    }
    const holder = this.holderBySubnet.get(l.overlay_subnet);
    if (holder !== undefined && this.leaseByIp.get(holder)!.expiresAt > now) {
      throw new ConflictError(`lease mismatch: ${l.overlay_subnet} is leased to another cell (${holder})`, upstream);
    }
    const lease = this.held(l.overlay_subnet, now + this.leaseExpiryMs);
    const c: StoreCommit = { version: this.version_ + 1, putLeases: [this.stored(l.underlay_ip, lease)] };
    if (holder !== undefined) c.deleteLeases = [holder];
    return {
      commit: c,
      result: this.lease(l.underlay_ip, lease),
      after: () => this.log.info({ underlayIp: l.underlay_ip, subnet: l.overlay_subnet, version: this.version_ }, 'lease-recreated'),
    };
  }

  /** Give a lease back. Releasing a lease the controller does not hold is not an error. */
  releaseLease(l: { underlay_ip: string; overlay_subnet?: string }): boolean {
    return this.runSync(this.planReleaseLease(l));
  }
  releaseLeaseAsync(l: { underlay_ip: string; overlay_subnet?: string }): Promise<boolean> {
    return this.run(() => this.planReleaseLease(l));
  }

  private planReleaseLease(l: { underlay_ip: string; overlay_subnet?: string }): Planned<boolean> {
    const held = this.leaseByIp.get(l.underlay_ip);
    if (!held) return { result: false };
    if (l.overlay_subnet !== undefined && l.overlay_subnet !== held.subnet) {
      throw new ConflictError(
        `lease mismatch: the controller holds ${held.subnet} for ${l.underlay_ip}, not ${l.overlay_subnet}`,
        'lease mismatch',
      );
    }
    return {
      commit: { version: this.version_ + 1, deleteLeases: [l.underlay_ip] },
      result: true,
      after: () => this.log.info({ underlayIp: l.underlay_ip, subnet: held.subnet, version: this.version_ }, 'lease-released'),
    };
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
    return this.runSync(this.planSweep());
  }
  /**
   * The same for a shared store: every replica sweeps, each under the
   * store's write lock and with the expiry times re-read from the store, so
   * a lease renewed through another replica is never reclaimed and two
   * sweeps never delete the same lease twice (the second finds it gone).
   */
  sweepExpiredLeasesAsync(): Promise<number> {
    return this.run(() => this.planSweep(), true);
  }

  private planSweep(): Planned<number> {
    const now = this.now();
    const expired: { ip: string; subnet: string }[] = [];
    for (const [ip, h] of this.leaseByIp) if (h.expiresAt <= now) expired.push({ ip, subnet: h.subnet });
    if (expired.length === 0) return { result: 0 };
    return {
      commit: { version: this.version_ + 1, deleteLeases: expired.map((e) => e.ip) },
      result: expired.length,
      after: () => {
        for (const e of expired) this.log.info({ underlayIp: e.ip, subnet: e.subnet }, 'lease-expired');
      },
    };
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

  /**
   * Changes after `since` as delta-watch JSON, or undefined when `since` is
   * not a version this controller has changes from (too old, unknown, or
   * ahead of it): the caller sends the full snapshot then.
   */
  deltaJson(since: number): Buffer | undefined {
    if (!Number.isInteger(since) || since < this.deltaBase || since > this.version_) return undefined;
    // Cells watching together ask from the same version: one buffer for all of them.
    if (this.deltaCache?.version !== this.version_) this.deltaCache = { version: this.version_, bySince: new Map() };
    let json = this.deltaCache.bySince.get(since);
    if (!json) {
      const from = since - this.deltaBase;
      json = Buffer.from(
        `{"version":${this.version_},"changed_at":${this.changedAt},"since":${since},"changes":[${this.deltas.slice(from).join(',')}]}`,
      );
      if (this.deltaCache.bySince.size < 64) this.deltaCache.bySince.set(since, json);
    }
    return json;
  }
  private deltaCache: { version: number; bySince: Map<number, Buffer> } | undefined;

  /** The oldest version a delta watch can start from. */
  get deltaFrom(): number {
    return this.deltaBase;
  }

  // -------------------------------------------------------------------------
  // Applying changes (this replica's own and, with a shared store, others')

  private runSync<T>(p: Planned<T>): T {
    const store = this.store;
    if (store.shared) throw new Error('this controller keeps its state in a shared store: use the async methods');
    if (p.commit) {
      store.commit(p.commit);
      this.applyLocal(p.commit);
    }
    p.after?.();
    return p.result;
  }

  /**
   * Plan, store and apply one change. With a shared store the plan is made
   * inside the store's write transaction, after catching up with every
   * commit other replicas made, so it is planned on the latest state: tags
   * and subnets are lowest-free across all replicas and never handed out
   * twice. With `refreshLeases`, expiry times memory thinks have passed are
   * re-read first (another replica may have renewed them).
   */
  private async run<T>(plan: () => Planned<T>, refreshLeases = false): Promise<T> {
    const store = this.store;
    if (!store.shared) return this.runSync(plan());
    // One write of this replica at a time: writes are serialised by the
    // store's lock anyway, and queueing here keeps waiting requests from
    // holding every pooled connection.
    const turn = this.writeQueue.then(() => this.runShared(store, plan, refreshLeases));
    this.writeQueue = turn.catch(() => undefined);
    return turn;
  }

  private writeQueue: Promise<unknown> = Promise.resolve();

  private async runShared<T>(store: SharedStore, plan: () => Planned<T>, refreshLeases: boolean): Promise<T> {
    const tx = await store.begin();
    let p: Planned<T>;
    try {
      if (tx.version !== this.version_) {
        await this.catchUpFrom(tx);
        if (tx.version !== this.version_) this.reload(await tx.load());
      }
      if (refreshLeases) {
        const now = this.now();
        const stale: string[] = [];
        for (const [ip, h] of this.leaseByIp) if (h.expiresAt <= now) stale.push(ip);
        if (stale.length) for (const l of await tx.leases(stale)) this.noteLease(l, false);
      }
      p = plan();
      if (p.commit) {
        p.commit.changedAt = Date.now();
        await tx.commit(p.commit);
      } else {
        await tx.rollback();
      }
    } catch (e) {
      await tx.rollback().catch(() => undefined);
      throw e;
    }
    if (p.commit) this.applyLocal(p.commit);
    p.after?.();
    return p.result;
  }

  /** Apply a commit this replica made (a concurrent catch-up may have applied it already). */
  private applyLocal(c: StoreCommit): void {
    if (c.version === this.version_ + 1) this.applyCommit(c);
    else if (c.version <= this.version_) for (const l of c.putLeases ?? []) this.noteLease(l, true);
  }

  /** A lease's expiry moved without a new version (renewal, re-acquire). */
  private noteLease(l: StoredLease, force: boolean): void {
    const h = this.leaseByIp.get(l.underlayIp);
    if (h && h.subnet === l.subnet && (force || l.expiresAt > h.expiresAt)) h.expiresAt = l.expiresAt;
  }

  /** Apply the commit that makes version + 1, wake the watchers, and keep its delta. */
  private applyCommit(c: StoreCommit): void {
    let policiesChanged = false;
    const deletedPolicies: PolicyKey[] = [];
    for (const p of c.deletePolicies ?? []) {
      const s = policyKeyString(p);
      if (!this.policies.delete(s)) continue;
      this.fragments.delete(s);
      this.ref(p.source, -1);
      this.ref(p.dest, -1);
      deletedPolicies.push(p);
      policiesChanged = true;
    }
    const deletedTags: string[] = [];
    for (const id of c.deleteTags ?? []) {
      const t = this.tagOf.get(id);
      if (t === undefined) continue;
      this.allocator.free(t);
      this.tagOf.delete(id);
      this.typeOf.delete(id);
      this.pinned.delete(id);
      deletedTags.push(id);
    }
    for (const t of c.addTags ?? []) {
      const had = this.tagOf.get(t.id);
      if (had !== undefined && had !== t.tag) this.allocator.free(had);
      if (!this.allocator.has(t.tag)) this.allocator.reserve(t.tag);
      this.tagOf.set(t.id, t.tag);
      if (t.type !== undefined && t.type !== 'app') this.typeOf.set(t.id, t.type);
      if (t.pinned) this.pinned.add(t.id);
    }
    for (const id of c.unpinTags ?? []) this.pinned.delete(id);
    const added: string[] = [];
    for (const p of c.addPolicies ?? []) {
      const s = policyKeyString(p);
      if (this.policies.has(s)) continue;
      this.policies.set(s, p);
      this.ref(p.source, 1);
      this.ref(p.dest, 1);
      added.push(this.fragment(s, p));
      policiesChanged = true;
    }
    const deletedLeases: string[] = [];
    for (const ip of c.deleteLeases ?? []) {
      if (!this.leaseByIp.has(ip)) continue;
      this.unhold(ip);
      deletedLeases.push(ip);
    }
    const putLeases: Lease[] = [];
    for (const l of c.putLeases ?? []) {
      this.unhold(l.underlayIp);
      const h = this.held(l.subnet, l.expiresAt);
      this.hold(l.underlayIp, h);
      putLeases.push(this.lease(l.underlayIp, h));
    }
    if (policiesChanged) this.policiesUpdatedAt = this.now();

    // The change as a delta: what a cell needs to edit its copy of the snapshot.
    let d = `{"version":${c.version}`;
    if (deletedPolicies.length) d += `,"delete_policies":${JSON.stringify(deletedPolicies.map((k) => policyRecord(k)))}`;
    if (deletedTags.length) d += `,"delete_tags":${JSON.stringify(deletedTags)}`;
    if (c.addTags?.length) d += `,"add_tags":${JSON.stringify(c.addTags.map((t) => ({ id: t.id, tag: formatTag(t.tag) })))}`;
    if (added.length) d += `,"add_policies":[${added.join(',')}]`;
    if (deletedLeases.length) d += `,"delete_leases":${JSON.stringify(deletedLeases)}`;
    if (putLeases.length) d += `,"add_leases":${JSON.stringify(putLeases)}`;
    d += '}';
    this.deltas.push(d);
    this.deltaBytes += d.length;
    let drop = 0;
    while (
      drop < this.deltas.length - 1 &&
      (this.deltas.length - drop > DELTA_KEEP_VERSIONS || this.deltaBytes > DELTA_KEEP_BYTES)
    ) {
      this.deltaBytes -= this.deltas[drop]!.length;
      drop++;
    }
    if (drop) {
      this.deltas = this.deltas.slice(drop);
      this.deltaBase += drop;
    }

    this.version_ = c.version;
    this.changedAt = c.changedAt ?? Date.now();
    // Wake synchronously: the watchers' responses are written in the same
    // turn of the event loop as the change's own response (no poll interval).
    for (const w of [...this.waiters]) w();
  }

  /** A policy's internal-shape JSON (cached for its lifetime). */
  private fragment(s: string, k: PolicyKey): string {
    let f = this.fragments.get(s);
    if (f === undefined) {
      f = JSON.stringify(policyRecord(k, formatTag(this.tagOf.get(k.source)!), formatTag(this.tagOf.get(k.dest)!)));
      this.fragments.set(s, f);
    }
    return f;
  }

  private onNotice(n: StoreNotice): void {
    if (this.closed) return;
    if (n.kind === 'lease') this.noteLease(n.lease, false);
    else if (n.kind === 'version' && n.commit && n.version === this.version_ + 1 && !this.catchingUp) this.applyCommit(n.commit);
    else if (n.kind === 'reconnected' || n.version > this.version_) this.scheduleCatchUp(n.kind === 'reconnected');
  }

  /** Read and apply what other replicas committed; one at a time, again if told meanwhile. */
  private scheduleCatchUp(leasesToo = false): void {
    const store = this.store;
    if (!store.shared) return;
    if (this.catchingUp) {
      this.catchUpAgain = true;
      return;
    }
    this.catchingUp = (async () => {
      do {
        this.catchUpAgain = false;
        try {
          await this.catchUpFrom(store);
          // Renewals are only notified: after a lost connection, re-read every expiry.
          if (leasesToo) for (const l of await store.leases()) this.noteLease(l, false);
          leasesToo = false;
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'catch-up-failed');
          return;
        }
      } while (this.catchUpAgain && !this.closed);
    })().finally(() => {
      this.catchingUp = null;
    });
  }

  private async catchUpFrom(src: { changesSince(v: number): Promise<StoreCommit[] | undefined>; load(): Promise<StoreState> }): Promise<void> {
    const rows = await src.changesSince(this.version_);
    if (rows === undefined) {
      this.reload(await src.load());
      return;
    }
    for (const c of rows) {
      if (c.version <= this.version_) continue;
      if (c.version !== this.version_ + 1) {
        this.reload(await src.load());
        return;
      }
      this.applyCommit(c);
    }
  }

  /** Replace memory with stored state (this replica fell behind the store's change log, or the store was replaced). */
  private reload(state: StoreState): void {
    const from = this.version_;
    this.policies = new Map();
    this.appRefs = new Map();
    this.tagOf = new Map();
    this.typeOf = new Map();
    this.pinned = new Set();
    this.allocator = new TagAllocator();
    this.leaseByIp = new Map();
    this.holderBySubnet = new Map();
    this.takenBlocks.clear();
    this.takenSingles.clear();
    this.fragments = new Map();
    this.snapshotCache = this.internalCache = this.externalCache = this.deltaCache = undefined;
    this.loadState(state, false);
    // No delta reaches across a reload: every delta watcher gets a full snapshot.
    this.deltas = [];
    this.deltaBytes = 0;
    this.deltaBase = this.version_;
    this.changedAt = Date.now();
    this.policiesUpdatedAt = this.now();
    this.log.warn({ from, to: this.version_ }, 'state-reloaded');
    for (const w of [...this.waiters]) w();
  }

  close(): void {
    this.closed = true;
    this.wakeAll();
    const store = this.store;
    if (store.shared) void store.close().catch(() => undefined);
    else store.close();
  }

  /** Close, and with a shared store wait until its connections are gone. */
  async closeAsync(): Promise<void> {
    this.closed = true;
    this.wakeAll();
    await this.catchingUp?.catch(() => undefined);
    const store = this.store;
    if (store.shared) await store.close();
    else store.close();
  }
}
