// `silkworm lab up | down | restart | status`: the whole mission on one box — a
// controller, two cells on a 198.18.0.0/15 underlay bridge, appA on cell1 and
// appB on cell2 each serving HTTP on 8080 — all in namespaces named P-*.
import type { Command } from 'commander';
import { DEFAULT_LAB, fail, parseIntStrict, table } from './util.js';
import { MAX_WORKERS } from '../cell/worker-protocol.js';
import { LAB_STORES, labDown, labRestart, labStatus, labUp, nextSteps, type LabStore, type StatusReport } from '../lab/lab.js';
import { DEFAULT_APP_PORT, DEFAULT_MTU, DEFAULT_UNDERLAY_BASE, LAB_DATAPLANES, type LabDataplane } from '../lab/topology.js';

const yesNo = (b: boolean) => (b ? 'yes' : 'NO');

export function formatStatus(r: StatusReport): string {
  const out: string[] = [];
  if (!r.createdAt && r.namespaces.every((n) => !n.exists)) return `lab "${r.prefix}" is not up\n`;
  out.push(r.up ? `lab "${r.prefix}" is up (since ${r.createdAt})` : `lab "${r.prefix}" is not up${r.createdAt ? ` (state from ${r.createdAt}${r.complete ? '' : ', start-up did not finish'})` : ''}`);
  if (r.dataplane) out.push(`data plane: ${r.dataplane}${r.dataplane === 'mixed' ? ' (cell1 silkworm, cell2 kernel)' : r.dataplane === 'kernel' ? ' (Linux vxlan gbp + iptables, as silk)' : ' (silkworm)'}`);
  out.push('');
  out.push(table(['NAMESPACE', 'EXISTS'], r.namespaces.map((n) => [n.name, yesNo(n.exists)])));
  const procs: string[][] = [];
  if (r.controller) {
    procs.push(['controller', r.controller.netns ?? '-', '-', String(r.controller.pid), yesNo(r.controller.alive), r.controller.socket, yesNo(r.controller.answers)]);
    if (r.controller.url) procs.push(['controller (mTLS)', r.controller.netns ?? '-', r.controller.url, String(r.controller.pid), yesNo(r.controller.alive), '-', yesNo(r.controller.tlsAnswers ?? false)]);
  }
  for (const c of r.cells) procs.push([`${c.name} (${c.dataplane})`, c.netns, c.underlayIp, String(c.pid), yesNo(c.alive), c.socket, yesNo(c.answers)]);
  for (const a of r.apps) procs.push([`app ${a.app}`, a.netns, `:${a.port}`, String(a.pid), yesNo(a.alive), '-', yesNo(a.listening)]);
  if (procs.length > 0) {
    out.push('');
    out.push(table(['PROCESS', 'NETNS', 'ADDRESS', 'PID', 'ALIVE', 'SOCKET', 'ANSWERS'], procs));
  }
  if (r.containers.length > 0) {
    out.push('');
    out.push(table(['CONTAINER', 'NETNS', 'IP', 'CELL', 'CNI CONTAINER ID'], r.containers.map((c) => [c.app, c.netns, c.ip, c.cell, c.containerId ?? '-'])));
  }
  return out.join('\n') + '\n';
}

function prefixOf(o: { prefix?: string }): string {
  return o.prefix ?? DEFAULT_LAB;
}

export function register(program: Command): void {
  const lab = program
    .command('lab')
    .description('a whole silkworm on one box: controller, two cells, appA and appB, in network namespaces')
    .addHelpText('after', '\nExample:\n  sudo silkworm lab up && sudo silkworm lab status && sudo silkworm lab down\n');

  lab
    .command('up')
    .description('create namespaces P-underlay, P-cell1, P-cell2, P-appA-0, P-appB-0 and start everything')
    .option('--prefix <P>', 'name prefix for namespaces and /run/silkworm/P (tests use their own)', DEFAULT_LAB)
    .option('--underlay-base <ip/len>', "cell1's underlay address; cell2 gets the next one (inside 198.18.0.0/15)", DEFAULT_UNDERLAY_BASE)
    .option('--mtu <bytes>', 'underlay MTU (containers get MTU - 50)', String(DEFAULT_MTU))
    .option('--app-port <port>', 'TCP port of the HTTP app in each container', String(DEFAULT_APP_PORT))
    .option('--timeout <seconds>', 'how long to wait for each process to answer', '15')
    .option('--dataplane <mode>', 'user (silkworm cells), kernel (Linux vxlan gbp + iptables cells, as silk) or mixed (cell1 user, cell2 kernel)', 'user')
    .option('--capture', 'userspace cells open a silk-vtep TAP showing every inner frame: tcpdump -i silk-vtep in a cell namespace')
    .option('--workers <n>', 'worker threads per userspace cell (silkworm cell --workers)', '1')
    .option('--store <kind>', 'sqlite (one controller, one file) or postgres (a PostgreSQL server under the lab directory, controller replicas controller and controller2, cells pointed at both)', 'sqlite')
    .option('--json', 'print the state (state.json) instead of the hints')
    .addHelpText('after', '\nExample:\n  sudo silkworm lab up\n  sudo silkworm lab up --store postgres\n  sudo silkworm lab up --capture   # then: ip netns exec sw-cell1 tcpdump -nei silk-vtep\n  sudo silkworm lab up --prefix demo --underlay-base 198.18.5.11/24\n  sudo silkworm lab up --prefix mix --dataplane mixed\n')
    .action(async (o: { prefix?: string; underlayBase: string; mtu: string; appPort: string; timeout: string; dataplane: string; capture?: boolean; workers: string; json?: boolean; store: string }) => {
      if (!LAB_DATAPLANES.includes(o.dataplane as LabDataplane)) fail(`--dataplane must be user, kernel or mixed, got "${o.dataplane}"`);
      if (!LAB_STORES.includes(o.store as LabStore)) fail(`--store must be sqlite or postgres, got "${o.store}"`);
      const result = await labUp({
        store: o.store as LabStore,
        dataplane: o.dataplane as LabDataplane,
        capture: Boolean(o.capture),
        workers: parseIntStrict(o.workers, '--workers', 1, MAX_WORKERS),
        prefix: prefixOf(o),
        underlayBase: o.underlayBase,
        mtu: parseIntStrict(o.mtu, '--mtu', 118, 9000),
        appPort: parseIntStrict(o.appPort, '--app-port', 1, 65535),
        timeoutMs: parseIntStrict(o.timeout, '--timeout', 1, 600) * 1000,
        progress: (line) => process.stderr.write(`lab: ${line}\n`),
      });
      if (o.json) {
        process.stdout.write(JSON.stringify(result.state, null, 2) + '\n');
      } else {
        process.stdout.write(nextSteps(result.state));
        process.stderr.write(`lab: up in ${(result.elapsedMs / 1000).toFixed(1)} s\n`);
      }
    });

  lab
    .command('down')
    .description('stop the lab\'s processes, delete its namespaces and /run/silkworm/P (safe to repeat)')
    .option('--prefix <P>', 'which lab', DEFAULT_LAB)
    .addHelpText('after', '\nExample:\n  sudo silkworm lab down\n  sudo silkworm lab down --prefix demo\n')
    .action(async (o: { prefix?: string }) => {
      const r = await labDown(prefixOf(o));
      for (const f of r.foreign) {
        process.stderr.write(`lab: note: pid ${f.pid} (${f.command}) was left running in ${f.netns}: it was not started by the lab\n`);
      }
      process.stdout.write(
        `lab "${r.prefix}" is down: stopped ${r.stopped.length} process(es), deleted ${r.namespacesDeleted.length} namespace(s)\n`,
      );
    });

  lab
    .command('restart')
    .description('restart one cell with the command line it was started with; its containers keep their connections')
    .argument('<cell>', 'cell name, e.g. cell1')
    .option('--prefix <P>', 'which lab', DEFAULT_LAB)
    .option('--kill', 'SIGKILL instead of SIGTERM (a crash)')
    .option('--timeout <seconds>', 'how long to wait for the new process to answer', '15')
    .addHelpText('after', '\nExample:\n  sudo silkworm lab restart cell1\n  sudo silkworm lab restart cell1 --kill --prefix demo\n')
    .action(async (name: string, o: { prefix?: string; kill?: boolean; timeout: string }) => {
      const r = await labRestart(prefixOf(o), name, { kill: Boolean(o.kill), timeoutMs: parseIntStrict(o.timeout, '--timeout', 1, 600) * 1000 });
      const how = r.signal ? `${r.signal} to pid ${r.oldPid}` : `pid ${r.oldPid} was not running`;
      process.stdout.write(`${r.cell} restarted: ${how}, new pid ${r.pid}, answering after ${(r.elapsedMs / 1000).toFixed(2)} s\n`);
    });

  lab
    .command('status')
    .description('namespaces, addresses, sockets and PIDs of a lab, and whether each is alive')
    .option('--prefix <P>', 'which lab', DEFAULT_LAB)
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExample:\n  sudo silkworm lab status --json\n')
    .action(async (o: { prefix?: string; json?: boolean }) => {
      const r = await labStatus(prefixOf(o));
      process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatStatus(r));
      if (!r.up) {
        if (!o.json && !r.createdAt) process.stderr.write(`silkworm: no lab "${r.prefix}" is up; start one with "sudo silkworm lab up${r.prefix === DEFAULT_LAB ? '' : ` --prefix ${r.prefix}`}"\n`);
        process.exitCode = 1;
      }
    });
}

