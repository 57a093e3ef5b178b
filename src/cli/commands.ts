// The list of command modules. Each module adds its commands to `program`.
import type { Command } from 'commander';
import { register as registerDecode } from './decode.js';
import { register as registerLab } from './lab.js';
import { register as registerController } from './controller.js';
import { register as registerPolicy } from './policy.js';
import { register as registerTags } from './tags.js';
import { register as registerCell } from './cell.js';
import { register as registerContainer } from './container.js';
import { register as registerShow } from './show.js';
import { register as registerTrace } from './trace.js';
import { register as registerCerts } from './certs.js';
import { register as registerToken } from './token.js';

export function registerCommands(program: Command): void {
  registerLab(program);
  registerController(program);
  registerCell(program);
  registerContainer(program);
  registerPolicy(program);
  registerTags(program);
  registerShow(program);
  registerTrace(program);
  registerDecode(program);
  registerCerts(program);
  registerToken(program);
}
