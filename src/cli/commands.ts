// The list of command modules. Each module adds its commands to `program`.
import type { Command } from 'commander';
import { register as registerDecode } from './decode.js';
import { register as registerCell } from './cell.js';
import { register as registerContainer } from './container.js';
import { register as registerShow } from './show.js';

export function registerCommands(program: Command): void {
  registerCell(program);
  registerContainer(program);
  registerShow(program);
  registerDecode(program);
}
