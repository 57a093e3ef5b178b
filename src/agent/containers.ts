// A cell's containers as the agent keeps them, whichever backend moves their
// packets: the request silk-cni's ADD carries (app, netns, optional handle,
// interface name, fixed address, CNI container id and network name), its validation, the
// record kept per container, and the answer shape (`container add|list`,
// GET /containers) — one copy for both backends.
import { formatMac, macFromIp, u32ToIp } from '../util/ip.js';
import { formatTag } from '../policy/tags.js';
import { netnsPath, validIfName } from './netns.js';

/** What `container add` (and silkworm-cni's ADD) asks for. */
export interface ContainerRequest {
  app: string;
  /** A namespace name (`ip netns`) or a path (CNI_NETNS: /run/netns/…, /proc/PID/ns/net). */
  netns: string;
  /** Defaults to the container id, else the namespace. */
  handle?: string;
  /** The interface name inside the namespace (CNI_IFNAME); default eth0. */
  ifname?: string;
  /** A fixed address (from a delegated IPAM plugin); must lie in the cell's lease. */
  ip?: string;
  /** CNI_CONTAINERID, when a runtime attaches the container. */
  containerId?: string;
  /** The CNI network's name (the configuration's "name"), with a container id: what CNI GC is scoped to. */
  cniNetwork?: string;
}

/**
 * One attached container: its handle, app, overlay IP (u32), namespace, and
 * for a CNI attachment the runtime's identity (interface name, container id,
 * network name), so CHECK, DEL, GC and `container list` agree.
 */
export interface ContainerRecord {
  readonly handle: string;
  readonly app: string;
  readonly ip: number;
  /** As given: a name in /run/netns or a path. */
  readonly netns: string;
  /** The interface inside the namespace; absent means eth0. */
  readonly ifname?: string;
  /** CNI_CONTAINERID when a runtime attached it. */
  readonly containerId?: string;
  /** The CNI network it was attached on (with a container id). */
  readonly cniNetwork?: string;
}

/** Which container: by handle or namespace (`container del`), or by CNI container id (and interface). */
export interface ContainerKey {
  handle?: string;
  netns?: string;
  containerId?: string;
  ifname?: string;
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
  /** The container's interface: shown for CNI attachments and names other than eth0 (absent = eth0). */
  ifname?: string;
  /** CNI_CONTAINERID when a CNI runtime attached it. */
  container_id?: string;
  /** The CNI network's name, when the runtime gave one. */
  cni_network?: string;
}

/** App ids are policy-server ids: letters, digits and `_.:-`, 1-128 characters. */
const APP_RE = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Container ids as CNI allows them (the spec: alphanumerics, `_.-`, starting alphanumeric). */
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;
/** CNI network names: a label, 1-128 printable ASCII characters without spaces. */
const CNI_NETWORK_RE = /^[\x21-\x7e]{1,128}$/;

/** The interface a record's container has in its namespace. */
export function ifnameOf(c: ContainerRecord): string {
  return c.ifname ?? 'eth0';
}

/**
 * Check a request against the namespace and the containers already attached.
 * Throws one sentence (the admin API answers it as HTTP 400).
 */
export function checkContainerRequest(
  req: ContainerRequest,
  attached: Iterable<ContainerRecord>,
  netnsExists: (netns: string) => boolean,
): { handle: string; app: string; netns: string; ifname?: string; containerId?: string; cniNetwork?: string } {
  const { app, netns } = req;
  if (typeof app !== 'string' || !APP_RE.test(app)) throw new Error('app must be a name of letters, digits, "_.:-"');
  if (typeof netns !== 'string' || !netnsExists(netns)) throw new Error(`network namespace "${netns}" does not exist`);
  const ifname = req.ifname;
  if (ifname !== undefined && (typeof ifname !== 'string' || !validIfName(ifname))) {
    throw new Error(`interface name "${ifname}" is not a valid Linux interface name (1-15 of letters, digits, "_.-")`);
  }
  const containerId = req.containerId;
  if (containerId !== undefined && (typeof containerId !== 'string' || !CONTAINER_ID_RE.test(containerId))) {
    throw new Error('container id must be letters, digits, "_.-", starting with a letter or digit');
  }
  const cniNetwork = req.cniNetwork;
  if (cniNetwork !== undefined) {
    if (containerId === undefined) throw new Error('a CNI network name comes with a container id');
    if (typeof cniNetwork !== 'string' || !CNI_NETWORK_RE.test(cniNetwork)) throw new Error('CNI network name must be 1-128 printable characters without spaces');
  }
  const handle = req.handle ?? containerId ?? netns;
  const path = netnsPath(netns);
  let handleTaken = false;
  for (const c of attached) {
    // A namespace is one namespace whether named or given by its /run/netns path.
    if (netnsPath(c.netns) === path) throw new Error(`namespace ${netns} already has a container (${c.handle})`);
    if (c.handle === handle) handleTaken = true;
  }
  if (handleTaken) throw new Error(`a container with handle ${handle} already exists`);
  return {
    handle,
    app,
    netns,
    ...(ifname !== undefined ? { ifname } : {}),
    ...(containerId !== undefined ? { containerId } : {}),
    ...(cniNetwork !== undefined ? { cniNetwork } : {}),
  };
}

/** Does `c` answer to `key`? A container id matches only by id (and interface, when given). */
export function matchesKey(c: ContainerRecord, key: ContainerKey): boolean {
  if (key.containerId !== undefined) return c.containerId === key.containerId && (key.ifname === undefined || ifnameOf(c) === key.ifname);
  return c.handle === key.handle || (key.netns !== undefined && netnsPath(c.netns) === netnsPath(key.netns));
}

/** The record as shown to users; `tag` is the app's current tag (0: none). */
export function containerInfo(c: ContainerRecord, cell: string, tag: number): ContainerInfo {
  const ifname = ifnameOf(c);
  return {
    handle: c.handle,
    app: c.app,
    ip: u32ToIp(c.ip),
    mac: formatMac(macFromIp(0xeeee, c.ip)),
    netns: c.netns,
    cell,
    tag: tag === 0 ? '' : formatTag(tag),
    // A CNI attachment carries its identity; a plain `container add` keeps its old shape (eth0 implied).
    ...(c.containerId !== undefined ? { container_id: c.containerId, ifname } : ifname !== 'eth0' ? { ifname } : {}),
    ...(c.cniNetwork !== undefined ? { cni_network: c.cniNetwork } : {}),
  };
}
