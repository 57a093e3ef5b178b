// One pino root logger; components take a child once (`logger('cell')`) and
// log stable kebab-case event names as `msg`, with structured fields.
// Pretty output is left to pino-pretty if a user pipes into it; we print JSON
// on stderr so stdout stays clean for command output.
import { pino, type Logger } from 'pino';

const level = process.env.SILKWORM_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info');
const root: Logger = pino({ level, base: { pid: process.pid } }, pino.destination(2));

export function logger(component: string, fields: Record<string, unknown> = {}): Logger {
  return root.child({ component, ...fields });
}

export type { Logger };
