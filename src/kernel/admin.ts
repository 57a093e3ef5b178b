// The kernel cell's admin socket: the same endpoints and answer shapes as the
// userspace cell's (src/cell/admin.ts) and the agent's container routes
// (src/agent/admin.ts), so `silkworm show`, `container add|del`
// and the lab work against either. Every table is read back from the kernel
// (`ip -j route`, `ip -j neigh`, `bridge -j fdb`, `iptables -v -S`,
// `conntrack -L` or /proc/net/nf_conntrack, `ip -s -j link`) — never from
// what the cell believes it programmed, so a user sees the kernel's truth.
import fs from 'node:fs';
import { Router, HttpError, type JsonServer } from '../net/http.js';
import type { Address } from '../net/address.js';
import { containerRoutes, planRows, serveAdminRouter } from '../agent/admin.js';
import { formatMac, u32ToIp } from '../util/ip.js';
import { VTEP_DEV } from '../util/silk.js';
import type { KernelCell } from './kernel-cell.js';
import { OVERLAY_CHAIN, parseCountedRules, parseLinkStats, policyChainLines, type CountedRule } from './plan.js';


function lines(text: string): string[] {
  return text.split('\n').map((l) => l.trimEnd()).filter((l) => l.length > 0);
}

function json(text: string): unknown[] {
  try {
    const v = JSON.parse(text);
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

/** The policy chain and the overlay chain with their counters, as the kernel has them. */
export async function readRules(cell: KernelCell): Promise<{ policy: CountedRule[]; overlay: CountedRule[]; forward: CountedRule[] }> {
  const run = (chain: string) => cell.exec.run('iptables', ['-w', '-v', '-S', chain]).then(parseCountedRules, () => [] as CountedRule[]);
  const [policy, overlay, forward] = await Promise.all([cell.chain ? run(cell.chain) : Promise.resolve([]), run(OVERLAY_CHAIN), run('FORWARD')]);
  return { policy, overlay, forward };
}

async function readConntrack(cell: KernelCell): Promise<string[]> {
  try {
    return lines(await cell.exec.run('conntrack', ['-L']));
  } catch {
    // conntrack(8) missing: the same table, in the kernel's own format.
    try {
      return lines(fs.readFileSync('/proc/net/nf_conntrack', 'utf8'));
    } catch {
      return [];
    }
  }
}

function readNumber(file: string): number {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}

export function kernelAdminRouter(cell: KernelCell): Router {
  const r = new Router();
  const ex = (cmd: string, args: string[]) =>
    cell.exec.run(cmd, args).catch((err: Error) => {
      throw new HttpError(500, err.message);
    });
  r.get('/status', () => ({
    status: 200,
    body: {
      name: cell.name,
      dataplane: 'kernel',
      underlay_ip: cell.underlayIp,
      lease: cell.lease,
      vtep: { ip: u32ToIp(cell.vtepIp), mac: formatMac(cell.vtepMac), dev: VTEP_DEV },
      mtu: cell.innerMtu,
      containers: cell.listContainers().length,
      chain: cell.chain,
      pid: process.pid,
    },
  }));
  r.get('/routes', async () => {
    const [text, j] = await Promise.all([ex('ip', ['route', 'show']), ex('ip', ['-j', 'route', 'show'])]);
    return { status: 200, body: { lines: lines(text), entries: json(j) } };
  });
  r.get('/neigh', async () => {
    const [text, j] = await Promise.all([ex('ip', ['neigh', 'show']), ex('ip', ['-j', 'neigh', 'show'])]);
    return { status: 200, body: { lines: lines(text), entries: json(j) } };
  });
  r.get('/fdb', async () => {
    // Only silk-vtep's entries: the userspace cell's FDB is that device's table.
    const [text, j] = await Promise.all([ex('bridge', ['fdb', 'show', 'dev', VTEP_DEV]), ex('bridge', ['-j', 'fdb', 'show', 'dev', VTEP_DEV])]);
    return { status: 200, body: { lines: lines(text), entries: json(j) } };
  });
  r.get('/rules', async () => {
    const plan = cell.plan;
    const { policy, overlay, forward } = await readRules(cell);
    const hits = new Map(policy.map((c) => [c.line, c.packets]));
    const rendered = cell.chain ? policyChainLines(plan, cell.chain) : [];
    // rendered[0] is "-N chain"; then marks, then accepts, in plan order.
    return {
      status: 200,
      body: {
        lines: [...policy, ...overlay].map((c) => c.line),
        forward: forward.map((c) => c.line),
        chain: cell.chain,
        ...planRows(plan, (i) => hits.get(rendered[1 + plan.marks.length + i] ?? '') ?? 0),
        counters: [...forward, ...policy, ...overlay],
      },
    };
  });
  r.get('/conntrack', async () => {
    const l = await readConntrack(cell);
    return { status: 200, body: { lines: l, entries: l.map((line) => ({ line })), size: l.length, capacity: readNumber('/proc/sys/net/netfilter/nf_conntrack_max') } };
  });
  r.get('/counters', async () => {
    const [links, rules] = await Promise.all([ex('ip', ['-s', '-j', 'link', 'show']).then(parseLinkStats), readRules(cell)]);
    const byDev = new Map(links.map((l) => [l.ifname, l]));
    const vtep = byDev.get(VTEP_DEV);
    const policyAllowed = rules.policy.filter((c) => c.line.endsWith('-j ACCEPT')).reduce((s, c) => s + c.packets, 0);
    const related = rules.overlay.find((c) => c.line.includes('RELATED,ESTABLISHED'))?.packets ?? 0;
    const rejected = rules.overlay.find((c) => c.line.includes('-j REJECT'))?.packets ?? 0;
    const containers = cell.containerDevices().map((c) => {
      const s = byDev.get(c.dev);
      // The host side's rx is what the container sent, its tx what the container got.
      return { handle: c.handle, app: c.app, ip: c.ip, dev: c.dev, tx_packets: s?.rx_packets ?? 0, tx_bytes: s?.rx_bytes ?? 0, rx_packets: s?.tx_packets ?? 0, rx_bytes: s?.tx_bytes ?? 0 };
    });
    return {
      status: 200,
      body: {
        dataplane: 'kernel',
        stats: {
          'vtep-tx-packets': vtep?.tx_packets ?? 0,
          'vtep-tx-bytes': vtep?.tx_bytes ?? 0,
          'vtep-rx-packets': vtep?.rx_packets ?? 0,
          'vtep-rx-bytes': vtep?.rx_bytes ?? 0,
          'policy-allowed': policyAllowed,
          'conntrack-allowed': related,
        },
        drops: { 'policy-denied': rejected, 'vtep-tx-dropped': vtep?.tx_dropped ?? 0, 'vtep-rx-dropped': vtep?.rx_dropped ?? 0 },
        drop_reasons: ['policy-denied', 'vtep-tx-dropped', 'vtep-rx-dropped'],
        containers,
        conntrack_evictions: 0,
        rules: [...rules.forward, ...rules.policy, ...rules.overlay],
      },
    };
  });
  containerRoutes(r, cell.agent);
  const noTrace = () => {
    throw new HttpError(501, `cell ${cell.name} runs the kernel data plane: trace explains silkworm's pipeline; here use "ip route get" and tcpdump in its namespace`);
  };
  r.post('/trace/egress', noTrace);
  r.post('/trace/ingress', noTrace);
  return r;
}

export function serveKernelAdmin(cell: KernelCell, addr: Address): Promise<JsonServer> {
  return serveAdminRouter(kernelAdminRouter(cell), addr, cell.log);
}
