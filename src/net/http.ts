// JSON over HTTP on a unix socket or TCP, for the controller and the cells'
// admin sockets. Node's http module only: a tiny router (exact paths, method
// check), a server that removes a stale unix socket and closes cleanly even
// with long-polls open, and a client call that turns "nobody listens" into an
// UnreachableError the CLI can print as one sentence.
import http from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import { formatAddress, type Address } from './address.js';

export type { Address };

// ---------------------------------------------------------------------------
// Client

export interface HttpJsonOptions {
  /** Give up after this long (whole request, connect to last byte). Default 30 s. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface HttpJsonResult {
  status: number;
  // The parsed JSON body (null when empty; the raw text when it is not JSON).
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
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

export function httpJson(
  addr: Address,
  method: string,
  path: string,
  body?: unknown,
  opts: HttpJsonOptions = {},
): Promise<HttpJsonResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: http.OutgoingHttpHeaders = { accept: 'application/json' };
  if (payload) {
    headers['content-type'] = 'application/json';
    headers['content-length'] = payload.length;
  }
  const target: http.RequestOptions =
    addr.kind === 'unix'
      ? { socketPath: addr.path, method, path, headers, agent }
      : { host: addr.host, port: addr.port, method, path, headers, agent };

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
    const req = http.request(target, (res) => {
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
        finish(null, { status: res.statusCode ?? 0, body: parsed });
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
      if (e.code && UNREACHABLE.has(e.code)) finish(new UnreachableError(addr, e.code));
      else finish(e);
    });
    req.end(payload);
  });
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
  /** Largest request body accepted (413 beyond). Default 64 MiB: 60,000 policies are ≈ 8 MB. */
  maxBodyBytes?: number;
  /** Mode of a unix socket file (default 0o660: root and its group only). */
  socketMode?: number;
  /** Called for a handler that threw something other than HttpError (answered 500). */
  onError?: (err: unknown, req: JsonRequest) => void;
}

export interface JsonServer {
  readonly address: Address;
  /** Stop listening, end open long-polls, remove the unix socket file. */
  close(): Promise<void>;
}

/**
 * Listen on `addr` and answer every request with `handler`. A unix socket file
 * left by a dead process is removed first; one with a live listener is an error
 * (two controllers on one socket would split the cells).
 */
export async function serve(addr: Address, handler: JsonHandler, opts: ServeOptions = {}): Promise<JsonServer> {
  const maxBody = opts.maxBodyBytes ?? 64 * 1024 * 1024;
  const server = http.createServer((req, res) => {
    void dispatch(req, res, handler, maxBody, opts.onError, addr.kind);
  });
  // Long-polls are held ~25 s; keep Node's request timeout well above that.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 60_000;

  if (addr.kind === 'unix') await removeStaleSocket(addr.path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (addr.kind === 'unix') server.listen(addr.path, () => resolve());
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
    if (a && typeof a === 'object') bound = { kind: 'tcp', host: addr.host, port: a.port };
  }

  let closing: Promise<void> | undefined;
  return {
    address: bound,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Idle keep-alive connections and held long-polls would keep close()
        // waiting for ever; end them now.
        server.closeAllConnections();
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

async function dispatch(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  handler: JsonHandler,
  maxBody: number,
  onError: ServeOptions['onError'],
  transport: 'unix' | 'tcp',
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
  let out: JsonResponse;
  try {
    jreq.body = await readJsonBody(req, maxBody);
    out = await handler(jreq);
  } catch (err) {
    if (err instanceof HttpError) out = { status: err.status, body: { error: err.message } };
    else {
      onError?.(err, jreq);
      out = { status: 500, body: { error: 'internal error: ' + (err instanceof Error ? err.message : String(err)) } };
    }
  }
  if (res.destroyed) return;
  const data = out.raw ?? (out.body === undefined ? '' : JSON.stringify(out.body));
  res.writeHead(out.status, {
    ...out.headers,
    'content-type': out.contentType ?? 'application/json',
    'content-length': Buffer.byteLength(data),
    // As the policy server's NoSniffHeaderHandler: clients must not guess types.
    'x-content-type-options': 'nosniff',
  });
  res.end(data);
}

function readJsonBody(req: http.IncomingMessage, maxBody: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBody) tooBig = true;
      else chunks.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (tooBig) return reject(new HttpError(413, `the request body is larger than ${maxBody} bytes`));
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
