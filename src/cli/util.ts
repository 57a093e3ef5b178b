// Shared CLI plumbing: one-sentence errors with a non-zero exit, the lab's
// socket layout (src/lab/paths.ts) and address parsing (src/net/address.ts),
// turned into CLI errors here.
import { UserError } from '../util/errors.js';
import { AddressError, formatAddress, parseAddress as parseNetAddress, type Address } from '../net/address.js';
import { DEFAULT_LAB, LAB_ROOT, labCellSocket, labControllerSocket, labDir } from '../lab/paths.js';
import { loadTlsMaterial, TlsConfigError, type TlsMaterial } from '../net/tls.js';

/**
 * The CLI's one-sentence error: main() prints `silkworm: <message>` and exits 1.
 * It is the shared UserError, so a LabError thrown by src/lab is one too.
 */
export const CliError = UserError;
export type CliError = UserError;

/** Throw this from a command: main() prints `silkworm: <message>` and exits 1. */
export function fail(message: string): never {
  throw new CliError(message);
}

export { DEFAULT_LAB, LAB_ROOT, labCellSocket, labControllerSocket, labDir, formatAddress, type Address };

/** An address (unix socket path or host:port); a bad one is a CLI error. */
export function parseAddress(text: string): Address {
  try {
    return parseNetAddress(text);
  } catch (err) {
    if (err instanceof AddressError) fail(err.message);
    throw err;
  }
}

/** --controller ADDR, else the lab's socket for --lab P (default sw). */
export function controllerAddress(opts: { controller?: string; lab?: string }): Address {
  return controllerAddresses(opts)[0]!;
}

/** --controller A[,B…] (replicas, tried in order), else the lab's socket for --lab P. */
export function controllerAddresses(opts: { controller?: string; lab?: string }): Address[] {
  if (opts.controller === undefined) return [parseAddress(labControllerSocket(opts.lab ?? DEFAULT_LAB))];
  const parts = opts.controller.split(',').map((p) => p.trim());
  if (parts.some((p) => p === '')) fail(`--controller "${opts.controller}" has an empty address: give A or A,B,C`);
  return parts.map(parseAddress);
}

export interface ControllerTlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

/**
 * --tls-cert/--tls-key/--tls-ca read and checked (a bad file is one CLI
 * sentence); undefined when none is given. `who` words the messages.
 */
export function clientTls(addr: Address, o: ControllerTlsFlags, who: string): TlsMaterial | undefined {
  const any = o.tlsCert !== undefined || o.tlsKey !== undefined || o.tlsCa !== undefined;
  if (!any) return undefined;
  if (!(addr.kind === 'tcp' && addr.tls)) fail('--tls-cert/--tls-key/--tls-ca are for a controller reached by --controller https://HOST:PORT');
  try {
    return loadTlsMaterial({ ca: o.tlsCa, cert: o.tlsCert, key: o.tlsKey }, who);
  } catch (e) {
    if (e instanceof TlsConfigError) fail(e.message);
    throw e;
  }
}

/** --cell ADDR|NAME: an address, or a cell name in the lab --lab P. */
export function cellAddress(opts: { cell?: string; lab?: string }): Address {
  const cell = opts.cell ?? fail('say which cell: --cell NAME (a lab cell such as cell1) or --cell ADDR');
  if (cell.includes('/') || cell.includes(':')) return parseAddress(cell);
  return parseAddress(labCellSocket(opts.lab ?? DEFAULT_LAB, cell));
}

/** Render rows as an aligned text table (for commands that also offer --json). */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (c ?? '').padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function parseIntStrict(text: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) fail(`${what} must be a whole number, got "${text}"`);
  const n = Number(text);
  if (n < min || n > max) fail(`${what} must be between ${min} and ${max}, got ${n}`);
  return n;
}
