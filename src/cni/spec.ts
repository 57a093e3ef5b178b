// The CNI protocol as silkworm-cni speaks it (CNI specification 1.1.0 with
// STATUS and GC, github.com/containernetworking/cni SPEC.md; results back to
// 0.3.0): the
// environment, the network configuration on stdin, CNI_ARGS, the app id's
// three sources, and the result and error shapes. Pure: no I/O here.
import { isIpv4 } from '../util/ip.js';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const LATEST_VERSION = '1.1.0';
/**
 * The version an error is written in when the configuration's own cannot be
 * read (bad JSON, a version we do not speak): 1.0.0, whose error shape 1.1.0
 * kept and which more runtimes read.
 */
export const FALLBACK_ERROR_VERSION = '1.0.0';
/** silk's gateway: every container's default route goes through it (a /32 peer). */
export const GATEWAY = '169.254.0.1';

/** Well-known error codes (SPEC.md, "Error") and silkworm's own (≥ 100). */
export const ErrorCode = {
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnv: 4,
  IoFailure: 5,
  DecodeFailure: 6,
  InvalidConfig: 7,
  TryAgainLater: 11,
  /** STATUS: the plugin cannot service ADD requests. */
  NotAvailable: 50,
  /** STATUS: not available, and existing containers in the network may have limited connectivity. */
  NotAvailableLimited: 51,
  CellUnreachable: 100,
  CellRefused: 101,
  LeaseExhausted: 102,
  NoAppId: 103,
  IpamFailed: 104,
  CheckFailed: 105,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    msg: string,
    readonly details = '',
  ) {
    super(msg);
    this.name = 'CniError';
  }
}

export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export function errorJson(err: CniError, cniVersion: string): CniErrorJson {
  return { cniVersion, code: err.code, msg: err.message, ...(err.details ? { details: err.details } : {}) };
}

export type Command = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';

const COMMANDS: readonly string[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];

/** Compare two "x.y.z" versions: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** STATUS and GC came with 1.1.0: a configuration of an older version does not allow them. */
export function allowsCommand(cniVersion: string, command: Command): boolean {
  return (command !== 'STATUS' && command !== 'GC') || compareVersions(cniVersion, '1.1.0') >= 0;
}

export interface CniEnv {
  command: Command;
  containerId: string;
  /** Empty when not given (DEL may come without it). */
  netns: string;
  ifname: string;
  args: string;
  path: string[];
}

const env = (e: NodeJS.ProcessEnv, k: string): string => (e[k] ?? '').trim();

/** The CNI_* variables a command needs (SPEC.md, "Parameters"); InvalidEnv when one is missing. */
export function parseEnv(e: NodeJS.ProcessEnv): CniEnv {
  const command = env(e, 'CNI_COMMAND');
  if (!command) throw new CniError(ErrorCode.InvalidEnv, 'CNI_COMMAND is not set', 'a runtime sets CNI_COMMAND to ADD, DEL, CHECK or VERSION');
  if (!COMMANDS.includes(command)) {
    throw new CniError(ErrorCode.InvalidEnv, `unknown CNI_COMMAND "${command}"`, `silkworm-cni knows ${COMMANDS.join(', ')}`);
  }
  const out: CniEnv = {
    command: command as Command,
    containerId: env(e, 'CNI_CONTAINERID'),
    netns: env(e, 'CNI_NETNS'),
    ifname: env(e, 'CNI_IFNAME'),
    args: env(e, 'CNI_ARGS'),
    path: env(e, 'CNI_PATH').split(':').filter((p) => p.length > 0),
  };
  if (command === 'VERSION' || command === 'STATUS') return out;
  const need = (name: string, v: string | string[]) => {
    if (v.length === 0) throw new CniError(ErrorCode.InvalidEnv, `${name} is not set`, `${command} needs ${name}`);
  };
  if (command === 'GC') {
    // GC is about a network, not an attachment: only CNI_PATH is required.
    need('CNI_PATH', out.path);
    return out;
  }
  need('CNI_CONTAINERID', out.containerId);
  need('CNI_IFNAME', out.ifname);
  if (command !== 'DEL') need('CNI_NETNS', out.netns);
  // CNI_PATH is required by the spec; only an IPAM delegation actually uses it.
  need('CNI_PATH', out.path);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(out.containerId)) {
    throw new CniError(ErrorCode.InvalidEnv, `CNI_CONTAINERID "${out.containerId}" has characters other than letters, digits, "_.-"`);
  }
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(out.ifname) || out.ifname === '.' || out.ifname === '..') {
    throw new CniError(ErrorCode.InvalidEnv, `CNI_IFNAME "${out.ifname}" is not a valid interface name`);
  }
  if (out.netns && !out.netns.startsWith('/')) throw new CniError(ErrorCode.InvalidEnv, `CNI_NETNS "${out.netns}" is not an absolute path`);
  return out;
}

/** GC's `cni.dev/valid-attachments`: the attachments still in use, as "containerID/ifname" keys. */
export function parseValidAttachments(raw: Record<string, unknown>): Set<string> {
  const v = raw['cni.dev/valid-attachments'];
  const out = new Set<string>();
  // Required: taking a missing list for "nothing is valid" would remove every attachment.
  if (v === undefined) throw new CniError(ErrorCode.InvalidConfig, 'GC needs "cni.dev/valid-attachments" in the configuration');
  if (!Array.isArray(v)) throw new CniError(ErrorCode.InvalidConfig, '"cni.dev/valid-attachments" must be an array');
  for (const a of v) {
    const id = (a as { containerID?: unknown })?.containerID;
    const ifname = (a as { ifname?: unknown })?.ifname;
    if (typeof id !== 'string' || typeof ifname !== 'string') {
      throw new CniError(ErrorCode.InvalidConfig, '"cni.dev/valid-attachments" entries need string "containerID" and "ifname"');
    }
    out.add(`${id}/${ifname}`);
  }
  return out;
}

/** CNI_ARGS "K1=V1;K2=V2": known keys only, unless IgnoreUnknown=1|true. */
export function parseArgs(text: string, known: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  if (!text) return out;
  const pairs: [string, string][] = [];
  for (const part of text.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(ErrorCode.InvalidEnv, `CNI_ARGS has "${part}", not KEY=VALUE`);
    pairs.push([part.slice(0, eq), part.slice(eq + 1)]);
  }
  const ignore = pairs.some(([k, v]) => k === 'IgnoreUnknown' && (v === '1' || v.toLowerCase() === 'true'));
  for (const [k, v] of pairs) {
    if (k === 'IgnoreUnknown') continue;
    if (!known.includes(k)) {
      if (ignore) continue;
      throw new CniError(ErrorCode.InvalidEnv, `CNI_ARGS has the unknown key "${k}"`, `silkworm-cni knows ${known.join(', ')}; add IgnoreUnknown=1 to skip the others`);
    }
    out.set(k, v);
  }
  return out;
}

export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  /** The cell's admin socket path or host:port. */
  cell: string;
  app?: string;
  mtu?: number;
  ipam?: { type: string; [k: string]: unknown };
  runtimeConfig?: { metadata?: { policy_group_id?: unknown } };
  prevResult?: Record<string, unknown>;
  /** The whole object as given (IPAM plugins get it with their section). */
  raw: Record<string, unknown>;
}

/** The network configuration from stdin; DecodeFailure for bad JSON, InvalidConfig for bad fields. */
export function parseConf(stdin: string): NetConf {
  let v: unknown;
  try {
    v = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(ErrorCode.DecodeFailure, 'the network configuration on stdin is not JSON', (err as Error).message);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CniError(ErrorCode.DecodeFailure, 'the network configuration on stdin is not a JSON object');
  const o = v as Record<string, unknown>;
  const bad = (msg: string): never => {
    throw new CniError(ErrorCode.InvalidConfig, msg);
  };
  const cniVersion = typeof o.cniVersion === 'string' ? o.cniVersion : bad('"cniVersion" must be a string');
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(cniVersion)) {
    throw new CniError(ErrorCode.IncompatibleVersion, `CNI version ${cniVersion} is not supported`, `silkworm-cni supports ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  const name = typeof o.name === 'string' && o.name.length > 0 ? o.name : bad('"name" must be a non-empty string');
  const type = typeof o.type === 'string' ? o.type : bad('"type" must be a string');
  const cell = typeof o.cell === 'string' && o.cell.length > 0 ? o.cell : bad('"cell" (the cell\'s admin socket, e.g. /run/silkworm/sw/cell1.sock) is required');
  const conf: NetConf = { cniVersion, name, type, cell, raw: o };
  if (o.app !== undefined) conf.app = typeof o.app === 'string' ? o.app : bad('"app" must be a string');
  if (o.mtu !== undefined) {
    if (typeof o.mtu !== 'number' || !Number.isInteger(o.mtu) || o.mtu < 68 || o.mtu > 65535) bad('"mtu" must be a whole number from 68 to 65535');
    conf.mtu = o.mtu as number;
  }
  if (o.ipam !== undefined) {
    const i = o.ipam as Record<string, unknown>;
    if (typeof i !== 'object' || i === null || Array.isArray(i)) bad('"ipam" must be an object');
    if (Object.keys(i).length > 0) {
      if (typeof i.type !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(i.type)) bad('"ipam.type" must name an IPAM plugin (e.g. host-local)');
      conf.ipam = i as NetConf['ipam'];
    }
  }
  if (o.runtimeConfig !== undefined && typeof o.runtimeConfig === 'object' && o.runtimeConfig !== null) conf.runtimeConfig = o.runtimeConfig as NetConf['runtimeConfig'];
  if (o.prevResult !== undefined) {
    if (typeof o.prevResult !== 'object' || o.prevResult === null || Array.isArray(o.prevResult)) bad('"prevResult" must be an object');
    conf.prevResult = o.prevResult as Record<string, unknown>;
  }
  return conf;
}

export const APP_RE = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * The policy group: runtimeConfig.metadata.policy_group_id (Cloud Foundry's
 * garden-external-networker), else CNI_ARGS SILKWORM_APP, else the config's app.
 */
export function resolveApp(conf: NetConf, args: Map<string, string>): { app: string; source: 'runtimeConfig' | 'CNI_ARGS' | 'config' } {
  const fromMeta = conf.runtimeConfig?.metadata?.policy_group_id;
  const pick = (app: unknown, source: 'runtimeConfig' | 'CNI_ARGS' | 'config') => {
    if (typeof app !== 'string' || !APP_RE.test(app)) {
      throw new CniError(ErrorCode.InvalidConfig, `app id ${JSON.stringify(app)} from ${source} is not a name of letters, digits, "_.:-"`);
    }
    return { app, source };
  };
  if (fromMeta !== undefined && fromMeta !== '') return pick(fromMeta, 'runtimeConfig');
  const fromArgs = args.get('SILKWORM_APP');
  if (fromArgs !== undefined && fromArgs !== '') return pick(fromArgs, 'CNI_ARGS');
  if (conf.app !== undefined && conf.app !== '') return pick(conf.app, 'config');
  throw new CniError(
    ErrorCode.NoAppId,
    'no app id: give runtimeConfig.metadata.policy_group_id, CNI_ARGS SILKWORM_APP=<id> or "app" in the network configuration',
  );
}

export interface Attachment {
  ifname: string;
  mac: string;
  sandbox: string;
  ip: string;
  /** The interface's MTU: 1.1.0 results carry it. */
  mtu?: number;
}

/**
 * The ADD result in the requested version's shape: our interface and address
 * appended to a chained plugin's prevResult (if any). 0.3.x/0.4.0 ips carry
 * "version": "4"; 1.0.0 dropped it; 1.1.0 adds the interface's "mtu".
 */
export function buildResult(cniVersion: string, a: Attachment, prev?: Record<string, unknown>): Record<string, unknown> {
  const interfaces = Array.isArray(prev?.interfaces) ? [...(prev!.interfaces as unknown[])] : [];
  const ips = Array.isArray(prev?.ips) ? [...(prev!.ips as unknown[])] : [];
  const routes = Array.isArray(prev?.routes) ? [...(prev!.routes as unknown[])] : [];
  const index = interfaces.length;
  const v11 = compareVersions(cniVersion, '1.1.0') >= 0;
  interfaces.push({ name: a.ifname, mac: a.mac, ...(v11 && a.mtu !== undefined ? { mtu: a.mtu } : {}), sandbox: a.sandbox });
  const legacy = compareVersions(cniVersion, '1.0.0') < 0;
  ips.push({ ...(legacy ? { version: '4' } : {}), address: `${a.ip}/32`, gateway: GATEWAY, interface: index });
  if (!routes.some((r) => (r as { dst?: string }).dst === '0.0.0.0/0')) routes.push({ dst: '0.0.0.0/0', gw: GATEWAY });
  const dns = prev?.dns && typeof prev.dns === 'object' ? prev.dns : {};
  return { cniVersion, interfaces, ips, routes, dns };
}

/** The IPv4 address (no prefix) of a result's first ips entry, or undefined. */
export function firstIp(result: unknown): { ip: string; prefix: number } | undefined {
  const ips = (result as { ips?: unknown })?.ips;
  if (!Array.isArray(ips)) return undefined;
  for (const e of ips) {
    const addr = (e as { address?: unknown })?.address;
    if (typeof addr !== 'string') continue;
    const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(addr);
    if (m && isIpv4(m[1]!)) return { ip: m[1]!, prefix: Number(m[2]) };
  }
  return undefined;
}
