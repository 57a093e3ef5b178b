// The list of command modules. Each module adds its command (named as the
// module) to `program`. Modules are loaded on demand: `silkworm cell` loads
// only the cell command's modules, so a restarted cell (or a duplicate that
// must refuse within a moment) does not wait for every other command's.
import type { Command } from 'commander';

type CommandModule = { register(program: Command): void };

const MODULES: readonly [string, () => Promise<CommandModule>][] = [
  ['lab', () => import('./lab.js')],
  ['controller', () => import('./controller.js')],
  ['cell', () => import('./cell.js')],
  ['container', () => import('./container.js')],
  ['policy', () => import('./policy.js')],
  ['tags', () => import('./tags.js')],
  ['show', () => import('./show.js')],
  ['trace', () => import('./trace.js')],
  ['decode', () => import('./decode.js')],
  ['certs', () => import('./certs.js')],
  ['token', () => import('./token.js')],
];

/**
 * Register every command, in the order help lists them; or, when `only` names
 * one (the first word of the command line), just that one.
 */
export async function registerCommands(program: Command, only?: string): Promise<void> {
  const one = MODULES.filter(([name]) => name === only);
  for (const [, load] of one.length === 1 ? one : MODULES) (await load()).register(program);
}
