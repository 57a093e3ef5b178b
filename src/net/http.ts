// JSON over HTTP on a unix socket, TCP or TCP with TLS, for the controller
// and the cells' admin sockets. Node's http/https modules only: a tiny router
// (exact paths, method check), a server that removes a stale unix socket,
// closes cleanly even with long-polls open and keeps a flood of slow or idle
// connections from taking every file descriptor (timeouts, a body limit, a
// connection cap per listener), and a client call that turns "nobody
// listens" and every TLS failure into one sentence the CLI can print.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import fs from 'node:fs';
import type tls from 'node:tls';
import { formatAddress, type Address } from './address.js';
import { explainTlsError, peekServerCert, peerCertOf, serverTlsOptions, type PeerCert, type TlsMaterial } from './tls.js';

export type { Address };

// ---------------------------------------------------------------------------
// Client

export interface HttpJsonOptions {
  /** Give up after this long (whole request, connect to last byte). Default 30 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** CA, client certificate and key for an https:// address (loadTlsMaterial). */
  tls?: TlsMaterial;
  /** Extra request headers, e.g. Authorization. */
  headers?: Record<string, string>;
  /** Also return the body's text (HttpJsonResult.text): for numbers JSON.parse would round. */
  keepText?: boolean;
}

export interface HttpJsonResult {
  status: number;
  // The parsed JSON body (null when empty; the raw text when it is not JSON).
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
  /** The body as it came (UTF-8), when the request asked for it (HttpJsonOptions.keepText). */
  text?: string;
}

/** Nobody listens at the address (ENOENT/ECONNREFUSED…): the peer is not running. */
export class UnreachableError extends Error {
  constructor(
    readonly address: Address,
    readonly code: string,
  ) {
    super(`cannot reach ${formatAddress(address)} (${code})`);
    this.name = 'UnreachableError';
  }
}

/** The request took longer than timeoutMs. */
export class HttpTimeoutError extends Error {
  constructor(
    readonly address: Address,
    readonly timeoutMs: number,
  ) {
    super(`${formatAddress(address)} did not answer within ${timeoutMs} ms`);
    this.name = 'HttpTimeoutError';
  }
}

const UNREACHABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTSOCK', 'EACCES']);

// One keep-alive agent for the process: a watching cell and the CLI reuse
// their connection instead of paying a connect per request (the propagation
// budget is 100 ms). Idle sockets are unref'd by the agent, so a CLI exits.
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
// One https agent per set of TLS material (a process normally has one).
const tlsAgents = new WeakMap<TlsMaterial, https.Agent>();
const noMaterial: TlsMaterial = {};
function tlsAgent(m: TlsMaterial): https.Agent {
  let a = tlsAgents.get(m);
  if (!a) {
    a = new https.Agent({ keepAlive: true, maxSockets: 64, ca: m.ca, cert: m.cert, key: m.key, minVersion: 'TLSv1.2' });
    tlsAgents.set(m, a);
  }
  return a;
}

export function httpJson(
  addr: Address,
  method: string,
  path: string,
  body?: unknown,
  opts: HttpJsonOptions = {},
): Promise<HttpJsonResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: http.OutgoingHttpHeaders = { ...opts.headers, accept: 'application/json' };
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = payload.length;
  }
  const useTls = addr.kind === 'tcp' && addr.tls === true;
  const target: http.RequestOptions =
    addr.kind === 'unix'
      ? { socketPath: addr.path, method, path, headers, agent }
      : { host: addr.host, port: addr.port, method, path, headers, agent: useTls ? tlsAgent(opts.tls ?? noMaterial) : agent };

  return new Promise<HttpJsonResult>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(abortReason(opts.signal));
      return;
    }
    let settled = false;
    const finish = (err: Error | null, res?: HttpJsonResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(res!);
    };
    const req = (useTls ? https.request : http.request)(target, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => finish(e));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = null;
        if (text.length > 0) {
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
        }
        finish(null, opts.keepText ? { status: res.statusCode ?? 0, body: parsed, text } : { status: res.statusCode ?? 0, body: parsed });
      });
    });
    const onAbort = () => {
      finish(abortReason(opts.signal!));
      req.destroy();
    };
    const timer = setTimeout(() => {
      finish(new HttpTimeoutError(addr, timeoutMs));
      req.destroy();
    }, timeoutMs);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      if (e.code && UNREACHABLE.has(e.code)) return finish(new UnreachableError(addr, e.code));
      if (addr.kind === 'tcp' && useTls) {
        // Fetch the server's certificate (without sending anything) only to name it in the sentence.
        const needPeer = e.code !== undefined && !e.code.startsWith('ERR_SSL') && e.code !== 'ERR_TLS_CERT_ALTNAME_INVALID';
        void (needPeer ? peekServerCert(addr.host, addr.port) : Promise.resolve(null)).then((peer) => {
          finish(explainTlsError(e, formatAddress(addr), opts.tls, peer) ?? e);
        });
        return;
      }
      if (addr.kind === 'tcp' && (e.code === 'ECONNRESET' || e.message === 'socket hang up')) {
        return finish(new ProtocolError(addr, `${formatAddress(addr)} closed the connection without answering; if it is a TLS listener, use https://${formatAddress(addr)}`));
      }
      finish(e);
    });
    req.end(payload);
  });
}

/** The peer spoke something other than what the address says (plain HTTP to a TLS listener…). */
export class ProtocolError extends Error {
  constructor(
    readonly address: Address,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  const e = new Error('the request was aborted');
  e.name = 'AbortError';
  return e;
}

// ---------------------------------------------------------------------------
// Server

export interface JsonRequest {
  method: string;
  /** The path without the query string. */
  path: string;
  query: URLSearchParams;
  /** The parsed JSON body; undefined when the request had none. */
  body: unknown;
  /** Aborted when the client goes away (a long-poll stops waiting). */
  signal: AbortSignal;
  /** The request's headers (lower-case names). */
  headers?: http.IncomingHttpHeaders;
  /** Which kind of listener it arrived on: a unix socket is local and trusted, TCP is not. */
  transport?: 'unix' | 'tcp';
  /** On a TLS listener: the client's certificate, verified against the listener's CA. */
  peer?: PeerCert;
}

export interface JsonResponse {
  status: number;
  /** Serialised with JSON.stringify unless `raw` is given. */
  body?: unknown;
  /** Pre-serialised JSON (e.g. a snapshot shared by every watching cell). */
  raw?: string | Buffer;
  /** Content type of `raw` (default application/json), e.g. Prometheus text. */
  contentType?: string;
  /** Extra response headers, e.g. WWW-Authenticate. */
  headers?: Record<string, string>;
  /**
   * Write the response itself, in pieces (a listing too big to build as one
   * body); `status`, `body` and `raw` are then ignored. Must end the response.
   */
  stream?: (res: http.ServerResponse) => Promise<void>;
}

export type JsonHandler = (req: JsonRequest) => JsonResponse | Promise<JsonResponse>;

/** An error a handler throws to answer `status {"error": message}`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** Exact-path routing with a method check: unknown path → 404, wrong method → 405. */
export class Router {
  private readonly routes = new Map<string, Map<string, JsonHandler>>();
  private fallback: JsonHandler | undefined;

  /** Answer paths no route matches with `h` (it may still answer 404) instead of the plain 404. */
  otherwise(h: JsonHandler): this {
    this.fallback = h;
    return this;
  }

  on(method: string, path: string, handler: JsonHandler): this {
    let byMethod = this.routes.get(path);
    if (!byMethod) this.routes.set(path, (byMethod = new Map()));
    byMethod.set(method.toUpperCase(), handler);
    return this;
  }
  get(path: string, h: JsonHandler): this {
    return this.on('GET', path, h);
  }
  post(path: string, h: JsonHandler): this {
    return this.on('POST', path, h);
  }
  put(path: string, h: JsonHandler): this {
    return this.on('PUT', path, h);
  }

  /** The handler to pass to serve(). */
  readonly handle: JsonHandler = (req) => {
    const byMethod = this.routes.get(req.path);
    if (!byMethod) return this.fallback ? this.fallback(req) : { status: 404, body: { error: `no such endpoint: ${req.path}` } };
    const h = byMethod.get(req.method);
    if (!h) {
      return {
        status: 405,
        body: { error: `${req.path} takes ${[...byMethod.keys()].join(' or ')}, not ${req.method}` },
      };
    }
    return h(req);
  };
}

export interface ServeOptions {
  /** Largest request body accepted (413 beyond, answered before the body is read). Default 1 MiB. */
  maxBodyBytes?: number;
  /** Mode of a unix socket file (default 0o660: root and its group only). */
  socketMode?: number;
  /** Called for a handler that threw something other than HttpError (answered 500). */
  onError?: (err: unknown, req: JsonRequest) => void;
  /** Serve TLS on a TCP address with this material (cert, key, and the CA client certificates are checked against). */
  tls?: TlsMaterial;
  limits?: ServeLimits;
  /** Told once per flood of refused connections, after 5 s without a refusal (see ServeLimits.maxConnections). */
  onFlood?: (f: FloodReport) => void;
}

export interface ServeLimits {
  /** The request line and headers must arrive within this (default 10 s; Node answers 408). */
  headersTimeoutMs?: number;
  /** Headers and body must arrive within this (default 30 s; 408). A held long-poll is not counted: its request is complete. */
  requestTimeoutMs?: number;
  /** A keep-alive connection with no request is closed after this (default 60 s). */
  idleTimeoutMs?: number;
  /** A TLS handshake must finish within this (default 10 s). */
  handshakeTimeoutMs?: number;
  /**
   * Connections that are not yet trusted (no verified client certificate) and
   * have no request being answered, per listener (default 1024). One more
   * closes the longest-waiting of them with 503, so a flood of slow requests
   * holds at most this many descriptors and a newcomer still gets in.
   */
  maxConnections?: number;
}

export interface FloodReport {
  listener: string;
  /** Connections closed with 503 during the flood. */
  refused: number;
  /** From the first refusal to the last. */
  durationMs: number;
  maxConnections: number;
}

export interface JsonServer {
  readonly address: Address;
  /** Stop listening, end open long-polls, remove the unix socket file. */
  close(): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const DEFAULT_MAX_CONNECTIONS = 1024;

const RAW = Symbol('silkworm.rawSocket');
type Tagged = net.Socket & { [RAW]?: net.Socket };

/**
 * Listen on `addr` and answer every request with `handler`. A unix socket file
 * left by a dead process is removed first; one with a live listener is an error
 * (two controllers on one socket would split the cells).
 */
export async function serve(addr: Address, handler: JsonHandler, opts: ServeOptions = {}): Promise<JsonServer> {
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const lim = opts.limits ?? {};
  const useTls = addr.kind === 'tcp' && opts.tls !== undefined;
  const httpOpts: http.ServerOptions = {
    // Node checks header/request timeouts on this interval (default 30 s: far too coarse for a flood).
    connectionsCheckingInterval: 1000,
    headersTimeout: lim.headersTimeoutMs ?? 10_000,
    requestTimeout: lim.requestTimeoutMs ?? 30_000,
    keepAliveTimeout: lim.idleTimeoutMs ?? 60_000,
  };
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    void dispatch(req, res, handler, maxBody, opts.onError, addr.kind, admission);
  };
  const server: http.Server = useTls
    ? https.createServer({ ...httpOpts, ...serverTlsOptions(opts.tls!), handshakeTimeout: lim.handshakeTimeoutMs ?? 10_000 }, onRequest)
    : http.createServer(httpOpts, onRequest);
  // A socket with no traffic is not closed by itself: held long-polls are silent for ~25 s.
  server.timeout = 0;
  const listenerName = formatAddress(useTls ? { ...(addr as { kind: 'tcp'; host: string; port: number }), tls: true } : addr);
  const firstRequestMs = (lim.requestTimeoutMs ?? 30_000) + 500 + (useTls ? (lim.handshakeTimeoutMs ?? 10_000) : 0);
  const admission = new Admission(lim.maxConnections ?? DEFAULT_MAX_CONNECTIONS, useTls, firstRequestMs, (f) => opts.onFlood?.({ ...f, listener: listenerName }));
  server.on('connection', (raw: net.Socket) => admission.admit(raw));
  if (useTls) {
    server.on('secureConnection', (t: tls.TLSSocket) => {
      const raw = (t as unknown as { _parent?: net.Socket })._parent;
      if (raw) {
        (t as Tagged)[RAW] = raw;
        admission.secured(raw, t);
      }
    });
    // A failed handshake (a plain-HTTP client, a scanner) is that connection's business only.
    server.on('tlsClientError', (_err, sock) => sock.destroy());
  }
  // Malformed requests, header/request timeouts: answer as Node would, without a log line per connection.
  server.on('clientError', (err: NodeJS.ErrnoException, sock: net.Socket) => {
    if (!sock.writable || (sock as net.Socket & { _httpMessage?: unknown })._httpMessage) {
      sock.destroy();
      return;
    }
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
    sock.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    sock.destroy();
  });

  if (addr.kind === 'unix') await removeStaleSocket(addr.path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (addr.kind === 'unix') server.listen(addr.path, () => resolve());
    // Node's default accept queue (511): a deeper one only makes a newcomer wait behind more of a flood.
    else server.listen(addr.port, addr.host, () => resolve());
  });
  server.on('error', () => {
    /* after listen, errors belong to single connections */
  });
  let bound: Address = addr;
  if (addr.kind === 'unix') {
    fs.chmodSync(addr.path, opts.socketMode ?? 0o660);
  } else {
    const a = server.address();
    if (a && typeof a === 'object') bound = useTls ? { kind: 'tcp', host: addr.host, port: a.port, tls: true } : { kind: 'tcp', host: addr.host, port: a.port };
  }

  let closing: Promise<void> | undefined;
  return {
    address: bound,
    close() {
      closing ??= new Promise<void>((resolve) => {
        admission.stop();
        server.close(() => resolve());
        // Idle keep-alive connections and held long-polls would keep close()
        // waiting for ever; end them now.
        server.closeAllConnections();
        admission.destroyAll();
      }).then(() => {
        if (addr.kind === 'unix') {
          try {
            fs.unlinkSync(addr.path);
          } catch {
            /* already gone */
          }
        }
      });
      return closing;
    },
  };
}

/**
 * The connection cap of one listener. Every raw connection starts out
 * waiting (in arrival order); it leaves that set while a complete request is
 * being answered, or for good once a TLS client certificate verifies. When
 * more than `cap` are waiting, the longest-waiting one is closed with 503 —
 * a slow-request flood then holds at most `cap` descriptors, and a new
 * client (an mTLS cell, a CLI) always gets its turn.
 */
class Admission {
  private readonly waiting = new Set<net.Socket>();
  private readonly secure = new WeakMap<net.Socket, tls.TLSSocket>();
  private readonly all = new Set<net.Socket>();
  private readonly served = new WeakSet<net.Socket>();
  private refused = 0;
  private firstAt = 0;
  private lastAt = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly cap: number,
    private readonly tls: boolean,
    /** A connection that has sent no complete request by then is closed (Node's own header timeout starts only at the first byte). */
    private readonly firstRequestMs: number,
    private readonly report: (f: Omit<FloodReport, 'listener'>) => void,
  ) {}

  admit(raw: net.Socket): void {
    this.all.add(raw);
    this.waiting.add(raw);
    const silent = setTimeout(() => {
      if (!this.served.has(raw) && this.waiting.has(raw)) raw.destroy();
    }, this.firstRequestMs);
    silent.unref();
    raw.once('close', () => {
      clearTimeout(silent);
      this.all.delete(raw);
      this.waiting.delete(raw);
    });
    if (this.waiting.size > this.cap) {
      const oldest = this.waiting.values().next().value as net.Socket;
      this.refuse(oldest);
    }
  }

  secured(raw: net.Socket, t: tls.TLSSocket): void {
    this.secure.set(raw, t);
    if (t.authorized) this.waiting.delete(raw); // a verified client certificate: never evicted
  }

  /** A complete request is being answered on this connection. */
  busy(sock: net.Socket): void {
    const raw = (sock as Tagged)[RAW] ?? sock;
    this.served.add(raw);
    this.waiting.delete(raw);
  }

  /** The answer went out; an untrusted keep-alive connection waits again (as the newest). */
  idle(sock: net.Socket): void {
    const raw = (sock as Tagged)[RAW] ?? sock;
    const t = this.secure.get(raw);
    if (t?.authorized) return;
    if (this.all.has(raw) && !raw.destroyed) this.waiting.add(raw);
  }

  private refuse(raw: net.Socket): void {
    this.waiting.delete(raw);
    const now = Date.now();
    if (this.refused === 0) this.firstAt = now;
    this.refused++;
    this.lastAt = now;
    this.timer ??= setInterval(() => this.maybeReport(), 1000).unref();
    const body = JSON.stringify({ error: `the controller has ${this.cap} connections waiting on this listener; try again` });
    const answer = `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nretry-after: 1\r\nconnection: close\r\n\r\n${body}`;
    // Over TLS the answer can only go through an established session; before the handshake there is nobody to tell.
    const out: net.Socket | undefined = this.tls ? this.secure.get(raw) : raw;
    if (out && out.writable) out.write(answer, () => raw.destroy());
    else raw.destroy();
    // Never wait on a peer that does not read: the descriptor is what the cap protects.
    setImmediate(() => raw.destroy());
  }

  private maybeReport(): void {
    if (this.refused === 0 || Date.now() - this.lastAt < 5000) return;
    this.report({ refused: this.refused, durationMs: this.lastAt - this.firstAt, maxConnections: this.cap });
    this.refused = 0;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  destroyAll(): void {
    for (const s of this.all) s.destroy();
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another process is already listening on ${path}`);
  fs.unlinkSync(path);
}

/** The client went away while its body was being read: nobody to answer, nothing to log. */
class ClientGone extends Error {}

async function dispatch(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  handler: JsonHandler,
  maxBody: number,
  onError: ServeOptions['onError'],
  transport: 'unix' | 'tcp',
  admission: Admission,
): Promise<void> {
  const ac = new AbortController();
  // 'close' on the response fires when it is finished or the peer vanished;
  // only the latter should abort a held long-poll.
  res.on('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  const url = new URL(req.url ?? '/', 'http://x');
  const jreq: JsonRequest = {
    method: (req.method ?? 'GET').toUpperCase(),
    path: url.pathname,
    query: url.searchParams,
    body: undefined,
    signal: ac.signal,
    headers: req.headers,
    transport,
  };
  const sock = req.socket as tls.TLSSocket;
  if (typeof sock.getPeerCertificate === 'function') jreq.peer = peerCertOf(sock);
  let out: JsonResponse;
  let closeAfter = false;
  try {
    jreq.body = await readJsonBody(req, maxBody);
    admission.busy(req.socket);
    res.once('finish', () => admission.idle(req.socket));
    out = await handler(jreq);
  } catch (err) {
    if (err instanceof ClientGone) {
      req.socket.destroy();
      return;
    }
    if (err instanceof HttpError) {
      out = { status: err.status, body: { error: err.message } };
      // The rest of an oversized body is not read: the connection cannot carry another request.
      if (err.status === 413) closeAfter = true;
    } else {
      onError?.(err, jreq);
      out = { status: 500, body: { error: 'internal error: ' + (err instanceof Error ? err.message : String(err)) } };
    }
  }
  if (res.destroyed) return;
  if (out.stream) {
    try {
      await out.stream(res);
    } catch (err) {
      onError?.(err, jreq);
      res.destroy();
    }
    return;
  }
  const data = out.raw ?? (out.body === undefined ? '' : JSON.stringify(out.body));
  res.writeHead(out.status, {
    ...out.headers,
    'content-type': out.contentType ?? 'application/json',
    'content-length': Buffer.byteLength(data),
    // As the policy server's NoSniffHeaderHandler: clients must not guess types.
    'x-content-type-options': 'nosniff',
    ...(closeAfter ? { connection: 'close' } : {}),
  });
  res.end(data, closeAfter ? () => req.socket.destroy() : undefined);
}

function readJsonBody(req: http.IncomingMessage, maxBody: number): Promise<unknown> {
  const tooBig = () => new HttpError(413, `the request body is larger than ${maxBody} bytes`);
  // Refuse on the declared length, before a byte of the body is read.
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > maxBody) {
    req.pause();
    return Promise.reject(tooBig());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > maxBody) {
        // A chunked body that grows past the limit: answer now, read no further.
        done = true;
        req.pause();
        reject(tooBig());
      } else chunks.push(c);
    });
    req.on('error', () => {
      if (!done) reject(new ClientGone());
      done = true;
    });
    req.on('aborted', () => {
      if (!done) reject(new ClientGone());
      done = true;
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      if (size === 0) return resolve(undefined);
      const text = Buffer.concat(chunks).toString('utf8');
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new HttpError(400, `the request body is not valid JSON (${(e as Error).message})`));
      }
    });
  });
}
