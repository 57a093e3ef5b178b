// `silkworm cell`: run one cell's agent in the current network namespace.
import type { Command } from 'commander';
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
    .addHelpText('after', '\nExamples (inside the cell namespace):\n  ip netns exec sw-cell1 silkworm cell --name cell1 --underlay-ip 198.18.0.11 --controller /run/silkworm/sw/controller.sock --admin /run/silkworm/sw/cell1.sock\n  ip netns exec sw-cell2 silkworm cell --name cell2 --underlay-ip 198.18.0.12 --dataplane kernel --controller /run/silkworm/sw/controller.sock --admin /run/silkworm/sw/cell2.sock')
    .action(async (o) => {
      if (!isIpv4(o.underlayIp)) fail(`--underlay-ip "${o.underlayIp}" is not an IPv4 address`);
      if (o.dataplane !== 'user' && o.dataplane !== 'kernel') fail(`--dataplane must be user or kernel, got "${o.dataplane}"`);
      const mtu = parseIntStrict(o.mtu, '--mtu', 576, 9216);
      const vni = parseIntStrict(o.vni, '--vni', 0, 0xffffff);
      const port = parseIntStrict(o.port, '--port', 1, 65535);
      const client = new ControllerClient(controllerAddress(o));
      const admin = parseAddress(o.admin ?? `/run/silkworm/${o.lab}/${o.name}.sock`);
      if (o.dataplane === 'kernel') {
        try {
          parseCidr(o.overlayNetwork);
        } catch {
          fail(`--overlay-network "${o.overlayNetwork}" is not an IPv4 CIDR such as 10.255.0.0/16`);
        }
        if (o.capture) fail('--capture is for the userspace data plane; with --dataplane kernel run tcpdump -i silk-vtep in the cell namespace');
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
        io: nativeCellIo(),
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
