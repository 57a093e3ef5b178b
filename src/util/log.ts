// One pino root logger; components take a child once (`logger('cell')`) and
// log stable kebab-case event names as `msg`, with structured fields. Nothing
// is logged per packet at info (the data plane counts instead).
//
// On stderr: pretty (pino-pretty, synchronous) when stderr is a terminal,
// JSON lines otherwise (lab logs, CI) — SILKWORM_LOG_FORMAT=json|pretty forces one.
import { pino, type Logger, type DestinationStream } from 'pino';
import { createRequire } from 'node:module';

const level = process.env.SILKWORM_LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info');
const format = process.env.SILKWORM_LOG_FORMAT ?? (process.stderr.isTTY ? 'pretty' : 'json');
const dest: DestinationStream =
  format === 'pretty'
    ? // Loaded only when used: a cell logging JSON (every lab cell) starts without it.
      (createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty'))({ destination: 2, sync: true, colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' })
    : pino.destination(2);
const root: Logger = pino({ level, base: { pid: process.pid } }, dest);

export function logger(component: string, fields: Record<string, unknown> = {}): Logger {
  return root.child({ component, ...fields });
}

export type { Logger };
