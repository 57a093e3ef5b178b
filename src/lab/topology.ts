// The lab's plan as plain data: every name, address, socket and log path that
// `silkworm lab up --prefix P` will create, computed before anything is made.
// Keeping it pure (silk's planner style) means the names and addresses are
// tested without root, and `down`/`status` derive exactly the same names.
//
// Layout:
//   P-underlay   bridge br0 holding the controller's host address (the
//                underlay network's first address, 198.18.0.1 by default:
//                cells reach the controller there on TCP 4003 with mutual
//                TLS, as separate hosts would); ports P-cell1, P-cell2
//   P-cell1      eth0 = the other veth end, 198.18.0.11/24 by default
//   P-cell2      eth0, 198.18.0.12/24
//   P-appA-0     empty: cell1 moves the container's TAP in as eth0
//   P-appB-0     empty: cell2 does the same
import path from 'node:path';
import { ipToU32, prefixMask, u32ToIp } from '../util/ip.js';
import { fail } from './errors.js';
import { labCellSocket, labControllerSocket, labDir, DEFAULT_LAB } from './paths.js';

/** Linux limits interface names to IFNAMSIZ-1 = 15 bytes (include/uapi/linux/if.h). */
export const IFNAME_MAX = 15;

/** 198.18.0.0/15 is reserved for benchmarking (RFC 2544 §C.2.2, RFC 6890): safe for a lab. */
export const LAB_UNDERLAY_RANGE = { addr: ipToU32('198.18.0.0'), len: 15 } as const;

export const DEFAULT_UNDERLAY_BASE = '198.18.0.11/24';
export const DEFAULT_MTU = 1500;
export const DEFAULT_APP_PORT = 8080;
export const UNDERLAY_BRIDGE = 'br0';
export const CELL_UNDERLAY_DEV = 'eth0';
/** The controller's TCP port on the underlay (silk-controller's listen_port in silk-release's examples). */
export const CONTROLLER_PORT = 4003;

/** Which data plane moves the packets: every cell in silkworm, every cell in the kernel, or cell1 silkworm + cell2 kernel. */
export type LabDataplane = 'user' | 'kernel' | 'mixed';
export type CellDataplane = 'user' | 'kernel';
export const LAB_DATAPLANES: readonly LabDataplane[] = ['user', 'kernel', 'mixed'];

/** The data plane of the i-th cell (0-based) for a lab mode: mixed puts the kernel on cell 2. */
export function cellDataplane(mode: LabDataplane, index: number): CellDataplane {
  if (mode === 'mixed') return index === 0 ? 'user' : 'kernel';
  return mode;
}

/** The lab's fixed cast: appA on cell 1, appB on cell 2 (what `lab up` promises). */
const CELLS = ['cell1', 'cell2'] as const;
const APPS = [
  { app: 'appA', cell: 'cell1' },
  { app: 'appB', cell: 'cell2' },
] as const;

// A prefix names namespaces (P-cell1), veths (P-cell1 in the underlay, so the
// longest is P + "-cell1" = P + 6 ≤ 15) and a directory. No '-' in it, so
// "P-" can never be the start of another lab's names ("sw" vs "sw-x").
const PREFIX_RE = /^[a-z][a-z0-9_]{0,8}$/i;

export function validatePrefix(prefix: string): string {
  if (!PREFIX_RE.test(prefix)) {
    fail(
      `lab prefix "${prefix}" must be 1-9 letters, digits or _ starting with a letter (it names namespaces and 15-byte interfaces)`,
    );
  }
  return prefix;
}

export interface CellPlan {
  name: string;
  netns: string;
  /** Underlay address of the cell's eth0, dotted. */
  underlayIp: string;
  underlayPrefixLen: number;
  /** The cell's underlay device inside its namespace. */
  dev: string;
  /** The veth end left on the bridge in P-underlay. */
  bridgePort: string;
  socket: string;
  log: string;
  /** The cell's --state-dir: P's directory/<cell> (containers and connections across a restart). */
  stateDir: string;
  dataplane: CellDataplane;
}

export interface AppPlan {
  app: string;
  cell: string;
  netns: string;
  port: number;
  log: string;
}

export interface LabPlan {
  prefix: string;
  dir: string;
  state: string;
  mtu: number;
  dataplane: LabDataplane;
  underlay: { netns: string; bridge: string; cidr: string };
  controller: {
    socket: string;
    store: string;
    log: string;
    /** Runs in the underlay namespace, listening on the socket and on https://ip:port. */
    netns: string;
    ip: string;
    prefixLen: number;
    port: number;
    /** https://ip:port, what the cells are given. */
    url: string;
    /** ca.pem, controller.pem, cellN.pem, token-key.pem… (silkworm certs create). */
    tlsDir: string;
  };
  cells: CellPlan[];
  apps: AppPlan[];
  /** Every namespace, in creation order (underlay first, containers last). */
  namespaces: string[];
}

export interface PlanOptions {
  prefix?: string;
  /** First cell's underlay address with its prefix length; the next cells count up from it. */
  underlayBase?: string;
  mtu?: number;
  appPort?: number;
  /** Default user. */
  dataplane?: LabDataplane;
  /** Userspace cells open a silk-vtep capture TAP (tcpdump -i silk-vtep). */
  capture?: boolean;
  /** Userspace cells' worker threads (`silkworm cell --workers`); default 1. */
  workers?: number;
}

export function labNamespaces(prefix: string): string[] {
  validatePrefix(prefix);
  return [`${prefix}-underlay`, ...CELLS.map((c) => `${prefix}-${c}`), ...APPS.map((a) => `${prefix}-${a.app}-0`)];
}

export function labStateFile(prefix: string): string {
  return path.join(labDir(prefix), 'state.json');
}

function parseUnderlayBase(text: string, count: number): { ips: string[]; len: number; cidr: string; controllerIp: string } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(text);
  if (!m) fail(`underlay base "${text}" must look like 198.18.0.11/24`);
  const first = ipToU32(m[1]!);
  const len = Number(m[2]);
  if (len < LAB_UNDERLAY_RANGE.len || len > 30) {
    fail(`underlay base "${text}" needs a prefix length between /15 and /30`);
  }
  const net = (first & prefixMask(len)) >>> 0;
  const bcast = (net | (~prefixMask(len) >>> 0)) >>> 0;
  const ips: string[] = [];
  for (let i = 0; i < count; i++) {
    const ip = (first + i) >>> 0;
    // Network and broadcast addresses are not host addresses (RFC 919/922).
    if (ip === net || ip >= bcast) {
      fail(`underlay base "${text}" leaves no room for ${count} cell addresses inside ${u32ToIp(net)}/${len}`);
    }
    if (((ip & prefixMask(LAB_UNDERLAY_RANGE.len)) >>> 0) !== LAB_UNDERLAY_RANGE.addr) {
      fail(`underlay addresses must stay inside 198.18.0.0/15 (reserved for benchmarking), "${text}" does not`);
    }
    ips.push(u32ToIp(ip));
  }
  // The controller host takes the network's first address, as a gateway would.
  const controllerIp = u32ToIp((net + 1) >>> 0);
  if (ips.includes(controllerIp)) {
    fail(`underlay base "${text}" puts a cell on ${controllerIp}, the controller's address on the underlay; start the cells above it`);
  }
  return { ips, len, cidr: `${u32ToIp(net)}/${len}`, controllerIp };
}

export function planLab(opts: PlanOptions = {}): LabPlan {
  const prefix = validatePrefix(opts.prefix ?? DEFAULT_LAB);
  const mtu = opts.mtu ?? DEFAULT_MTU;
  // 68 is IPv4's minimum MTU (RFC 791); the container MTU is underlay − 50, so
  // anything under 118 would leave the containers below it.
  if (!Number.isInteger(mtu) || mtu < 118 || mtu > 9000) fail(`MTU must be a whole number from 118 to 9000, got ${mtu}`);
  const appPort = opts.appPort ?? DEFAULT_APP_PORT;
  if (!Number.isInteger(appPort) || appPort < 1 || appPort > 65535) fail(`app port must be 1-65535, got ${appPort}`);
  const dataplane = opts.dataplane ?? 'user';
  if (!LAB_DATAPLANES.includes(dataplane)) fail(`dataplane must be user, kernel or mixed, got "${String(dataplane)}"`);
  const dir = labDir(prefix);
  const under = parseUnderlayBase(opts.underlayBase ?? DEFAULT_UNDERLAY_BASE, CELLS.length);
  const cells: CellPlan[] = CELLS.map((name, i) => {
    const bridgePort = `${prefix}-${name}`;
    if (bridgePort.length > IFNAME_MAX) fail(`interface name "${bridgePort}" is longer than ${IFNAME_MAX} bytes`);
    return {
      name,
      netns: `${prefix}-${name}`,
      underlayIp: under.ips[i]!,
      underlayPrefixLen: under.len,
      dev: CELL_UNDERLAY_DEV,
      bridgePort,
      socket: labCellSocket(prefix, name),
      log: path.join(dir, `${name}.log`),
      stateDir: path.join(dir, name),
      dataplane: cellDataplane(dataplane, i),
    };
  });
  const apps: AppPlan[] = APPS.map((a) => ({
    app: a.app,
    cell: a.cell,
    netns: `${prefix}-${a.app}-0`,
    port: appPort,
    log: path.join(dir, `${a.app}.log`),
  }));
  return {
    prefix,
    dir,
    state: labStateFile(prefix),
    mtu,
    dataplane,
    underlay: { netns: `${prefix}-underlay`, bridge: UNDERLAY_BRIDGE, cidr: under.cidr },
    controller: {
      socket: labControllerSocket(prefix),
      store: path.join(dir, 'controller.db'),
      log: path.join(dir, 'controller.log'),
      netns: `${prefix}-underlay`,
      ip: under.controllerIp,
      prefixLen: under.len,
      port: CONTROLLER_PORT,
      url: `https://${under.controllerIp}:${CONTROLLER_PORT}`,
      tlsDir: path.join(dir, 'tls'),
    },
    cells,
    apps,
    namespaces: labNamespaces(prefix),
  };
}
