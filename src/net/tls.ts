// TLS material for the controller's TCP listeners and for its clients, and
// one-sentence explanations of every TLS failure a person can meet: which
// certificate, which name, expired, wrong CA. Node's tls module does the
// cryptography; this file only reads files, checks that they fit together
// and words the errors.
import crypto from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';

/** A certificate, key or CA file that cannot be used; the message names the file and says why. */
export class TlsConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TlsConfigError';
  }
}

/** A TLS handshake or verification failure, worded for a person (see explainTlsError). */
export class TlsError extends Error {
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'TlsError';
  }
}

/** Files as given on the command line, with their contents. */
export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
}

function readPem(file: string, flag: string): Buffer {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new TlsConfigError(`cannot read ${flag} ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
  if (!buf.includes('-----BEGIN ')) throw new TlsConfigError(`${flag} ${file} is not a PEM file`);
  return buf;
}

function parseCert(buf: Buffer, file: string, flag: string): crypto.X509Certificate {
  try {
    return new crypto.X509Certificate(buf);
  } catch (e) {
    throw new TlsConfigError(`${flag} ${file} is not a readable PEM certificate: ${(e as Error).message}`);
  }
}

/** "CN=cell1" (or the whole subject when it has no CN). */
export function subjectName(subject: string | Record<string, unknown> | undefined): string {
  if (!subject) return 'an unnamed subject';
  if (typeof subject === 'string') {
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(subject);
    return cn ? `CN=${cn[1]}` : subject.replace(/\n/g, ', ');
  }
  const cn = subject.CN;
  return cn !== undefined ? `CN=${Array.isArray(cn) ? cn.join(',') : String(cn)}` : JSON.stringify(subject);
}

const isoDate = (text: string) => {
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? text : d.toISOString();
};

/**
 * Read `--tls-ca`, `--tls-cert`, `--tls-key` (any may be absent; cert and key
 * come together) and check them: PEM, the key belongs to the certificate, the
 * certificate is within its dates and is signed by the CA. `role` words the
 * messages ("the controller's", "this client's").
 */
export function loadTlsMaterial(files: { ca?: string; cert?: string; key?: string }, role: string, now = new Date()): TlsMaterial {
  const m: TlsMaterial = {};
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw new TlsConfigError(files.cert === undefined ? '--tls-key needs --tls-cert (the certificate it belongs to)' : '--tls-cert needs --tls-key (its private key)');
  }
  let caCert: crypto.X509Certificate | undefined;
  if (files.ca !== undefined) {
    m.ca = readPem(files.ca, '--tls-ca');
    m.caFile = files.ca;
    caCert = parseCert(m.ca, files.ca, '--tls-ca');
    if (!caCert.ca) throw new TlsConfigError(`--tls-ca ${files.ca} (${subjectName(caCert.subject)}) is not a CA certificate`);
  }
  if (files.cert !== undefined && files.key !== undefined) {
    m.cert = readPem(files.cert, '--tls-cert');
    m.key = readPem(files.key, '--tls-key');
    m.certFile = files.cert;
    m.keyFile = files.key;
    const cert = parseCert(m.cert, files.cert, '--tls-cert');
    let key: crypto.KeyObject;
    try {
      key = crypto.createPrivateKey(m.key);
    } catch (e) {
      throw new TlsConfigError(`--tls-key ${files.key} is not a readable PEM private key: ${(e as Error).message}`);
    }
    if (!cert.checkPrivateKey(key)) {
      throw new TlsConfigError(`--tls-key ${files.key} is not the private key of --tls-cert ${files.cert} (${subjectName(cert.subject)})`);
    }
    const from = new Date(cert.validFrom);
    const to = new Date(cert.validTo);
    if (now < from) throw new TlsConfigError(`${role} certificate ${files.cert} (${subjectName(cert.subject)}) is not valid until ${from.toISOString()}`);
    if (now > to) throw new TlsConfigError(`${role} certificate ${files.cert} (${subjectName(cert.subject)}) expired on ${to.toISOString()}`);
    if (caCert && !cert.checkIssued(caCert)) {
      throw new TlsConfigError(`${role} certificate ${files.cert} (${subjectName(cert.subject)}, issued by ${subjectName(cert.issuer)}) is not signed by the CA in ${files.ca}`);
    }
  }
  return m;
}

/** Options for a TLS server that asks every client for a certificate and checks it against the CA itself (see serve()). */
export function serverTlsOptions(m: TlsMaterial): tls.TlsOptions {
  if (!m.cert || !m.key || !m.ca) throw new TlsConfigError('a TLS listener needs --tls-cert, --tls-key and --tls-ca');
  return { cert: m.cert, key: m.key, ca: m.ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' };
}

/** What the server learned of a client's certificate on one connection. */
export interface PeerCert {
  /** A certificate was presented. */
  present: boolean;
  /** It verified against the CA (and is within its dates). */
  authorized: boolean;
  subject?: string;
  /** OpenSSL's verification code when not authorized (CERT_HAS_EXPIRED, …). */
  error?: string;
  validTo?: string;
}

export function peerCertOf(sock: tls.TLSSocket): PeerCert {
  const c = sock.getPeerCertificate();
  const present = !!c && Object.keys(c).length > 0;
  const out: PeerCert = { present, authorized: sock.authorized };
  if (present) {
    out.subject = subjectName(c.subject as unknown as Record<string, unknown>);
    out.validTo = c.valid_to;
  }
  if (!sock.authorized && sock.authorizationError) out.error = String(sock.authorizationError);
  return out;
}

/** Why the server refuses a client's certificate, in one sentence (null when it is fine). */
export function explainPeerCert(p: PeerCert, what: string): { status: 401 | 403; error: string } | null {
  if (p.authorized) return null;
  if (!p.present) {
    return { status: 401, error: `${what} needs a client certificate signed by the controller's CA (mutual TLS): give --tls-cert and --tls-key` };
  }
  const who = `the client certificate ${p.subject ?? ''}`.trim();
  switch (p.error) {
    case 'CERT_HAS_EXPIRED':
      return { status: 403, error: `${who} expired on ${isoDate(p.validTo ?? '?')}` };
    case 'CERT_NOT_YET_VALID':
      return { status: 403, error: `${who} is not valid yet` };
    default:
      return { status: 403, error: `${who} is not signed by the controller's CA (${p.error ?? 'unverified'})` };
  }
}

const NOT_OUR_CA = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

/** The server's certificate fetched without verification, to word a failure (never used to send anything). */
export function peekServerCert(host: string, port: number, timeoutMs = 3000): Promise<tls.PeerCertificate | null> {
  return new Promise((resolve) => {
    const s = tls.connect({ host, port, rejectUnauthorized: false, servername: net_isIp(host) ? undefined : host });
    const done = (c: tls.PeerCertificate | null) => {
      clearTimeout(t);
      s.destroy();
      resolve(c);
    };
    const t = setTimeout(() => done(null), timeoutMs);
    s.once('secureConnect', () => {
      const c = s.getPeerCertificate();
      done(c && Object.keys(c).length > 0 ? c : null);
    });
    s.once('error', () => done(null));
  });
}

function net_isIp(h: string): boolean {
  return /^\d+\.\d+\.\d+\.\d+$/.test(h) || h.includes(':');
}

/**
 * One sentence for a failed TLS connection to `where` (https://host:port), or
 * null if `e` is not a TLS failure. `peer` is the server's certificate when
 * the caller could fetch it (for names and dates).
 */
export function explainTlsError(
  e: NodeJS.ErrnoException & { reason?: string; cert?: tls.PeerCertificate },
  where: string,
  m: TlsMaterial | undefined,
  peer: tls.PeerCertificate | null,
): TlsError | null {
  const code = e.code ?? '';
  const cert = e.cert ?? peer ?? undefined;
  const who = cert ? ` (${subjectName(cert.subject as unknown as Record<string, unknown>)})` : '';
  const caName = m?.caFile ?? "the system's CA list (give --tls-ca)";
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const names = cert?.subjectaltname ?? 'no subjectAltName';
    const host = /^https:\/\/\[?([^\]]*?)\]?:\d+$/.exec(where)?.[1] ?? where;
    return new TlsError(`the certificate of ${where}${who} is for ${names.replace(/IP Address:/g, 'IP:')}, not ${host}`, code);
  }
  if (code === 'CERT_HAS_EXPIRED') {
    return new TlsError(`the certificate of ${where}${who} expired${cert?.valid_to ? ` on ${isoDate(cert.valid_to)}` : ''}`, code);
  }
  if (code === 'CERT_NOT_YET_VALID') {
    return new TlsError(`the certificate of ${where}${who} is not valid until ${cert?.valid_from ? isoDate(cert.valid_from) : 'later'}`, code);
  }
  if (NOT_OUR_CA.has(code)) {
    const issuer = cert ? `, issued by ${subjectName(cert.issuer as unknown as Record<string, unknown>)}` : '';
    return new TlsError(`the certificate of ${where}${who ? who.slice(0, -1) + issuer + ')' : ''} is not signed by the CA in ${caName}`, code);
  }
  const msg = `${e.message ?? ''} ${e.reason ?? ''}`.toLowerCase();
  const mine = m?.certFile ? `this client's certificate ${m.certFile}` : "this client's certificate";
  if (code.includes('ALERT_CERTIFICATE_REQUIRED') || msg.includes('certificate required')) {
    return new TlsError(`${where} requires a client certificate (mutual TLS): give --tls-cert and --tls-key`, code);
  }
  if (code.includes('ALERT_CERTIFICATE_EXPIRED')) return new TlsError(`${where} refused ${mine}: it has expired`, code);
  if (code.includes('ALERT_UNKNOWN_CA') || code.includes('ALERT_BAD_CERTIFICATE') || code.includes('ALERT_DECRYPT_ERROR')) {
    return new TlsError(`${where} refused ${mine}: it is not signed by a CA that server trusts`, code);
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || msg.includes('wrong version number')) {
    return new TlsError(`${where} does not speak TLS: use http://${where.replace(/^https:\/\//, '')} (or host:port) for a plain listener`, code);
  }
  if (code.startsWith('ERR_SSL_') || code === 'EPROTO') {
    return new TlsError(`the TLS handshake with ${where} failed: ${e.reason ?? e.message}`, code);
  }
  return null;
}

export { isoDate };
