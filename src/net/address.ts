// Where a silkworm process listens or is reached: a unix socket path or
// host:port, optionally written as a URL (`http://host:port`, or
// `https://host:port` for TLS). Parsed once at the edge (CLI flags, lab
// state); everything below passes the parsed form.
import path from 'node:path';

/** An address is a unix socket path or host:port; `tls` marks an https:// one. */
export type Address = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number; tls?: boolean };

/** The text is not an address; the message is one sentence for a person. */
export class AddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AddressError';
  }
}

/**
 * A path (`/…`, `./…`, `….sock`) is a unix socket; `https://host:port` is TCP
 * with TLS; `http://host:port` or `host:port` is plain TCP (host defaults to
 * 127.0.0.1).
 */
export function parseAddress(text: string): Address {
  if (text.startsWith('/') || text.startsWith('./') || text.endsWith('.sock')) {
    return { kind: 'unix', path: path.resolve(text) };
  }
  let rest = text;
  let tls = false;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (scheme) {
    const s = scheme[1]!.toLowerCase();
    if (s !== 'http' && s !== 'https') throw new AddressError(`"${text}" is not an address: the scheme must be http:// or https://`);
    tls = s === 'https';
    rest = text.slice(scheme[0].length).replace(/\/$/, '');
    if (rest.includes('/')) throw new AddressError(`"${text}" is not an address: give https://host:port without a path`);
  }
  const m = /^(.*):(\d{1,5})$/.exec(rest);
  if (!m) throw new AddressError(`"${text}" is not an address: give a unix socket path (/run/…/x.sock), host:port or https://host:port`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new AddressError(`"${text}" has a port outside 1-65535`);
  let host = m[1] || '127.0.0.1';
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return tls ? { kind: 'tcp', host, port, tls: true } : { kind: 'tcp', host, port };
}

export function formatAddress(a: Address): string {
  if (a.kind === 'unix') return a.path;
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  return a.tls ? `https://${host}:${a.port}` : `${host}:${a.port}`;
}
