// A cell's containers as the agent keeps them, whichever backend moves their
// packets: the request silk-cni's ADD carries (app, netns, optional handle),
// its validation, the record kept per container, and the answer shape
// (`container add|list`, GET /containers) — one copy for both backends.
import { formatMac, macFromIp, u32ToIp } from '../util/ip.js';
import { formatTag } from '../policy/tags.js';

/** What `container add` asks for. */
export interface ContainerRequest {
  app: string;
  netns: string;
  /** Defaults to the namespace name. */
  handle?: string;
}

/** One attached container: its handle, app, overlay IP (u32) and namespace. */
export interface ContainerRecord {
  readonly handle: string;
  readonly app: string;
  readonly ip: number;
  readonly netns: string;
}

/** A container as the admin API and the CLI show it. */
export interface ContainerInfo {
  handle: string;
  app: string;
  ip: string;
  mac: string;
  netns: string;
  cell: string;
  /** The app's tag as `%04X`, or '' when the app is in no policy. */
  tag: string;
}

/** App ids are policy-server ids: letters, digits and `_.:-`, 1-128 characters. */
const APP_RE = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * Check a request against the namespace and the containers already attached.
 * Throws one sentence (the admin API answers it as HTTP 400).
 */
export function checkContainerRequest(
  req: ContainerRequest,
  attached: Iterable<ContainerRecord>,
  netnsExists: (netns: string) => boolean,
): { handle: string; app: string; netns: string } {
  const { app, netns } = req;
  if (typeof app !== 'string' || !APP_RE.test(app)) throw new Error('app must be a name of letters, digits, "_.:-"');
  if (typeof netns !== 'string' || !netnsExists(netns)) throw new Error(`network namespace "${netns}" does not exist`);
  const handle = req.handle ?? netns;
  let handleTaken = false;
  for (const c of attached) {
    if (c.netns === netns) throw new Error(`namespace ${netns} already has a container (${c.handle})`);
    if (c.handle === handle) handleTaken = true;
  }
  if (handleTaken) throw new Error(`a container with handle ${handle} already exists`);
  return { handle, app, netns };
}

/** The record as shown to users; `tag` is the app's current tag (0: none). */
export function containerInfo(c: ContainerRecord, cell: string, tag: number): ContainerInfo {
  return {
    handle: c.handle,
    app: c.app,
    ip: u32ToIp(c.ip),
    mac: formatMac(macFromIp(0xeeee, c.ip)),
    netns: c.netns,
    cell,
    tag: tag === 0 ? '' : formatTag(tag),
  };
}
