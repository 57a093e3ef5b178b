// silkworm-cni driven exactly as a container runtime drives a CNI plugin:
// bin/silkworm-cni executed with CNI_* in its environment and the network
// configuration on stdin, its stdout and exit code read back. Against a real
// lab (prefix `e<pid>k`): ADD gives the namespace CNI_IFNAME with silk's
// addressing, and curl to appA works only under a policy for the app id from
// each of its three sources; CHECK passes, then fails once the address is
// removed by hand; DEL twice succeeds; VERSION; every error path gives the
// spec's error shape and a non-zero exit and changes nothing; host-local
// (containernetworking-plugins) hands out addresses from the cell's lease and
// DEL returns them; 20 concurrent ADDs get 20 distinct, reachable addresses
// and 20 DELs leave nothing behind; 1.1.0's STATUS and GC with host-local.
//
// Root only. Every namespace made here is `<prefix>-…` and is deleted in afterAll.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { cleanup, curl, ipSync, isRoot, labUp, listLinks, listNetns, macOf, REPO, RUN_DIR, run, silkwormJson, silkwormOk, uniquePrefix, waitFor, type Lab, type RunResult } from '../helpers/lab.js';

const P = uniquePrefix('k');
const PLUGIN = path.join(REPO, 'bin/silkworm-cni');
const HOST_LOCAL = '/usr/lib/cni/host-local';
const CNI_PATH = `${path.join(REPO, 'bin')}:/usr/lib/cni`;
const N_CONCURRENT = 20;
const made: string[] = [];

interface CniRun extends RunResult {
  json: Record<string, unknown> | null;
}

/** One plugin execution as a runtime does it: a clean environment, stdin, stdout. */
async function cni(command: string, vars: Record<string, string>, conf: unknown): Promise<CniRun> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, CNI_COMMAND: command, CNI_PATH, ...vars };
  const r = await run(PLUGIN, [], { env, input: typeof conf === 'string' ? conf : JSON.stringify(conf), timeoutMs: 30_000 });
  let json: Record<string, unknown> | null = null;
  try {
    json = r.stdout.trim() ? JSON.parse(r.stdout) : null;
  } catch {
    json = null;
  }
  return { ...r, json };
}

function netns(name: string): { name: string; path: string } {
  const full = `${P}-${name}`;
  ipSync(['netns', 'add', full]);
  made.push(full);
  return { name: full, path: `/run/netns/${full}` };
}

describe.skipIf(!isRoot())(`silkworm-cni as a runtime runs it (prefix ${P})`, () => {
  let lab: Lab;
  let cell2Sock = '';
  const conf = (extra: object = {}) => ({ cniVersion: '1.0.0', name: `${P}-net`, type: 'silkworm-cni', cell: cell2Sock, ...extra });
  const cellList = () => silkwormJson<{ handle: string; ip: string; container_id?: string; ifname?: string; netns: string; app: string }[]>(['container', 'list', '--cell', 'cell2', '--lab', P]);

  beforeAll(async () => {
    lab = await labUp(P);
    cell2Sock = path.join(RUN_DIR, P, 'cell2.sock');
  }, 90_000);

  afterAll(async () => {
    await cleanup(P, made);
  }, 90_000);

  it('the lab itself attached appA and appB through silkworm-cni; lab status shows the CNI container ids', async () => {
    expect(lab.status.containers.map((c) => [c.app, (c as { containerId?: string }).containerId])).toEqual([
      ['appA', `${P}-appA-0`],
      ['appB', `${P}-appB-0`],
    ]);
    expect(fs.existsSync(path.join(RUN_DIR, P, 'cni', 'cell1.conflist'))).toBe(true);
    const text = await silkwormOk(['lab', 'status', '--prefix', P]);
    expect(text).toMatch(/CNI CONTAINER ID/);
    expect(text).toContain(`${P}-appA-0`);
  });

  it('VERSION lists 0.4.0, 1.0.0 and 1.1.0', async () => {
    const r = await cni('VERSION', {}, { cniVersion: '1.0.0' });
    expect(r.code).toBe(0);
    expect(r.json).toEqual({ cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  // The three sources of the app id, each with its own policy: curl to appA
  // is refused before the policy and answered after it.
  const sources: { app: string; ifname: string; vars: (id: string) => Record<string, string>; extra: object }[] = [
    { app: 'cniMeta', ifname: 'eth0', vars: () => ({}), extra: { app: 'ignored', runtimeConfig: { metadata: { policy_group_id: 'cniMeta' } } } },
    { app: 'cniArgs', ifname: 'net1', vars: () => ({ CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=x;SILKWORM_APP=cniArgs' }), extra: { app: 'ignored' } },
    { app: 'cniConf', ifname: 'eth0', vars: () => ({}), extra: { app: 'cniConf' } },
  ];
  for (const s of sources) {
    it(`ADD with the app id from ${s.app === 'cniMeta' ? 'runtimeConfig' : s.app === 'cniArgs' ? 'CNI_ARGS' : 'the config'}: ${s.ifname} with silk's addressing; curl to appA only under a policy for ${s.app}`, async () => {
      const ns = netns(s.app);
      const id = `${P}-${s.app}-id`;
      const add = await cni('ADD', { CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: s.ifname, ...s.vars(id) }, conf(s.extra));
      expect(add.code, add.stdout + add.stderr).toBe(0);
      const res = add.json as { cniVersion: string; interfaces: { name: string; mac: string; sandbox: string }[]; ips: { address: string; gateway: string; interface: number }[]; routes: unknown[] };
      expect(res.cniVersion).toBe('1.0.0');
      const ip = res.ips[0]!.address.replace('/32', '');
      expect(ip).toMatch(/^10\.255\.2\.\d+$/);
      expect(res.interfaces).toEqual([{ name: s.ifname, mac: macOf('ee:ee', ip), sandbox: ns.path }]);
      expect(res.ips).toEqual([{ address: `${ip}/32`, gateway: '169.254.0.1', interface: 0 }]);
      expect(res.routes).toEqual([{ dst: '0.0.0.0/0', gw: '169.254.0.1' }]);
      // In the namespace: CNI_IFNAME, the MAC, "ip peer 169.254.0.1/32", the default route, the permanent neighbor.
      const addr = ipSync(['-n', ns.name, 'addr', 'show', 'dev', s.ifname]);
      expect(addr).toContain(`link/ether ${macOf('ee:ee', ip)}`);
      expect(addr).toContain(`inet ${ip} peer 169.254.0.1/32`);
      expect(addr).toMatch(/NOARP/);
      expect(ipSync(['-n', ns.name, 'route', 'show', 'default']).trim()).toBe(`default via 169.254.0.1 dev ${s.ifname} src ${ip}`);
      expect(ipSync(['-n', ns.name, 'neigh', 'show', '169.254.0.1'])).toContain(`lladdr ${macOf('aa:aa', ip)} PERMANENT`);
      // The cell's record carries the CNI identity; `container list` says so.
      const rec = (await cellList()).find((c) => c.container_id === id);
      expect(rec).toMatchObject({ app: s.app, ip, ifname: s.ifname, netns: ns.path, handle: id });

      const url = `http://${lab.appA.ip}:8080/`;
      const before = await curl(ns.name, url, 3);
      expect(before.code, 'refused without a policy').toBe(7);
      await silkwormOk(['policy', 'add', s.app, 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
      const after = await waitFor(`appA to answer ${s.app}`, async () => {
        const r = await curl(ns.name, url, 3);
        return r.code === 0 ? r : undefined;
      }, 8000, 200);
      expect(after.body.trim()).toBe(`appA ${lab.appA.ip}`);
    }, 60_000);
  }

  it('CHECK passes, then fails once the address is removed by hand; DEL twice succeeds and leaves nothing', async () => {
    const ns = netns('chk');
    const id = `${P}-chk-id`;
    const vars = { CNI_CONTAINERID: id, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' };
    // "mtu" below the cell's (1450) is applied to the interface; CHECK compares it too.
    const add = await cni('ADD', vars, conf({ app: 'cniChk', mtu: 1400 }));
    expect(add.code, add.stdout).toBe(0);
    const ip = (add.json!.ips as { address: string }[])[0]!.address.replace('/32', '');
    expect(ipSync(['-n', ns.name, 'link', 'show', 'dev', 'eth0'])).toMatch(/ mtu 1400 /);
    const withPrev = conf({ app: 'cniChk', mtu: 1400, prevResult: add.json });
    const ok = await cni('CHECK', vars, withPrev);
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout.trim()).toBe('');
    ipSync(['-n', ns.name, 'addr', 'del', ip, 'peer', '169.254.0.1/32', 'dev', 'eth0']);
    const bad = await cni('CHECK', vars, withPrev);
    expect(bad.code).not.toBe(0);
    expect(bad.json).toMatchObject({ cniVersion: '1.0.0', code: 105 });
    expect(String(bad.json!.msg)).toContain(`no address ${ip}`);
    for (let i = 0; i < 2; i++) {
      const del = await cni('DEL', vars, withPrev);
      expect(del.code, `DEL #${i + 1}: ${del.stdout}`).toBe(0);
      expect(del.stdout.trim()).toBe('');
    }
    expect((await cellList()).some((c) => c.container_id === id)).toBe(false);
    expect(listLinks(ns.name)).toEqual(['lo']);
    // After DEL, CHECK says the container is unknown (code 3).
    expect((await cni('CHECK', vars, withPrev)).json).toMatchObject({ code: 3 });
    // DEL for a namespace that is gone is success too.
    ipSync(['netns', 'del', ns.name]);
    expect((await cni('DEL', vars, withPrev)).code).toBe(0);
  }, 60_000);

  it('each error path (bad JSON, missing env, unknown cell, no app id) gives the spec error shape, exits non-zero, changes nothing', async () => {
    const ns = netns('err');
    const vars = { CNI_CONTAINERID: `${P}-err-id`, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' };
    const before = await cellList();
    const cases: [string, Record<string, string>, unknown, number][] = [
      ['bad JSON', vars, '{"cniVersion": "1.0.0", "name": ', 6],
      ['missing CNI_NETNS', { ...vars, CNI_NETNS: '' }, conf({ app: 'x' }), 4],
      ['missing CNI_CONTAINERID', { ...vars, CNI_CONTAINERID: '' }, conf({ app: 'x' }), 4],
      ['unknown cell', vars, conf({ app: 'x', cell: path.join(RUN_DIR, P, 'cell9.sock') }), 100],
      ['no app id', vars, conf(), 103],
    ];
    for (const [what, v, c, code] of cases) {
      const r = await cni('ADD', v, c);
      expect(r.code, what).not.toBe(0);
      expect(r.json, `${what}: ${r.stdout}`).not.toBeNull();
      expect(Object.keys(r.json!).sort(), what).toEqual(expect.arrayContaining(['cniVersion', 'code', 'msg']));
      expect(r.json!.code, what).toBe(code);
      expect(r.json!.cniVersion, what).toBe('1.0.0');
      expect(listLinks(ns.name), what).toEqual(['lo']);
    }
    expect(await cellList()).toEqual(before);
  }, 60_000);

  it.skipIf(!fs.existsSync(HOST_LOCAL))('ipam host-local: the address comes from the cell\'s lease (not one the cell already gave out), DEL returns it', async () => {
    const dataDir = path.join(RUN_DIR, P, 'ipam');
    const ipamConf = conf({ app: 'cniIpam', name: `${P}-hl`, ipam: { type: 'host-local', dataDir } });
    const store = path.join(dataDir, `${P}-hl`);
    const ns = netns('ipam');
    const vars = { CNI_CONTAINERID: `${P}-ipam-id`, CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' };
    const taken = new Set((await cellList()).map((c) => c.ip));
    const add = await cni('ADD', vars, ipamConf);
    expect(add.code, add.stdout + add.stderr).toBe(0);
    const ip = (add.json!.ips as { address: string }[])[0]!.address.replace('/32', '');
    expect(ip).toMatch(/^10\.255\.2\.\d+$/); // cell2's lease
    expect(taken.has(ip)).toBe(false);
    expect(fs.readFileSync(path.join(store, ip), 'utf8')).toContain(`${P}-ipam-id`); // host-local's reservation
    expect((await cellList()).find((c) => c.container_id === `${P}-ipam-id`)?.ip).toBe(ip);
    expect(ipSync(['-n', ns.name, 'addr', 'show', 'dev', 'eth0'])).toContain(`inet ${ip} peer 169.254.0.1/32`);
    // CHECK delegates to host-local's CHECK too.
    const chk = await cni('CHECK', vars, { ...ipamConf, prevResult: add.json });
    expect(chk.code, chk.stdout).toBe(0);
    const del = await cni('DEL', vars, { ...ipamConf, prevResult: add.json });
    expect(del.code, del.stdout).toBe(0);
    expect(fs.existsSync(path.join(store, ip))).toBe(false); // returned
    expect(listLinks(ns.name)).toEqual(['lo']);
  }, 60_000);

  it(`${N_CONCURRENT} concurrent ADDs on one cell: ${N_CONCURRENT} distinct addresses, all reachable; ${N_CONCURRENT} DELs leave nothing`, async () => {
    const nss = Array.from({ length: N_CONCURRENT }, (_, i) => netns(`m${i}`));
    const id = (i: number) => `${P}-many-${i}`;
    const t0 = performance.now();
    const adds = await Promise.all(nss.map((ns, i) => cni('ADD', { CNI_CONTAINERID: id(i), CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }, conf({ app: 'cniMany' }))));
    const addMs = performance.now() - t0;
    for (const a of adds) expect(a.code, a.stdout).toBe(0);
    const ips = adds.map((a) => (a.json!.ips as { address: string }[])[0]!.address.replace('/32', ''));
    expect(new Set(ips).size).toBe(N_CONCURRENT);
    const recs = (await cellList()).filter((c) => c.app === 'cniMany');
    expect(recs.map((c) => c.ip).sort()).toEqual([...ips].sort());
    expect(new Set(recs.map((c) => c.handle)).size).toBe(N_CONCURRENT);
    // Reachable: each one gets appA's answer under one policy (out across the
    // overlay and back through conntrack), a few at a time.
    await silkwormOk(['policy', 'add', 'cniMany', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
    await waitFor('the policy to reach cell1', async () => ((await curl(nss[0]!.name, `http://${lab.appA.ip}:8080/`, 3)).code === 0 ? true : undefined), 8000, 200);
    for (let k = 0; k < nss.length; k += 5) {
      const got = await Promise.all(nss.slice(k, k + 5).map((ns) => curl(ns.name, `http://${lab.appA.ip}:8080/`, 5)));
      for (const g of got) expect(g.body.trim(), g.stderr).toBe(`appA ${lab.appA.ip}`);
    }
    const t1 = performance.now();
    const dels = await Promise.all(nss.map((ns, i) => cni('DEL', { CNI_CONTAINERID: id(i), CNI_NETNS: ns.path, CNI_IFNAME: 'eth0' }, conf())));
    const delMs = performance.now() - t1;
    for (const d of dels) expect(d.code, d.stdout).toBe(0);
    expect((await cellList()).filter((c) => c.app === 'cniMany')).toEqual([]);
    for (const ns of nss) expect(listLinks(ns.name)).toEqual(['lo']);
    // No TAP of theirs is left in the cell's namespace either.
    const cellLinks = listLinks(lab.ns.cell2);
    for (const ip of ips) expect(cellLinks.some((l) => l.startsWith(`s-${ip.split('.').map((o) => o.padStart(3, '0')).join('')}`))).toBe(false);
    console.log(`silkworm-cni: ${N_CONCURRENT} concurrent ADDs in ${addMs.toFixed(0)} ms, ${N_CONCURRENT} concurrent DELs in ${delMs.toFixed(0)} ms`);
  }, 120_000);

  it.skipIf(!fs.existsSync(HOST_LOCAL))('CNI 1.1.0 with host-local (which stops at 1.0.0): STATUS is ready; GC removes the attachment not listed as valid, its interface and its reservation, and nothing else', async () => {
    const dataDir = path.join(RUN_DIR, P, 'ipam');
    const name = `${P}-gc`;
    const c11 = conf({ cniVersion: '1.1.0', app: 'cniGc', name, ipam: { type: 'host-local', dataDir } });
    const store = path.join(dataDir, name);
    const st = await cni('STATUS', {}, c11);
    expect(st.code, st.stdout + st.stderr).toBe(0);
    expect(st.stdout).toBe('');
    expect(st.stderr).toMatch(/host-local speaks CNI 1\.0\.0, which has no STATUS/);
    const nss = [netns('gc1'), netns('gc2')];
    const ids = [`${P}-gc1-id`, `${P}-gc2-id`];
    const ips: string[] = [];
    for (let i = 0; i < 2; i++) {
      const add = await cni('ADD', { CNI_CONTAINERID: ids[i]!, CNI_NETNS: nss[i]!.path, CNI_IFNAME: 'eth0' }, c11);
      expect(add.code, add.stdout + add.stderr).toBe(0);
      expect(add.json!.cniVersion).toBe('1.1.0');
      const iface = (add.json!.interfaces as { mtu?: number }[])[0]!;
      expect(iface.mtu).toBe(Number(ipSync(['-n', nss[i]!.name, '-j', 'link', 'show', 'dev', 'eth0']).match(/"mtu":(\d+)/)![1]));
      ips.push((add.json!.ips as { address: string }[])[0]!.address.replace('/32', ''));
      expect(fs.existsSync(path.join(store, ips[i]!))).toBe(true);
    }
    const othersBefore = (await cellList()).filter((x) => !ids.includes(x.container_id ?? '')).map((x) => x.handle).sort();
    const gc = await cni('GC', {}, { ...c11, 'cni.dev/valid-attachments': [{ containerID: ids[0], ifname: 'eth0' }] });
    expect(gc.code, gc.stdout + gc.stderr).toBe(0);
    expect(gc.stdout).toBe('');
    const after = await cellList();
    expect(after.find((x) => x.container_id === ids[1])).toBeUndefined();
    expect(after.find((x) => x.container_id === ids[0])?.ip).toBe(ips[0]);
    expect(after.filter((x) => !ids.includes(x.container_id ?? '')).map((x) => x.handle).sort()).toEqual(othersBefore);
    expect(listLinks(nss[1]!.name)).toEqual(['lo']);
    expect(fs.existsSync(path.join(store, ips[1]!))).toBe(false); // released through host-local's DEL
    expect(fs.existsSync(path.join(store, ips[0]!))).toBe(true);
    const del = await cni('DEL', { CNI_CONTAINERID: ids[0]!, CNI_NETNS: nss[0]!.path, CNI_IFNAME: 'eth0' }, c11);
    expect(del.code, del.stdout).toBe(0);
    expect(fs.existsSync(path.join(store, ips[0]!))).toBe(false);
    expect(listLinks(nss[0]!.name)).toEqual(['lo']);
  }, 60_000);

  it('leaves no namespace of its own behind once cleaned up', async () => {
    await cleanup(P, made);
    expect(listNetns().filter((n) => n.startsWith(`${P}-`))).toEqual([]);
  }, 90_000);
});
