// The cell's admin socket: what `silkworm show`, `container add|del` and
// `trace` talk to. JSON over HTTP on a unix socket (src/control/http.ts).
// Each table comes back both as the kernel tools' text lines and as data.
import { Router, HttpError, serve, type JsonServer } from '../control/http.js';
import type { Address } from '../cli/util.js';
import type { Cell } from './cell.js';
import { formatRoute } from '../tables/route.js';
import { formatNeighbor } from '../tables/neighbor.js';
import { formatFdb } from '../tables/fdb.js';
import { renderIptables } from '../policy/planner.js';
import { formatConntrack } from '../policy/conntrack.js';
import { formatMac, u32ToIp, formatCidr } from '../util/ip.js';
import { DROP_NAMES } from '../dataplane/counters.js';

function str(body: unknown, field: string, required = true): string | undefined {
  const v = body && typeof body === 'object' ? (body as Record<string, unknown>)[field] : undefined;
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new HttpError(400, `${field} must be a non-empty string`);
  return v;
}

export function adminRouter(cell: Cell): Router {
  const r = new Router();
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
  r.get('/rules', () => {
    const plan = cell.dp.plan;
    return {
      status: 200,
      body: {
        lines: renderIptables(plan),
        marks: plan.marks.map((m) => ({ ip: u32ToIp(m.ip), app: m.app, tag: m.tag })),
        accepts: plan.accepts.map((a, i) => ({
          dst_ip: u32ToIp(a.dstIp),
          dst_app: a.dstApp,
          src_app: a.srcApp,
          tag: a.tag,
          protocol: a.protocol === 6 ? 'tcp' : 'udp',
          ports: { start: a.portStart, end: a.portEnd },
          hits: cell.dp.ruleHits[i] ?? 0,
        })),
      },
    };
  });
  r.get('/conntrack', () => {
    const now = performance.now() / 1000;
    const entries = cell.dp.conntrack.entries(now);
    return { status: 200, body: { lines: entries.map((e) => formatConntrack(e, now)), entries, size: cell.dp.conntrack.size, capacity: cell.dp.conntrack.capacity } };
  });
  r.get('/counters', () => {
    const snap = cell.dp.counters.snapshot();
    const containers = cell.dp.listPorts().map((p) => ({
      handle: p.handle,
      app: p.app,
      ip: u32ToIp(p.ip),
      tx_packets: p.packets[0],
      tx_bytes: p.packets[1],
      rx_packets: p.packets[2],
      rx_bytes: p.packets[3],
    }));
    return { status: 200, body: { ...snap, drop_reasons: DROP_NAMES, containers, conntrack_evictions: cell.dp.conntrack.evictions } };
  });
  r.get('/containers', () => ({ status: 200, body: { containers: cell.listContainers() } }));
  r.post('/containers', async (req) => {
    const app = str(req.body, 'app')!;
    const netns = str(req.body, 'netns')!;
    const handle = str(req.body, 'handle', false);
    try {
      return { status: 201, body: await cell.addContainer({ app, netns, handle }) };
    } catch (err) {
      throw new HttpError(400, (err as Error).message);
    }
  });
  r.post('/containers/delete', async (req) => {
    const handle = str(req.body, 'handle', false);
    const netns = str(req.body, 'netns', false);
    if (!handle && !netns) throw new HttpError(400, 'give handle or netns');
    const found = cell.findContainer({ handle, netns });
    if (!found) throw new HttpError(404, `no container ${handle ?? netns} on cell ${cell.name}`);
    return { status: 200, body: await cell.removeContainer(found) };
  });
  return r;
}

export function serveAdmin(cell: Cell, addr: Address): Promise<JsonServer> {
  return serve(addr, adminRouter(cell).handle, {
    onError: (err) => cell.log.error({ err: (err as Error).message }, 'admin-handler-failed'),
  });
}
