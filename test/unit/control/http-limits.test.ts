// The listener's limits on loopback: 413 before a body is read, timeouts for
// slow and silent connections, the connection cap answered with 503 while an
// mTLS client still gets in, one flood report per flood; and the client's
// one-sentence TLS errors (wrong CA, wrong name, expired, plain vs TLS).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createCerts } from '../../../src/control/certs.js';
import { httpJson, ProtocolError, Router, serve, type FloodReport, type JsonServer } from '../../../src/net/http.js';
import { loadTlsMaterial, TlsConfigError, TlsError, type TlsMaterial } from '../../../src/net/tls.js';

let dir: string;
let srv: TlsMaterial;
let cli: TlsMaterial;
const f = (n: string) => path.join(dir, n);

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swlimits-'));
  createCerts({ dir, hosts: ['127.0.0.1'], clients: ['cell1'] });
  createCerts({ dir: f('named'), hosts: ['controller.example'] });
  srv = loadTlsMaterial({ cert: f('controller.pem'), key: f('controller-key.pem'), ca: f('ca.pem') }, "the controller's");
  cli = loadTlsMaterial({ cert: f('cell1.pem'), key: f('cell1-key.pem'), ca: f('ca.pem') }, "this client's");
  // A server certificate that expired yesterday, signed by the same CA.
  execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('old-key.pem'), '-out', f('old.csr'), '-subj', '/CN=old'], { stdio: 'ignore' });
  fs.writeFileSync(f('old.cnf'), 'subjectAltName = IP:127.0.0.1\n');
  execFileSync('openssl', ['x509', '-req', '-in', f('old.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem'), '-days', '-1', '-extfile', f('old.cnf'), '-out', f('old.pem')], { stdio: 'ignore' });
}, 60_000);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const router = () =>
  new Router()
    .get('/ok', (req) => ({ status: 200, body: { peer: req.peer ?? null } }))
    .post('/echo', (req) => ({ status: 200, body: { got: req.body } }));

const tcp = { kind: 'tcp' as const, host: '127.0.0.1', port: 0 };

/** Raw bytes to a port; resolves with everything read until the server closes (bounded). */
function raw(port: number, text: string, ms = 3000): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    s.on('data', (d) => (out += d));
    s.on('error', () => {});
    const t = setTimeout(() => (s.destroy(), resolve(out)), ms);
    s.on('close', () => (clearTimeout(t), resolve(out)));
  });
}

describe('listener limits', () => {
  it('answers 413 on a declared length over the limit before reading the body, and on a chunked body as it passes the limit', async () => {
    const s = await serve(tcp, router().handle, { maxBodyBytes: 1024 });
    try {
      const port = (s.address as { port: number }).port;
      const t0 = Date.now();
      const declared = await raw(port, `POST /echo HTTP/1.1\r\nHost: x\r\ncontent-length: ${64 * 1024 * 1024}\r\n\r\n`);
      expect(declared).toMatch(/^HTTP\/1\.1 413 /);
      expect(declared).toMatch(/the request body is larger than 1024 bytes/);
      expect(Date.now() - t0).toBeLessThan(2000);
      const chunk = 'x'.repeat(600);
      const chunked = await raw(port, `POST /echo HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n${(600).toString(16)}\r\n${chunk}\r\n${(600).toString(16)}\r\n${chunk}\r\n`);
      expect(chunked).toMatch(/^HTTP\/1\.1 413 /);
      // Under the limit still works.
      expect(await httpJson(s.address, 'POST', '/echo', { a: 1 })).toEqual({ status: 200, body: { got: { a: 1 } } });
    } finally {
      await s.close();
    }
  });

  it('closes a connection that sends headers too slowly (408) and one that sends nothing', async () => {
    const s = await serve(tcp, router().handle, { limits: { headersTimeoutMs: 500, requestTimeoutMs: 800 } });
    try {
      const port = (s.address as { port: number }).port;
      const t0 = Date.now();
      const [slow, silent] = await Promise.all([raw(port, 'GET /ok HTTP/1.1\r\nHost: x\r\n', 5000), raw(port, '', 5000)]);
      expect(slow).toMatch(/^HTTP\/1\.1 408 /);
      // Closed either by Node's request timeout (408) or by the listener's own first-request bound (nothing).
      expect(silent === '' || /^HTTP\/1\.1 408 /.test(silent), silent).toBe(true);
      expect(Date.now() - t0).toBeLessThan(4000);
    } finally {
      await s.close();
    }
  });

  it('caps waiting connections with 503 (one flood report), while an mTLS client and a plain request still get in', async () => {
    const floods: FloodReport[] = [];
    const s = await serve(tcp, router().handle, { tls: srv, limits: { maxConnections: 20 }, onFlood: (r) => floods.push(r) });
    const socks: net.Socket[] = [];
    try {
      const port = (s.address as { port: number }).port;
      let closed = 0;
      for (let i = 0; i < 200; i++) {
        const k = net.connect(port, '127.0.0.1');
        k.on('error', () => {});
        k.on('close', () => closed++);
        k.resume();
        socks.push(k);
      }
      await new Promise((r) => setTimeout(r, 300));
      // The mTLS client gets its answer while the flood holds the cap.
      const t0 = Date.now();
      const r = await httpJson(s.address, 'GET', '/ok', undefined, { tls: cli, timeoutMs: 5000 });
      expect(r.status).toBe(200);
      expect(r.body.peer).toMatchObject({ present: true, authorized: true, subject: 'CN=cell1' });
      expect(Date.now() - t0).toBeLessThan(2000);
      // At most the cap (plus the newest few) stay open; the rest were closed.
      expect(closed).toBeGreaterThanOrEqual(170);
      // One report for the whole flood, after it calms down.
      for (let i = 0; i < 120 && floods.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(floods).toHaveLength(1);
      expect(floods[0]).toMatchObject({ maxConnections: 20, listener: expect.stringMatching(/^https:\/\/127\.0\.0\.1:\d+$/) });
      expect(floods[0]!.refused).toBeGreaterThanOrEqual(180);
    } finally {
      for (const k of socks) k.destroy();
      await s.close();
    }
  }, 20_000);

  it('answers 503 in HTTP on a plain listener when the cap is passed', async () => {
    const s = await serve(tcp, router().handle, { limits: { maxConnections: 2 } });
    const socks: net.Socket[] = [];
    try {
      const port = (s.address as { port: number }).port;
      const got: string[] = [];
      for (let i = 0; i < 3; i++) {
        const k = net.connect(port, '127.0.0.1');
        k.on('error', () => {});
        k.on('data', (d) => got.push(String(d)));
        socks.push(k);
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(got.join('')).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n[\s\S]*"error":"the controller has 2 connections waiting on this listener; try again"/);
    } finally {
      for (const k of socks) k.destroy();
      await s.close();
    }
  });
});

describe('TLS failures in one sentence', () => {
  let servers: JsonServer[] = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
    servers = [];
  });
  const tlsServer = async (m: TlsMaterial) => {
    const s = await serve(tcp, router().handle, { tls: m });
    servers.push(s);
    return s.address as { kind: 'tcp'; host: string; port: number; tls?: boolean };
  };

  it('wrong CA, wrong name, expired server certificate', async () => {
    const a = await tlsServer(srv);
    const other = fs.mkdtempSync(path.join(dir, 'other-'));
    createCerts({ dir: other });
    const otherCa = loadTlsMaterial({ ca: path.join(other, 'ca.pem') }, 'x');
    const e1 = await httpJson(a, 'GET', '/ok', undefined, { tls: otherCa }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(TlsError);
    expect((e1 as Error).message).toBe(
      `the certificate of https://127.0.0.1:${a.port} (CN=127.0.0.1, issued by CN=silkworm CA) is not signed by the CA in ${path.join(other, 'ca.pem')}`,
    );

    const named = await tlsServer(loadTlsMaterial({ cert: f('named/controller.pem'), key: f('named/controller-key.pem'), ca: f('named/ca.pem') }, 'x'));
    const e2 = await httpJson(named, 'GET', '/ok', undefined, { tls: loadTlsMaterial({ ca: f('named/ca.pem') }, 'x') }).catch((e: unknown) => e);
    expect((e2 as Error).message).toBe(`the certificate of https://127.0.0.1:${named.port} (CN=controller.example) is for DNS:controller.example, not 127.0.0.1`);

    const old = await tlsServer({ cert: fs.readFileSync(f('old.pem')), key: fs.readFileSync(f('old-key.pem')), ca: srv.ca });
    const e3 = await httpJson(old, 'GET', '/ok', undefined, { tls: cli }).catch((e: unknown) => e);
    expect((e3 as Error).message).toMatch(new RegExp(`^the certificate of https://127\\.0\\.0\\.1:${old.port} \\(CN=old\\) expired on \\d{4}-\\d\\d-\\d\\dT`));
  });

  it('plain HTTP to a TLS listener, and TLS to a plain one', async () => {
    const a = await tlsServer(srv);
    const e1 = await httpJson({ kind: 'tcp', host: a.host, port: a.port }, 'GET', '/ok').catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(ProtocolError);
    expect((e1 as Error).message).toBe(`127.0.0.1:${a.port} closed the connection without answering; if it is a TLS listener, use https://127.0.0.1:${a.port}`);
    const plain = await serve(tcp, router().handle);
    servers.push(plain);
    const p = (plain.address as { port: number }).port;
    const e2 = await httpJson({ kind: 'tcp', host: '127.0.0.1', port: p, tls: true }, 'GET', '/ok', undefined, { tls: cli }).catch((e: unknown) => e);
    expect((e2 as Error).message).toBe(`https://127.0.0.1:${p} does not speak TLS: use http://127.0.0.1:${p} (or host:port) for a plain listener`);
  });

  it('refuses unusable files before connecting: a missing file, a key of another certificate, an expired own certificate', () => {
    expect(() => loadTlsMaterial({ ca: f('nope.pem') }, 'x')).toThrow(new TlsConfigError(`cannot read --tls-ca ${f('nope.pem')}: no such file`));
    expect(() => loadTlsMaterial({ cert: f('cell1.pem'), key: f('controller-key.pem') }, "this client's")).toThrow(
      `--tls-key ${f('controller-key.pem')} is not the private key of --tls-cert ${f('cell1.pem')} (CN=cell1)`,
    );
    expect(() => loadTlsMaterial({ cert: f('old.pem'), key: f('old-key.pem') }, "this client's")).toThrow(
      new RegExp(`^this client's certificate ${f('old.pem').replace(/[.]/g, '\\.')} \\(CN=old\\) expired on \\d{4}-`),
    );
    expect(() => loadTlsMaterial({ cert: f('cell1.pem') }, 'x')).toThrow('--tls-cert needs --tls-key (its private key)');
  });
});
