// The policy server's and silk-controller's endpoints that a real
// vxlan-policy-agent, a single_ip_only VM or an operator calls besides the
// everyday ones, each answering as upstream's handler does:
//
//   GET /, GET /networking      uptime text   (policy-server handlers/uptime_handler.go)
//   GET /health                 200, empty    (handlers/health.go; silk handlers/health.go)
//   GET  /networking/v1/internal/policies_last_updated   (handlers/policies_last_updated_internal.go)
//   GET  /networking/v1/internal/security_groups         (handlers/asgs_index.go)
//   PUT  /networking/v1/internal/tags                    (handlers/tags_create.go)
//   406 "api version 'vN' not supported" for a version other than v1
//                                                        (handlers/check_version_wrapper.go)
//
// and the bearer-token gate of the external API (handlers/auth_middleware.go),
// applied to requests that arrived over TCP when a token key is configured.
import { ConflictError, type Controller } from './controller.js';
import type { JsonHandler, JsonResponse, Router } from '../net/http.js';
import type { Need, TokenVerifier } from './auth.js';
import { ValidationError, validateTagBody } from './validate.js';
import { StoreUnavailableError } from './store.js';
import type { Logger } from '../util/log.js';

/** Wrap `h` so TCP requests need a token with the scopes `need` asks for; the unix socket stays trusted. */
export function requireToken(verifier: TokenVerifier | undefined, need: Need, h: JsonHandler, log?: Logger): JsonHandler {
  if (!verifier) return h;
  return async (req) => {
    if (req.transport === 'unix') return h(req);
    const r = await verifier.check(req.headers?.authorization, need);
    if (r.ok) return h(req);
    log?.warn({ method: req.method, path: req.path, status: r.status, reason: r.reason }, 'request-unauthorized');
    const out: JsonResponse = { status: r.status, body: { error: r.error } };
    if (r.status === 401) out.headers = { 'www-authenticate': 'Bearer' };
    return out;
  };
}

/** The external API's paths after /networking/:version/ (the policy server's external routes). */
const EXTERNAL = /^\/networking\/([^/]+)\/external\/(policies|policies\/delete|policies\/cleanup|tags|whoami)$/;

export interface UpstreamRouteOptions {
  /** Epoch ms the server started (the uptime text). Default: now. */
  startedAt?: number;
  /** Wraps the internal endpoints (the controller's client-certificate gate on TLS listeners). */
  internal?: (h: JsonHandler) => JsonHandler;
}

export function registerUpstreamRoutes(r: Router, c: Controller, opts: UpstreamRouteOptions = {}): Router {
  const startedAt = opts.startedAt ?? Date.now();
  const uptime: JsonHandler = () => ({
    status: 200,
    raw: `Network policy server, up for ${goDuration(Date.now() - startedAt)}\n`,
    contentType: 'text/plain; charset=utf-8',
  });
  r.get('/', uptime);
  r.get('/networking', uptime);
  // The store is in memory and SQLite is in-process: if this answers, the database does.
  r.get('/health', () => ({ status: 200, raw: '', contentType: 'text/plain; charset=utf-8' }));

  const internal = opts.internal ?? ((h: JsonHandler) => h);
  r.get('/networking/v1/internal/policies_last_updated', internal(() => ({
    status: 200,
    raw: c.policiesLastUpdatedNanos(),
    contentType: 'text/plain; charset=utf-8',
  })));
  // silkworm has no application security groups: the policy agent gets an empty page.
  r.get('/networking/v1/internal/security_groups', internal(() => ({ status: 200, body: { next: 0, security_groups: [] } })));
  r.put('/networking/v1/internal/tags', internal(async (req) => {
    try {
      const { id, type } = validateTagBody(req.body);
      return { status: 200, body: await c.createTagAsync(id, type) };
    } catch (e) {
      if (e instanceof ValidationError) return { status: e.status, body: { error: e.upstream } };
      if (e instanceof ConflictError) return { status: 409, body: { error: e.upstream } };
      if (e instanceof StoreUnavailableError) return { status: 503, body: { error: e.message } };
      throw e;
    }
  }));

  r.otherwise((req) => {
    const m = EXTERNAL.exec(req.path);
    if (m && m[1] !== 'v1') return { status: 406, body: { error: `api version '${m[1]}' not supported` } };
    return { status: 404, body: { error: `no such endpoint: ${req.path}` } };
  });
  return r;
}

/** A duration as Go's time.Duration.String prints it: "1h2m3.5s", "4m0.25s", "1.5s", "250ms". */
export function goDuration(ms: number): string {
  const ns = Math.max(0, Math.round(ms * 1e6));
  if (ns === 0) return '0s';
  if (ns < 1e9) {
    const [unit, div] = ns < 1e3 ? ['ns', 1] : ns < 1e6 ? ['µs', 1e3] : ['ms', 1e6];
    return `${trimFrac(ns / div)}${unit}`;
  }
  const h = Math.floor(ns / 3.6e12);
  const m = Math.floor((ns % 3.6e12) / 6e10);
  const s = (ns % 6e10) / 1e9;
  let out = '';
  if (h > 0) out += `${h}h`;
  if (h > 0 || m > 0) out += `${m}m`;
  return out + `${trimFrac(s)}s`;
}

function trimFrac(v: number): string {
  return v.toFixed(9).replace(/\.?0+$/, '');
}
