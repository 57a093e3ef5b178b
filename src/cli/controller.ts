// `silkworm controller`: run the policy server and lease API in one process
// until SIGTERM/SIGINT.
import type { Command } from 'commander';
import { fail, parseAddress, parseIntStrict, CliError } from './util.js';
import { parseCidr } from '../util/ip.js';
import { startController } from '../control/server.js';
import { loadTlsMaterial, TlsConfigError, type TlsMaterial } from '../net/tls.js';
import { DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS } from '../net/http.js';
import type { Address } from '../net/address.js';
import { TokenKeyError, TokenVerifier, parseDuration } from '../control/auth.js';
import {
  DEFAULT_LEASE_EXPIRY_SECONDS,
  DEFAULT_OVERLAY_NETWORK,
  DEFAULT_SUBNET_PREFIX_LENGTH,
} from '../control/controller.js';

interface ControllerCliOptions {
  listen: string[];
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  maxBody: string;
  maxConnections: string;
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
    .option('--listen <addr>', 'unix socket path or host:port to serve on (repeatable: one listener each)', (v: string, prev: string[]) => [...prev, v], [] as string[])
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
    .option('--tls-cert <file>', "the controller's certificate (PEM): every TCP listener then speaks TLS 1.2+")
    .option('--tls-key <file>', 'its private key (PEM)')
    .option(
      '--tls-ca <file>',
      'CA (PEM) that client certificates must be signed by: the internal policy API, the lease API and /watch need one over TLS',
    )
    .option('--max-body <bytes>', 'largest request body; a bigger one gets 413 before it is read (accepts 512k, 1m)', String(DEFAULT_MAX_BODY_BYTES))
    .option(
      '--max-connections <n>',
      'per listener, connections without a verified client certificate waiting for a request; one more closes the longest-waiting with 503',
      String(DEFAULT_MAX_CONNECTIONS),
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
  silkworm controller --listen /run/silkworm/sw/controller.sock --listen 198.18.0.1:4003 --store ./controller.db \\
    --tls-cert tls/controller.pem --tls-key tls/controller-key.pem --tls-ca tls/ca.pem --token-key tls/token-key.pub.pem

With --tls-*, cells connect with --controller https://HOST:PORT and a client certificate;
the external policy API over TCP takes a bearer token (--token-key). The unix socket stays
plain and trusted (root only).

The first lease is 10.255.1.0/24 (silk skips the first subnet). Cells follow changes with
GET /watch?since=<version> (add &delta=1 for only the changes since then); policies use
cf-networking's /networking/v1/... paths. Controllers on one PostgreSQL database are replicas:
each serves reads and writes, and a change made through one reaches the watches on all.`,
    )
    .action(async (opts: ControllerCliOptions) => {
      if (opts.listen.length === 0) fail('say where to listen: --listen /run/silkworm/sw/controller.sock and/or --listen HOST:PORT');
      const listen: Address[] = opts.listen.map((l) => parseAddress(l));
      const anyTls = opts.tlsCert !== undefined || opts.tlsKey !== undefined || opts.tlsCa !== undefined;
      let tls: TlsMaterial | undefined;
      if (anyTls) {
        if (opts.tlsCert === undefined || opts.tlsKey === undefined || opts.tlsCa === undefined) {
          fail('TLS needs all three of --tls-cert, --tls-key and --tls-ca (the CA that client certificates are checked against)');
        }
        try {
          tls = loadTlsMaterial({ cert: opts.tlsCert, key: opts.tlsKey, ca: opts.tlsCa }, "the controller's");
        } catch (e) {
          if (e instanceof TlsConfigError) fail(e.message);
          throw e;
        }
        if (!listen.some((a) => a.kind === 'tcp')) fail('--tls-cert/--tls-key/--tls-ca are for TCP listeners: add --listen HOST:PORT');
        // The external API shares the TLS listener with clients that hold no certificate: only a token may guard it.
        if (opts.tokenKey === undefined) fail('a TLS listener needs --token-key too: the external policy API over TCP is guarded by bearer tokens (silkworm certs create writes token-key.pub.pem)');
      }
      for (const a of listen) {
        if (a.kind === 'tcp' && a.tls && !tls) fail(`--listen ${opts.listen.find((l) => l.startsWith('https://'))} needs --tls-cert, --tls-key and --tls-ca`);
      }
      const maxBody = parseSize(opts.maxBody, '--max-body');
      const maxConnections = parseIntStrict(opts.maxConnections, '--max-connections', 1, 1_000_000);
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
          tls,
          maxBodyBytes: maxBody,
          limits: { maxConnections },
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

/** "1048576", "512k", "1m" → bytes (1 KiB to 1 GiB). */
function parseSize(text: string, what: string): number {
  const m = /^(\d+)([kmg])?i?b?$/i.exec(text.trim());
  if (!m) fail(`${what} must be a number of bytes such as 1048576, 512k or 1m, got "${text}"`);
  const unit = m[2]?.toLowerCase();
  const n = Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1);
  if (n < 1024 || n > 1024 ** 3) fail(`${what} must be between 1k and 1g, got "${text}"`);
  return n;
}
