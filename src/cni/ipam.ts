// IPAM delegation (SPEC.md, "Delegated plugins"): the plugin named by
// ipam.type is looked up in CNI_PATH and executed with the same CNI_*
// environment and the network configuration on stdin; its result (or error)
// comes back on stdout. As silk-cni does with host-local, a host-local section
// without a subnet gets the cell's lease as its only range.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CniError, compareVersions, ErrorCode, type NetConf } from './spec.js';
import { ipToU32, parseCidr, u32ToIp } from '../util/ip.js';

/**
 * host-local's ranges for a lease: every run of addresses from .2 to the last
 * but one that the cell has not handed out already (its own `container add`s
 * share the lease with host-local, which knows only its own reservations).
 */
export function freeRanges(lease: string, used: string[]): { subnet: string; rangeStart: string; rangeEnd: string }[] {
  const { addr, len } = parseCidr(lease);
  const size = 2 ** (32 - len);
  const taken = new Set(used.map((u) => ipToU32(u)));
  const out: { subnet: string; rangeStart: string; rangeEnd: string }[] = [];
  let start = -1;
  for (let i = 2; i <= size - 2; i++) {
    const ip = (addr + i) >>> 0;
    const free = !taken.has(ip);
    if (free && start < 0) start = ip;
    if ((!free || i === size - 2) && start >= 0) {
      const end = free ? ip : (ip - 1) >>> 0;
      out.push({ subnet: lease, rangeStart: u32ToIp(start), rangeEnd: u32ToIp(end) });
      start = -1;
    }
  }
  return out;
}

/** The IPAM plugin's executable: the first CNI_PATH directory that has it. */
export function findPlugin(type: string, dirs: string[]): string {
  for (const d of dirs) {
    const f = path.join(d, type);
    try {
      fs.accessSync(f, fs.constants.X_OK);
      if (fs.statSync(f).isFile()) return f;
    } catch {
      /* next directory */
    }
  }
  throw new CniError(ErrorCode.IpamFailed, `IPAM plugin "${type}" is not in CNI_PATH`, `looked in ${dirs.join(', ') || '(CNI_PATH is empty)'}`);
}

/**
 * The ipam section to hand over: host-local without subnet/ranges gets the
 * lease, less the addresses in `used`, as its ranges (one range set).
 */
export function ipamSection(ipam: NonNullable<NetConf['ipam']>, lease: string | undefined, used: string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = { ...ipam };
  if (ipam.type === 'host-local' && ipam.subnet === undefined && ipam.ranges === undefined) {
    if (!lease) throw new CniError(ErrorCode.IpamFailed, 'host-local needs a subnet and the cell\'s lease is not known', 'the cell could not be reached');
    const ranges = freeRanges(lease, used);
    if (ranges.length === 0) throw new CniError(ErrorCode.LeaseExhausted, `no free address left in ${lease}`);
    out.ranges = [ranges];
  }
  return out;
}

export interface IpamRun {
  command: 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';
  plugin: string;
  env: NodeJS.ProcessEnv;
  conf: Record<string, unknown>;
  timeoutMs?: number;
}

/** Run the IPAM plugin; resolves with its parsed stdout (null when empty), rejects with a CniError. */
export function runIpam(r: IpamRun): Promise<unknown> {
  const name = path.basename(r.plugin);
  return new Promise((resolve, reject) => {
    const child = execFile(
      r.plugin,
      [],
      { env: { ...r.env, CNI_COMMAND: r.command }, timeout: r.timeoutMs ?? 30_000, encoding: 'utf8', maxBuffer: 1 << 20 },
      (err, stdout, stderr) => {
        let parsed: unknown = null;
        if (stdout.trim().length > 0) {
          try {
            parsed = JSON.parse(stdout);
          } catch {
            parsed = undefined;
          }
        }
        if (err) {
          const e = parsed as { msg?: unknown; details?: unknown } | undefined;
          const msg = typeof e?.msg === 'string' ? e.msg : (stderr.trim() || err.message).split('\n').pop()!;
          reject(new CniError(ErrorCode.IpamFailed, `IPAM plugin ${name} ${r.command} failed: ${msg}`, typeof e?.details === 'string' ? e.details : ''));
          return;
        }
        if (parsed === undefined) {
          reject(new CniError(ErrorCode.IpamFailed, `IPAM plugin ${name} ${r.command} printed something that is not JSON`, stdout.slice(0, 500)));
          return;
        }
        resolve(parsed);
      },
    );
    child.stdin?.end(JSON.stringify(r.conf));
  });
}

/**
 * The version to speak to a delegated plugin for a configuration of version
 * `wanted`: the highest the plugin lists in VERSION that is not above
 * `wanted` (host-local from Debian's containernetworking-plugins stops at
 * 1.0.0, whose ADD/DEL/CHECK say the same as 1.1.0's). IncompatibleVersion
 * when it has none.
 */
export async function delegateVersion(plugin: string, env: NodeJS.ProcessEnv, wanted: string): Promise<string> {
  const res = (await runIpam({ command: 'VERSION', plugin, env, conf: { cniVersion: wanted } })) as { supportedVersions?: unknown } | null;
  const list = Array.isArray(res?.supportedVersions) ? res!.supportedVersions.filter((v): v is string => typeof v === 'string' && /^\d+\.\d+\.\d+$/.test(v)) : [];
  const fit = list.filter((v) => compareVersions(v, wanted) <= 0).sort(compareVersions);
  if (fit.length === 0) {
    throw new CniError(ErrorCode.IncompatibleVersion, `IPAM plugin ${path.basename(plugin)} speaks no CNI version up to ${wanted}`, `it lists ${list.join(', ') || 'none'}`);
  }
  return fit[fit.length - 1]!;
}
