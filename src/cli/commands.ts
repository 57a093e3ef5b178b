// The list of command modules. Each module adds its commands to `program`.
import type { Command } from 'commander';

export function registerCommands(_program: Command): void {
  // filled in as command modules land
}
