// `silkworm container add|del`: what silk-cni does, asked of a cell.
import type { Command } from 'commander';
import { httpJson, UnreachableError } from '../net/http.js';
import { cellAddress, fail, formatAddress, table } from './util.js';

async function callCell(opts: { cell?: string; lab?: string }, method: string, path: string, body?: unknown) {
  const addr = cellAddress(opts);
  try {
    const res = await httpJson(addr, method, path, body, { timeoutMs: 30_000 });
    if (res.status >= 300) fail(res.body?.error ?? `the cell answered HTTP ${res.status}`);
    return res.body;
  } catch (err) {
    if (err instanceof UnreachableError) fail(`cannot reach the cell at ${formatAddress(addr)}: is it running? (silkworm lab status)`);
    throw err;
  }
}

export function register(program: Command): void {
  const c = program.command('container').description('attach a network namespace to a cell as a container (what silk-cni does)');
  c.command('add')
    .description('give NETNS an eth0 on the overlay: a TAP, an IP from the cell\'s lease, routes and neighbor as silk-cni does')
    .requiredOption('--cell <name|addr>', 'cell name in the lab (cell1) or its admin socket')
    .requiredOption('--app <app>', 'the app this container is an instance of (policies name apps)')
    .requiredOption('--netns <ns>', 'an existing network namespace (ip netns list), or a path such as /proc/PID/ns/net')
    .option('--handle <id>', 'container handle (default: the container id, else the namespace name)')
    .option('--ifname <name>', 'interface name inside the namespace', 'eth0')
    .option('--ip <addr>', "a fixed address from the cell's lease (default: the next free one)")
    .option('--container-id <id>', 'the runtime\'s container id (CNI_CONTAINERID), recorded with the container')
    .option('--lab <prefix>', 'lab prefix', 'sw')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  ip netns add sw-appB-1 && silkworm container add --cell cell1 --app appB --netns sw-appB-1')
    .action(async (o) => {
      const info = await callCell(o, 'POST', '/containers', {
        app: o.app, netns: o.netns, handle: o.handle, ifname: o.ifname, ip: o.ip, container_id: o.containerId,
      });
      if (o.json) console.log(JSON.stringify(info));
      else console.log(`${info.handle}: app ${info.app}, ip ${info.ip}, mac ${info.mac}, netns ${info.netns}, cell ${info.cell}`);
    });
  c.command('del')
    .description('detach a container from its cell and remove its eth0')
    .requiredOption('--cell <name|addr>', 'cell name in the lab (cell1) or its admin socket')
    .option('--netns <ns>', 'the container\'s namespace')
    .option('--handle <id>', 'the container handle')
    .option('--container-id <id>', 'the runtime\'s container id (no such container is not an error)')
    .option('--lab <prefix>', 'lab prefix', 'sw')
    .addHelpText('after', '\nExample:\n  silkworm container del --cell cell1 --netns sw-appB-1')
    .action(async (o) => {
      if (!o.netns && !o.handle && !o.containerId) fail('say which container: --netns NS, --handle ID or --container-id ID');
      const info = await callCell(o, 'POST', '/containers/delete', { netns: o.netns, handle: o.handle, container_id: o.containerId });
      if (info.removed === false) console.log(`no container ${o.containerId} on ${info.cell}: nothing to remove`);
      else console.log(`removed ${info.handle} (${info.ip})`);
    });
  c.command('list')
    .description("list a cell's containers")
    .requiredOption('--cell <name|addr>', 'cell name in the lab (cell1) or its admin socket')
    .option('--lab <prefix>', 'lab prefix', 'sw')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  silkworm container list --cell cell1')
    .action(async (o) => {
      const body = await callCell(o, 'GET', '/containers');
      if (o.json) return console.log(JSON.stringify(body.containers));
      console.log(
        table(
          ['HANDLE', 'APP', 'IP', 'MAC', 'NETNS', 'IFNAME', 'TAG', 'CONTAINER ID'],
          body.containers.map((x: Record<string, string>) => [x.handle, x.app, x.ip, x.mac, x.netns, x.ifname ?? 'eth0', x.tag || '-', x.container_id ?? '-']),
        ),
      );
    });
}

export { callCell };
