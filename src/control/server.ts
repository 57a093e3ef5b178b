// The controller's HTTP API: cf-networking's policy server paths, silk-
// controller's lease paths, and GET /watch, all on one listener. Handlers are
// thin: validate (400), call the Controller, map ConflictError to 409.
import { controllerRegistry } from './metrics.js';
import { logger } from '../util/log.js';
import { parseAddress, formatAddress } from '../net/address.js';
import { Router, serve, HttpError, type Address, type JsonHandler, type JsonServer, type ServeLimits } from '../net/http.js';
import { explainPeerCert, type TlsMaterial } from '../net/tls.js';
import { Controller, ConflictError, type ControllerOptions } from './controller.js';
import { MemoryStore, SqliteStore, StoreUnavailableError, type ControllerStore, type SharedStore } from './store.js';
import { PgStore, isPostgresUrl } from './pg-store.js';
import type { TokenVerifier } from './auth.js';
import { registerUpstreamRoutes, requireToken } from './upstream.js';
import {
  ValidationError,
  validateAcquireRequest,
  validateLeaseBody,
  validatePoliciesBody,
  validateReleaseBody,
} from './validate.js';
import { EXTERNAL_POLICIES, EXTERNAL_POLICIES_DELETE, EXTERNAL_TAGS, INTERNAL_POLICIES } from '../net/controller-client.js';

/** How long GET /watch holds a request with no change before answering the same version. */
export const DEFAULT_WATCH_HOLD_MS = 25_000;

export interface RouterOptions {
  watchHoldMs?: number;
  /** When set, external policy API requests over TCP need a bearer token it verifies. */
  tokenVerifier?: TokenVerifier;
}

/**
 * On a TLS listener, the internal policy API, the lease API and /watch (what
 * cells, silk-daemon and vxlan-policy-agent call) need a client certificate
 * signed by the listener's CA: 401 without one, 403 for one that does not
 * verify. Plain listeners (the unix socket, a TCP listener without TLS) pass.
 */
export function requireClientCert(h: JsonHandler): JsonHandler {
  return (req) => {
    if (req.peer) {
      const bad = explainPeerCert(req.peer, `${req.method} ${req.path}`);
      if (bad) return { status: bad.status, body: { error: bad.error } };
    }
    return h(req);
  };
}

/** Map the controller's typed errors to HTTP statuses. */
function guarded(h: JsonHandler): JsonHandler {
  return async (req) => {
    try {
      return await h(req);
    } catch (e) {
      // The body says what upstream says for the same request (the cf CLI shows it).
      if (e instanceof ValidationError) throw new HttpError(e.status, e.upstream);
      if (e instanceof ConflictError) throw new HttpError(409, e.upstream);
      if (e instanceof StoreUnavailableError) throw new HttpError(503, e.message);
      throw e;
    }
  };
}

function idList(q: URLSearchParams, name: string): string[] | undefined {
  const v = q.get(name);
  return v === null ? undefined : v.split(',');
}

export function controllerRouter(c: Controller, opts: RouterOptions = {}): Router {
  const holdMs = opts.watchHoldMs ?? DEFAULT_WATCH_HOLD_MS;
  const r = new Router();
  const auth = (need: 'admin' | 'read', h: JsonHandler) => requireToken(opts.tokenVerifier, need, h, logger('controller'));

  // --- policy server (cf-networking v1) ---
  r.get(
    EXTERNAL_POLICIES,
    auth('read', guarded((req) => {
      const q = req.query;
      if (!q.has('id') && !q.has('source_id') && !q.has('dest_id')) return { status: 200, raw: c.externalPoliciesJson() };
      const policies = c.listPolicies({
        id: idList(req.query, 'id'),
        source_id: idList(req.query, 'source_id'),
        dest_id: idList(req.query, 'dest_id'),
      });
      return { status: 200, body: { total_policies: policies.length, policies } };
    })),
  );
  r.post(
    EXTERNAL_POLICIES,
    auth('admin', guarded(async (req) => {
      await c.addPoliciesAsync(validatePoliciesBody(req.body));
      return { status: 200, body: {} };
    })),
  );
  r.post(
    EXTERNAL_POLICIES_DELETE,
    auth('admin', guarded(async (req) => {
      await c.deletePoliciesAsync(validatePoliciesBody(req.body));
      return { status: 200, body: {} };
    })),
  );
  r.get(EXTERNAL_TAGS, auth('read', () => ({ status: 200, body: { tags: c.typedTags() } })));
  const mtls = requireClientCert;
  r.get(INTERNAL_POLICIES, mtls((req) => {
    const ids = idList(req.query, 'id');
    if (!ids) return { status: 200, raw: c.internalPoliciesJson() };
    const policies = c.internalPolicies(ids);
    return { status: 200, body: { total_policies: policies.length, policies } };
  }));

  // --- leases (silk-controller) ---
  r.get('/leases', mtls(() => ({ status: 200, body: { leases: c.leases() } })));
  r.put(
    '/leases/acquire',
    mtls(guarded(async (req) => {
      const a = validateAcquireRequest(req.body);
      return { status: 200, body: await c.acquireLeaseAsync(a.underlay_ip, a.single_overlay_ip) };
    })),
  );
  r.put(
    '/leases/renew',
    mtls(guarded(async (req) => ({ status: 200, body: await c.renewLeaseAsync(validateLeaseBody(req.body)) }))),
  );
  r.put(
    '/leases/release',
    mtls(guarded(async (req) => {
      await c.releaseLeaseAsync(validateReleaseBody(req.body));
      return { status: 200, body: {} };
    })),
  );

  // --- watch ---
  // With delta=1 the answer holds only the changes after `since` (see
  // Controller.deltaJson) when this controller still has them, else the full
  // snapshot; a client tells the two apart by the "changes" field.
  r.get('/watch', mtls(async (req) => {
    const raw = req.query.get('since') ?? '-1';
    if (!/^-?\d{1,15}$/.test(raw)) throw new HttpError(400, `since must be a version number, got "${raw}"`);
    await c.waitForChange(Number(raw), holdMs, req.signal);
    if (req.query.get('delta') === '1') {
      const d = c.deltaJson(Number(raw));
      if (d) return { status: 200, raw: d };
    }
    return { status: 200, raw: c.snapshotJson() };
  }));

  // Built on the first scrape, so controllers that are never scraped (tests) pay nothing.
  let metrics: ReturnType<typeof controllerRegistry> | undefined;
  r.get('/metrics', mtls(async () => {
    metrics ??= controllerRegistry(c);
    return { status: 200, raw: await metrics.metrics(), contentType: metrics.contentType };
  }));

  r.get('/healthz', mtls(() => ({
    status: 200,
    body: { ok: true, version: c.version, policies: c.policyCount, leases: c.leases().length },
  })));
  registerUpstreamRoutes(r, c, { startedAt: Date.now(), internal: mtls });
  return r;
}

export interface StartControllerOptions extends Omit<ControllerOptions, 'store' | 'log'> {
  /** Unix socket paths and host:ports (or Addresses), one listener each. Port 0 picks a free port. */
  listen: string | Address | (string | Address)[];
  /** Every TCP listener speaks TLS with this material and checks client certificates against its CA. */
  tls?: TlsMaterial;
  /** Largest request body (413 beyond). Default 1 MiB. */
  maxBodyBytes?: number;
  limits?: ServeLimits;
  /** A SQLite file path, a postgres:// URL, ':memory:' for a throw-away store, or a store object. */
  store: string | ControllerStore | SharedStore;
  watchHoldMs?: number;
  /** Verify bearer tokens on the external API over TCP (see auth.ts). */
  tokenVerifier?: TokenVerifier;
}

export interface RunningController {
  /** The first listener's address. */
  readonly address: Address;
  /** Every listener, in the order given. */
  readonly addresses: Address[];
  readonly controller: Controller;
  close(): Promise<void>;
}

export async function startController(opts: StartControllerOptions): Promise<RunningController> {
  const log = logger('controller');
  const store: ControllerStore | SharedStore =
    typeof opts.store === 'string'
      ? opts.store === ':memory:'
        ? new MemoryStore()
        : isPostgresUrl(opts.store)
          ? await PgStore.open(opts.store, { log })
          : new SqliteStore(opts.store)
      : opts.store;
  let controller: Controller;
  try {
    controller = await Controller.open({ ...opts, store, log });
  } catch (e) {
    if (store.shared) await store.close();
    else store.close();
    throw e;
  }
  const listens = (Array.isArray(opts.listen) ? opts.listen : [opts.listen]).map((l) => (typeof l === 'string' ? parseAddress(l) : l));
  if (listens.length === 0) throw new Error('the controller needs at least one listener');
  const handle = controllerRouter(controller, { watchHoldMs: opts.watchHoldMs, tokenVerifier: opts.tokenVerifier }).handle;
  const servers: JsonServer[] = [];
  try {
    for (const addr of listens) {
      servers.push(
        await serve(addr, handle, {
          tls: addr.kind === 'tcp' ? opts.tls : undefined,
          maxBodyBytes: opts.maxBodyBytes,
          limits: opts.limits,
          onError: (err, req) => log.error({ err, method: req.method, path: req.path }, 'request-failed'),
          onFlood: (f) => log.warn(f, 'connections-refused'),
        }),
      );
    }
  } catch (e) {
    for (const s of servers) await s.close();
    controller.close();
    throw e;
  }
  const server = servers[0]!;
  // One coarse timer reclaims expired leases (a quarter of the expiry, within 0.25–30 s).
  const sweepMs = Math.min(30_000, Math.max(250, Math.floor(controller.leaseExpiryMs / 4)));
  const sweep = setInterval(() => {
    controller.sweepExpiredLeasesAsync().catch((err: Error) => {
      if (err instanceof StoreUnavailableError) log.warn({ err: err.message }, 'lease-sweep-failed');
      else log.error({ err }, 'lease-sweep-failed');
    });
  }, sweepMs);
  sweep.unref();

  log.info(
    {
      address: formatAddress(server.address),
      listeners: servers.map((s) => formatAddress(s.address)),
      store: typeof opts.store === 'string' ? (store.shared ? store.description : opts.store) : 'custom',
      version: controller.version,
      policies: controller.policyCount,
      leases: controller.leases().length,
    },
    'controller-listening',
  );
  let closed: Promise<void> | undefined;
  return {
    address: server.address,
    addresses: servers.map((s) => s.address),
    controller,
    close() {
      closed ??= (async () => {
        clearInterval(sweep);
        // Answer held watches with the final snapshot before the connections go.
        controller.wakeAll();
        await new Promise((r) => setImmediate(r));
        await Promise.all(servers.map((s) => s.close()));
        await controller.closeAsync();
        log.info({ version: controller.version }, 'controller-stopped');
      })();
      return closed;
    },
  };
}
