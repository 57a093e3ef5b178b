// A stand-in for an unmodified silk-controller and policy server, built from
// request/response pairs recorded from their contract (the handlers and the
// clients that call them, cited per pair), served over mutual TLS the way
// they serve it: a client without a certificate signed by the CA is refused
// in the handshake (tls.RequireAndVerifyClientCert), an unknown path gets Go's
// plain-text 404. It replays, it does not compute: a test changes what a path
// answers with set(), and reads what the cell asked in `requests`.
//
// Checked against the real binaries (silk-release 5148d058, cf-networking-release
// 240c7422, both v3.53.0+1, built and run by scripts/upstream-by-hand.sh): neither
// server sets a content type on its JSON answers, so Go's sniffing sends
// `text/plain; charset=utf-8` (the default below); policies_last_updated is Unix
// nanoseconds (19 digits, more than a double holds exactly).
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TlsMaterial } from '../net/tls.js';

export interface RecordedExchange {
  /** The upstream file this pair comes from. */
  source: string;
  method: string;
  /** Path with its query string, exactly as the upstream client sends it. */
  path: string;
  status: number;
  /** JSON body (serialised) or, for a string, the raw text. */
  response: unknown;
  /** Default text/plain; charset=utf-8, what the real servers send (see above). */
  contentType?: string;
}

export const RECORDED_LEASE = {
  underlay_ip: '198.18.0.11',
  overlay_subnet: '10.255.7.0/24',
  overlay_hardware_addr: 'ee:ee:0a:ff:07:00',
} as const;
export const RECORDED_OTHER_LEASE = {
  underlay_ip: '198.18.0.12',
  overlay_subnet: '10.255.9.0/24',
  overlay_hardware_addr: 'ee:ee:0a:ff:09:00',
} as const;

/** silk-controller (silk-release: src/code.cloudfoundry.org/silk/controller). */
export const SILK_CONTROLLER_RECORDED: RecordedExchange[] = [
  {
    source: 'controller/handlers/lease_acquire.go (answers the Lease it stored; client.go acquireLease)',
    method: 'PUT',
    path: '/leases/acquire',
    status: 200,
    response: RECORDED_LEASE,
  },
  {
    source: 'controller/handlers/renew_lease.go: w.Write([]byte("{}")) after a successful renew',
    method: 'PUT',
    path: '/leases/renew',
    status: 200,
    response: {},
  },
  {
    source: 'controller/handlers/leases_index.go: {"leases": [...]} of every routable lease',
    method: 'GET',
    path: '/leases',
    status: 200,
    response: { leases: [RECORDED_LEASE, RECORDED_OTHER_LEASE] },
  },
  {
    source: 'controller/handlers/release_lease.go: {} after a release',
    method: 'PUT',
    path: '/leases/release',
    status: 200,
    response: {},
  },
  {
    source: 'controller/handlers/health.go',
    method: 'GET',
    path: '/health',
    status: 200,
    response: '',
  },
];

/** The 409 silk-controller answers a renew of a lease it does not hold (integration/integration_test.go, "lease mismatch"). */
export const SILK_RENEW_CONFLICT: RecordedExchange = {
  source: 'controller/handlers/renew_lease.go Conflict + controller/integration/integration_test.go',
  method: 'PUT',
  path: '/leases/renew',
  status: 409,
  response: { error: 'renew-subnet-lease: lease mismatch' },
};

export const RECORDED_POLICY = {
  source: { id: 'appB', tag: '0001' },
  destination: { id: 'appA', tag: '0002', protocol: 'tcp', ports: { start: 8080, end: 8080 } },
} as const;

/** The policy server's internal API (cf-networking-release: src/code.cloudfoundry.org/policy-server/handlers). */
export const POLICY_SERVER_RECORDED: RecordedExchange[] = [
  {
    source: 'handlers/policies_last_updated_internal.go: strconv.Itoa(lastUpdated), no content type set',
    method: 'GET',
    path: '/networking/v1/internal/policies_last_updated',
    status: 200,
    response: '1796039918941272000',
  },
  {
    source: 'handlers/policies_index_internal.go, asked by policy_client/internal_policy_client.go GetPoliciesByID',
    method: 'GET',
    path: '/networking/v1/internal/policies?id=appA',
    status: 200,
    response: { total_policies: 1, policies: [RECORDED_POLICY] },
  },
  {
    source: 'handlers/policies_index_internal.go (no policy names the app)',
    method: 'GET',
    path: '/networking/v1/internal/policies?id=appC',
    status: 200,
    response: { total_policies: 0, policies: [] },
  },
];

export interface SeenRequest {
  method: string;
  path: string;
  body: unknown;
}

export class FakeUpstream {
  readonly requests: SeenRequest[] = [];
  private readonly answers = new Map<string, RecordedExchange>();
  private server: https.Server | undefined;

  constructor(exchanges: RecordedExchange[], private readonly tls: Required<Pick<TlsMaterial, 'cert' | 'key' | 'ca'>>) {
    for (const e of exchanges) this.set(e);
  }

  /** Answer `e.method e.path` with `e` from now on. */
  set(e: RecordedExchange): void {
    this.answers.set(`${e.method} ${e.path}`, e);
  }

  /** Requests seen for one path (without the query string). */
  seen(method: string, pathname: string): SeenRequest[] {
    return this.requests.filter((r) => r.method === method && r.path.split('?')[0] === pathname);
  }

  async start(): Promise<number> {
    this.server = https.createServer(
      // As silk-controller and the policy server's internal listener: mutual TLS, TLS 1.2+, verified in the handshake.
      { cert: this.tls.cert, key: this.tls.key, ca: this.tls.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
      (req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = undefined;
          if (text) {
            try {
              body = JSON.parse(text);
            } catch {
              body = text;
            }
          }
          const method = req.method ?? 'GET';
          const path = req.url ?? '/';
          this.requests.push({ method, path, body });
          const e = this.answers.get(`${method} ${path}`);
          if (!e) {
            // Go's http.NotFound.
            res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' });
            res.end('404 page not found\n');
            return;
          }
          const out = typeof e.response === 'string' ? e.response : JSON.stringify(e.response);
          // As observed: no handler sets a content type, Go's http.DetectContentType says text/plain.
          res.writeHead(e.status, { 'content-type': e.contentType ?? 'text/plain; charset=utf-8' });
          res.end(out);
        });
      },
    );
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    const s = this.server;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}
