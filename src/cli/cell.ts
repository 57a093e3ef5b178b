// `silkworm cell`: run one cell's agent in the current network namespace.
import type { Command } from 'commander';
import { Cell } from '../cell/cell.js';
import { serveAdmin } from '../cell/admin.js';
import { IprouteContainerNet } from '../cell/netns.js';
import { nativeCellIo } from '../cell/io.js';
import { ControllerClient } from '../control/client.js';
import { controllerAddress, fail, parseAddress, parseIntStrict } from './util.js';
import { isIpv4 } from '../util/ip.js';

export function register(program: Command): void {
  program
    .command('cell')
    .description("run a cell's agent (lease, policy watch, TAPs, UDP 4789) in the current network namespace")
    .requiredOption('--name <name>', 'cell name, e.g. cell1')
    .requiredOption('--underlay-ip <ip>', "this cell's underlay address (198.18.0.0/15 in the lab)")
    .option('--underlay-dev <dev>', 'underlay interface (informational)', 'eth0')
    .option('--controller <addr>', 'controller address (unix socket path or host:port)')
    .option('--lab <prefix>', "use lab P's controller socket", 'sw')
    .option('--admin <addr>', 'admin socket for show/container/trace (default: the lab socket for --name)')
    .option('--mtu <n>', 'underlay MTU; containers get MTU − 50', '1500')
    .option('--vni <n>', 'VXLAN network identifier', '1')
    .option('--port <n>', 'VXLAN UDP port', '4789')
    .option('--capture', 'open a silk-vtep TAP and copy every inner frame to it, for tcpdump -i silk-vtep')
    .option('--dataplane <kind>', 'user (this process moves the packets)', 'user')
    .addHelpText('after', '\nExample (inside the cell namespace):\n  ip netns exec sw-cell1 silkworm cell --name cell1 --underlay-ip 198.18.0.11 --controller /run/silkworm/sw/controller.sock --admin /run/silkworm/sw/cell1.sock')
    .action(async (o) => {
      if (!isIpv4(o.underlayIp)) fail(`--underlay-ip "${o.underlayIp}" is not an IPv4 address`);
      if (o.dataplane !== 'user') fail(`--dataplane ${o.dataplane} is not supported yet; use user`);
      const mtu = parseIntStrict(o.mtu, '--mtu', 576, 9216);
      const vni = parseIntStrict(o.vni, '--vni', 0, 0xffffff);
      const port = parseIntStrict(o.port, '--port', 1, 65535);
      const client = new ControllerClient(controllerAddress(o));
      const admin = parseAddress(o.admin ?? `/run/silkworm/${o.lab}/${o.name}.sock`);
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
      const server = await serveAdmin(cell, admin);
      cell.log.info({ admin: o.admin ?? admin }, 'admin-listening');
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
      await server.close();
      await cell.stop();
    });
}
