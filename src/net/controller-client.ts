// A typed client for the controller, used by the cells and the CLI. Every
// method is one HTTP call; a non-2xx answer becomes a ControllerError carrying
// the controller's one-sentence reason, and "nobody listens" stays an
// UnreachableError (from http.ts) so callers can tell the two apart.
import { httpJson, type Address, type HttpJsonOptions } from './http.js';
import type { Lease, PolicyFilter, PolicyRecord, Snapshot, TagRecord } from './controller-types.js';

export type { Lease, PolicyFilter, PolicyRecord, Snapshot, TagRecord };
export { UnreachableError, HttpTimeoutError } from './http.js';

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
  constructor(
    readonly addr: Address,
    private readonly defaults: HttpJsonOptions = {},
  ) {}

  private async call<T>(method: string, path: string, body?: unknown, opts?: HttpJsonOptions): Promise<T> {
    const res = await httpJson(this.addr, method, path, body, { ...this.defaults, ...opts });
    if (res.status < 200 || res.status > 299) {
      const reason =
        res.body && typeof res.body === 'object' && typeof res.body.error === 'string'
          ? res.body.error
          : `the controller answered HTTP ${res.status} to ${method} ${path}`;
      throw new ControllerError(res.status, reason);
    }
    return res.body as T;
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

  /** The policy server's policies_last_updated: an integer that grows when policies change (vxlan-policy-agent skips rounds on it). */
  async policiesLastUpdated(): Promise<number> {
    const v = await this.call<unknown>('GET', '/networking/v1/internal/policies_last_updated');
    const n = typeof v === 'number' ? v : Number(v);
    if (!Number.isFinite(n)) throw new ControllerError(200, `policies_last_updated answered ${JSON.stringify(v)}, not a number`);
    return n;
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
