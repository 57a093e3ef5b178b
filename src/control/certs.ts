// Certificates and the token signing key for a controller on a network:
// a CA, the controller's server certificate (its SAN holds every host cells
// reach it by), one client certificate per cell or tool, and an RSA key pair
// for bearer tokens. All made by the openssl command line (no ASN.1 here),
// with a small config file per certificate so the extensions are exactly the
// ones given (openssl's default config would add its own v3_ca section).
//
// Files that exist are kept (a CA made earlier keeps signing, tokens signed
// earlier keep verifying) unless `force` is set. Private keys are created
// 0600 before openssl writes into them, so they are never readable by others.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isIpv4 } from '../util/ip.js';

export interface CertsOptions {
  dir: string;
  /** IPs and DNS names the controller is reached by (its certificate's SAN). Default 127.0.0.1 and localhost. */
  hosts?: string[];
  /** One client certificate per name (NAME.pem, NAME-key.pem), CN=NAME. */
  clients?: string[];
  /** Days the leaf certificates are valid. Default 825 (the longest browsers accept; the CA gets 10 years). */
  days?: number;
  /** Replace files that exist. */
  force?: boolean;
  /** The openssl binary. Default "openssl" on PATH. */
  openssl?: string;
}

export interface CertsResult {
  written: string[];
  kept: string[];
}

export class CertsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertsError';
  }
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DNS_RE = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;

/** "IP:1.2.3.4" or "DNS:name" for one --host; throws a CertsError for anything else. */
export function sanEntry(host: string): string {
  if (isIpv4(host)) return `IP:${host}`;
  if (host.includes(':') && net6(host)) return `IP:${host}`;
  if (DNS_RE.test(host) && host.length <= 253) return `DNS:${host}`;
  throw new CertsError(`--host "${host}" is neither an IP address nor a DNS name`);
}

function net6(h: string): boolean {
  try {
    return new URL(`http://[${h}]/`).hostname.length > 0;
  } catch {
    return false;
  }
}

export function createCerts(o: CertsOptions): CertsResult {
  const hosts = o.hosts && o.hosts.length ? o.hosts : ['127.0.0.1', 'localhost'];
  const sans = hosts.map(sanEntry);
  const clients = o.clients ?? [];
  for (const c of clients) {
    if (!NAME_RE.test(c)) throw new CertsError(`--client "${c}" must be a simple name (letters, digits, . _ -; it names the files)`);
    if (c === 'ca' || c === 'controller' || c === 'token-key') throw new CertsError(`--client "${c}" would overwrite the ${c} files; pick another name`);
  }
  if (new Set(clients).size !== clients.length) throw new CertsError('a --client name is given twice');
  const days = o.days ?? 825;
  const bin = o.openssl ?? 'openssl';
  fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'silkworm-certs-'));
  const res: CertsResult = { written: [], kept: [] };
  const at = (f: string) => path.join(o.dir, f);
  const exists = (...fs_: string[]) => !o.force && fs_.every((f) => fs.existsSync(at(f)));
  const run = (args: string[]) => openssl(bin, args);
  const privateFile = (f: string) => {
    fs.rmSync(at(f), { force: true });
    fs.writeFileSync(at(f), '', { mode: 0o600 });
  };
  try {
    // The CA.
    if (exists('ca.pem', 'ca-key.pem')) res.kept.push('ca.pem', 'ca-key.pem');
    else {
      const cnf = path.join(tmp, 'ca.cnf');
      fs.writeFileSync(
        cnf,
        [
          '[req]',
          'distinguished_name = dn',
          'prompt = no',
          '[dn]',
          'CN = silkworm CA',
          '[ext]',
          'basicConstraints = critical,CA:TRUE',
          'keyUsage = critical,keyCertSign,cRLSign',
          'subjectKeyIdentifier = hash',
          '',
        ].join('\n'),
      );
      privateFile('ca-key.pem');
      run(['req', '-x509', '-new', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', at('ca-key.pem'),
        '-out', at('ca.pem'), '-days', '3650', '-config', cnf, '-extensions', 'ext']);
      res.written.push('ca.pem', 'ca-key.pem');
    }

    const leaf = (name: string, cn: string, usage: string, san: string[]) => {
      if (exists(`${name}.pem`, `${name}-key.pem`)) {
        res.kept.push(`${name}.pem`, `${name}-key.pem`);
        return;
      }
      const cnf = path.join(tmp, `${name}.cnf`);
      const lines = [
        '[req]',
        'distinguished_name = dn',
        'prompt = no',
        '[dn]',
        `CN = ${cn}`,
        '[ext]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage = ${usage}`,
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
      ];
      if (san.length) lines.push(`subjectAltName = ${san.join(',')}`);
      fs.writeFileSync(cnf, lines.join('\n') + '\n');
      const csr = path.join(tmp, `${name}.csr`);
      privateFile(`${name}-key.pem`);
      run(['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-keyout', at(`${name}-key.pem`), '-out', csr, '-config', cnf]);
      run(['x509', '-req', '-in', csr, '-CA', at('ca.pem'), '-CAkey', at('ca-key.pem'), '-set_serial',
        '0x' + crypto.randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'), '-days', String(days), '-sha256',
        '-extfile', cnf, '-extensions', 'ext', '-out', at(`${name}.pem`)]);
      res.written.push(`${name}.pem`, `${name}-key.pem`);
    };
    leaf('controller', hosts[0]!, 'serverAuth', sans);
    for (const c of clients) leaf(c, c, 'clientAuth', DNS_RE.test(c) ? [`DNS:${c}`] : []);

    // The token signing key pair.
    if (exists('token-key.pem', 'token-key.pub.pem')) res.kept.push('token-key.pem', 'token-key.pub.pem');
    else {
      privateFile('token-key.pem');
      run(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', at('token-key.pem')]);
      run(['pkey', '-in', at('token-key.pem'), '-pubout', '-out', at('token-key.pub.pem')]);
      res.written.push('token-key.pem', 'token-key.pub.pem');
    }
    for (const f of ['ca-key.pem', 'controller-key.pem', 'token-key.pem', ...clients.map((c) => `${c}-key.pem`)]) {
      fs.chmodSync(at(f), 0o600);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return res;
}

function openssl(bin: string, args: string[]): void {
  try {
    execFileSync(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') throw new CertsError(`the ${bin} command is needed to make certificates and was not found on PATH`);
    const text = err.stderr?.toString().trim().split('\n').slice(-2).join(' ') ?? err.message;
    throw new CertsError(`openssl ${args[0]} failed: ${text}`);
  }
}
