// silkworm's command line. Each command lives in its own module and exports
// `register(program)`; this file only wires them and turns CliError into one
// clear sentence on stderr and exit code 1 (no stack traces for users).
import { Command, CommanderError } from 'commander';
import { CliError } from './util.js';
import { registerCommands } from './commands.js';

export async function main(argv: string[]): Promise<number> {
  const program = new Command();
  program
    .name('silkworm')
    .description("Cloud Foundry silk's container-to-container data plane, in user space")
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  await registerCommands(program, argv[0]);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.exitCode;
    }
    if (err instanceof CliError) {
      process.stderr.write(`silkworm: ${err.message}\n`);
      return 1;
    }
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`silkworm: ${msg}\n`);
    if (process.env.SILKWORM_DEBUG) console.error(err);
    return 1;
  }
}
