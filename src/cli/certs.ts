// `silkworm certs create`: a CA, the controller's server certificate, client
// certificates and the token signing key pair, made with the openssl CLI.
import type { Command } from 'commander';
import path from 'node:path';
import { fail } from './util.js';
import { CertsError, createCerts } from '../control/certs.js';

interface CertsCliOptions {
  dir: string;
  host: string[];
  client: string[];
  days: string;
  force?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function register(program: Command): void {
  const certs = program.command('certs').description('make the TLS material and token key a controller on a network needs');
  certs
    .command('create')
    .description(
      'write ca.pem, ca-key.pem, controller.pem, controller-key.pem, NAME.pem/NAME-key.pem per --client, and token-key.pem/token-key.pub.pem',
    )
    .requiredOption('--dir <dir>', 'directory to write into (created 0700 if missing)')
    .option('--host <ip|name>', "an address cells reach the controller by, in its certificate's SAN (repeatable; default 127.0.0.1 and localhost)", collect, [])
    .option('--client <name>', 'make a client certificate NAME.pem with CN=NAME (repeatable)', collect, [])
    .option('--days <n>', 'validity of the controller and client certificates in days', '825')
    .option('--force', 'replace files that exist (by default they are kept, so the CA and token key stay)')
    .addHelpText(
      'after',
      `
Example:
  silkworm certs create --dir /etc/silkworm/tls --host 198.18.0.1 --host controller.lab --client cell1 --client cell2
  openssl verify -CAfile /etc/silkworm/tls/ca.pem /etc/silkworm/tls/cell1.pem

Private keys are written 0600. The controller takes token-key.pub.pem (--token-key);
\`silkworm token create --signing-key token-key.pem\` signs tokens with the private half.`,
    )
    .action((opts: CertsCliOptions) => {
      const days = Number(opts.days);
      if (!/^\d+$/.test(opts.days) || days < 1 || days > 3650) fail(`--days must be a whole number of days in 1-3650, got "${opts.days}"`);
      let res;
      try {
        res = createCerts({ dir: opts.dir, hosts: opts.host, clients: opts.client, days, force: opts.force });
      } catch (e) {
        if (e instanceof CertsError) fail(e.message);
        fail(`cannot write certificates into ${opts.dir}: ${(e as Error).message}`);
      }
      const dir = path.resolve(opts.dir);
      for (const f of res.written) process.stdout.write(`wrote ${path.join(dir, f)}\n`);
      for (const f of res.kept) process.stdout.write(`kept  ${path.join(dir, f)} (exists; --force replaces it)\n`);
    });
}
