// Bearer-token verification and the certificate and token tools, with real
// keys: openssl makes the certificates (`silkworm certs create`), jose signs
// and verifies, `openssl verify` checks the chains.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenKeyError, TokenVerifier, parseDuration, signToken } from '../../../src/control/auth.js';
import { CertsError, createCerts, sanEntry } from '../../../src/control/certs.js';

const BIN = path.resolve(__dirname, '../../../bin/silkworm.js');
const haveDist = fs.existsSync(path.resolve(__dirname, '../../../dist/cli/token.js'));

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-auth-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function rsa() {
  const kp = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    priv: kp.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    pub: kp.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    jwk: kp.publicKey.export({ format: 'jwk' }),
  };
}

describe('TokenVerifier', () => {
  const k = rsa();
  const v = TokenVerifier.fromText(k.pub);
  const sign = (scopes: string[], o: { expiresInS?: number; now?: number; key?: string; kid?: string } = {}) =>
    signToken({ signingKeyPem: o.key ?? k.priv, scopes, expiresInS: o.expiresInS ?? 600, now: o.now, kid: o.kid });

  it('missing header → 401 "missing authorization header"', async () => {
    expect(await v.check(undefined, 'read')).toMatchObject({ ok: false, status: 401, error: 'missing authorization header' });
  });

  it('a malformed token → 401 "failed to verify token with uaa", saying it is malformed', async () => {
    const r = await v.check('Bearer abc.def', 'read');
    expect(r).toMatchObject({ ok: false, status: 401, error: 'failed to verify token with uaa' });
    expect(!r.ok && r.reason).toMatch(/malformed/);
  });

  it('a token signed by another key → 401, saying the signature does not match', async () => {
    const r = await v.check(`Bearer ${await sign(['network.admin'], { key: rsa().priv })}`, 'admin');
    expect(r).toMatchObject({ ok: false, status: 401, error: 'failed to verify token with uaa' });
    expect(!r.ok && r.reason).toBe('the token signature does not match the token key');
  });

  it('an expired token → 401, saying when it expired', async () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    const r = await v.check(`Bearer ${await sign(['network.admin'], { now, expiresInS: 60 })}`, 'admin');
    expect(r).toMatchObject({ ok: false, status: 401, error: 'failed to verify token with uaa' });
    expect(!r.ok && r.reason).toBe('the token expired at 2026-01-01T00:01:00.000Z');
  });

  it('a token without exp → 401', async () => {
    const { SignJWT } = await import('jose');
    const t = await new SignJWT({ scope: ['network.admin'] }).setProtectedHeader({ alg: 'RS256' }).sign(crypto.createPrivateKey(k.priv));
    const r = await v.check(`Bearer ${t}`, 'admin');
    expect(r).toMatchObject({ ok: false, status: 401 });
    expect(!r.ok && r.reason).toMatch(/no exp/);
  });

  it('an HS256 token (alg confusion) → 401', async () => {
    const { SignJWT } = await import('jose');
    const t = await new SignJWT({ scope: ['network.admin'] })
      .setProtectedHeader({ alg: 'HS256' })
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(k.pub));
    const r = await v.check(`Bearer ${t}`, 'admin');
    expect(r).toMatchObject({ ok: false, status: 401 });
    expect(!r.ok && r.reason).toMatch(/RS256/);
  });

  it('wrong scope → 403 with the policy server\'s wording', async () => {
    const t = await sign(['openid', 'network.write']);
    expect(await v.check(`Bearer ${t}`, 'admin')).toMatchObject({
      ok: false,
      status: 403,
      error: 'provided scopes [openid network.write] do not include allowed scopes [network.admin]',
    });
    expect(await v.check(`Bearer ${await sign(['openid'])}`, 'read')).toMatchObject({
      status: 403,
      error: 'provided scopes [openid] do not include allowed scopes [network.admin network.write]',
    });
  });

  it('good tokens: admin for changes, admin or write for reads; "bearer " too; space-separated scope strings', async () => {
    expect(await v.check(`Bearer ${await sign(['network.admin'])}`, 'admin')).toMatchObject({ ok: true, subject: 'silkworm' });
    expect(await v.check(`bearer ${await sign(['network.write'])}`, 'read')).toMatchObject({ ok: true });
    const { SignJWT } = await import('jose');
    const t = await new SignJWT({ scope: 'openid network.admin' })
      .setProtectedHeader({ alg: 'RS256' })
      .setExpirationTime('5m')
      .sign(crypto.createPrivateKey(k.priv));
    expect(await v.check(`Bearer ${t}`, 'admin')).toMatchObject({ ok: true, scopes: ['openid', 'network.admin'] });
  });

  it('a JWKS file picks the key by kid', async () => {
    const other = rsa();
    const file = path.join(dir, 'keys.json');
    fs.writeFileSync(file, JSON.stringify({ keys: [{ ...other.jwk, kid: 'old', alg: 'RS256' }, { ...k.jwk, kid: 'now', alg: 'RS256' }] }));
    const jv = TokenVerifier.fromFile(file);
    expect(await jv.check(`Bearer ${await sign(['network.admin'], { kid: 'now' })}`, 'admin')).toMatchObject({ ok: true });
    const bad = await jv.check(`Bearer ${await sign(['network.admin'], { kid: 'old' })}`, 'admin');
    expect(bad).toMatchObject({ ok: false, status: 401 });
  });

  it('key files that cannot be used say why', () => {
    const f = (name: string, text: string) => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, text);
      return p;
    };
    expect(() => TokenVerifier.fromFile(path.join(dir, 'absent.pem'))).toThrow(/cannot read the token key .*ENOENT/);
    expect(() => TokenVerifier.fromFile(f('priv.pem', k.priv))).toThrow(/is a private key; give the controller the public key/);
    expect(() => TokenVerifier.fromFile(f('junk.pem', 'hello'))).toThrow(/neither a PEM public key nor a JWKS/);
    const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(() => TokenVerifier.fromFile(f('ec.pem', ec))).toThrow(/is a ec key; tokens are verified with RS256/);
    expect(() => TokenVerifier.fromFile(f('nokeys.json', '{"keys":[{"kty":"EC"}]}'))).toThrow(TokenKeyError);
  });

  it('parseDuration', () => {
    expect(parseDuration('1h')).toBe(3600);
    expect(parseDuration('168h')).toBe(604800);
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('15m')).toBe(900);
    expect(parseDuration('0')).toBeUndefined();
    expect(parseDuration('1y')).toBeUndefined();
  });
});

describe('silkworm certs create (openssl)', () => {
  it('writes a CA, a controller certificate with the hosts in its SAN, client certificates and the token key; chains verify', () => {
    const d = path.join(dir, 'tls');
    const r = createCerts({ dir: d, hosts: ['198.18.0.1', 'controller.lab'], clients: ['cell1', 'cell2'] });
    expect(r.written.sort()).toEqual(
      ['ca.pem', 'ca-key.pem', 'controller.pem', 'controller-key.pem', 'cell1.pem', 'cell1-key.pem', 'cell2.pem', 'cell2-key.pem', 'token-key.pem', 'token-key.pub.pem'].sort(),
    );
    for (const f of ['ca-key.pem', 'controller-key.pem', 'cell1-key.pem', 'cell2-key.pem', 'token-key.pem']) {
      expect(fs.statSync(path.join(d, f)).mode & 0o777, f).toBe(0o600);
    }
    const out = execFileSync('openssl', ['verify', '-CAfile', path.join(d, 'ca.pem'), path.join(d, 'controller.pem'), path.join(d, 'cell1.pem')]).toString();
    expect(out).toMatch(/controller\.pem: OK/);
    expect(out).toMatch(/cell1\.pem: OK/);
    // Node's own X.509 reading agrees: SAN, issuer, purpose.
    const ctl = new crypto.X509Certificate(fs.readFileSync(path.join(d, 'controller.pem')));
    const ca = new crypto.X509Certificate(fs.readFileSync(path.join(d, 'ca.pem')));
    expect(ctl.subjectAltName).toBe('IP Address:198.18.0.1, DNS:controller.lab');
    expect(ctl.checkIssued(ca)).toBe(true);
    expect(ctl.verify(ca.publicKey)).toBe(true);
    expect(ca.ca).toBe(true);
    expect(ctl.ca).toBe(false);
    expect(ctl.checkIP('198.18.0.1')).toBe('198.18.0.1');
    expect(ctl.checkHost('controller.lab')).toBe('controller.lab');
    const cell = new crypto.X509Certificate(fs.readFileSync(path.join(d, 'cell1.pem')));
    expect(cell.subject).toBe('CN=cell1');
    expect(cell.keyUsage).toContain('1.3.6.1.5.5.7.3.2'); // clientAuth
    expect(ctl.keyUsage).toContain('1.3.6.1.5.5.7.3.1'); // serverAuth
    // A certificate from another CA does not verify against this one.
    const d2 = path.join(dir, 'tls2');
    createCerts({ dir: d2, clients: ['cell1'] });
    expect(() =>
      execFileSync('openssl', ['verify', '-CAfile', path.join(d, 'ca.pem'), path.join(d2, 'cell1.pem')], { stdio: 'pipe' }),
    ).toThrow();
    // Again: everything is kept (the CA and token key stay), a new client is added.
    const again = createCerts({ dir: d, hosts: ['198.18.0.1'], clients: ['cell1', 'cell3'] });
    expect(again.written.sort()).toEqual(['cell3-key.pem', 'cell3.pem']);
    expect(execFileSync('openssl', ['verify', '-CAfile', path.join(d, 'ca.pem'), path.join(d, 'cell3.pem')]).toString()).toMatch(/OK/);
  });

  it('refuses bad hosts and client names in one sentence', () => {
    expect(() => sanEntry('bad host')).toThrow(/neither an IP address nor a DNS name/);
    expect(sanEntry('::1')).toBe('IP:::1');
    expect(() => createCerts({ dir: path.join(dir, 'x'), clients: ['../evil'] })).toThrow(CertsError);
    expect(() => createCerts({ dir: path.join(dir, 'x'), clients: ['ca'] })).toThrow(/would overwrite/);
    expect(() => createCerts({ dir: path.join(dir, 'x'), openssl: '/nonexistent/openssl' })).toThrow(/openssl command is needed/);
  });

  it.skipIf(!haveDist)('`silkworm token create` prints a token the verifier accepts; an expired one fails with a clear reason', async () => {
    const d = path.join(dir, 'tok');
    createCerts({ dir: d });
    const v = TokenVerifier.fromFile(path.join(d, 'token-key.pub.pem'));
    const run = (...args: string[]) =>
      execFileSync(process.execPath, [BIN, 'token', 'create', '--signing-key', path.join(d, 'token-key.pem'), ...args], { stdio: 'pipe' })
        .toString()
        .trim();
    const tok = run('--scope', 'network.admin', '--expires', '1h');
    expect(tok).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    expect(await v.check(`Bearer ${tok}`, 'admin')).toMatchObject({ ok: true, scopes: ['network.admin'] });
    // 5 s, not 1: exp is whole seconds, and a loaded machine can spend a second starting the CLI.
    const short = run('--scope', 'network.write', '--expires', '5s');
    expect(await v.check(`Bearer ${short}`, 'read')).toMatchObject({ ok: true });
    const exp = (JSON.parse(Buffer.from(short.split('.')[1]!, 'base64url').toString('utf8')) as { exp: number }).exp;
    await new Promise((r) => setTimeout(r, Math.max(0, exp * 1000 - Date.now()) + 1100));
    const r = await v.check(`Bearer ${short}`, 'read');
    expect(r).toMatchObject({ ok: false, status: 401, error: 'failed to verify token with uaa' });
    expect(!r.ok && r.reason).toMatch(/^the token expired at \d{4}-\d\d-\d\dT/);
    // and the tool's own mistakes are one sentence
    let err = '';
    try {
      run('--expires', '1h');
    } catch (e) {
      err = (e as { stderr: Buffer }).stderr.toString();
    }
    expect(err.trim()).toBe('silkworm: give at least one --scope (network.admin or network.write)');
  });
});
