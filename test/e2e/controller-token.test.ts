// The token gate as a client on a network meets it: a real `silkworm
// controller --token-key` process listening on TCP inside a network namespace
// of its own (loopback only), material from `silkworm certs create`, tokens
// from `silkworm token create`, requests with curl inside the namespace.
// Needs root (for the namespace); runs the compiled dist/.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin/silkworm.js');
const isRoot = process.getuid?.() === 0;
const NS = `swtok${process.pid % 100000}`;
const PORT = 4003;
const EXT = `http://127.0.0.1:${PORT}/networking/v1/external/policies`;

interface Answer {
  status: number;
  body: string;
  headers: string;
}

/** One request with curl inside the namespace; bounded in time. */
function curl(method: string, url: string, opts: { token?: string; body?: string } = {}): Answer {
  const hdr = path.join(dir, 'h.txt');
  const args = ['netns', 'exec', NS, 'curl', '-s', '-m', '5', '-D', hdr, '-o', '-', '-w', '\n%{http_code}', '-X', method];
  if (opts.token !== undefined) args.push('-H', `Authorization: ${opts.token}`);
  if (opts.body !== undefined) args.push('-H', 'content-type: application/json', '--data', opts.body);
  args.push(url);
  const out = execFileSync('ip', args, { timeout: 10_000 }).toString();
  const i = out.lastIndexOf('\n');
  return { status: Number(out.slice(i + 1)), body: out.slice(0, i), headers: fs.readFileSync(hdr, 'utf8').toLowerCase() };
}

function silkworm(...args: string[]): string {
  return execFileSync(process.execPath, [BIN, ...args], { timeout: 30_000 }).toString().trim();
}

let dir: string;
let proc: ChildProcess | undefined;
let stderr = '';

describe.skipIf(!isRoot)('controller --token-key over TCP (real process, own namespace)', () => {
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swctl-tok-'));
    silkworm('certs', 'create', '--dir', path.join(dir, 'tls'));
    execFileSync('ip', ['netns', 'add', NS]);
    execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    proc = spawn(
      'ip',
      ['netns', 'exec', NS, process.execPath, BIN, 'controller', '--listen', `127.0.0.1:${PORT}`, '--store', ':memory:',
        '--token-key', path.join(dir, 'tls/token-key.pub.pem')],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SILKWORM_LOG_LEVEL: 'info' } },
    );
    proc.stderr!.on('data', (d) => (stderr += d.toString()));
    const deadline = Date.now() + 15_000;
    for (;;) {
      try {
        if (curl('GET', `http://127.0.0.1:${PORT}/health`).status === 200) break;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`controller did not come up: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 30_000);

  afterAll(async () => {
    if (proc && proc.exitCode === null) {
      const gone = new Promise((r) => proc!.on('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    }
    try {
      execFileSync('ip', ['netns', 'del', NS]);
    } catch {
      /* already gone */
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers 401 / 401 / 403 / 200 for no, bad, wrong-scope and good tokens, with the policy server\'s bodies', async () => {
    const key = path.join(dir, 'tls/token-key.pem');
    const admin = silkworm('token', 'create', '--signing-key', key, '--scope', 'network.admin');
    const write = silkworm('token', 'create', '--signing-key', key, '--scope', 'network.write');
    const body = JSON.stringify({ policies: [{ source: { id: 'a' }, destination: { id: 'b', protocol: 'tcp', ports: { start: 80, end: 80 } } }] });

    const none = curl('POST', EXT, { body });
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body)).toEqual({ error: 'missing authorization header' });
    expect(none.headers).toMatch(/^www-authenticate: bearer\r?$/m);
    expect(none.headers).toMatch(/^x-content-type-options: nosniff\r?$/m);

    const bad = curl('POST', EXT, { body, token: `Bearer ${admin.slice(0, -4)}AAAA` });
    expect(bad.status).toBe(401);
    expect(JSON.parse(bad.body)).toEqual({ error: 'failed to verify token with uaa' });

    const wrong = curl('POST', EXT, { body, token: `Bearer ${write}` });
    expect(wrong.status).toBe(403);
    expect(JSON.parse(wrong.body)).toEqual({ error: 'provided scopes [network.write] do not include allowed scopes [network.admin]' });

    const good = curl('POST', EXT, { body, token: `Bearer ${admin}` });
    expect(good.status).toBe(200);
    expect(JSON.parse(good.body)).toEqual({});
    const list = curl('GET', EXT, { token: `Bearer ${write}` });
    expect(list.status).toBe(200);
    expect(JSON.parse(list.body).total_policies).toBe(1);

    // The internal API and leases are not behind tokens (mutual TLS guards them on a network).
    expect(curl('GET', `http://127.0.0.1:${PORT}/networking/v1/internal/policies`).status).toBe(200);
    // The reason is in the log, one line per refusal (pino writes asynchronously: wait for it).
    for (let i = 0; i < 50 && !/signature does not match/.test(stderr); i++) await new Promise((r) => setTimeout(r, 100));
    expect(stderr.match(/request-unauthorized/g)).toHaveLength(3);
    expect(stderr).toMatch(/the token signature does not match the token key/);
  });
});
