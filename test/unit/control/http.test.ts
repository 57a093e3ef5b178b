import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { httpJson, Router, serve, HttpError, UnreachableError, HttpTimeoutError, type JsonServer } from '../../../src/net/http.js';

let dir: string;
let servers: JsonServer[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swhttp-'));
});
afterEach(async () => {
  for (const s of servers) await s.close();
  servers = [];
  fs.rmSync(dir, { recursive: true, force: true });
});

function router(): Router {
  return new Router()
    .get('/hello', (req) => ({ status: 200, body: { hello: req.query.get('name') } }))
    .post('/echo', (req) => ({ status: 201, body: { got: req.body } }))
    .put('/teapot', () => {
      throw new HttpError(418, 'I am a teapot');
    })
    .get('/boom', () => {
      throw new Error('kaput');
    })
    .get('/raw', () => ({ status: 200, raw: '{"pre":"serialised"}' }))
    .get('/slow', (req) =>
      new Promise((resolve) => {
        const t = setTimeout(() => resolve({ status: 200, body: { late: true } }), 5000);
        req.signal.addEventListener('abort', () => {
          clearTimeout(t);
          aborted.add(req.query.get('id') ?? '');
          resolve({ status: 200, body: {} });
        });
      }),
    );
}
const aborted = new Set<string>();

describe('serve + httpJson over a unix socket', () => {
  it('routes, parses bodies and answers JSON', async () => {
    const addr = { kind: 'unix' as const, path: path.join(dir, 'a.sock') };
    servers.push(await serve(addr, router().handle));
    expect(fs.statSync(addr.path).mode & 0o777).toBe(0o660);
    expect(await httpJson(addr, 'GET', '/hello?name=cell1')).toEqual({ status: 200, body: { hello: 'cell1' } });
    expect(await httpJson(addr, 'POST', '/echo', { a: [1, 2] })).toEqual({ status: 201, body: { got: { a: [1, 2] } } });
    expect(await httpJson(addr, 'GET', '/raw')).toEqual({ status: 200, body: { pre: 'serialised' } });
    expect(await httpJson(addr, 'PUT', '/teapot')).toEqual({ status: 418, body: { error: 'I am a teapot' } });
    expect(await httpJson(addr, 'GET', '/boom')).toEqual({ status: 500, body: { error: 'internal error: kaput' } });
    expect(await httpJson(addr, 'GET', '/nope')).toEqual({ status: 404, body: { error: 'no such endpoint: /nope' } });
    expect(await httpJson(addr, 'DELETE', '/hello')).toEqual({
      status: 405,
      body: { error: '/hello takes GET, not DELETE' },
    });
  });

  it('answers 400 to a body that is not JSON', async () => {
    const addr = { kind: 'unix' as const, path: path.join(dir, 'a.sock') };
    servers.push(await serve(addr, router().handle));
    const res = await rawRequest(addr.path, 'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{"a":');
    expect(res).toMatch(/^HTTP\/1.1 400/);
    expect(res).toMatch(/"error":"the request body is not valid JSON/);
  });

  it('answers 413 beyond the body limit', async () => {
    const addr = { kind: 'unix' as const, path: path.join(dir, 'a.sock') };
    servers.push(await serve(addr, router().handle, { maxBodyBytes: 100 }));
    const r = await httpJson(addr, 'POST', '/echo', { s: 'x'.repeat(200) });
    expect(r.status).toBe(413);
  });

  it('removes a stale socket file but refuses a live one', async () => {
    const p = path.join(dir, 'a.sock');
    // a socket file with nobody listening: what a SIGKILLed controller leaves
    // (a child that binds and is killed, so nothing unlinks the file)
    try {
      execFileSync(process.execPath, [
        '-e',
        `require('net').createServer().listen(${JSON.stringify(p)}, () => process.kill(process.pid, 'SIGKILL'))`,
      ]);
    } catch {
      /* killed, as intended */
    }
    expect(fs.existsSync(p)).toBe(true);
    const s = await serve({ kind: 'unix', path: p }, router().handle);
    servers.push(s);
    expect((await httpJson({ kind: 'unix', path: p }, 'GET', '/hello')).status).toBe(200);
    await expect(serve({ kind: 'unix', path: p }, router().handle)).rejects.toThrow(/already listening/);
    fs.writeFileSync(path.join(dir, 'plain'), 'x');
    await expect(serve({ kind: 'unix', path: path.join(dir, 'plain') }, router().handle)).rejects.toThrow(/not a socket/);
  });

  it('close() ends held requests and removes the socket file', async () => {
    const addr = { kind: 'unix' as const, path: path.join(dir, 'a.sock') };
    const s = await serve(addr, router().handle);
    const held = httpJson(addr, 'GET', '/slow').catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await s.close();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await held).toBeInstanceOf(Error);
    expect(fs.existsSync(addr.path)).toBe(false);
  });

  it('a client that goes away aborts the handler', async () => {
    const addr = { kind: 'unix' as const, path: path.join(dir, 'a.sock') };
    servers.push(await serve(addr, router().handle));
    const ac = new AbortController();
    const p = httpJson(addr, 'GET', '/slow?id=gone', undefined, { signal: ac.signal });
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await expect(p).rejects.toThrow();
    await new Promise((r) => setTimeout(r, 50));
    expect(aborted.has('gone')).toBe(true);
  });
});

describe('httpJson errors', () => {
  it('nobody listening is an UnreachableError naming the address', async () => {
    const addr = { kind: 'unix' as const, path: path.join(dir, 'none.sock') };
    const e = await httpJson(addr, 'GET', '/').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UnreachableError);
    expect((e as UnreachableError).code).toBe('ENOENT');
    expect((e as Error).message).toContain(addr.path);
  });

  it('times out with HttpTimeoutError', async () => {
    const addr = { kind: 'unix' as const, path: path.join(dir, 'a.sock') };
    servers.push(await serve(addr, router().handle));
    const e = await httpJson(addr, 'GET', '/slow', undefined, { timeoutMs: 100 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(HttpTimeoutError);
  });

  it('works over TCP with port 0 picking a free port', async () => {
    const s = await serve({ kind: 'tcp', host: '127.0.0.1', port: 0 }, router().handle);
    servers.push(s);
    expect(s.address.kind).toBe('tcp');
    expect((s.address as { port: number }).port).toBeGreaterThan(0);
    expect(await httpJson(s.address, 'GET', '/hello?name=t')).toEqual({ status: 200, body: { hello: 't' } });
  });
});

function rawRequest(sock: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sock);
    let out = '';
    c.on('data', (d) => (out += d.toString()));
    c.on('end', () => resolve(out));
    c.on('error', reject);
    c.write(text);
  });
}
