// The parts of a cell's admin socket that do not depend on the data plane:
// the container routes (what silk-cni's ADD/DEL and `container list` call),
// request-field checks, and serving a router on the admin address. Each
// backend adds its own table and counter routes (src/cell/admin.ts,
// src/kernel/admin.ts) with the same answer shapes.
import type { Address } from '../net/address.js';
import { HttpError, Router, serve, type JsonServer } from '../net/http.js';
import type { Plan } from '../policy/planner.js';
import { u32ToIp } from '../util/ip.js';
import type { Logger } from '../util/log.js';
import type { ContainerKey, ContainerRequest } from './containers.js';
import { LeaseExhaustedError } from './ipam.js';

/** A required (or optional) non-empty string field of a JSON body; anything else is a 400. */
export function str(body: unknown, field: string, required = true): string | undefined {
  const v = body && typeof body === 'object' ? (body as Record<string, unknown>)[field] : undefined;
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new HttpError(400, `${field} must be a non-empty string`);
  return v;
}

/** What container add/del/list need of a cell (the Agent has it). */
export interface ContainerHost {
  readonly name: string;
  listContainers(): unknown[];
  addContainer(req: ContainerRequest): Promise<unknown>;
  findContainer(key: ContainerKey): string | undefined;
  removeContainer(handle: string): Promise<unknown>;
  /** Remove the container `key` names if there is one; undefined when there was none. */
  removeIfPresent(key: ContainerKey): Promise<unknown>;
}

/**
 * GET /containers, POST /containers (silk-cni ADD), POST /containers/delete (DEL).
 * ADD takes app, netns (a name or a path), and optionally handle, ifname, ip
 * (from a delegated IPAM plugin), container_id (CNI_CONTAINERID) and
 * cni_network (the CNI network's name, which GC is scoped to); a lease
 * with no free address answers 507. DEL by container_id is idempotent: no
 * such container answers 200 {"removed": false}.
 */
export function containerRoutes(r: Router, cell: ContainerHost): void {
  r.get('/containers', () => ({ status: 200, body: { containers: cell.listContainers() } }));
  r.post('/containers', async (req) => {
    const app = str(req.body, 'app')!;
    const netns = str(req.body, 'netns')!;
    const handle = str(req.body, 'handle', false);
    const ifname = str(req.body, 'ifname', false);
    const ip = str(req.body, 'ip', false);
    const containerId = str(req.body, 'container_id', false);
    const cniNetwork = str(req.body, 'cni_network', false);
    try {
      return { status: 201, body: await cell.addContainer({ app, netns, handle, ifname, ip, containerId, cniNetwork }) };
    } catch (err) {
      throw new HttpError(err instanceof LeaseExhaustedError ? 507 : 400, (err as Error).message);
    }
  });
  r.post('/containers/delete', async (req) => {
    const handle = str(req.body, 'handle', false);
    const netns = str(req.body, 'netns', false);
    const containerId = str(req.body, 'container_id', false);
    const ifname = str(req.body, 'ifname', false);
    if (containerId !== undefined) {
      const info = await cell.removeIfPresent({ containerId, ifname });
      if (info === undefined) return { status: 200, body: { removed: false, container_id: containerId, cell: cell.name } };
      return { status: 200, body: { removed: true, ...(info as object) } };
    }
    if (!handle && !netns) throw new HttpError(400, 'give handle, netns or container_id');
    const found = cell.findContainer({ handle, netns });
    if (!found) throw new HttpError(404, `no container ${handle ?? netns} on cell ${cell.name}`);
    return { status: 200, body: await cell.removeContainer(found) };
  });
}

/** Serve a cell's admin router; a handler that throws something unexpected is logged as `admin-handler-failed`. */
export function serveAdminRouter(r: Router, addr: Address, log: Logger): Promise<JsonServer> {
  return serve(addr, r.handle, {
    onError: (err) => log.error({ err: (err as Error).message }, 'admin-handler-failed'),
  });
}

/** GET /rules' `marks` and `accepts`: the plan as data, each accept rule with its hit count. */
export function planRows(plan: Plan, hits: (rule: number) => number) {
  return {
    marks: plan.marks.map((m) => ({ ip: u32ToIp(m.ip), app: m.app, tag: m.tag })),
    accepts: plan.accepts.map((a, i) => ({
      dst_ip: u32ToIp(a.dstIp),
      dst_app: a.dstApp,
      src_app: a.srcApp,
      tag: a.tag,
      protocol: a.protocol === 6 ? 'tcp' : 'udp',
      ports: { start: a.portStart, end: a.portEnd },
      hits: hits(i),
    })),
  };
}
