// `silkworm tags`: the app → tag table (cf-networking's GET /networking/v1/external/tags).
import type { Command } from 'commander';
import { table } from './util.js';
import { withController } from './policy.js';

export function register(program: Command): void {
  program
    .command('tags')
    .description('list the 16-bit tag of every app that appears in a policy (the VXLAN Group Policy ID on the wire)')
    .option('--json', 'print JSON: {"tags":[{"id":…,"tag":"0001"}]}')
    .option('--controller <addr>', 'controller address (unix socket path or host:port); A,B,… for replicas, tried in order')
    .option('--lab <prefix>', "use the lab's controller socket /run/silkworm/<prefix>/controller.sock", 'sw')
    .addHelpText(
      'after',
      `
Example:
  silkworm tags
  silkworm tags --json --controller 127.0.0.1:4003`,
    )
    .action(async (opts: { json?: boolean; controller?: string; lab?: string }) => {
      const tags = await withController(opts, (c) => c.tags());
      if (opts.json) {
        process.stdout.write(JSON.stringify({ tags }, null, 2) + '\n');
        return;
      }
      if (tags.length === 0) {
        process.stdout.write('no tags (no app appears in a policy)\n');
        return;
      }
      process.stdout.write(table(['APP', 'TAG'], tags.map((t) => [t.id, t.tag])) + '\n');
    });
}
