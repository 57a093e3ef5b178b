// `silkworm policy add|list|remove`: cf add-network-policy and friends, against
// the controller's cf-networking API.
import type { Command } from 'commander';
import { clientTls, controllerAddresses, fail, formatAddress, parseIntStrict, table, type Address } from './util.js';
import { ControllerClient, ControllerError, UnreachableError, HttpTimeoutError } from '../net/controller-client.js';
import { ProtocolError } from '../net/http.js';
import { TlsError } from '../net/tls.js';
import type { PolicyRecord } from '../net/controller-types.js';

interface ClientOptions {
  controller?: string;
  lab?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/**
 * Run `fn` against the controller, turning transport and API errors into one
 * sentence for the user (also used by `silkworm tags`).
 */
export async function withController<T>(opts: ClientOptions, fn: (c: ControllerClient) => Promise<T>): Promise<T> {
  const addrs: Address[] = controllerAddresses(opts);
  const addr = addrs[0]!;
  const where = addrs.map(formatAddress).join(', ');
  const tls = clientTls(addr, opts, "this client's");
  // The external API over TCP wants a bearer token; the unix socket is trusted and needs none.
  const token = opts.token ?? process.env.SILKWORM_TOKEN;
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token.replace(/^bearer /i, ''))) fail('--token / SILKWORM_TOKEN is not a token (it has spaces or control characters)');
  if (token !== undefined) checkTokenExpiry(token.replace(/^bearer /i, ''));
  const headers = token !== undefined && addr.kind === 'tcp' ? { authorization: /^bearer /i.test(token) ? token : `Bearer ${token}` } : undefined;
  try {
    return await fn(new ControllerClient(addrs, { timeoutMs: 10_000, tls, headers }));
  } catch (e) {
    if (e instanceof TlsError || e instanceof ProtocolError) fail(e.message);
    if (e instanceof UnreachableError) {
      const hint = opts.controller ? 'is the controller running? (silkworm controller --listen …)' : 'is the lab up? (silkworm lab up)';
      fail(`cannot reach the controller at ${addr}: ${hint}`);
    }
    if (e instanceof HttpTimeoutError) fail(`the controller at ${where} did not answer within 10 s`);
    if (e instanceof ControllerError) {
      if (e.status === 401 && addr.kind === 'tcp' && !headers) fail(`the controller refused: ${e.message} (give --token or set SILKWORM_TOKEN; silkworm token create makes one)`);
      fail(`the controller refused: ${e.message}`);
    }
    throw e;
  }
}

/** A token whose exp has passed is refused here, in a sentence, before the controller answers a bare 401. */
function checkTokenExpiry(token: string): void {
  const part = token.split('.')[1];
  if (part === undefined) return; // not a JWT; the controller says so
  let exp: unknown;
  try {
    exp = (JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as { exp?: unknown }).exp;
  } catch {
    return;
  }
  if (typeof exp === 'number' && exp * 1000 < Date.now()) {
    fail(`the token expired at ${new Date(exp * 1000).toISOString()}: make a new one (silkworm token create)`);
  }
}

export function addClientOptions(cmd: Command): Command {
  return cmd
    .option('--controller <addr>', 'controller address (unix socket path, host:port or https://host:port); A,B,… for replicas, tried in order')
    .option('--lab <prefix>', "use the lab's controller socket /run/silkworm/<prefix>/controller.sock", 'sw')
    .option('--token <jwt>', 'bearer token for the external policy API over TCP (default: $SILKWORM_TOKEN)')
    .option('--tls-ca <file>', 'CA (PEM) the controller\'s certificate must be signed by, for https://')
    .option('--tls-cert <file>', 'client certificate (PEM), for a controller that asks for one')
    .option('--tls-key <file>', 'its private key (PEM)');
}

interface PolicyArgsOptions extends ClientOptions {
  protocol: string;
  port?: string;
  ports?: string;
}

/** --protocol, --port N / --ports A-B → one policy record (cf CLI defaults: tcp, 8080). */
export function policyFromArgs(src: string, dst: string, opts: PolicyArgsOptions): PolicyRecord {
  if (!src) fail('give the source app: silkworm policy add SRC DST');
  if (!dst) fail('give the destination app: silkworm policy add SRC DST');
  const protocol = opts.protocol.toLowerCase();
  if (protocol !== 'tcp' && protocol !== 'udp') fail(`--protocol must be tcp or udp, got "${opts.protocol}"`);
  if (opts.port !== undefined && opts.ports !== undefined) fail('give either --port N or --ports A-B, not both');
  let start = 8080;
  let end = 8080;
  if (opts.ports !== undefined) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(opts.ports);
    if (!m) fail(`--ports must be a port or a range like 8080-8090, got "${opts.ports}"`);
    start = parseIntStrict(m[1]!, '--ports start', 1, 65535);
    end = m[2] === undefined ? start : parseIntStrict(m[2], '--ports end', 1, 65535);
    if (start > end) fail(`--ports ${opts.ports}: the start must not be above the end`);
  } else if (opts.port !== undefined) {
    start = end = parseIntStrict(opts.port, '--port', 1, 65535);
  }
  return { source: { id: src }, destination: { id: dst, protocol, ports: { start, end } } };
}

function portsText(p: { start: number; end: number }): string {
  return p.start === p.end ? String(p.start) : `${p.start}-${p.end}`;
}

function describe(p: PolicyRecord): string {
  return `${p.source.id} → ${p.destination.id} ${p.destination.protocol} ${portsText(p.destination.ports)}`;
}

export function register(program: Command): void {
  const policy = program
    .command('policy')
    .description('add, list and remove container-to-container policies (source app → destination app, protocol, ports)')
    .addHelpText(
      'after',
      `
Example:
  silkworm policy add appA appB --protocol tcp --port 8080
  silkworm policy list
  silkworm policy remove appA appB --protocol tcp --port 8080
  SILKWORM_TOKEN=$(silkworm token create --signing-key tls/token-key.pem --scope network.admin) \\
    silkworm policy list --controller https://198.18.0.1:4003 --tls-ca tls/ca.pem`,
    );

  addClientOptions(
    policy
      .command('add <src> <dst>')
      .description('allow the source app to reach the destination app on a protocol and port range')
      .option('--protocol <proto>', 'tcp or udp', 'tcp')
      .option('--port <n>', 'one destination port (default 8080)')
      .option('--ports <range>', 'a destination port range, e.g. 8080-8090'),
  )
    .addHelpText(
      'after',
      `
Example:
  silkworm policy add appA appB --protocol tcp --port 8080
  silkworm policy add appA appB --protocol udp --ports 9000-9010 --lab sw`,
    )
    .action(async (src: string, dst: string, opts: PolicyArgsOptions) => {
      const p = policyFromArgs(src, dst, opts);
      const tags = await withController(opts, async (c) => {
        await c.addPolicies([p]);
        return c.tags();
      });
      const tagOf = (id: string) => tags.find((t) => t.id === id)?.tag ?? '?';
      process.stdout.write(
        `added policy ${describe(p)} (tags: ${p.source.id} ${tagOf(p.source.id)}, ${p.destination.id} ${tagOf(p.destination.id)})\n`,
      );
    });

  addClientOptions(
    policy
      .command('list')
      .description('list policies with the tags the controller assigned')
      .option('--json', 'print JSON: {"total_policies":N,"policies":[…]} with tags (the internal API shape)')
      .option('--app <ids>', 'only policies naming one of these apps (comma-separated) as source or destination'),
  )
    .addHelpText(
      'after',
      `
Example:
  silkworm policy list
  silkworm policy list --app appA --json`,
    )
    .action(async (opts: ClientOptions & { json?: boolean; app?: string }) => {
      const ids = opts.app ? opts.app.split(',').filter(Boolean) : undefined;
      // Over TCP without a client certificate only the external API (token) is open to a tool:
      // the same rows from the external list plus the tags table.
      const external = opts.controller !== undefined && !opts.controller.startsWith('/') && !opts.controller.endsWith('.sock') && opts.tlsCert === undefined;
      const ps = await withController(opts, async (c) => {
        if (!external) return c.internalPolicies(ids);
        const [list, tags] = await Promise.all([c.policies(ids ? { id: ids } : {}), c.tags()]);
        const tagOf = new Map(tags.map((t) => [t.id, t.tag]));
        return list.map((p) => ({
          source: { ...p.source, tag: tagOf.get(p.source.id) },
          destination: { ...p.destination, tag: tagOf.get(p.destination.id) },
        }));
      });
      if (opts.json) {
        process.stdout.write(JSON.stringify({ total_policies: ps.length, policies: ps }, null, 2) + '\n');
        return;
      }
      if (ps.length === 0) {
        process.stdout.write('no policies\n');
        return;
      }
      process.stdout.write(
        table(
          ['SOURCE', 'SOURCE-TAG', 'DESTINATION', 'DEST-TAG', 'PROTOCOL', 'PORTS'],
          ps.map((p) => [
            p.source.id,
            p.source.tag ?? '',
            p.destination.id,
            p.destination.tag ?? '',
            p.destination.protocol,
            portsText(p.destination.ports),
          ]),
        ) + '\n',
      );
    });

  addClientOptions(
    policy
      .command('remove <src> <dst>')
      .description('remove a policy (the same protocol and ports it was added with)')
      .option('--protocol <proto>', 'tcp or udp', 'tcp')
      .option('--port <n>', 'one destination port (default 8080)')
      .option('--ports <range>', 'a destination port range, e.g. 8080-8090'),
  )
    .addHelpText(
      'after',
      `
Example:
  silkworm policy remove appA appB --protocol tcp --port 8080`,
    )
    .action(async (src: string, dst: string, opts: PolicyArgsOptions) => {
      const p = policyFromArgs(src, dst, opts);
      const existed = await withController(opts, async (c) => {
        const have = await c.policies({ source_id: [src], dest_id: [dst] });
        const d = p.destination;
        const found = have.some(
          (h) =>
            h.destination.protocol === d.protocol &&
            h.destination.ports.start === d.ports.start &&
            h.destination.ports.end === d.ports.end,
        );
        if (found) await c.deletePolicies([p]);
        return found;
      });
      if (!existed) fail(`there is no policy ${describe(p)} (see silkworm policy list)`);
      process.stdout.write(`removed policy ${describe(p)}\n`);
    });
}
