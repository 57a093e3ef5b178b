// Shared CLI plumbing: one-sentence errors with a non-zero exit, the lab's
// socket layout (DESIGN.md, "Addresses and the lab"), and address parsing.
import path from 'node:path';

export class CliError extends Error {}

/** Throw this from a command: main() prints `silkworm: <message>` and exits 1. */
export function fail(message: string): never {
  throw new CliError(message);
}

export const LAB_ROOT = process.env.SILKWORM_RUN_DIR ?? '/run/silkworm';
export const DEFAULT_LAB = 'sw';

export function labDir(prefix: string): string {
  return path.join(LAB_ROOT, prefix);
}
export function labControllerSocket(prefix: string): string {
  return path.join(labDir(prefix), 'controller.sock');
}
export function labCellSocket(prefix: string, cell: string): string {
  return path.join(labDir(prefix), `${cell}.sock`);
}

/** An address is a unix socket path or host:port. */
export type Address = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export function parseAddress(text: string): Address {
  if (text.startsWith('/') || text.startsWith('./') || text.endsWith('.sock')) {
    return { kind: 'unix', path: path.resolve(text) };
  }
  const m = /^(.*):(\d{1,5})$/.exec(text);
  if (!m) fail(`"${text}" is not an address: give a unix socket path (/run/…/x.sock) or host:port`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) fail(`"${text}" has a port outside 1-65535`);
  return { kind: 'tcp', host: m[1] || '127.0.0.1', port };
}

export function formatAddress(a: Address): string {
  return a.kind === 'unix' ? a.path : `${a.host}:${a.port}`;
}

/** --controller ADDR, else the lab's socket for --lab P (default sw). */
export function controllerAddress(opts: { controller?: string; lab?: string }): Address {
  return parseAddress(opts.controller ?? labControllerSocket(opts.lab ?? DEFAULT_LAB));
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
