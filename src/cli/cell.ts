// `silkworm cell`: run one cell's agent in the current network namespace.
//
// One instance per cell: before anything is touched the cell takes the lock
// in its state directory, checks that nobody answers on its admin socket, and
// binds UDP 4789 on its underlay address without port sharing; any of them
// taken means another cell is running, and this one exits non-zero with one
// sentence. A start that fails later undoes what it made (the lease included)
// and exits non-zero too — never a process left hanging.
import dgram from 'node:dgram';
import net from 'node:net';
import fs from 'node:fs';
//
// Only what those checks need is loaded up front; the data planes, the
// logger and the metrics are imported once they pass, so a refusal comes
// quickly and a restart starts moving packets sooner.
import { Option, type Command } from 'commander';
import { ControllerClient, detectControllerApi } from '../net/controller-client.js';
import type { UpstreamControl } from '../agent/agent.js';
import { clientTls, controllerAddress, controllerAddresses, fail, parseAddress, parseIntStrict } from './util.js';
import { isIpv4, parseCidr } from '../util/ip.js';
import { formatOffloads, OFFLOAD_NAMES, resolveOffloads, type ResolvedOffloads } from '../offload/options.js';
import { defaultStateDir, StateDir } from '../agent/state-dir.js';
import { loadNative } from '../io/native.js';
import { DEFAULT_CONNTRACK_MAX } from '../policy/conntrack.js';
import { MAX_WORKERS } from '../cell/worker-protocol.js';
import { VXLAN_OVERHEAD } from '../wire/offsets.js';
import type { Address } from '../net/address.js';
import type { AgentCell } from '../agent/agent-cell.js';

/** Default busy-polling window after traffic, µs (SILKWORM_BUSY_POLL_US overrides; 0 turns it off). */
export const DEFAULT_BUSY_POLL_US = 0;

/** SILKWORM_BUSY_POLL_US as a window in µs: a whole number from 0 to 100000, else the default. */
export function busyPollUs(v: string | undefined): number {
  if (v === undefined || !/^\d{1,6}$/.test(v)) return DEFAULT_BUSY_POLL_US;
  return Math.min(Number(v), 100_000);
}

// commander reads a `--no-X` flag as the negation of `--X`; this one is a list of its own.
function noOffloadOption(): Option {
  const o = new Option('--no-offload <list>', 'turn these offloads off (comma-separated), keeping the rest');
  o.negate = false;
  return o;
}

/** Does something answer on unix socket `path`? (A socket file left by a dead cell does not.) */
function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(timeoutMs, () => done(true)); // accepted but silent: still someone's
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Refuse when another process serves the admin address (its socket file is left alone). */
async function checkAdminFree(admin: Address): Promise<void> {
  if (admin.kind !== 'unix') return;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(admin.path);
  } catch {
    return;
  }
  if (!st.isSocket()) fail(`${admin.path} exists and is not a socket; refusing to replace it`);
  if (await socketAnswers(admin.path)) fail(`admin socket ${admin.path} is in use by another running cell`);
}

/**
 * Refuse early when UDP `port` on `ip` is taken (a live cell binds it without
 * port sharing). Cell.start binds it for real before the lease; this only
 * answers sooner, before the data plane's modules load.
 */
function checkUdpFree(ip: string, port: number, dataplane: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    s.once('error', (err: NodeJS.ErrnoException) => {
      s.close();
      if (err.code === 'EADDRINUSE') reject(new Error(`UDP port ${port} on ${ip} is in use (another cell for this underlay address is running)`));
      else if (err.code === 'EADDRNOTAVAIL' && dataplane === 'user') reject(new Error(`${ip} is not an address of this network namespace`));
      else resolve(); // not ours to judge here (the kernel data plane binds through its VXLAN device)
    });
    s.bind({ address: ip, port, exclusive: true }, () => s.close(() => resolve()));
  });
}

/** The file a cell started with --takeover writes its PID to once it is loaded and waiting for the lock. */
export const TAKEOVER_FILE = 'takeover';

/**
 * --takeover: take the state directory's lock as soon as the cell holding it
 * lets go (polling every 10 ms, at most `waitMs`). Announces itself in
 * TAKEOVER_FILE first so the one restarting it knows when to stop the old one.
 */
async function takeOver(state: StateDir, lockFile: (p: string) => number, name: string, waitMs = 20_000): Promise<void> {
  fs.mkdirSync(state.dir, { recursive: true, mode: 0o700 });
  const marker = state.path(TAKEOVER_FILE);
  fs.writeFileSync(marker, `${process.pid}\n`);
  const deadline = Date.now() + waitMs;
  try {
    for (;;) {
      try {
        state.lock(lockFile);
        return;
      } catch (err) {
        if (!/is in use by another cell/.test((err as Error).message)) fail((err as Error).message);
        if (Date.now() >= deadline) fail(`cell ${name} did not stop within ${waitMs / 1000} s: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    fs.rmSync(marker, { force: true });
  }
}

/** A start failure: undo what this run made (the lease included), say why in one sentence, exit 1. */
async function abort(what: string, err: unknown, cell: AgentCell | null, client: ControllerClient | null, state: StateDir | null): Promise<never> {
  if (cell && client) {
    const lease = (() => {
      try {
        return cell.lease;
      } catch {
        return undefined;
      }
    })();
    await cell.stop().catch(() => undefined);
    if (lease) await client.releaseLease(lease).catch(() => undefined);
  }
  state?.unlock((fd) => loadNative().closeFd(fd));
  try {
    state?.removeIfCreated();
  } catch {
    /* best effort */
  }
  process.stderr.write(`silkworm: ${what}: ${(err as Error).message}\n`);
  // Anything still open (a half-made socket, a timer) must not keep a failed cell alive.
  process.exit(1);
}

export function register(program: Command): void {
  program
    .command('cell')
    .description("run a cell's agent (lease, policy watch, TAPs, UDP 4789) in the current network namespace")
    .requiredOption('--name <name>', 'cell name, e.g. cell1')
    .requiredOption('--underlay-ip <ip>', "this cell's underlay address (198.18.0.0/15 in the lab)")
    .option('--underlay-dev <dev>', 'underlay interface (the kernel data plane sends VXLAN through it)', 'eth0')
    .option('--controller <addr>', 'controller address (unix socket path, host:port or https://host:port); A,B,… for replicas: the cell uses the first that answers and moves on when it goes')
    .option('--tls-cert <file>', "this cell's client certificate (PEM) for an https:// controller")
    .option('--tls-key <file>', 'its private key (PEM)')
    .option('--tls-ca <file>', "CA (PEM) the controller's certificate must be signed by")
    .option('--lab <prefix>', "use lab P's controller socket", 'sw')
    .option(
      '--controller-api <api>',
      "silkworm (GET /watch), silk (an unmodified silk-controller: poll and renew as silk-daemon does) or auto (silk when /watch answers 404)",
      'auto',
    )
    .option('--policy-server <addr>', "with the silk API: the policy server's internal API (https://HOST:PORT; default the --controller address), same TLS files")
    .option('--lease-poll <s>', "seconds between lease renewals; with the silk API, between renew + GET /leases rounds (silk-daemon's lease_poll_interval_seconds). Keep it below the controller's lease expiry", '30')
    .option('--policy-poll <s>', "with the silk API: seconds between policy rounds (vxlan-policy-agent's policy_poll_interval_seconds)", '5')
    .option('--admin <addr>', 'admin socket for show/container/trace (default: the lab socket for --name)')
    .option('--mtu <n>', 'underlay MTU; containers get MTU − 50', '1500')
    .option('--vni <n>', 'VXLAN network identifier', '1')
    .option('--port <n>', 'VXLAN UDP port', '4789')
    .option('--metrics <addr>', 'also serve Prometheus metrics on this address (host:port or socket); always on the admin socket at /metrics')
    .option('--capture', 'open a silk-vtep TAP and copy every inner frame to it, for tcpdump -i silk-vtep')
    .option('--workers <n>', `worker threads moving packets (userspace data plane, 1-${MAX_WORKERS}): each container's TAP gets n queues and UDP 4789 n sockets, and the kernel steers every flow, both ways, to one worker`, '1')
    .option('--dataplane <kind>', 'user (this process moves the packets) or kernel (program silk-vtep, veths and iptables as silk does)', 'user')
    .option('--overlay-network <cidr>', 'overlay network the leases come from (kernel: its prefix goes on silk-vtep)', '10.255.0.0/16')
    .option('--state-dir <dir>', 'where the cell keeps its containers and connections across restarts, locked while it runs (default /var/lib/silkworm/NAME)')
    .option('--takeover', 'wait (up to 20 s) for the cell running on this state directory to stop, with everything loaded, then start at once (lab restart uses it)')
    .option('--conntrack-max <n>', 'tracked connections at most (userspace data plane; per worker thread with --workers); a full table evicts the least valuable', String(DEFAULT_CONNTRACK_MAX))
    .option('--offload <list>', `offloads to use, comma-separated, from ${OFFLOAD_NAMES.join(', ')} (or all, none); default all`)
    .addOption(noOffloadOption())
    .addHelpText(
      'after',
      [
        '',
        'Offloads (userspace data plane): tap-tso (containers send TCP super-frames, segmented here),',
        'tap-gro (TCP segments merged into super-frames toward containers), udp-gso / udp-gro (UDP',
        'segmentation offload on the underlay). Each is asked of the kernel; what it refuses falls back',
        'and `silkworm show counters` shows requested vs in effect.',
        'Precedence, per offload: --offload / --no-offload > the deprecated environment variables',
        'SILKWORM_TAP_VNET=0 (tap-gro and tap-tso off), SILKWORM_TAP_TSO=0 (tap-tso off),',
        'SILKWORM_UNDERLAY_GSO=0 (udp-gso and udp-gro off) > default (all on).',
        '',
        'Examples (inside the cell namespace):',
        '  ip netns exec sw-cell1 silkworm cell --name cell1 --underlay-ip 198.18.0.11 --controller /run/silkworm/sw/controller.sock --admin /run/silkworm/sw/cell1.sock',
        '  ip netns exec sw-cell1 silkworm cell --name cell1 --underlay-ip 198.18.0.11 --controller https://198.18.0.1:4003 \\',
        '      --tls-cert /run/silkworm/sw/tls/cell1.pem --tls-key /run/silkworm/sw/tls/cell1-key.pem --tls-ca /run/silkworm/sw/tls/ca.pem',
        '  ip netns exec sw-cell1 silkworm cell --name cell1 --underlay-ip 198.18.0.11 --no-offload tap-tso,udp-gso',
        '  ip netns exec sw-cell1 silkworm cell --name cell1 --underlay-ip 198.18.0.11 --offload none',
        '  ip netns exec sw-cell1 silkworm cell --name cell1 --underlay-ip 198.18.0.11 --workers 2',
        '  ip netns exec sw-cell2 silkworm cell --name cell2 --underlay-ip 198.18.0.12 --dataplane kernel --controller /run/silkworm/sw/controller.sock --admin /run/silkworm/sw/cell2.sock',
      ].join('\n'),
    )
    .action(async (o) => {
      if (!isIpv4(o.underlayIp)) fail(`--underlay-ip "${o.underlayIp}" is not an IPv4 address`);
      if (o.dataplane !== 'user' && o.dataplane !== 'kernel') fail(`--dataplane must be user or kernel, got "${o.dataplane}"`);
      const mtu = parseIntStrict(o.mtu, '--mtu', 576, 9216);
      const vni = parseIntStrict(o.vni, '--vni', 0, 0xffffff);
      const port = parseIntStrict(o.port, '--port', 1, 65535);
      const conntrackMax = parseIntStrict(o.conntrackMax, '--conntrack-max', 1, 1 << 24);
      const workers = parseIntStrict(o.workers, '--workers', 1, MAX_WORKERS);
      if (workers > 1 && o.capture) fail('--capture works with one worker: leave out --workers or --capture');
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(o.name)) fail(`--name "${o.name}" must be 1-64 letters, digits, "_.-"`);
      // Offloads are decided here, once: the io layer never reads the environment.
      let offloads: ResolvedOffloads;
      try {
        offloads = resolveOffloads({ offload: o.offload, noOffload: o.noOffload }, process.env);
      } catch (err) {
        fail((err as Error).message);
      }
      if (o.dataplane === 'kernel') {
        try {
          parseCidr(o.overlayNetwork);
        } catch {
          fail(`--overlay-network "${o.overlayNetwork}" is not an IPv4 CIDR such as 10.255.0.0/16`);
        }
        if (o.capture) fail('--capture is for the userspace data plane; with --dataplane kernel run tcpdump -i silk-vtep in the cell namespace');
        if (workers > 1) fail('--workers is for the userspace data plane (the kernel spreads its own work)');
        if (o.offload !== undefined || o.noOffload !== undefined) fail('--offload and --no-offload are for the userspace data plane; the kernel data plane uses the kernel\'s own offloads (ethtool -K)');
        if (!/^[A-Za-z0-9_.-]{1,15}$/.test(o.underlayDev)) fail(`--underlay-dev "${o.underlayDev}" is not an interface name`);
      }
      const caddrs = controllerAddresses(o);
      const caddr = caddrs[0]!;
      const tls = clientTls(caddr, o, "this cell's");
      if (caddr.kind === 'tcp' && caddr.tls && (!tls?.cert || !tls.ca)) {
        fail('a cell reaches an https:// controller with mutual TLS: give --tls-cert, --tls-key and --tls-ca');
      }
      const client = new ControllerClient(caddrs, { tls });
      if (!['silkworm', 'silk', 'auto'].includes(o.controllerApi)) fail(`--controller-api must be silkworm, silk or auto, got "${o.controllerApi}"`);
      const leasePoll = parseIntStrict(o.leasePoll, '--lease-poll', 1, 86_400);
      const policyPoll = parseIntStrict(o.policyPoll, '--policy-poll', 1, 86_400);
      if (o.controllerApi !== 'silk' && o.policyServer && o.controllerApi === 'silkworm') {
        fail('--policy-server is for --controller-api silk (silkworm\'s controller serves the policies itself)');
      }
      const admin = parseAddress(o.admin ?? `/run/silkworm/${o.lab}/${o.name}.sock`);
      // One instance per cell: the state directory's lock, then the admin socket, then (in Cell.start) UDP 4789.
      const state = new StateDir(o.stateDir ?? defaultStateDir(o.name));
      const native = loadNative();
      if (typeof native.lockFile !== 'function') fail('the native addon is older than this silkworm (no lockFile): rebuild it with "npm run build:native"');
      if (o.takeover) {
        // Load the data plane now, say so, and wait for the running cell to stop (whoever
        // asked for the takeover stops it): the gap between the two is then only the hand-over.
        await Promise.all([import('../cell/cell.js'), import('../cell/io.js'), import('../agent/netns.js'), import('../util/log.js')]);
        await takeOver(state, (p) => native.lockFile(p), o.name);
      } else {
        try {
          state.lock((p) => native.lockFile(p));
        } catch (err) {
          fail(`cell ${o.name} is already running: ${(err as Error).message}`);
        }
      }
      await (async () => {
        await checkAdminFree(admin);
        await checkUdpFree(o.underlayIp, port, o.dataplane);
      })().catch((err) => {
        state.unlock((fd) => native.closeFd(fd));
        state.removeIfCreated();
        throw err;
      });
      // What starts the data plane first; the admin socket and metrics (prom-client) once packets move.
      const [{ IprouteContainerNet }, { logger }] = await Promise.all([import('../agent/netns.js'), import('../util/log.js')]);
      let api: 'silkworm' | 'silk' = o.controllerApi === 'auto' ? 'silkworm' : o.controllerApi;
      if (o.controllerApi === 'auto') {
        try {
          api = await detectControllerApi(client);
        } catch (err) {
          await abort('the cell could not start', err, null, null, state);
        }
      }
      let fatal: ((err: Error) => void) | undefined;
      const fatalSeen = new Promise<Error>((resolve) => (fatal = resolve));
      let upstream: UpstreamControl | undefined;
      if (api === 'silk') {
        const paddr = o.policyServer ? parseAddress(o.policyServer) : caddr;
        upstream = {
          policyServer: new ControllerClient(paddr, { tls }),
          leasePollS: leasePoll,
          policyPollS: policyPoll,
          onFatal: (err) => fatal!(err),
        };
        logger('cell', { cell: o.name }).info({ controller: o.controller, policyServer: o.policyServer ?? o.controller, leasePoll, policyPoll }, 'controller-api-silk');
      } else if (o.policyServer) {
        await abort('the cell could not start', new Error('--policy-server is for --controller-api silk (silkworm\'s controller serves the policies itself)'), null, null, state);
      }
      const untilStop = () =>
        new Promise<void>((resolve) => {
          const stop = () => resolve();
          process.once('SIGTERM', stop);
          process.once('SIGINT', stop);
          void fatalSeen.then((err) => {
            process.stderr.write(`silkworm: the cell stops: ${err.message}\n`);
            process.exitCode = 1;
            resolve();
          });
        });
      if (offloads.deprecatedEnv.length > 0) {
        logger('cell', { cell: o.name }).warn(
          { variables: offloads.deprecatedEnv, offload: formatOffloads(offloads.options), use: '--offload / --no-offload' },
          'offload-env-deprecated',
        );
      }
      if (o.dataplane === 'kernel') {
        const [{ KernelCell }, { serveKernelAdmin }] = await Promise.all([import('../kernel/kernel-cell.js'), import('../kernel/admin.js')]);
        const kcell = new KernelCell({
          name: o.name,
          controller: client,
          underlayIp: o.underlayIp,
          underlayDev: o.underlayDev,
          underlayMtu: mtu,
          vni,
          vxlanPort: port,
          overlayNetwork: o.overlayNetwork,
          containerNet: new IprouteContainerNet(),
          renewInterval: leasePoll,
          upstream,
          state,
        });
        try {
          await kcell.start();
        } catch (err) {
          await kcell.stop().catch(() => undefined);
          await abort('the kernel cell could not start', err, null, null, state);
        }
        const kserver = await serveKernelAdmin(kcell, admin).catch((err) => abort('the kernel cell could not serve its admin socket', err, kcell, client, state));
        kcell.log.info({ admin: o.admin ?? admin }, 'admin-listening');
        await untilStop();
        await kserver.close();
        await kcell.stop();
        state.unlock((fd) => native.closeFd(fd));
        return;
      }
      const [{ Cell }, { nativeCellIo }] = await Promise.all([import('../cell/cell.js'), import('../cell/io.js')]);
      // SILKWORM_NATIVE_BYTES=0: segmentation and checksum verification in TypeScript instead of the
      // addon's byte primitives; SILKWORM_ZEROCOPY_TSO=0: TSO segments copied whole into the batch
      // instead of sent from where the TAP read them (for paired measurements, scripts/bench-compare.sh).
      const tuning = {
        nativeBytes: process.env.SILKWORM_NATIVE_BYTES !== '0',
        zeroCopyMtu: process.env.SILKWORM_ZEROCOPY_TSO === '0' ? 0 : mtu - VXLAN_OVERHEAD,
        // SILKWORM_WHOLE_TSO=0: every TSO segment walks egress on its own instead of the super-frame once.
        wholeTso: process.env.SILKWORM_WHOLE_TSO !== '0',
        // SILKWORM_BUSY_POLL_US: how long the event loop keeps polling without sleeping after traffic
        // (one event loop's: the addon keeps it per process, so not with several workers).
        busyPollUs: workers > 1 ? 0 : busyPollUs(process.env.SILKWORM_BUSY_POLL_US),
      };
      const cell = new Cell({
        name: o.name,
        controller: client,
        underlayIp: o.underlayIp,
        io: nativeCellIo(offloads.options, tuning),
        ...(workers > 1 ? { workers: { count: workers, offload: offloads.options, tuning } } : {}),
        containerNet: new IprouteContainerNet(),
        // SILKWORM_WHOLE_RX=0: every received segment walks ingress on its own (no whole runs).
        dataplane: { underlayMtu: mtu, vni, vxlanPort: port, conntrackCapacity: conntrackMax, wholeRx: process.env.SILKWORM_WHOLE_RX !== '0' },
        capture: Boolean(o.capture),
        renewInterval: leasePoll,
        upstream,
        state,
      });
      try {
        await cell.start();
      } catch (err) {
        await abort('the cell could not start', err, null, null, state);
      }
      const [{ serveAdmin, serveMetrics }, { cellRegistry }] = await Promise.all([import('../cell/admin.js'), import('../cell/metrics.js')]);
      const registry = cellRegistry(cell);
      const metricsAddr = o.metrics ? parseAddress(o.metrics) : null;
      const server = await serveAdmin(cell, admin, registry).catch((err) => abort('the cell could not serve its admin socket', err, cell, client, state));
      const metricsServer = metricsAddr
        ? await serveMetrics(metricsAddr, registry).catch(async (err) => {
            await server.close();
            return abort(`the cell could not serve metrics on ${o.metrics}`, err, cell, client, state);
          })
        : null;
      cell.log.info({ admin: o.admin ?? admin }, 'admin-listening');
      await untilStop();
      await server.close();
      await metricsServer?.close();
      await cell.stop();
      // The state is written and every fd closed: a cell waiting to take over may start now.
      state.unlock((fd) => native.closeFd(fd));
    });
}
