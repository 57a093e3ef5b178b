// The controller on a network: a real `silkworm controller` with a unix
// socket and a mutual-TLS TCP listener, inside a network namespace of its
// own (loopback only). Material from `silkworm certs create` (and openssl
// for an expired certificate), requests with curl and with the silkworm CLI
// inside the namespace. Needs root (for the namespace); runs the compiled dist/.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(ROOT, 'bin/silkworm.js');
const isRoot = process.getuid?.() === 0;
const NS = `swtls${process.pid % 100000}`;
const PORT = 4003;
const URL_ = `https://127.0.0.1:${PORT}`;
const EXT = `${URL_}/networking/v1/external/policies`;

let dir: string;
let proc: ChildProcess | undefined;
let stderr = '';
const t = (f: string) => path.join(dir, 'tls', f);
const o = (f: string) => path.join(dir, 'other', f);

interface Answer {
  status: number;
  body: string;
  /** curl's exit code: 0 when an HTTP answer came back. */
  code: number;
}

/** One request with curl inside the namespace; bounded in time. */
function curl(method: string, url: string, opts: { cert?: [string, string]; ca?: string; token?: string; body?: string } = {}): Answer {
  const args = ['netns', 'exec', NS, 'curl', '-s', '-m', '5', '-o', '-', '-w', '\n%{http_code}', '-X', method, '--cacert', opts.ca ?? t('ca.pem')];
  if (opts.cert) args.push('--cert', opts.cert[0], '--key', opts.cert[1]);
  if (opts.token !== undefined) args.push('-H', `Authorization: Bearer ${opts.token}`);
  if (opts.body !== undefined) args.push('-H', 'content-type: application/json', '--data', opts.body);
  args.push(url);
  const r = spawnSync('ip', args, { timeout: 10_000, encoding: 'utf8' });
  const out = r.stdout ?? '';
  const i = out.lastIndexOf('\n');
  return { status: Number(out.slice(i + 1)), body: out.slice(0, i), code: r.status ?? -1 };
}

/** The silkworm CLI inside the namespace; never throws. */
function cli(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync('ip', ['netns', 'exec', NS, process.execPath, BIN, ...args], { timeout: 30_000, encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout ?? '', err: r.stderr ?? '' };
}

function silkworm(...args: string[]): string {
  return execFileSync(process.execPath, [BIN, ...args], { timeout: 60_000 }).toString().trim();
}

/** A client certificate signed by `caDir`'s CA that expired yesterday (openssl x509 -days -1). */
function expiredClient(caDir: string, name: string): [string, string] {
  const key = path.join(dir, `${name}-key.pem`);
  const csr = path.join(dir, `${name}.csr`);
  const pem = path.join(dir, `${name}.pem`);
  const ext = path.join(dir, `${name}.cnf`);
  fs.writeFileSync(ext, 'extendedKeyUsage = clientAuth\n');
  execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`], { stdio: 'ignore' });
  execFileSync('openssl', ['x509', '-req', '-in', csr, '-CA', path.join(caDir, 'ca.pem'), '-CAkey', path.join(caDir, 'ca-key.pem'),
    '-days', '-1', '-extfile', ext, '-out', pem], { stdio: 'ignore' });
  return [pem, key];
}

describe.skipIf(!isRoot)('controller with mutual TLS on TCP (real process, own namespace)', () => {
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swctl-tls-'));
    silkworm('certs', 'create', '--dir', path.join(dir, 'tls'), '--host', '127.0.0.1', '--client', 'cell1');
    silkworm('certs', 'create', '--dir', path.join(dir, 'other'), '--host', '127.0.0.1', '--client', 'cell1');
    execFileSync('ip', ['netns', 'add', NS]);
    execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']);
    proc = spawn(
      'ip',
      ['netns', 'exec', NS, process.execPath, BIN, 'controller', '--listen', path.join(dir, 'c.sock'), '--listen', `127.0.0.1:${PORT}`,
        '--store', ':memory:', '--tls-cert', t('controller.pem'), '--tls-key', t('controller-key.pem'), '--tls-ca', t('ca.pem'),
        '--token-key', t('token-key.pub.pem')],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SILKWORM_LOG_LEVEL: 'info' } },
    );
    proc.stderr!.on('data', (d) => (stderr += d.toString()));
    const deadline = Date.now() + 20_000;
    while (curl('GET', `${URL_}/health`).status !== 200) {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`controller did not come up: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 90_000);

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

  it('refuses the lease, internal and watch APIs to a client without a certificate and to one from another CA', () => {
    for (const p of ['/leases', '/networking/v1/internal/policies', '/watch?since=-1', '/networking/v1/internal/policies_last_updated']) {
      const none = curl('GET', `${URL_}${p}`);
      expect(none.status, p).toBe(401);
      expect(JSON.parse(none.body).error).toMatch(/needs a client certificate signed by the controller's CA \(mutual TLS\)/);
      const other = curl('GET', `${URL_}${p}`, { cert: [o('cell1.pem'), o('cell1-key.pem')] });
      expect(other.status, p).toBe(403);
      expect(JSON.parse(other.body).error).toMatch(/^the client certificate CN=cell1 is not signed by the controller's CA/);
    }
    const acquire = curl('PUT', `${URL_}/leases/acquire`, { body: '{"underlay_ip":"198.18.0.50"}' });
    expect(acquire.status).toBe(401);
    // A client that does not trust the controller's CA does not get that far: curl fails the handshake.
    expect(curl('GET', `${URL_}/leases`, { ca: o('ca.pem'), cert: [t('cell1.pem'), t('cell1-key.pem')] }).code).not.toBe(0);
    // Plain HTTP to the TLS listener gets no answer.
    const plain = spawnSync('ip', ['netns', 'exec', NS, 'curl', '-s', '-m', '3', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${PORT}/leases`], { encoding: 'utf8', timeout: 10_000 });
    expect(plain.stdout).toBe('000');
  });

  it('answers the internal API, the leases and a watch to an mTLS client', () => {
    const cert: [string, string] = [t('cell1.pem'), t('cell1-key.pem')];
    const acquired = curl('PUT', `${URL_}/leases/acquire`, { cert, body: '{"underlay_ip":"198.18.0.50"}' });
    expect(acquired.status).toBe(200);
    const lease = JSON.parse(acquired.body);
    expect(lease).toMatchObject({ underlay_ip: '198.18.0.50', overlay_subnet: expect.stringMatching(/^10\.255\.\d+\.0\/24$/) });
    const leases = curl('GET', `${URL_}/leases`, { cert });
    expect(leases.status).toBe(200);
    expect(JSON.parse(leases.body).leases).toContainEqual(lease);
    expect(curl('PUT', `${URL_}/leases/renew`, { cert, body: JSON.stringify(lease) }).status).toBe(200);
    const internal = curl('GET', `${URL_}/networking/v1/internal/policies`, { cert });
    expect(internal.status).toBe(200);
    expect(JSON.parse(internal.body)).toEqual({ total_policies: 0, policies: [] });
    const watch = curl('GET', `${URL_}/watch?since=-1`, { cert });
    expect(watch.status).toBe(200);
    expect(JSON.parse(watch.body).leases).toContainEqual(lease);
    // The unix socket stays plain and trusted.
    const local = cli('policy', 'list', '--controller', path.join(dir, 'c.sock'), '--json');
    expect(local.code, local.err).toBe(0);
  });

  it("answers 401 / 401 / 403 / 200 on the external API over TLS for no, bad, wrong-scope and good tokens, with the policy server's bodies", () => {
    const key = t('token-key.pem');
    const admin = silkworm('token', 'create', '--signing-key', key, '--scope', 'network.admin');
    const write = silkworm('token', 'create', '--signing-key', key, '--scope', 'network.write');
    const body = JSON.stringify({ policies: [{ source: { id: 'a' }, destination: { id: 'b', protocol: 'tcp', ports: { start: 80, end: 80 } } }] });
    const none = curl('POST', EXT, { body });
    expect([none.status, JSON.parse(none.body)]).toEqual([401, { error: 'missing authorization header' }]);
    const bad = curl('POST', EXT, { body, token: `${admin.slice(0, -4)}AAAA` });
    expect([bad.status, JSON.parse(bad.body)]).toEqual([401, { error: 'failed to verify token with uaa' }]);
    const wrong = curl('POST', EXT, { body, token: write });
    expect([wrong.status, JSON.parse(wrong.body)]).toEqual([403, { error: 'provided scopes [network.write] do not include allowed scopes [network.admin]' }]);
    const good = curl('POST', EXT, { body, token: admin });
    expect([good.status, JSON.parse(good.body)]).toEqual([200, {}]);
    // The CLI over https with a token and only the CA (no client certificate).
    const listed = cli('policy', 'list', '--controller', URL_, '--tls-ca', t('ca.pem'), '--token', write, '--json');
    expect(listed.code, listed.err).toBe(0);
    expect(JSON.parse(listed.out).policies).toEqual([
      { source: { id: 'a', tag: '0001' }, destination: { id: 'b', tag: '0002', protocol: 'tcp', ports: { start: 80, end: 80 } } },
    ]);
    const tags = cli('tags', '--controller', URL_, '--tls-ca', t('ca.pem'), '--json');
    expect(tags.code).toBe(1);
    expect(tags.err.trim()).toBe(
      'silkworm: the controller refused: missing authorization header (give --token or set SILKWORM_TOKEN; silkworm token create makes one)',
    );
  });

  it('says in one sentence what is wrong: expired token, expired certificate, wrong CA, wrong name, plain vs TLS, a key that does not fit', () => {
    const key = t('token-key.pem');
    const old = silkworm('token', 'create', '--signing-key', key, '--scope', 'network.admin', '--expires', '1s');
    const waitUntil = Date.now() + 2200;
    while (Date.now() < waitUntil) {
      /* let the token expire (2 s, so exp has passed at second resolution) */
    }
    const one = (r: { code: number; err: string }) => {
      expect(r.code).toBe(1);
      const lines = r.err.trim().split('\n');
      expect(lines).toHaveLength(1);
      return lines[0]!;
    };
    expect(one(cli('policy', 'list', '--controller', URL_, '--tls-ca', t('ca.pem'), '--token', old))).toMatch(
      /^silkworm: the token expired at \d{4}-\d\d-\d\dT[\d:.]+Z: make a new one \(silkworm token create\)$/,
    );
    // The controller says the same of an expired token a client sends anyway (reason in its log).
    expect(curl('GET', EXT, { token: old }).status).toBe(401);

    const [expPem, expKey] = expiredClient(path.join(dir, 'tls'), 'oldcell');
    expect(one(cli('policy', 'list', '--controller', URL_, '--tls-ca', t('ca.pem'), '--tls-cert', expPem, '--tls-key', expKey))).toMatch(
      new RegExp(`^silkworm: this client's certificate ${expPem.replace(/[.]/g, '\\.')} \\(CN=oldcell\\) expired on \\d{4}-`),
    );
    // Sent anyway (curl does not check its own certificate), the controller answers why.
    const refused = curl('GET', `${URL_}/leases`, { cert: [expPem, expKey] });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).error).toMatch(/^the client certificate CN=oldcell expired on \d{4}-/);

    expect(one(cli('tags', '--controller', URL_, '--tls-ca', o('ca.pem'), '--token', 'x.y.z'))).toBe(
      `silkworm: the certificate of ${URL_} (CN=127.0.0.1, issued by CN=silkworm CA) is not signed by the CA in ${o('ca.pem')}`,
    );
    expect(one(cli('tags', '--controller', `https://localhost:${PORT}`, '--tls-ca', t('ca.pem'), '--token', 'x.y.z'))).toMatch(
      /^silkworm: (the certificate of https:\/\/localhost:4003 \(CN=127\.0\.0\.1\) is for IP:127\.0\.0\.1, not localhost|cannot reach the controller at https:\/\/localhost:4003.*)$/,
    );
    expect(one(cli('tags', '--controller', `127.0.0.1:${PORT}`, '--token', 'x.y.z'))).toBe(
      `silkworm: 127.0.0.1:${PORT} closed the connection without answering; if it is a TLS listener, use https://127.0.0.1:${PORT}`,
    );
    expect(one(cli('tags', '--controller', URL_, '--tls-ca', t('ca.pem'), '--tls-cert', t('cell1.pem'), '--tls-key', o('cell1-key.pem')))).toBe(
      `silkworm: --tls-key ${o('cell1-key.pem')} is not the private key of --tls-cert ${t('cell1.pem')} (CN=cell1)`,
    );
    expect(one(cli('tags', '--controller', URL_, '--tls-ca', t('ca.pem'), '--tls-cert', o('cell1.pem'), '--tls-key', o('cell1-key.pem')))).toBe(
      `silkworm: this client's certificate ${o('cell1.pem')} (CN=cell1, issued by CN=silkworm CA) is not signed by the CA in ${t('ca.pem')}`,
    );
    // A cell against the TLS controller without its client certificate.
    expect(one(cli('cell', '--name', 'c9', '--underlay-ip', '198.18.0.99', '--controller', URL_, '--tls-ca', t('ca.pem')))).toBe(
      'silkworm: a cell reaches an https:// controller with mutual TLS: give --tls-cert, --tls-key and --tls-ca',
    );
  });

  it('logs no stack trace for any of it', () => {
    expect(stderr).not.toMatch(/"stack"/);
    expect(stderr).not.toMatch(/request-failed/);
  });
});
