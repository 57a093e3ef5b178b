// `silkworm controller`: run the policy server and lease API in one process
// until SIGTERM/SIGINT.
import type { Command } from 'commander';
import { fail, parseAddress, parseIntStrict, CliError } from './util.js';
import { parseCidr } from '../util/ip.js';
import { startController } from '../control/server.js';
import { TokenKeyError, TokenVerifier, parseDuration } from '../control/auth.js';
import {
  DEFAULT_LEASE_EXPIRY_SECONDS,
  DEFAULT_OVERLAY_NETWORK,
  DEFAULT_SUBNET_PREFIX_LENGTH,
} from '../control/controller.js';

interface ControllerCliOptions {
  listen: string;
  store: string;
  overlayNetwork: string;
  subnetPrefixLength: string;
  leaseExpiry: string;
  tokenKey?: string;
}

export function register(program: Command): void {
  program
    .command('controller')
    .description(
      "run the controller: cf-networking's policy server (policies, tags) and silk-controller's subnet leases, with a watch for cells",
    )
    .requiredOption('--listen <addr>', 'unix socket path or host:port to serve on')
    .requiredOption(
      '--store <path|url>',
      "SQLite file holding the state (created if missing; ':memory:' keeps nothing), or postgres://USER[:PASS]@HOST[:PORT]/DB (also postgres:///DB?host=/run/postgresql) shared by several controllers",
    )
    .option('--overlay-network <cidr>', 'overlay network leases are cut from', DEFAULT_OVERLAY_NETWORK)
    .option('--subnet-prefix-length <n>', "prefix length of one cell's lease", String(DEFAULT_SUBNET_PREFIX_LENGTH))
    .option(
      '--lease-expiry <duration>',
      "a lease not renewed for this long may be reclaimed: seconds or 90s, 15m, 168h, 7d (silk-controller's default is 168h)",
      `${DEFAULT_LEASE_EXPIRY_SECONDS / 3600}h`,
    )
    .option(
      '--token-key <file>',
      'verify bearer tokens on the external policy API over TCP with this RSA public key (PEM, certificate or JWKS); the unix socket stays trusted',
    )
    .addHelpText(
      'after',
      `
Example:
  silkworm controller --listen /run/silkworm/sw/controller.sock --store /var/lib/silkworm/controller.db
  silkworm controller --listen 127.0.0.1:4003 --store ./controller.db --overlay-network 10.255.0.0/16 --lease-expiry 10m
  silkworm controller --listen 127.0.0.1:4003 --store ./controller.db --token-key /etc/silkworm/tls/token-key.pub.pem
  silkworm controller --listen 10.0.0.5:4003 --store postgres://silk:secret@db.internal/silkworm
  silkworm controller --listen /run/silkworm/sw/controller2.sock --store 'postgres:///silkworm?host=/run/postgresql'

The first lease is 10.255.1.0/24 (silk skips the first subnet). Cells follow changes with
GET /watch?since=<version> (add &delta=1 for only the changes since then); policies use
cf-networking's /networking/v1/... paths. Controllers on one PostgreSQL database are replicas:
each serves reads and writes, and a change made through one reaches the watches on all.`,
    )
    .action(async (opts: ControllerCliOptions) => {
      const listen = parseAddress(opts.listen);
      try {
        parseCidr(opts.overlayNetwork);
      } catch (e) {
        fail(`--overlay-network: ${(e as Error).message}`);
      }
      const prefix = parseIntStrict(opts.subnetPrefixLength, '--subnet-prefix-length', 1, 30);
      const leaseExpiry = parseDuration(opts.leaseExpiry);
      if (leaseExpiry === undefined) {
        fail(`--lease-expiry must be a positive number of seconds or a duration like 15m or 168h, got "${opts.leaseExpiry}"`);
      }
      let tokenVerifier: TokenVerifier | undefined;
      if (opts.tokenKey !== undefined) {
        try {
          tokenVerifier = TokenVerifier.fromFile(opts.tokenKey);
        } catch (e) {
          if (e instanceof TokenKeyError) fail(`--token-key: ${e.message}`);
          throw e;
        }
      }
      let running;
      try {
        running = await startController({
          listen,
          store: opts.store,
          overlayNetwork: opts.overlayNetwork,
          subnetPrefixLength: prefix,
          leaseExpirySeconds: leaseExpiry,
          tokenVerifier,
        });
      } catch (e) {
        if (e instanceof CliError) throw e;
        fail(`the controller could not start: ${(e as Error).message}`);
      }
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          void running.close().then(resolve, resolve);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}
