// `silkworm token create`: sign a bearer token for the controller's external
// policy API (RS256, UAA's claim shapes) and print it.
import type { Command } from 'commander';
import fs from 'node:fs';
import { fail } from './util.js';
import { TokenKeyError, parseDuration, signToken } from '../control/auth.js';

interface TokenCliOptions {
  signingKey: string;
  scope: string[];
  expires: string;
  subject?: string;
  kid?: string;
}

const collect = (v: string, prev: string[]) => [...prev, ...v.split(',').filter((s) => s.length > 0)];

export function register(program: Command): void {
  const token = program.command('token').description('bearer tokens for the external policy API');
  token
    .command('create')
    .description('print an RS256 token signed with --signing-key, carrying the given scopes')
    .requiredOption('--signing-key <file>', 'PEM RSA private key (token-key.pem from `silkworm certs create`)')
    .option('--scope <scope>', 'a scope to grant: network.admin (change and read policies) or network.write (read); repeatable', collect, [])
    .option('--expires <duration>', 'lifetime: 90s, 15m, 1h, 7d or plain seconds', '1h')
    .option('--subject <sub>', 'the token subject (sub claim)', 'silkworm')
    .option('--kid <id>', 'key id for the header, when the controller holds a JWKS with several keys')
    .addHelpText(
      'after',
      `
Example:
  export SILKWORM_TOKEN=$(silkworm token create --signing-key /etc/silkworm/tls/token-key.pem --scope network.admin --expires 1h)
  curl -H "Authorization: Bearer $SILKWORM_TOKEN" --cacert ca.pem https://198.18.0.1:4003/networking/v1/external/policies`,
    )
    .action(async (opts: TokenCliOptions) => {
      if (opts.scope.length === 0) fail('give at least one --scope (network.admin or network.write)');
      const expiresInS = parseDuration(opts.expires);
      if (expiresInS === undefined) fail(`--expires must be a duration like 90s, 15m, 1h or 7d, got "${opts.expires}"`);
      let pem: string;
      try {
        pem = fs.readFileSync(opts.signingKey, 'utf8');
      } catch (e) {
        fail(`cannot read the signing key ${opts.signingKey}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      try {
        const jwt = await signToken({ signingKeyPem: pem, scopes: opts.scope, expiresInS, subject: opts.subject, kid: opts.kid });
        process.stdout.write(jwt + '\n');
      } catch (e) {
        if (e instanceof TokenKeyError) fail(`${opts.signingKey}: ${e.message}`);
        throw e;
      }
    });
}
