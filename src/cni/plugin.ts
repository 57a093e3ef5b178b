// silkworm-cni: ADD, DEL, CHECK, VERSION, and 1.1.0's STATUS and GC, for
// network configurations with "type": "silkworm-cni". The cell does the attaching (its admin socket's
// POST /containers, the same code path as `silkworm container add`); this
// side speaks CNI: environment and stdin in, a result or an error on stdout.
import { httpJson, HttpTimeoutError, UnreachableError } from '../net/http.js';
import { formatAddress, parseAddress, type Address } from '../net/address.js';
import { formatMac, ipToU32, isIpv4, macFromIp, u32ToIp } from '../util/ip.js';
import { delegateVersion, findPlugin, ipamSection, runIpam } from './ipam.js';
import { compareSandbox, readSandbox, removeOurInterface, sandboxExists, setMtu } from './sandbox.js';
import {
  allowsCommand,
  buildResult,
  CniError,
  compareVersions,
  ErrorCode,
  errorJson,
  FALLBACK_ERROR_VERSION,
  firstIp,
  LATEST_VERSION,
  parseArgs,
  parseConf,
  parseEnv,
  parseValidAttachments,
  resolveApp,
  SUPPORTED_VERSIONS,
  type CniEnv,
  type NetConf,
} from './spec.js';

export interface PluginOutcome {
  /** What goes to stdout (a result, an error object, or nothing). */
  stdout: string;
  exitCode: number;
  /** Notes for stderr (runtimes log it). */
  notes: string[];
}

interface CellContainer {
  handle: string;
  app: string;
  ip: string;
  mac: string;
  netns: string;
  ifname?: string;
  container_id?: string;
  cni_network?: string;
}

interface CellStatus {
  mtu?: number;
  lease?: { overlay_subnet?: string };
  containers?: number;
}

function cellAddress(conf: NetConf): Address {
  try {
    return parseAddress(conf.cell);
  } catch (err) {
    throw new CniError(ErrorCode.InvalidConfig, `"cell": ${(err as Error).message}`);
  }
}

/** One call to the cell's admin API with the failure modes turned into CNI errors. */
async function cell<T>(addr: Address, method: string, path: string, body?: unknown): Promise<T> {
  let res;
  try {
    res = await httpJson(addr, method, path, body, { timeoutMs: 30_000 });
  } catch (err) {
    if (err instanceof UnreachableError) {
      throw new CniError(ErrorCode.CellUnreachable, `cannot reach the cell at ${formatAddress(addr)}`, `${err.code}: is the cell running?`);
    }
    if (err instanceof HttpTimeoutError) throw new CniError(ErrorCode.TryAgainLater, err.message, 'the cell is busy; try again');
    throw new CniError(ErrorCode.CellUnreachable, `talking to the cell at ${formatAddress(addr)} failed: ${(err as Error).message}`);
  }
  if (res.status >= 300) {
    const msg = typeof res.body?.error === 'string' ? res.body.error : `the cell answered HTTP ${res.status}`;
    if (res.status === 507) throw new CniError(ErrorCode.LeaseExhausted, msg);
    throw new CniError(ErrorCode.CellRefused, `the cell refused: ${msg}`);
  }
  return res.body as T;
}

/** The delegated IPAM plugin and the CNI version to speak to it. */
interface Ipam {
  plugin: string;
  version: string;
}

/** The IPAM plugin for `conf` (undefined without an ipam section); a 1.1.0 configuration asks it which version it speaks. */
async function ipamFor(env: NodeJS.ProcessEnv, e: CniEnv, conf: NetConf): Promise<Ipam | undefined> {
  if (!conf.ipam) return undefined;
  const plugin = findPlugin(conf.ipam.type, e.path);
  const version = compareVersions(conf.cniVersion, '1.1.0') >= 0 ? await delegateVersion(plugin, env, conf.cniVersion) : conf.cniVersion;
  return { plugin, version };
}

/** The IPAM plugin's stdin: the network configuration with the ipam section filled in, in the version it speaks. */
function ipamConf(conf: NetConf, ipam: Ipam, lease: string | undefined, used: string[] = []): Record<string, unknown> {
  const raw: Record<string, unknown> = { ...conf.raw, cniVersion: ipam.version, ipam: ipamSection(conf.ipam!, lease, used) };
  delete raw.prevResult;
  return raw;
}

async function add(env: NodeJS.ProcessEnv, e: CniEnv, conf: NetConf, notes: string[]): Promise<string> {
  const args = parseArgs(e.args, ['SILKWORM_APP']);
  const { app, source } = resolveApp(conf, args);
  const addr = cellAddress(conf);
  const status = await cell<CellStatus>(addr, 'GET', '/status');
  const cellMtu = typeof status.mtu === 'number' ? status.mtu : undefined;
  if (conf.mtu !== undefined && cellMtu !== undefined && conf.mtu > cellMtu) {
    throw new CniError(ErrorCode.InvalidConfig, `"mtu" ${conf.mtu} is larger than the cell's ${cellMtu} (underlay MTU minus VXLAN's 50 bytes)`);
  }
  if (!sandboxExists(e.netns)) throw new CniError(ErrorCode.InvalidEnv, `CNI_NETNS ${e.netns} does not exist`);
  let fixedIp: string | undefined;
  const lease = status.lease?.overlay_subnet;
  const ipam = await ipamFor(env, e, conf);
  if (ipam) {
    const { containers } = await cell<{ containers: CellContainer[] }>(addr, 'GET', '/containers');
    const res = await runIpam({ command: 'ADD', plugin: ipam.plugin, env, conf: ipamConf(conf, ipam, lease, containers.map((c) => c.ip)) });
    const got = firstIp(res);
    if (!got) {
      await runIpam({ command: 'DEL', plugin: ipam.plugin, env, conf: ipamConf(conf, ipam, lease) }).catch(() => undefined);
      throw new CniError(ErrorCode.IpamFailed, `IPAM plugin ${conf.ipam!.type} returned no IPv4 address`, JSON.stringify(res).slice(0, 500));
    }
    fixedIp = got.ip;
  }
  const undo = async () => {
    await cell(addr, 'POST', '/containers/delete', { container_id: e.containerId, ifname: e.ifname }).catch(() => undefined);
    if (ipam) await runIpam({ command: 'DEL', plugin: ipam.plugin, env, conf: ipamConf(conf, ipam, lease) }).catch(() => undefined);
  };
  let info: CellContainer;
  try {
    info = await cell<CellContainer>(addr, 'POST', '/containers', {
      app,
      netns: e.netns,
      ifname: e.ifname,
      container_id: e.containerId,
      cni_network: conf.name,
      ...(fixedIp !== undefined ? { ip: fixedIp } : {}),
    });
  } catch (err) {
    if (ipam) await runIpam({ command: 'DEL', plugin: ipam.plugin, env, conf: ipamConf(conf, ipam, lease) }).catch(() => undefined);
    throw err;
  }
  if (conf.mtu !== undefined && conf.mtu !== cellMtu) {
    try {
      await setMtu(e.netns, e.ifname, conf.mtu);
    } catch (err) {
      await undo();
      throw new CniError(ErrorCode.IoFailure, `setting MTU ${conf.mtu} on ${e.ifname} failed: ${(err as Error).message}`);
    }
  }
  notes.push(`silkworm-cni: ADD ${e.containerId} ${e.ifname}: app ${app} (from ${source}), ip ${info.ip}${fixedIp ? ` (from ${conf.ipam!.type})` : ''}`);
  const mtu = conf.mtu ?? cellMtu;
  return JSON.stringify(buildResult(conf.cniVersion, { ifname: e.ifname, mac: info.mac, sandbox: e.netns, ip: info.ip, ...(mtu !== undefined ? { mtu } : {}) }, conf.prevResult));
}

/** The subnet to give host-local on DEL when the cell cannot say: the previous result's address, as a /24 around it. */
function subnetFromPrev(prev: Record<string, unknown> | undefined): string | undefined {
  const got = firstIp(prev);
  if (!got) return undefined;
  const masked = (ipToU32(got.ip) & 0xffffff00) >>> 0;
  return `${u32ToIp(masked)}/24`;
}

async function del(env: NodeJS.ProcessEnv, e: CniEnv, conf: NetConf, notes: string[]): Promise<void> {
  const addr = cellAddress(conf);
  let removed = false;
  let lease: string | undefined;
  try {
    const r = await cell<{ removed?: boolean; ip?: string }>(addr, 'POST', '/containers/delete', { container_id: e.containerId, ifname: e.ifname });
    removed = r.removed === true;
    if (conf.ipam) lease = (await cell<CellStatus>(addr, 'GET', '/status')).lease?.overlay_subnet;
  } catch (err) {
    // A cell that is gone took its TAPs with it: nothing of ours is left there.
    if (!(err instanceof CniError) || err.code !== ErrorCode.CellUnreachable) throw err;
    notes.push(`silkworm-cni: DEL ${e.containerId}: ${err.message}; cleaning up without it`);
  }
  if (!removed && e.netns && (await removeOurInterface(e.netns, e.ifname).catch(() => false))) {
    notes.push(`silkworm-cni: DEL ${e.containerId}: removed a leftover ${e.ifname}`);
  }
  const ipam = await ipamFor(env, e, conf);
  if (ipam) {
    const subnet = lease ?? subnetFromPrev(conf.prevResult);
    if (conf.ipam!.type === 'host-local' && conf.ipam!.subnet === undefined && conf.ipam!.ranges === undefined && !subnet) {
      notes.push(`silkworm-cni: DEL ${e.containerId}: neither the cell nor a prevResult tells host-local's subnet; its address stays reserved`);
      return;
    }
    await runIpam({ command: 'DEL', plugin: ipam.plugin, env, conf: ipamConf(conf, ipam, subnet) });
  }
}

async function check(env: NodeJS.ProcessEnv, e: CniEnv, conf: NetConf): Promise<void> {
  if (conf.cniVersion === '0.3.0' || conf.cniVersion === '0.3.1') {
    throw new CniError(ErrorCode.IncompatibleVersion, `CHECK needs CNI version 0.4.0 or later, not ${conf.cniVersion}`);
  }
  const addr = cellAddress(conf);
  const { containers } = await cell<{ containers: CellContainer[] }>(addr, 'GET', '/containers');
  const rec = containers.find((c) => c.container_id === e.containerId && (c.ifname ?? 'eth0') === e.ifname);
  if (!rec) throw new CniError(ErrorCode.UnknownContainer, `the cell has no container ${e.containerId} with ${e.ifname}`);
  const problems: string[] = [];
  if (rec.netns !== e.netns) problems.push(`the cell has it in ${rec.netns}, not ${e.netns}`);
  const prev = firstIp(conf.prevResult);
  if (prev && prev.ip !== rec.ip) problems.push(`prevResult says ${prev.ip}, the cell says ${rec.ip}`);
  if (!sandboxExists(e.netns)) problems.push(`CNI_NETNS ${e.netns} does not exist`);
  else {
    const ip = isIpv4(rec.ip) ? ipToU32(rec.ip) : 0;
    const state = await readSandbox(e.netns, e.ifname);
    problems.push(...compareSandbox(state, { ifname: e.ifname, ip: rec.ip, mac: formatMac(macFromIp(0xeeee, ip)), gatewayMac: formatMac(macFromIp(0xaaaa, ip)) }));
    if (conf.mtu !== undefined && state.link?.mtu !== conf.mtu) problems.push(`${e.ifname} has MTU ${state.link?.mtu}, not ${conf.mtu}`);
  }
  if (problems.length > 0) throw new CniError(ErrorCode.CheckFailed, `CHECK ${e.containerId} ${e.ifname}: ${problems[0]}`, problems.join('; '));
  const ipam = await ipamFor(env, e, conf);
  if (ipam) {
    const status = await cell<CellStatus>(addr, 'GET', '/status');
    await runIpam({ command: 'CHECK', plugin: ipam.plugin, env, conf: { ...ipamConf(conf, ipam, status.lease?.overlay_subnet), prevResult: conf.prevResult } });
  }
}

/** Addresses a lease holds for containers: all but .0 (VTEP), .1 (gateway) and broadcast. */
function leaseCapacity(lease: string | undefined): number | undefined {
  const m = lease === undefined ? null : /\/(\d+)$/.exec(lease);
  return m ? Math.max(0, 2 ** (32 - Number(m[1])) - 3) : undefined;
}

/**
 * STATUS (1.1.0): can an ADD be serviced now? The cell is the data plane, so
 * a cell that does not answer means its containers have lost connectivity
 * too (51); a lease with no free address (50); a delegated IPAM plugin that
 * speaks 1.1.0 is asked as well, and its error is ours (50).
 */
async function status(env: NodeJS.ProcessEnv, e: CniEnv, conf: NetConf, notes: string[]): Promise<void> {
  const addr = cellAddress(conf);
  let st: CellStatus;
  try {
    st = await cell<CellStatus>(addr, 'GET', '/status');
  } catch (err) {
    const ce = err as CniError;
    if (ce.code === ErrorCode.CellUnreachable) throw new CniError(ErrorCode.NotAvailableLimited, `the cell at ${formatAddress(addr)} is not running: no ADD, and its containers have no connectivity`, ce.details || ce.message);
    throw new CniError(ErrorCode.NotAvailable, `the cell at ${formatAddress(addr)} cannot take an ADD now: ${ce.message}`, ce.details);
  }
  const lease = st.lease?.overlay_subnet;
  const cap = leaseCapacity(lease);
  if (cap !== undefined && typeof st.containers === 'number' && st.containers >= cap) {
    throw new CniError(ErrorCode.NotAvailable, `no free address left in the cell's lease ${lease}`, `${st.containers} containers hold all ${cap} addresses`);
  }
  if (conf.ipam) {
    let ipam: Ipam;
    try {
      ipam = (await ipamFor(env, e, conf))!;
    } catch (err) {
      throw new CniError(ErrorCode.NotAvailable, `IPAM plugin ${conf.ipam.type}: ${(err as Error).message}`, (err as CniError).details ?? '');
    }
    if (!allowsCommand(ipam.version, 'STATUS')) {
      notes.push(`silkworm-cni: STATUS: IPAM plugin ${conf.ipam.type} speaks CNI ${ipam.version}, which has no STATUS; not asked`);
      return;
    }
    try {
      await runIpam({ command: 'STATUS', plugin: ipam.plugin, env, conf: ipamConf(conf, ipam, lease) });
    } catch (err) {
      throw new CniError(ErrorCode.NotAvailable, (err as Error).message, (err as CniError).details ?? '');
    }
  }
}

/**
 * GC (1.1.0): remove every attachment the cell holds for this network (by
 * its name) that is not in `cni.dev/valid-attachments`, as DEL would; then
 * hand GC to a delegated IPAM plugin that speaks 1.1.0, or DEL each removed
 * attachment from one that does not. Containers added without CNI, or on
 * another network, are never touched. Goes on past errors and reports them
 * all at the end.
 */
async function gc(env: NodeJS.ProcessEnv, e: CniEnv, conf: NetConf, notes: string[]): Promise<void> {
  const valid = parseValidAttachments(conf.raw);
  const addr = cellAddress(conf);
  const errors: string[] = [];
  let stale: CellContainer[] = [];
  let lease: string | undefined;
  try {
    const { containers } = await cell<{ containers: CellContainer[] }>(addr, 'GET', '/containers');
    stale = containers.filter((c) => c.cni_network === conf.name && c.container_id !== undefined && !valid.has(`${c.container_id}/${c.ifname ?? 'eth0'}`));
    if (conf.ipam) lease = (await cell<CellStatus>(addr, 'GET', '/status')).lease?.overlay_subnet;
  } catch (err) {
    errors.push((err as Error).message);
  }
  const removed: CellContainer[] = [];
  for (const c of stale) {
    try {
      await cell(addr, 'POST', '/containers/delete', { container_id: c.container_id, ifname: c.ifname ?? 'eth0' });
      removed.push(c);
      notes.push(`silkworm-cni: GC: removed ${c.container_id} ${c.ifname ?? 'eth0'} (${c.ip})`);
    } catch (err) {
      errors.push(`removing ${c.container_id}: ${(err as Error).message}`);
    }
  }
  if (conf.ipam) {
    try {
      const ipam = (await ipamFor(env, e, conf))!;
      if (allowsCommand(ipam.version, 'GC')) {
        await runIpam({ command: 'GC', plugin: ipam.plugin, env, conf: ipamConf(conf, ipam, lease) });
      } else {
        // An IPAM plugin without GC releases what DEL names: each attachment removed above.
        for (const c of removed) {
          const one = { ...env, CNI_CONTAINERID: c.container_id, CNI_IFNAME: c.ifname ?? 'eth0' };
          const cfg = ipamConf(conf, ipam, lease);
          delete cfg['cni.dev/valid-attachments'];
          await runIpam({ command: 'DEL', plugin: ipam.plugin, env: one, conf: cfg }).catch((err) => errors.push(`releasing ${c.ip}: ${(err as Error).message}`));
        }
      }
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  if (errors.length > 0) throw new CniError(ErrorCode.IoFailure, `GC of ${conf.name}: ${errors[0]}`, errors.join('; '));
}

function version(stdin: string): string {
  let asked = LATEST_VERSION;
  try {
    const v = JSON.parse(stdin) as { cniVersion?: unknown };
    if (typeof v?.cniVersion === 'string' && v.cniVersion.length > 0) asked = v.cniVersion;
  } catch {
    /* no or bad stdin: answer in our latest version */
  }
  return JSON.stringify({ cniVersion: asked, supportedVersions: [...SUPPORTED_VERSIONS] });
}

/** One plugin invocation: what a runtime gives (environment, stdin) → what it reads (stdout, exit code). */
export async function runPlugin(env: NodeJS.ProcessEnv, stdin: string): Promise<PluginOutcome> {
  const notes: string[] = [];
  let errVersion: string = FALLBACK_ERROR_VERSION;
  try {
    const e = parseEnv(env);
    if (e.command === 'VERSION') return { stdout: version(stdin), exitCode: 0, notes };
    // The error's cniVersion is the config's, once we know it is one we speak.
    try {
      const v = (JSON.parse(stdin) as { cniVersion?: unknown })?.cniVersion;
      if (typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v)) errVersion = v;
    } catch {
      /* parseConf says so */
    }
    const conf = parseConf(stdin);
    switch (e.command) {
      case 'ADD':
        return { stdout: await add(env, e, conf, notes), exitCode: 0, notes };
      case 'DEL':
        await del(env, e, conf, notes);
        return { stdout: '', exitCode: 0, notes };
      case 'CHECK':
        await check(env, e, conf);
        return { stdout: '', exitCode: 0, notes };
      case 'STATUS':
      case 'GC':
        if (!allowsCommand(conf.cniVersion, e.command)) {
          throw new CniError(ErrorCode.IncompatibleVersion, `${e.command} needs CNI version 1.1.0 or later, not ${conf.cniVersion}`);
        }
        if (e.command === 'STATUS') await status(env, e, conf, notes);
        else await gc(env, e, conf, notes);
        return { stdout: '', exitCode: 0, notes };
    }
    throw new CniError(ErrorCode.InvalidEnv, `unknown CNI_COMMAND "${e.command as string}"`);
  } catch (err) {
    const ce = err instanceof CniError ? err : new CniError(ErrorCode.IoFailure, (err as Error)?.message ?? String(err));
    return { stdout: JSON.stringify(errorJson(ce, errVersion)), exitCode: 1, notes };
  }
}
