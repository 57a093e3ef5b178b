// `silkworm controller`: run the policy server and lease API in one process
// until SIGTERM/SIGINT.
import type { Command } from 'commander';
import { fail, parseAddress, parseIntStrict, CliError } from './util.js';
import { parseCidr } from '../util/ip.js';
import { startController } from '../control/server.js';
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
}

export function register(program: Command): void {
  program
    .command('controller')
    .description(
      "run the controller: cf-networking's policy server (policies, tags) and silk-controller's subnet leases, with a watch for cells",
    )
    .requiredOption('--listen <addr>', 'unix socket path or host:port to serve on')
    .requiredOption('--store <path>', "SQLite file holding the state (created if missing; ':memory:' keeps nothing)")
    .option('--overlay-network <cidr>', 'overlay network leases are cut from', DEFAULT_OVERLAY_NETWORK)
    .option('--subnet-prefix-length <n>', "prefix length of one cell's lease", String(DEFAULT_SUBNET_PREFIX_LENGTH))
    .option('--lease-expiry <seconds>', 'a lease not renewed for this long may be reclaimed', String(DEFAULT_LEASE_EXPIRY_SECONDS))
    .addHelpText(
      'after',
      `
Example:
  silkworm controller --listen /run/silkworm/sw/controller.sock --store /var/lib/silkworm/controller.db
  silkworm controller --listen 127.0.0.1:4003 --store ./controller.db --overlay-network 10.255.0.0/16 --lease-expiry 600

The first lease is 10.255.1.0/24 (silk skips the first subnet). Cells follow changes with
GET /watch?since=<version>; policies use cf-networking's /networking/v1/... paths.`,
    )
    .action(async (opts: ControllerCliOptions) => {
      const listen = parseAddress(opts.listen);
      try {
        parseCidr(opts.overlayNetwork);
      } catch (e) {
        fail(`--overlay-network: ${(e as Error).message}`);
      }
      const prefix = parseIntStrict(opts.subnetPrefixLength, '--subnet-prefix-length', 1, 30);
      if (!/^\d+(\.\d+)?$/.test(opts.leaseExpiry) || !(Number(opts.leaseExpiry) > 0)) {
        fail(`--lease-expiry must be a positive number of seconds, got "${opts.leaseExpiry}"`);
      }
      let running;
      try {
        running = await startController({
          listen,
          store: opts.store,
          overlayNetwork: opts.overlayNetwork,
          subnetPrefixLength: prefix,
          leaseExpirySeconds: Number(opts.leaseExpiry),
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
