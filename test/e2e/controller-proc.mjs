// Runs silkworm's controller, policy and tags commands from the compiled
// dist/ through this module's own commander program, for tests that need a
// real process before src/cli/commands.ts registers these modules.
// Usage: node test/e2e/controller-proc.mjs controller --listen … --store …
import { Command, CommanderError } from 'commander';
import { register as registerController } from '../../dist/cli/controller.js';
import { register as registerPolicy } from '../../dist/cli/policy.js';
import { register as registerTags } from '../../dist/cli/tags.js';

const program = new Command().name('silkworm').exitOverride();
registerController(program);
registerPolicy(program);
registerTags(program);
try {
  await program.parseAsync(process.argv.slice(2), { from: 'user' });
} catch (err) {
  if (!(err instanceof CommanderError)) process.stderr.write(`silkworm: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = err instanceof CommanderError ? err.exitCode : 1;
}
