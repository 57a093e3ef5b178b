// `silkworm cell`: run one cell's agent in the current network namespace.
import { Option, type Command } from 'commander';
import { Cell } from '../cell/cell.js';
import { serveAdmin, serveMetrics } from '../cell/admin.js';
import { cellRegistry } from '../cell/metrics.js';
import { IprouteContainerNet } from '../agent/netns.js';
import { nativeCellIo } from '../cell/io.js';
import { ControllerClient } from '../net/controller-client.js';
import { controllerAddress, fail, parseAddress, parseIntStrict } from './util.js';
import { isIpv4, parseCidr } from '../util/ip.js';
import { KernelCell } from '../kernel/kernel-cell.js';
import { serveKernelAdmin } from '../kernel/admin.js';
import { formatOffloads, OFFLOAD_NAMES, resolveOffloads, type ResolvedOffloads } from '../offload/options.js';
import { logger } from '../util/log.js';

// commander reads a `--no-X` flag as the negation of `--X`; this one is a list of its own.
function noOffloadOption(): Option {
  const o = new Option('--no-offload <list>', 'turn these offloads off (comma-separated), keeping the rest');
  o.negate = false;
  return o;
}

export function register(program: Command): void {
  program
    .command('cell')
    .description("run a cell's agent (lease, policy watch, TAPs, UDP 4789) in the current network namespace")
    .requiredOption('--name <name>', 'cell name, e.g. cell1')
    .requiredOption('--underlay-ip <ip>', "this cell's underlay address (198.18.0.0/15 in the lab)")
    .option('--underlay-dev <dev>', 'underlay interface (the kernel data plane sends VXLAN through it)', 'eth0')
    .option('--controller <addr>', 'controller address (unix socket path or host:port)')
    .option('--lab <prefix>', "use lab P's controller socket", 'sw')
    .option('--admin <addr>', 'admin socket for show/container/trace (default: the lab socket for --name)')
    .option('--mtu <n>', 'underlay MTU; containers get MTU − 50', '1500')
    .option('--vni <n>', 'VXLAN network identifier', '1')
    .option('--port <n>', 'VXLAN UDP port', '4789')
    .option('--metrics <addr>', 'also serve Prometheus metrics on this address (host:port or socket); always on the admin socket at /metrics')
    .option('--capture', 'open a silk-vtep TAP and copy every inner frame to it, for tcpdump -i silk-vtep')
    .option('--dataplane <kind>', 'user (this process moves the packets) or kernel (program silk-vtep, veths and iptables as silk does)', 'user')
    .option('--overlay-network <cidr>', 'overlay network the leases come from (kernel: its prefix goes on silk-vtep)', '10.255.0.0/16')
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
        '  ip netns exec sw-cell1 silkworm cell --name cell1 --underlay-ip 198.18.0.11 --no-offload tap-tso,udp-gso',
        '  ip netns exec sw-cell1 silkworm cell --name cell1 --underlay-ip 198.18.0.11 --offload none',
        '  ip netns exec sw-cell2 silkworm cell --name cell2 --underlay-ip 198.18.0.12 --dataplane kernel --controller /run/silkworm/sw/controller.sock --admin /run/silkworm/sw/cell2.sock',
      ].join('\n'),
    )
    .action(async (o) => {
      if (!isIpv4(o.underlayIp)) fail(`--underlay-ip "${o.underlayIp}" is not an IPv4 address`);
      if (o.dataplane !== 'user' && o.dataplane !== 'kernel') fail(`--dataplane must be user or kernel, got "${o.dataplane}"`);
      const mtu = parseIntStrict(o.mtu, '--mtu', 576, 9216);
      const vni = parseIntStrict(o.vni, '--vni', 0, 0xffffff);
      const port = parseIntStrict(o.port, '--port', 1, 65535);
      // Offloads are decided here, once: the io layer never reads the environment.
      let offloads: ResolvedOffloads;
      try {
        offloads = resolveOffloads({ offload: o.offload, noOffload: o.noOffload }, process.env);
      } catch (err) {
        fail((err as Error).message);
      }
      if (offloads.deprecatedEnv.length > 0) {
        logger('cell', { cell: o.name }).warn(
          { variables: offloads.deprecatedEnv, offload: formatOffloads(offloads.options), use: '--offload / --no-offload' },
          'offload-env-deprecated',
        );
      }
      const client = new ControllerClient(controllerAddress(o));
      const admin = parseAddress(o.admin ?? `/run/silkworm/${o.lab}/${o.name}.sock`);
      if (o.dataplane === 'kernel') {
        try {
          parseCidr(o.overlayNetwork);
        } catch {
          fail(`--overlay-network "${o.overlayNetwork}" is not an IPv4 CIDR such as 10.255.0.0/16`);
        }
        if (o.capture) fail('--capture is for the userspace data plane; with --dataplane kernel run tcpdump -i silk-vtep in the cell namespace');
        if (o.offload !== undefined || o.noOffload !== undefined) fail('--offload and --no-offload are for the userspace data plane; the kernel data plane uses the kernel\'s own offloads (ethtool -K)');
        if (!/^[A-Za-z0-9_.-]{1,15}$/.test(o.underlayDev)) fail(`--underlay-dev "${o.underlayDev}" is not an interface name`);
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
        });
        try {
          await kcell.start();
        } catch (err) {
          await kcell.stop().catch(() => undefined);
          fail(`the kernel cell could not start: ${(err as Error).message}`);
        }
        const kserver = await serveKernelAdmin(kcell, admin);
        kcell.log.info({ admin: o.admin ?? admin }, 'admin-listening');
        await new Promise<void>((resolve) => {
          process.once('SIGTERM', () => resolve());
          process.once('SIGINT', () => resolve());
        });
        await kserver.close();
        await kcell.stop();
        return;
      }
      const cell = new Cell({
        name: o.name,
        controller: client,
        underlayIp: o.underlayIp,
        // SILKWORM_NATIVE_BYTES=0: segmentation and checksum verification in TypeScript instead of the
        // addon's byte primitives (for paired measurements, scripts/bench-compare.sh --paired).
        io: nativeCellIo(offloads.options, { nativeBytes: process.env.SILKWORM_NATIVE_BYTES !== '0' }),
        containerNet: new IprouteContainerNet(),
        dataplane: { underlayMtu: mtu, vni, vxlanPort: port },
        capture: Boolean(o.capture),
      });
      try {
        await cell.start();
      } catch (err) {
        fail(`the cell could not start: ${(err as Error).message}`);
      }
      const registry = cellRegistry(cell);
      const server = await serveAdmin(cell, admin, registry);
      const metricsServer = o.metrics ? await serveMetrics(parseAddress(o.metrics), registry) : null;
      cell.log.info({ admin: o.admin ?? admin }, 'admin-listening');
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      await server.close();
      await metricsServer?.close();
      await cell.stop();
    });
}
