// A typed client for the controller, used by the cells and the CLI. Every
// method is one HTTP call; a non-2xx answer becomes a ControllerError carrying
// the controller's one-sentence reason, and "nobody listens" stays an
// UnreachableError (from http.ts) so callers can tell the two apart.
//
// Given several controller replicas (one PostgreSQL database behind them),
// a call goes to the replica that answered last; when that one is gone
// (nobody listens, the connection broke, it timed out) or answers 503, the
// same call goes to the next, and the client stays there.
import { httpJson, HttpTimeoutError, UnreachableError, type Address, type HttpJsonOptions, type HttpJsonResult } from './http.js';
import type { Lease, PolicyFilter, PolicyRecord, Snapshot, TagRecord, WatchDelta } from './controller-types.js';

export type { Lease, PolicyFilter, PolicyRecord, Snapshot, TagRecord, WatchDelta };
export { UnreachableError, HttpTimeoutError } from './http.js';

const BROKEN = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT']);

/** The replica is gone or cannot serve: worth asking another. */
function replicaGone(e: unknown): boolean {
  if (e instanceof UnreachableError || e instanceof HttpTimeoutError) return true;
  if (e instanceof ControllerError) return e.status === 503;
  const code = (e as NodeJS.ErrnoException).code;
  return typeof code === 'string' && BROKEN.has(code);
}

/** The controller answered with an error status; `message` is its reason. */
export class ControllerError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ControllerError';
  }
}

export const EXTERNAL_POLICIES = '/networking/v1/external/policies';
export const EXTERNAL_POLICIES_DELETE = '/networking/v1/external/policies/delete';
export const EXTERNAL_TAGS = '/networking/v1/external/tags';
export const INTERNAL_POLICIES = '/networking/v1/internal/policies';

/** How long a watch may be held by the controller, plus slack for the network. */
const WATCH_CLIENT_TIMEOUT_MS = 60_000;

export class ControllerClient {
  readonly addresses: readonly Address[];
  private current = 0;
  /** How many times a call moved to another replica. */
  failovers = 0;
  /** Told when calls move to another replica (the one before is gone or answered 503). */
  onFailover: ((from: Address, to: Address) => void) | undefined;

  constructor(
    addr: Address | readonly Address[],
    private readonly defaults: HttpJsonOptions = {},
  ) {
    this.addresses = Array.isArray(addr) ? [...(addr as readonly Address[])] : [addr as Address];
    if (this.addresses.length === 0) throw new Error('a controller client needs at least one address');
  }

  /** The replica calls go to now. */
  get addr(): Address {
    return this.addresses[this.current]!;
  }

  private async call<T>(method: string, path: string, body?: unknown, opts?: HttpJsonOptions): Promise<T> {
    return (await this.callRaw(method, path, body, opts)).body as T;
  }

  private async callRaw(method: string, path: string, body?: unknown, opts?: HttpJsonOptions): Promise<HttpJsonResult> {
    const n = this.addresses.length;
    let last: unknown;
    for (let i = 0; i < n; i++) {
      const at = (this.current + i) % n;
      try {
        const res = await httpJson(this.addresses[at]!, method, path, body, { ...this.defaults, ...opts });
        if (res.status < 200 || res.status > 299) {
          const reason =
            res.body && typeof res.body === 'object' && typeof res.body.error === 'string'
              ? res.body.error
              : `the controller answered HTTP ${res.status} to ${method} ${path}`;
          throw new ControllerError(res.status, reason);
        }
        this.moveTo(at);
        return res;
      } catch (e) {
        if (opts?.signal?.aborted || !replicaGone(e)) {
          if (e instanceof ControllerError) this.moveTo(at);
          throw e;
        }
        last = e;
      }
    }
    throw last;
  }

  private moveTo(at: number): void {
    if (at !== this.current) {
      const from = this.addr;
      this.current = at;
      this.failovers++;
      this.onFailover?.(from, this.addr);
    }
  }

  // --- leases (silk-controller) ---

  acquireLease(underlayIp: string): Promise<Lease> {
    return this.call<Lease>('PUT', '/leases/acquire', { underlay_ip: underlayIp });
  }
  renewLease(lease: Lease): Promise<Lease> {
    return this.call<Lease>('PUT', '/leases/renew', lease);
  }
  async releaseLease(lease: Lease): Promise<void> {
    await this.call<unknown>('PUT', '/leases/release', lease);
  }
  async leases(): Promise<Lease[]> {
    return (await this.call<{ leases: Lease[] }>('GET', '/leases')).leases;
  }

  // --- policies (cf-networking policy server) ---

  async addPolicies(ps: PolicyRecord[]): Promise<void> {
    await this.call<unknown>('POST', EXTERNAL_POLICIES, { policies: ps });
  }
  async deletePolicies(ps: PolicyRecord[]): Promise<void> {
    await this.call<unknown>('POST', EXTERNAL_POLICIES_DELETE, { policies: ps });
  }
  /** External list (no tags). */
  async policies(filter: PolicyFilter = {}): Promise<PolicyRecord[]> {
    const q = new URLSearchParams();
    if (filter.id) q.set('id', filter.id.join(','));
    if (filter.source_id) q.set('source_id', filter.source_id.join(','));
    if (filter.dest_id) q.set('dest_id', filter.dest_id.join(','));
    const qs = q.toString();
    const r = await this.call<{ total_policies: number; policies: PolicyRecord[] }>(
      'GET',
      qs ? `${EXTERNAL_POLICIES}?${qs}` : EXTERNAL_POLICIES,
    );
    return r.policies;
  }
  async tags(): Promise<TagRecord[]> {
    return (await this.call<{ tags: TagRecord[] }>('GET', EXTERNAL_TAGS)).tags;
  }
  /** Internal list: source.tag and destination.tag filled (cf-networking's internal policy API). */
  async internalPolicies(ids?: string[]): Promise<PolicyRecord[]> {
    const path = ids && ids.length ? `${INTERNAL_POLICIES}?id=${encodeURIComponent(ids.join(','))}` : INTERNAL_POLICIES;
    return (await this.call<{ total_policies: number; policies: PolicyRecord[] }>('GET', path)).policies;
  }

  /**
   * The policy server's policies_last_updated: an integer that grows when policies change (vxlan-policy-agent
   * skips rounds on it). Upstream sends Unix nanoseconds (19 digits), more than a double holds exactly, so it is
   * read from the body's text as a bigint.
   */
  async policiesLastUpdated(): Promise<bigint> {
    const res = await this.callRaw('GET', '/networking/v1/internal/policies_last_updated', undefined, { keepText: true });
    const t = (res.text ?? '').trim();
    const m = /^"?(\d{1,30})"?$/.exec(t);
    if (m) return BigInt(m[1]!);
    throw new ControllerError(200, `policies_last_updated answered ${JSON.stringify(t.slice(0, 80))}, not a whole number`);
  }

  // --- watch ---

  /**
   * Long-poll: resolves with the full snapshot as soon as the controller's
   * version is above `since` (at once if it already is), or with the current
   * (unchanged) snapshot after the controller's hold time (~25 s). Pass -1 (or
   * 0 on a fresh store) to get the state at once.
   */
  watch(since: number, signal?: AbortSignal, timeoutMs?: number): Promise<Snapshot> {
    return this.call<Snapshot>('GET', `/watch?since=${since}`, undefined, {
      signal,
      timeoutMs: timeoutMs ?? WATCH_CLIENT_TIMEOUT_MS,
    });
  }

  /**
   * The same long-poll, answered with only the changes after `since` when
   * the controller still has them (a WatchDelta, with `changes`), else with
   * the full snapshot.
   */
  watchDelta(since: number, signal?: AbortSignal, timeoutMs?: number): Promise<Snapshot | WatchDelta> {
    return this.call<Snapshot | WatchDelta>('GET', `/watch?since=${since}&delta=1`, undefined, {
      signal,
      timeoutMs: timeoutMs ?? WATCH_CLIENT_TIMEOUT_MS,
    });
  }

  /** The current snapshot without waiting. */
  snapshot(): Promise<Snapshot> {
    return this.call<Snapshot>('GET', '/watch?since=-1');
  }
}

/**
 * silkworm's controller answers GET /watch; an unmodified silk-controller
 * has no such route and answers 404 (as Go's mux does for an unknown path).
 */
export async function detectControllerApi(c: ControllerClient): Promise<'silkworm' | 'silk'> {
  try {
    await c.snapshot();
    return 'silkworm';
  } catch (err) {
    if (err instanceof ControllerError && err.status === 404) return 'silk';
    throw err;
  }
}
