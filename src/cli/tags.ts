// `silkworm tags`: the app → tag table (cf-networking's GET /networking/v1/external/tags).
import type { Command } from 'commander';
import { table } from './util.js';
import { addClientOptions, withController } from './policy.js';

export function register(program: Command): void {
  addClientOptions(
    program
      .command('tags')
      .description('list the 16-bit tag of every app that appears in a policy (the VXLAN Group Policy ID on the wire)')
      .option('--json', 'print JSON: {"tags":[{"id":…,"tag":"0001"}]}'),
  )
    .addHelpText(
      'after',
      `
Example:
  silkworm tags
  silkworm tags --json --controller 127.0.0.1:4003
  SILKWORM_TOKEN=$(silkworm token create --signing-key tls/token-key.pem --scope network.write) \\
    silkworm tags --controller https://198.18.0.1:4003 --tls-ca tls/ca.pem`,
    )
    .action(async (opts: { json?: boolean; controller?: string; lab?: string; token?: string; tlsCa?: string }) => {
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
