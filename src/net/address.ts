// Where a silkworm process listens or is reached: a unix socket path or
// host:port. Parsed once at the edge (CLI flags, lab state); everything below
// passes the parsed form.
import path from 'node:path';

/** An address is a unix socket path or host:port. */
export type Address = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** The text is not an address; the message is one sentence for a person. */
export class AddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AddressError';
  }
}

/** A path (`/…`, `./…`, `….sock`) is a unix socket; otherwise `host:port` (host defaults to 127.0.0.1). */
export function parseAddress(text: string): Address {
  if (text.startsWith('/') || text.startsWith('./') || text.endsWith('.sock')) {
    return { kind: 'unix', path: path.resolve(text) };
  }
  const m = /^(.*):(\d{1,5})$/.exec(text);
  if (!m) throw new AddressError(`"${text}" is not an address: give a unix socket path (/run/…/x.sock) or host:port`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new AddressError(`"${text}" has a port outside 1-65535`);
  return { kind: 'tcp', host: m[1] || '127.0.0.1', port };
}

export function formatAddress(a: Address): string {
  return a.kind === 'unix' ? a.path : `${a.host}:${a.port}`;
}
