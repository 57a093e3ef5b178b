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
import type { Lease, PolicyFilter, PolicyRecord, Snapshot, TagRecord } from '../net/controller-types.js';

/** A request that conflicts with the state (HTTP 409): lease mismatch, none free, tags exhausted. */
export class ConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConflictError';
  }
}

export interface ControllerOptions {
  store: ControllerStore;
  /** Overlay network leases are cut from (silk's `network`). Default 10.255.0.0/16. */
  overlayNetwork?: string;
  /** Prefix length of one cell's lease (silk's `subnet_prefix_length`). Default 24. */
  subnetPrefixLength?: number;
  /** A lease not renewed for this long may be reclaimed. Default 3600 s (silk's lease_expiration_seconds default is 60 min). */
  leaseExpirySeconds?: number;
  /** Clock in epoch ms; a parameter so tests can move time. */
  now?: () => number;
  log?: Logger;
}

export const DEFAULT_OVERLAY_NETWORK = '10.255.0.0/16';
export const DEFAULT_SUBNET_PREFIX_LENGTH = 24;
export const DEFAULT_LEASE_EXPIRY_SECONDS = 3600;

interface HeldLease {
  index: number;
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
  private readonly allocator = new TagAllocator();

  // Leases: subnet index i is the i-th /P inside the overlay network; 0 is skipped as silk does.
  readonly networkAddr: number;
  readonly networkLen: number;
  readonly prefixLength: number;
  readonly leaseExpiryMs: number;
  private readonly subnetCount: number;
  private readonly leaseByIp = new Map<string, HeldLease>();
  private readonly ipByIndex = new Map<number, string>();

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
    const expiry = opts.leaseExpirySeconds ?? DEFAULT_LEASE_EXPIRY_SECONDS;
    if (!(expiry > 0)) throw new Error(`lease expiry must be a positive number of seconds, got ${expiry}`);
    this.leaseExpiryMs = Math.round(expiry * 1000);

    const state = this.store.load();
    this.version_ = state.version;
    for (const t of state.tags) {
      this.allocator.reserve(t.tag);
      this.tagOf.set(t.id, t.tag);
    }
    for (const p of state.policies) {
      this.policies.set(policyKeyString(p), p);
      this.ref(p.source, 1);
      this.ref(p.dest, 1);
    }
    // A store written by a crashed older build could hold a policy app without a tag: give it one now.
    const missing = [...this.appRefs.keys()].filter((id) => !this.tagOf.has(id));
    const orphans = [...this.tagOf.keys()].filter((id) => !this.appRefs.has(id));
    if (missing.length || orphans.length) {
      const addTags = missing.map((id) => ({ id, tag: this.allocator.allocate() }));
      this.store.commit({ version: this.version_ + 1, addTags, deleteTags: orphans });
      for (const t of addTags) this.tagOf.set(t.id, t.tag);
      for (const id of orphans) {
        this.allocator.free(this.tagOf.get(id)!);
        this.tagOf.delete(id);
      }
      this.version_++;
      this.log.warn({ missing: missing.length, orphans: orphans.length }, 'tags-repaired');
    }
    const dropped: string[] = [];
    for (const l of state.leases) {
      const index = this.subnetIndex(l.subnet);
      if (index < 0 || this.ipByIndex.has(index)) {
        dropped.push(l.underlayIp); // outside a re-configured network: the cell re-acquires
        continue;
      }
      this.leaseByIp.set(l.underlayIp, { index, expiresAt: l.expiresAt });
      this.ipByIndex.set(index, l.underlayIp);
    }
    if (dropped.length) {
      this.store.commit({ version: this.version_ + 1, deleteLeases: dropped });
      this.version_++;
      this.log.warn({ leases: dropped }, 'leases-dropped-outside-network');
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
    try {
      for (const id of newApps) addTags.push({ id, tag: this.allocator.allocate() });
      this.store.commit({ version: this.version_ + 1, addPolicies: [...fresh.values()], addTags });
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
    }
    this.bump();
    this.log.info({ deleted: gone.size, tagsFreed: freed.length, version: this.version_ }, 'policy-deleted');
    return gone.size;
  }

  /** External list: cf-networking's filters, each a set of ids (id = source or destination). */
  listPolicies(filter: PolicyFilter = {}): PolicyRecord[] {
    const id = filter.id ? new Set(filter.id) : undefined;
    const src = filter.source_id ? new Set(filter.source_id) : undefined;
    const dst = filter.dest_id ? new Set(filter.dest_id) : undefined;
    const out: PolicyRecord[] = [];
    for (const k of this.policies.values()) {
      if (id && !id.has(k.source) && !id.has(k.dest)) continue;
      if (src && !src.has(k.source)) continue;
      if (dst && !dst.has(k.dest)) continue;
      out.push(policyRecord(k));
    }
    return out;
  }

  /** Internal list (cf-networking's internal API shape): both tags filled; `ids` keeps policies naming any of them. */
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

  /** A cell asks for a subnet; the same underlay IP gets its lease back. */
  acquireLease(underlayIp: string): Lease {
    const now = this.now();
    const held = this.leaseByIp.get(underlayIp);
    if (held) {
      // Asking again refreshes the lease; nothing visible changes, so no new version.
      held.expiresAt = now + this.leaseExpiryMs;
      this.store.commit({ version: this.version_, putLeases: [this.stored(underlayIp, held)] });
      this.log.info({ underlayIp, subnet: this.subnetText(held.index) }, 'lease-reacquired');
      return this.lease(underlayIp, held.index);
    }
    // Lowest free subnet first; only when none is free, take over the lowest
    // expired one (its cell stopped renewing, but might still come back).
    let index = -1;
    let evict: string | undefined;
    for (let i = 1; i < this.subnetCount; i++) {
      if (!this.ipByIndex.has(i)) {
        index = i;
        break;
      }
    }
    if (index < 0) {
      for (let i = 1; i < this.subnetCount; i++) {
        const holder = this.ipByIndex.get(i)!;
        if (this.leaseByIp.get(holder)!.expiresAt <= now) {
          index = i;
          evict = holder;
          break;
        }
      }
    }
    if (index < 0) {
      throw new ConflictError(
        `no overlay subnet is free: all ${this.subnetCount - 1} /${this.prefixLength} leases in ${formatCidr(this.networkAddr, this.networkLen)} are held`,
      );
    }
    const lease: HeldLease = { index, expiresAt: now + this.leaseExpiryMs };
    const c: StoreCommit = { version: this.version_ + 1, putLeases: [this.stored(underlayIp, lease)] };
    if (evict !== undefined) c.deleteLeases = [evict];
    this.store.commit(c);
    if (evict !== undefined) {
      this.leaseByIp.delete(evict);
      this.log.info({ underlayIp: evict, subnet: this.subnetText(index) }, 'lease-expired');
    }
    this.leaseByIp.set(underlayIp, lease);
    this.ipByIndex.set(index, underlayIp);
    this.bump();
    this.log.info({ underlayIp, subnet: this.subnetText(index), version: this.version_ }, 'lease-acquired');
    return this.lease(underlayIp, index);
  }

  /**
   * Extend a lease. The lease must be the one the controller holds for that
   * underlay IP; if it holds none (say, the store was replaced) and the subnet
   * is free and valid, the lease is re-created, as silk-controller does, so
   * cells survive a controller that lost its state. Otherwise 409.
   */
  renewLease(l: { underlay_ip: string; overlay_subnet: string; overlay_hardware_addr?: string }): Lease {
    const index = this.subnetIndex(l.overlay_subnet);
    if (index < 0) {
      throw new ConflictError(
        `lease mismatch: ${l.overlay_subnet} is not a /${this.prefixLength} lease inside ${formatCidr(this.networkAddr, this.networkLen)}`,
      );
    }
    if (l.overlay_hardware_addr !== undefined && l.overlay_hardware_addr.toLowerCase() !== this.hwAddr(index)) {
      throw new ConflictError(
        `lease mismatch: overlay_hardware_addr ${l.overlay_hardware_addr} does not belong to ${l.overlay_subnet} (want ${this.hwAddr(index)})`,
      );
    }
    const now = this.now();
    const held = this.leaseByIp.get(l.underlay_ip);
    if (held) {
      if (held.index !== index) {
        throw new ConflictError(
          `lease mismatch: the controller holds ${this.subnetText(held.index)} for ${l.underlay_ip}, not ${l.overlay_subnet}`,
        );
      }
      held.expiresAt = now + this.leaseExpiryMs;
      this.store.commit({ version: this.version_, putLeases: [this.stored(l.underlay_ip, held)] });
      this.log.debug({ underlayIp: l.underlay_ip, subnet: l.overlay_subnet }, 'lease-renewed');
      return this.lease(l.underlay_ip, index);
    }
    const holder = this.ipByIndex.get(index);
    if (holder !== undefined && this.leaseByIp.get(holder)!.expiresAt > now) {
      throw new ConflictError(`lease mismatch: ${l.overlay_subnet} is leased to another cell (${holder})`);
    }
    const lease: HeldLease = { index, expiresAt: now + this.leaseExpiryMs };
    const c: StoreCommit = { version: this.version_ + 1, putLeases: [this.stored(l.underlay_ip, lease)] };
    if (holder !== undefined) c.deleteLeases = [holder];
    this.store.commit(c);
    if (holder !== undefined) this.leaseByIp.delete(holder);
    this.leaseByIp.set(l.underlay_ip, lease);
    this.ipByIndex.set(index, l.underlay_ip);
    this.bump();
    this.log.info({ underlayIp: l.underlay_ip, subnet: l.overlay_subnet, version: this.version_ }, 'lease-recreated');
    return this.lease(l.underlay_ip, index);
  }

  /** Give a lease back. Releasing a lease the controller does not hold is not an error. */
  releaseLease(l: { underlay_ip: string; overlay_subnet?: string }): boolean {
    const held = this.leaseByIp.get(l.underlay_ip);
    if (!held) return false;
    if (l.overlay_subnet !== undefined && this.subnetIndex(l.overlay_subnet) !== held.index) {
      throw new ConflictError(
        `lease mismatch: the controller holds ${this.subnetText(held.index)} for ${l.underlay_ip}, not ${l.overlay_subnet}`,
      );
    }
    this.store.commit({ version: this.version_ + 1, deleteLeases: [l.underlay_ip] });
    this.leaseByIp.delete(l.underlay_ip);
    this.ipByIndex.delete(held.index);
    this.bump();
    this.log.info({ underlayIp: l.underlay_ip, subnet: this.subnetText(held.index), version: this.version_ }, 'lease-released');
    return true;
  }

  /** Leases that have not expired, by subnet. */
  leases(): Lease[] {
    const now = this.now();
    const out: { index: number; lease: Lease }[] = [];
    for (const [ip, h] of this.leaseByIp) {
      if (h.expiresAt > now) out.push({ index: h.index, lease: this.lease(ip, h.index) });
    }
    return out.sort((a, b) => a.index - b.index).map((x) => x.lease);
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
      this.leaseByIp.delete(ip);
      this.ipByIndex.delete(h.index);
      this.log.info({ underlayIp: ip, subnet: this.subnetText(h.index) }, 'lease-expired');
    }
    this.bump();
    return expired.length;
  }

  /** -1 unless `text` is exactly one lease-sized, aligned subnet of the network other than the first. */
  private subnetIndex(text: string): number {
    let p: { addr: number; len: number };
    try {
      p = parseCidr(text);
    } catch {
      return -1;
    }
    const given = ipToU32(text.slice(0, text.indexOf('/')));
    if (p.len !== this.prefixLength || given !== p.addr) return -1;
    const off = (p.addr - this.networkAddr) >>> 0;
    const index = Math.floor(off / 2 ** (32 - this.prefixLength));
    if (index < 1 || index >= this.subnetCount) return -1;
    return index;
  }

  private subnetBase(index: number): number {
    return (this.networkAddr + index * 2 ** (32 - this.prefixLength)) >>> 0;
  }
  private subnetText(index: number): string {
    return formatCidr(this.subnetBase(index), this.prefixLength);
  }
  /** silk's VTEP MAC: ee:ee + the subnet's first address, as silk-controller assigns it. */
  private hwAddr(index: number): string {
    return formatMac(macFromIp(0xeeee, this.subnetBase(index)));
  }
  private lease(underlayIp: string, index: number): Lease {
    return { underlay_ip: underlayIp, overlay_subnet: this.subnetText(index), overlay_hardware_addr: this.hwAddr(index) };
  }
  private stored(underlayIp: string, h: HeldLease): StoredLease {
    return { underlayIp, subnet: this.subnetText(h.index), expiresAt: h.expiresAt };
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

