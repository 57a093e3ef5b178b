// A real CNI runtime runs a container on a silkworm network through
// silkworm-cni: podman (Debian 12's podman 4.3) with its CNI network backend.
//
// How: a private containers.conf (network_backend = "cni", cni_plugin_dirs
// = a directory with a silkworm-cni symlink plus /usr/lib/cni,
// network_config_dir = a directory with one conflist whose plugin is
// silkworm-cni pointed at the lab's cell2), private --root/--runroot/--tmpdir
// storage, and `podman run --rootfs DIR` from a directory holding
// busybox-static — no image and no registry. The OCI runtime is runc: crun
// 1.8 refuses to start on a host whose cgroups are in hybrid mode with
// controllers on the v2 hierarchy ("cgroups in hybrid mode not supported").
// podman's default rlimits (nofile/nproc above the current hard limit) need
// CAP_SYS_RESOURCE, so the container gets explicit lower --ulimit values.
//
// The container (app "podApp", from the conflist) is refused by appA on cell1
// until a policy podApp → appA exists, then gets appA's answer; the cell
// records podman's container id while it runs; `podman rm` (CNI DEL) leaves
// no record, no interface and no namespace behind.
//
// Needs root and the packages podman, runc and busybox-static; skipped, with
// the reason in its name, when one is missing. podman names its network
// namespace itself (/run/netns/netns-<uuid>) and deletes it on rm.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cleanup, isRoot, labUp, REPO, RUN_DIR, run, silkwormJson, silkwormOk, uniquePrefix, waitFor, type Lab, type RunResult } from '../helpers/lab.js';

const P = uniquePrefix('q');
const BUSYBOX = '/bin/busybox';

function which(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const missing = [
  ...(which('podman') ? [] : ['podman']),
  ...(which('runc') ? [] : ['runc']),
  ...(fs.existsSync(BUSYBOX) ? [] : ['busybox-static']),
];
const why = !isRoot() ? 'needs root' : missing.length > 0 ? `needs the Debian packages ${missing.join(', ')} (apt-get install ${missing.join(' ')})` : '';

describe.skipIf(why !== '')(`podman runs a container on a silkworm network through silkworm-cni (prefix ${P})${why ? ` — skipped: ${why}` : ''}`, () => {
  let lab: Lab;
  let dir = '';
  const net = `${P}-net`;
  const name = `${P}-pod`;
  let podman: (args: string[], timeoutMs?: number) => Promise<RunResult>;

  beforeAll(async () => {
    lab = await labUp(P);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `${P}-podman-`));
    for (const d of ['cni-bin', 'net.d', 'root', 'runroot', 'tmp', 'rootfs/bin', 'rootfs/proc', 'rootfs/sys', 'rootfs/dev', 'rootfs/etc', 'rootfs/tmp']) {
      fs.mkdirSync(path.join(dir, d), { recursive: true });
    }
    fs.copyFileSync(BUSYBOX, path.join(dir, 'rootfs/bin/busybox'));
    fs.chmodSync(path.join(dir, 'rootfs/bin/busybox'), 0o755);
    fs.symlinkSync('busybox', path.join(dir, 'rootfs/bin/sh'));
    fs.symlinkSync(path.join(REPO, 'bin/silkworm-cni'), path.join(dir, 'cni-bin/silkworm-cni'));
    fs.writeFileSync(
      path.join(dir, 'containers.conf'),
      [
        '[network]',
        'network_backend = "cni"',
        `cni_plugin_dirs = ["${dir}/cni-bin", "/usr/lib/cni"]`,
        `network_config_dir = "${dir}/net.d"`,
        '',
        '[engine]',
        'runtime = "runc"',
        'cgroup_manager = "cgroupfs"',
        'events_logger = "file"',
        '',
      ].join('\n'),
    );
    fs.writeFileSync(
      path.join(dir, 'net.d', `${net}.conflist`),
      JSON.stringify({ cniVersion: '1.0.0', name: net, plugins: [{ type: 'silkworm-cni', cell: path.join(RUN_DIR, P, 'cell2.sock'), app: 'podApp' }] }, null, 2),
    );
    const env = { ...process.env, CONTAINERS_CONF: path.join(dir, 'containers.conf') };
    podman = (args, timeoutMs = 60_000) =>
      run('podman', ['--root', path.join(dir, 'root'), '--runroot', path.join(dir, 'runroot'), '--tmpdir', path.join(dir, 'tmp'), ...args], { env, timeoutMs });
  }, 90_000);

  afterAll(async () => {
    if (podman) await podman(['rm', '-f', '-t', '0', name], 30_000).catch(() => undefined);
    await cleanup(P);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }, 90_000);

  const containerList = () => silkwormJson<{ handle: string; ip: string; app: string; netns: string; ifname?: string; container_id?: string }[]>(['container', 'list', '--cell', 'cell2', '--lab', P]);
  const fetchAppA = () => podman(['exec', name, '/bin/busybox', 'sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 ${lab.appA.ip} 8080`], 30_000);

  it('podman lists the network with silkworm-cni as its driver', async () => {
    const r = await podman(['network', 'ls', '--format', '{{.Name}} {{.Driver}}']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`${net} silkworm-cni`);
  });

  it('the container gets eth0 with silk addressing; the cell records podman\'s container id', async () => {
    const r = await podman([
      'run', '-d', '--name', name, '--network', net,
      '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024',
      '--rootfs', path.join(dir, 'rootfs'), '/bin/busybox', 'sleep', '300',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim().split('\n').pop()!;
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const rec = (await containerList()).find((c) => c.container_id === id);
    expect(rec, 'cell2 has a record with podman\'s container id').toBeDefined();
    expect(rec).toMatchObject({ app: 'podApp', ifname: 'eth0' });
    expect(rec!.netns).toMatch(/^\/run\/netns\//);
    const addr = await podman(['exec', name, '/bin/busybox', 'ip', 'addr', 'show', 'eth0']);
    expect(addr.stdout).toContain(`inet ${rec!.ip} peer 169.254.0.1/32`);
    const route = await podman(['exec', name, '/bin/busybox', 'ip', 'route']);
    expect(route.stdout).toContain('default via 169.254.0.1 dev eth0');
  }, 90_000);

  it('it reaches appA across the cells only under a policy podApp → appA', async () => {
    const before = await fetchAppA();
    expect(before.stdout).not.toContain('appA');
    expect(before.stderr).toMatch(/refused/i); // cell1 rejects with ICMP port unreachable
    await silkwormOk(['policy', 'add', 'podApp', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
    const after = await waitFor('appA to answer the podman container', async () => {
      const r = await fetchAppA();
      return r.stdout.includes(`appA ${lab.appA.ip}`) ? r : undefined;
    }, 15_000, 300);
    expect(after.stdout).toMatch(/^HTTP\/1\.1 200/);
  }, 90_000);

  it('podman rm (CNI DEL) leaves no record and no namespace behind', async () => {
    const rec = (await containerList()).find((c) => c.app === 'podApp')!;
    const rm = await podman(['rm', '-f', '-t', '0', name]);
    expect(rm.code, rm.stderr).toBe(0);
    expect((await containerList()).filter((c) => c.app === 'podApp')).toEqual([]);
    expect(fs.existsSync(rec.netns)).toBe(false);
  }, 60_000);
});
