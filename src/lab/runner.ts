// The seam between the lab and the programs it starts. `lab up` only talks to
// a LabRunner: the real one runs `node bin/silkworm.js controller|cell|container`
// and the app server; tests swap in fakes so the topology, supervision, state
// file and tear-down are tested without the rest of silkworm.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fail } from './errors.js';
import { isIpv4 } from '../util/ip.js';
import { spawnDetached } from './procs.js';

export interface ControllerSpec {
  socket: string;
  store: string;
  log: string;
  /** Run inside this namespace (the underlay), listening also on `tcp` with mutual TLS. */
  netns?: string;
  /** host:port of the TLS listener. */
  tcp?: string;
  tls?: LabTlsFiles & { tokenKey: string };
}

export interface LabTlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export interface CellSpec {
  name: string;
  netns: string;
  /** The controller's address as the cell is given it: a socket path or https://ip:port. */
  controllerSocket: string;
  /** The cell's client certificate, key and the CA, for an https:// controller. */
  tls?: LabTlsFiles;
  underlayIp: string;
  underlayDev: string;
  adminSocket: string;
  /** Underlay MTU (the cell gives containers MTU − 50). */
  mtu: number;
  log: string;
  /** user (default) or kernel: `silkworm cell --dataplane kernel`. */
  dataplane?: 'user' | 'kernel';
  /** `silkworm cell --capture`: a silk-vtep TAP for tcpdump (userspace cells only). */
  capture?: boolean;
  /** `silkworm cell --workers N` (userspace cells; passed only when > 1). */
  workers?: number;
  /** `silkworm cell --state-dir`. */
  stateDir?: string;
}

export interface ContainerSpec {
  app: string;
  cell: string;
  cellSocket: string;
  netns: string;
  /** The cell's CNI network configuration list (the lab attaches through silkworm-cni). */
  conflist?: string;
  /** CNI_CONTAINERID. */
  containerId?: string;
}

export interface ContainerInfo {
  ip: string;
  mac?: string;
  handle?: string;
  /** The CNI container id, when attached through silkworm-cni. */
  containerId?: string;
}

/** A conflist with the one silkworm-cni plugin for a cell (what a runtime keeps in /etc/cni/net.d). */
export function labConflist(name: string, cellSocket: string): Record<string, unknown> {
  return { cniVersion: '1.0.0', name, plugins: [{ type: 'silkworm-cni', cell: cellSocket }] };
}

export interface AppSpec {
  app: string;
  netns: string;
  port: number;
  log: string;
}

export interface LabRunner {
  /** Start the controller detached (in the underlay namespace when spec.netns is set); returns its PID. */
  spawnController(spec: ControllerSpec): number;
  /** Start a cell detached inside its namespace; returns its PID. */
  spawnCell(spec: CellSpec): number;
  /** Attach a container namespace to a cell (what silk-cni does); resolves with its overlay IP. */
  addContainer(spec: ContainerSpec): Promise<ContainerInfo>;
  /** Start the HTTP app server detached inside the container namespace; returns its PID. */
  spawnApp(spec: AppSpec): number;
}

/** The package root: this file is <root>/src/lab/runner.ts or <root>/dist/lab/runner.js. */
export function packageRoot(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
}

export interface RealRunnerOptions {
  node?: string;
  /** bin/silkworm.js */
  silkworm?: string;
  /** dist/lab/app-server.js */
  appServer?: string;
  /** Bound for `container add`. */
  containerTimeoutMs?: number;
}

/** Parse `container add --json` output: {"handle","app","ip","mac","netns","cell"}. */
export function parseContainerJson(stdout: string, what: string): ContainerInfo {
  const last = stdout.trim().split('\n').pop()?.trim() ?? '';
  // Tolerate a bare address too (what `container add` prints without --json).
  if (isIpv4(last)) return { ip: last };
  let v: unknown;
  try {
    v = JSON.parse(stdout.trim());
  } catch {
    return fail(`${what} did not print JSON: ${JSON.stringify(stdout.trim().slice(0, 200))}`);
  }
  const o = v as Record<string, unknown>;
  if (typeof o !== 'object' || o === null || typeof o.ip !== 'string' || !isIpv4(o.ip)) {
    return fail(`${what} printed no IPv4 "ip": ${JSON.stringify(stdout.trim().slice(0, 200))}`);
  }
  const info: ContainerInfo = { ip: o.ip };
  if (typeof o.mac === 'string') info.mac = o.mac;
  if (typeof o.handle === 'string') info.handle = o.handle;
  return info;
}

/**
 * The command line that runs a lab cell, as `lab up` starts it and `lab
 * restart` runs it again. `ip netns exec` execs the command in place, so the
 * PID is the cell's own.
 */
export function cellCommand(s: CellSpec, opts: { node?: string; silkworm?: string } = {}): string[] {
  const node = opts.node ?? process.execPath;
  const silkworm = opts.silkworm ?? path.join(packageRoot(), 'bin', 'silkworm.js');
  return ['ip', 'netns', 'exec', s.netns, node, silkworm, 'cell', '--name', s.name, '--controller', s.controllerSocket,
    ...(s.tls ? ['--tls-cert', s.tls.cert, '--tls-key', s.tls.key, '--tls-ca', s.tls.ca] : []),
    '--underlay-ip', s.underlayIp, '--underlay-dev', s.underlayDev, '--admin', s.adminSocket,
    ...(s.stateDir ? ['--state-dir', s.stateDir] : []),
    // Only when not the default, so the documented command line stays the plain one.
    ...(s.mtu !== 1500 ? ['--mtu', String(s.mtu)] : []),
    ...(s.dataplane === 'kernel' ? ['--dataplane', 'kernel'] : []),
    ...(s.capture && s.dataplane !== 'kernel' ? ['--capture'] : []),
    ...((s.workers ?? 1) > 1 && s.dataplane !== 'kernel' ? ['--workers', String(s.workers)] : [])];
}

export function realRunner(opts: RealRunnerOptions = {}): LabRunner {
  const root = packageRoot();
  const node = opts.node ?? process.execPath;
  const silkworm = opts.silkworm ?? path.join(root, 'bin', 'silkworm.js');
  const appServer = opts.appServer ?? path.join(root, 'dist', 'lab', 'app-server.js');
  const containerTimeoutMs = opts.containerTimeoutMs ?? 20_000;
  const need = (file: string) => {
    if (!fs.existsSync(file)) fail(`${file} is missing: build silkworm first ("npm run build")`);
  };
  return {
    spawnController(s) {
      need(silkworm);
      const args = [silkworm, 'controller', '--listen', s.socket, '--store', s.store];
      if (s.tcp) args.push('--listen', s.tcp);
      if (s.tls) args.push('--tls-cert', s.tls.cert, '--tls-key', s.tls.key, '--tls-ca', s.tls.ca, '--token-key', s.tls.tokenKey);
      // `ip netns exec` execs the command in place, so the PID is the controller's own.
      return s.netns ? spawnDetached('ip', ['netns', 'exec', s.netns, node, ...args], s.log) : spawnDetached(node, args, s.log);
    },
    spawnCell(s) {
      need(silkworm);
      const [cmd, ...args] = cellCommand(s, { node, silkworm });
      return spawnDetached(cmd!, args, s.log);
    },
    addContainer(s) {
      if (s.conflist) return cniAdd(node, path.join(root, 'bin', 'silkworm-cni'), s, containerTimeoutMs);
      need(silkworm);
      const what = `container add ${s.app} on ${s.cell}`;
      return new Promise((resolve, reject) => {
        execFile(
          node,
          [silkworm, 'container', 'add', '--cell', s.cellSocket, '--app', s.app, '--netns', s.netns, '--json'],
          { encoding: 'utf8', timeout: containerTimeoutMs },
          (err, stdout, stderr) => {
            if (err) {
              const why = stderr.trim().split('\n').pop() || err.message;
              reject(new Error(`${what} failed: ${why}`));
              return;
            }
            try {
              resolve(parseContainerJson(stdout, what));
            } catch (e) {
              reject(e);
            }
          },
        );
      });
    },
    spawnApp(s) {
      need(appServer);
      return spawnDetached('ip', ['netns', 'exec', s.netns, node, appServer, '--name', s.app, '--port', String(s.port)], s.log);
    },
  };
}

/**
 * ADD through silkworm-cni as a runtime does it (libcni): the conflist's one
 * plugin gets the list's name and cniVersion, the CNI_* environment, and the
 * app id in CNI_ARGS; the result's first interface and address come back.
 */
function cniAdd(node: string, plugin: string, s: ContainerSpec, timeoutMs: number): Promise<ContainerInfo> {
  if (!fs.existsSync(plugin)) fail(`${plugin} is missing`);
  const what = `silkworm-cni ADD ${s.app} on ${s.cell}`;
  const list = JSON.parse(fs.readFileSync(s.conflist!, 'utf8')) as { cniVersion: string; name: string; plugins: Record<string, unknown>[] };
  const conf = { cniVersion: list.cniVersion, name: list.name, ...list.plugins[0] };
  const containerId = s.containerId ?? s.netns;
  const env = {
    ...process.env,
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: containerId,
    CNI_NETNS: `/run/netns/${s.netns}`,
    CNI_IFNAME: 'eth0',
    CNI_ARGS: `IgnoreUnknown=1;SILKWORM_APP=${s.app}`,
    CNI_PATH: path.dirname(plugin),
  };
  return new Promise((resolve, reject) => {
    const child = execFile(node, [plugin], { encoding: 'utf8', timeout: timeoutMs, env }, (err, stdout) => {
      let r: { msg?: string; interfaces?: { mac?: string }[]; ips?: { address?: string }[] } = {};
      try {
        r = JSON.parse(stdout);
      } catch {
        /* reported below */
      }
      if (err) {
        reject(new Error(`${what} failed: ${r.msg ?? (stdout.trim() || err.message)}`));
        return;
      }
      const ip = r.ips?.[0]?.address?.split('/')[0];
      if (!ip || !isIpv4(ip)) {
        reject(new Error(`${what} printed no address: ${stdout.trim().slice(0, 200)}`));
        return;
      }
      const mac = r.interfaces?.[0]?.mac;
      resolve({ ip, ...(mac ? { mac } : {}), handle: containerId, containerId });
    });
    child.stdin?.end(JSON.stringify(conf));
  });
}
