// The userspace cell's admin socket: what `silkworm show`, `container
// add|del` and `trace` talk to. JSON over HTTP on a unix socket
// (src/net/http.ts). Each table comes back both as the kernel tools' text
// lines and as data. The container routes are the agent's (src/agent/admin.ts).
import { Router, HttpError, serve, type JsonServer } from '../net/http.js';
import type { Address } from '../net/address.js';
import { containerRoutes, planRows, serveAdminRouter, str } from '../agent/admin.js';
import type { Cell } from './cell.js';
import type { Registry } from 'prom-client';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { formatRoute } from '../tables/route.js';
import { formatNeighbor } from '../tables/neighbor.js';
import { formatFdb } from '../tables/fdb.js';
import { renderIptables } from '../policy/planner.js';
import { CT_LIST_DONE, formatConntrack } from '../policy/conntrack.js';
import { parseConntrackQuery, streamConntrack } from './conntrack-stream.js';
import { formatMac, u32ToIp, formatCidr } from '../util/ip.js';
import { DROP_NAMES } from '../dataplane/counters.js';
import { buildProbe } from '../dataplane/probe.js';
import { runTrace } from './trace.js';
import { ipIn } from '../agent/netns.js';
import { ipToU32, isIpv4 } from '../util/ip.js';

const execFileP = promisify(execFile);

/** The container interface's TX drops inside a container namespace (`ip -s link`), or null if it cannot be read. */
async function tapQueueDrops(netns: string, ifname: string): Promise<number | null> {
  try {
    const [cmd, argv] = ipIn(netns, ['-s', '-j', 'link', 'show', 'dev', ifname]);
    const { stdout } = await execFileP(cmd, argv, { timeout: 2000 });
    const j = JSON.parse(stdout)[0];
    return Number(j?.stats64?.tx?.dropped ?? j?.stats?.tx?.dropped ?? 0);
  } catch {
    return null;
  }
}

export function adminRouter(cell: Cell, metrics?: Registry): Router {
  const r = new Router();
  if (metrics) {
    r.get('/metrics', async () => ({ status: 200, raw: await metrics.metrics(), contentType: metrics.contentType }));
  }
  r.get('/status', () => ({
    status: 200,
    body: {
      name: cell.name,
      underlay_ip: cell.underlayIp,
      lease: cell.lease,
      vtep: { ip: u32ToIp(cell.dp.vtepIp), mac: formatMac(cell.dp.vtepMac) },
      mtu: cell.dp.innerMtu,
      containers: cell.listContainers().length,
      pid: process.pid,
    },
  }));
  r.get('/routes', () => {
    const entries = cell.dp.routes.entries();
    return {
      status: 200,
      body: {
        lines: entries.map(formatRoute),
        entries: entries.map((e) => ({
          dst: formatCidr(e.prefix, e.len),
          gateway: e.via ? u32ToIp(e.via) : undefined,
          dev: e.dev,
          prefsrc: e.src ? u32ToIp(e.src) : undefined,
        })),
      },
    };
  });
  r.get('/neigh', () => {
    const entries = cell.dp.neighbors.entries();
    return {
      status: 200,
      body: {
        lines: entries.map(formatNeighbor),
        entries: entries.map((e) => ({ dst: u32ToIp(e.ip), dev: e.dev, lladdr: formatMac(e.mac), state: ['PERMANENT'] })),
      },
    };
  });
  r.get('/fdb', () => {
    const entries = cell.dp.fdb.entries();
    return {
      status: 200,
      body: {
        lines: entries.map(formatFdb),
        entries: entries.map((e) => ({ mac: formatMac(e.mac), dev: e.dev, dst: u32ToIp(e.dst), flags: ['self'], state: 'permanent' })),
      },
    };
  });
  r.get('/rules', async () => {
    const plan = cell.dp.plan;
    // Every worker counts the hits of the rules it applied (the same plan in each).
    const others = (await cell.workerStats()).map((w) => w?.ruleHits ?? new Float64Array(0));
    return {
      status: 200,
      body: {
        lines: renderIptables(plan),
        ...planRows(plan, (i) => others.reduce((sum, h) => sum + (h[i] ?? 0), cell.dp.ruleHits[i] ?? 0)),
      },
    };
  });
  // The whole table in slices, filtered as `conntrack -L` filters (src/cell/conntrack-stream.ts);
  // with several workers, each worker's table after the main thread's.
  r.get('/conntrack/stream', async (req) => {
    const q = parseConntrackQuery(req.query);
    const ws = await cell.workerStats();
    const size = ws.reduce((n, w) => n + (w?.conntrack ?? 0), cell.dp.conntrack.size);
    const capacity = ws.reduce((n, w) => n + (w?.capacity ?? 0), cell.dp.conntrack.capacity);
    const more = cell.conntrackSources(q);
    return { status: 200, stream: async (res) => void (await streamConntrack(cell.dp.conntrack, res, q, { signal: req.signal, more, size, capacity })) };
  });
  r.get('/conntrack', async () => {
    const now = performance.now() / 1000;
    const entries = cell.dp.conntrack.entries(now);
    const lines = entries.map((e) => formatConntrack(e, now));
    // Other workers' entries come as lines (their clocks are their own).
    for (const source of cell.conntrackSources({ filter: {}, limit: undefined, json: false })) {
      for (let cursor = 0; cursor !== CT_LIST_DONE; ) {
        const s = await source.slice(cursor, Infinity);
        cursor = s.cursor;
        if (s.text !== '') lines.push(...s.text.slice(0, -1).split('\n'));
      }
    }
    const ws = await cell.workerStats();
    const size = ws.reduce((n, w) => n + (w?.conntrack ?? 0), cell.dp.conntrack.size);
    const capacity = ws.reduce((n, w) => n + (w?.capacity ?? 0), cell.dp.conntrack.capacity);
    return { status: 200, body: { lines, entries, size, capacity } };
  });
  r.get('/counters', async () => {
    const snap = cell.counterTotals().snapshot();
    const ws = await cell.workerStats();
    const containers = await Promise.all(
      cell.dp.listPorts().map(async (p) => {
        const c = cell.listContainers().find((x) => x.handle === p.handle);
        // Each worker moved its share of the container's packets.
        const packets = ws.reduce((sum, w) => {
          const q = w?.ports[p.index];
          return q ? sum.map((v, k) => v + (q[k] ?? 0)) : sum;
        }, [...p.packets]);
        return {
          handle: p.handle,
          app: p.app,
          ip: u32ToIp(p.ip),
          tx_packets: packets[0],
          tx_bytes: packets[1],
          rx_packets: packets[2],
          rx_bytes: packets[3],
          // Frames the container's kernel dropped because our TAP queue was full
          // (we were behind): counted by the kernel, not by the pipeline.
          tap_queue_drops: c ? await tapQueueDrops(c.netns, c.ifname ?? 'eth0') : null,
        };
      }),
    );
    const fragments = { ...cell.dp.fragments };
    for (const w of ws) {
      if (w === null) continue;
      fragments.queues += w.fragments.queues;
      fragments.bytes += w.fragments.bytes;
      fragments.reassembled += w.fragments.reassembled;
    }
    const evictions = ws.reduce((n, w) => n + (w?.evictions ?? 0), cell.dp.conntrack.evictions);
    const io: Record<string, unknown> = cell.ioStats();
    if (ws.length > 0) io.workers = ws.map((w) => w?.io ?? null);
    return { status: 200, body: { ...snap, drop_reasons: DROP_NAMES, workers: cell.workers, containers, conntrack_evictions: evictions, fragments, io } };
  });
  containerRoutes(r, cell.agent);
  r.post('/trace/egress', (req) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    const from = str(b, 'from')!;
    const handle = cell.findContainer({ handle: from, netns: from });
    if (!handle) throw new HttpError(404, `no container ${from} on cell ${cell.name}`);
    const port = cell.dp.listPorts().find((p) => p.handle === handle)!;
    const dst = str(b, 'dst')!;
    if (!isIpv4(dst)) throw new HttpError(400, `dst "${dst}" is not an IPv4 address`);
    const protocol = str(b, 'protocol')!;
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'icmp') throw new HttpError(400, 'protocol must be tcp, udp or icmp');
    const dport = Number(b.port ?? 0);
    const sport = Number(b.sport ?? 40000);
    if (!Number.isInteger(dport) || dport < 0 || dport > 65535) throw new HttpError(400, 'port must be 0-65535');
    if (!Number.isInteger(sport) || sport < 1 || sport > 65535) throw new HttpError(400, 'sport must be 1-65535');
    const probe = buildProbe(port.ip, ipToU32(dst), protocol, sport, dport);
    const { steps, result } = runTrace(cell.dp, 'egress', probe, { port: port.index, now: performance.now() / 1000 });
    return { status: 200, body: { cell: cell.name, steps, result: describeResult(cell, result) } };
  });
  r.post('/trace/ingress', (req) => {
    const b = (req.body ?? {}) as Record<string, unknown>;
    const hex = str(b, 'payload_hex')!;
    if (!/^([0-9a-f]{2})+$/i.test(hex)) throw new HttpError(400, 'payload_hex must be hex bytes');
    const src = str(b, 'src_ip')!;
    if (!isIpv4(src)) throw new HttpError(400, `src_ip "${src}" is not an IPv4 address`);
    const bytes = Uint8Array.from(Buffer.from(hex, 'hex'));
    const { steps, result } = runTrace(cell.dp, 'ingress', bytes, { srcIp: ipToU32(src), now: performance.now() / 1000 });
    return { status: 200, body: { cell: cell.name, steps, result: describeResult(cell, result) } };
  });
  return r;
}

function describeResult(cell: Cell, r: { action: string; target: number; hex: string }) {
  if (r.action === 'underlay') {
    // The UDP payload (VXLAN header onward) is what the receiving cell's socket sees.
    return { action: r.action, underlay_dst: u32ToIp(r.target), underlay_src: cell.underlayIp, packet_hex: r.hex, payload_hex: r.hex.slice(56) };
  }
  if (r.action === 'tap') {
    const p = cell.dp.port(r.target);
    return { action: r.action, container: p?.handle, app: p?.app, frame_hex: r.hex };
  }
  if (r.action === 'held') return { action: r.action };
  return { action: r.action, reason: DROP_NAMES[r.target] };
}

export function serveAdmin(cell: Cell, addr: Address, metrics?: Registry): Promise<JsonServer> {
  return serveAdminRouter(adminRouter(cell, metrics), addr, cell.log);
}

/** A scrape endpoint with only GET /metrics (for `--metrics host:port`). */
export function serveMetrics(addr: Address, metrics: Registry): Promise<JsonServer> {
  const r = new Router();
  r.get('/metrics', async () => ({ status: 200, raw: await metrics.metrics(), contentType: metrics.contentType }));
  return serve(addr, r.handle);
}
