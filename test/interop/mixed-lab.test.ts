// The kernel as a peer, as root: a mixed lab — cell1 runs
// silkworm, cell2 is programmed into the kernel (`--dataplane kernel`) — and
// the two must interoperate on the wire exactly as two silk cells would.
// Skipped without root. Uses its own prefix, never a running lab's.
//
// Runs the built CLI (bin/silkworm.js → dist/): `npm test` builds first. Set
// SILKWORM_ROOT to run against another build tree.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labDown, labStatus, labUp } from '../../src/lab/lab.js';
import { listNetns } from '../../src/lab/netns.js';
import { realRunner, packageRoot } from '../../src/lab/runner.js';
import { readState } from '../../src/lab/state.js';
import { ControllerClient } from '../../src/net/controller-client.js';
import { httpJson } from '../../src/net/http.js';
import { parseAddress } from '../../src/cli/util.js';
import { renderIptables } from '../../src/policy/planner.js';
import { ipToU32 } from '../../src/util/ip.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const have = (cmd: string) => ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => fs.existsSync(path.join(d, cmd)));
const ready = isRoot && have('tshark') && have('curl') && have('ethtool') && have('iptables');
const P = `k${process.pid % 100000}`;
const ROOT = process.env.SILKWORM_ROOT ?? packageRoot();
const PORT = 8080;

function sh(cmd: string, args: string[], timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
const curl = (fromNs: string, ip: string) => sh('ip', ['netns', 'exec', fromNs, 'curl', '-s', '--max-time', '3', `http://${ip}:${PORT}/`]);

async function admin(cell: string, what: string): Promise<any> {
  const res = await httpJson(parseAddress(`/run/silkworm/${P}/${cell}.sock`), 'GET', what);
  expect(res.status).toBe(200);
  return res.body;
}
const policy = (src: string, dst: string) => ({ source: { id: src }, destination: { id: dst, protocol: 'tcp' as const, ports: { start: PORT, end: PORT } } });

/** Wait until both cells enforce `n` accept rules (the watch reached them). */
async function waitAccepts(n: { cell1: number; cell2: number }): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const a = (await admin('cell1', '/rules')).accepts.length;
    const b = (await admin('cell2', '/rules')).accepts.length;
    if (a === n.cell1 && b === n.cell2) return;
    if (Date.now() > deadline) throw new Error(`rules did not converge: cell1 ${a}, cell2 ${b}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!ready)('mixed lab: silkworm cell1 ↔ kernel cell2', () => {
  let ipA = '';
  let ipB = '';
  let ctl: ControllerClient;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-interop-'));

  beforeAll(async () => {
    await labDown(P).catch(() => undefined);
    const up = await labUp({
      prefix: P,
      underlayBase: '198.18.7.11/24',
      dataplane: 'mixed',
      runner: realRunner({ silkworm: path.join(ROOT, 'bin', 'silkworm.js'), appServer: path.join(ROOT, 'dist', 'lab', 'app-server.js') }),
      timeoutMs: 20_000,
    });
    ipA = up.state.containers.find((c) => c.app === 'appA')!.ip;
    ipB = up.state.containers.find((c) => c.app === 'appB')!.ip;
    ctl = new ControllerClient(parseAddress(up.plan.controller.socket));
  });

  afterAll(async () => {
    await labDown(P).catch(() => undefined);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('records the mode: cell1 user, cell2 kernel, in state.json and status', async () => {
    const st = readState(P)!;
    expect(st.dataplane).toBe('mixed');
    expect(st.cells.map((c) => [c.name, c.dataplane])).toEqual([['cell1', 'user'], ['cell2', 'kernel']]);
    const s = await labStatus(P);
    expect(s.up).toBe(true);
    expect(s.dataplane).toBe('mixed');
    expect((await admin('cell2', '/status')).dataplane).toBe('kernel');
    expect((await admin('cell2', '/fdb')).lines).toEqual(['ee:ee:0a:ff:01:00 dst 198.18.7.11 self permanent'.replace('0a:ff:01:00', macTail(ipA))]);
  });

  it('refuses both directions without a policy (REJECT: curl exits 7 at once, not a timeout)', async () => {
    expect((await curl(`${P}-appA-0`, ipB)).code).toBe(7);
    expect((await curl(`${P}-appB-0`, ipA)).code).toBe(7);
  });

  it('passes each direction only under its own policy, and each side counts the tag the other stamped', async () => {
    await ctl.addPolicies([policy('appA', 'appB')]);
    await waitAccepts({ cell1: 0, cell2: 1 });
    const k0 = (await admin('cell2', '/rules')).accepts[0].hits as number;
    const r1 = await curl(`${P}-appA-0`, ipB);
    expect(r1.code).toBe(0);
    expect(r1.stdout).toBe(`appB ${ipB}\n`);
    // The kernel's mark-match rule was hit by packets whose GBP silkworm stamped.
    expect((await admin('cell2', '/rules')).accepts[0].hits).toBeGreaterThan(k0);
    expect((await curl(`${P}-appB-0`, ipA)).code).toBe(7); // the other way still needs its policy

    await ctl.addPolicies([policy('appB', 'appA')]);
    await waitAccepts({ cell1: 1, cell2: 1 });
    const u0 = (await admin('cell1', '/rules')).accepts[0].hits as number;
    const r2 = await curl(`${P}-appB-0`, ipA);
    expect(r2.code).toBe(0);
    expect(r2.stdout).toBe(`appA ${ipA}\n`);
    // silkworm's policy was hit by packets whose GBP the kernel stamped.
    expect((await admin('cell1', '/rules')).accepts[0].hits).toBeGreaterThan(u0);
  });

  it('applies in the kernel exactly the rules the userspace planner renders', async () => {
    const r = await admin('cell2', '/rules');
    const tags = Object.fromEntries((await ctl.tags()).map((t) => [t.id, parseInt(t.tag, 16)]));
    const planned = renderIptables(
      {
        marks: [{ ip: ipToU32(ipB), app: 'appB', tag: tags.appB! }],
        accepts: [{ dstIp: ipToU32(ipB), dstApp: 'appB', srcApp: 'appA', tag: tags.appA!, protocol: 6, portStart: PORT, portEnd: PORT }],
      },
      r.chain,
    );
    expect(r.lines).toEqual(planned); // read back with `iptables -S`
    expect(r.forward).toEqual(['-P FORWARD ACCEPT', `-A FORWARD -j ${r.chain}`, '-A FORWARD -o s-+ -j overlay']);
  });

  it('looks the same on the wire both ways: tshark shows the same VXLAN-GBP layout and inner frame shape', async () => {
    const pcap = path.join(tmp, 'underlay.pcap');
    const ts = spawn('ip', ['netns', 'exec', `${P}-underlay`, 'tshark', '-ni', 'br0', '-f', 'udp port 4789', '-w', pcap], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    ts.stderr.on('data', (d) => (err += String(d)));
    const deadline = Date.now() + 15_000;
    while (!err.includes('Capturing on') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(err).toContain('Capturing on');
    await new Promise((r) => setTimeout(r, 300));
    expect((await curl(`${P}-appA-0`, ipB)).code).toBe(0);
    expect((await curl(`${P}-appB-0`, ipA)).code).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    ts.kill('SIGINT');
    await new Promise((r) => ts.once('exit', r));
    const fields = ['ip.src', 'ip.dst', 'ip.ttl', 'vxlan.flags', 'vxlan.gbp', 'vxlan.vni', 'eth.src', 'eth.dst', 'tcp.flags'];
    const out = await sh('tshark', ['-r', pcap, '-d', 'udp.port==4789,vxlan', '-T', 'fields', '-E', 'occurrence=a', ...fields.flatMap((f) => ['-e', f])]);
    expect(out.code).toBe(0);
    const rows = out.stdout.trim().split('\n').map((l) => {
      const v = l.split('\t');
      const two = (i: number) => (v[i] ?? '').split(','); // outer,inner (tshark's default aggregator)
      return {
        outerSrc: two(0)[0], innerSrc: two(0)[1], innerDst: two(1)[1], outerTtl: two(2)[0], innerTtl: two(2)[1],
        flags: v[3], gbp: v[4], vni: v[5], innerEthSrc: two(6)[1], innerEthDst: two(7)[1], tcpFlags: v[8],
      };
    });
    // The first SYN of each direction: A→B was encapsulated by silkworm, B→A by the kernel.
    // tcp.flags prints as 0x002 or 0x0002 depending on the tshark version: compare the number.
    const syn = (src: string) => rows.find((r) => r.innerSrc === src && Number(r.tcpFlags) === 0x02);
    const bySilkworm = syn(ipA)!;
    const byKernel = syn(ipB)!;
    expect(bySilkworm, JSON.stringify(rows)).toBeDefined();
    expect(byKernel, JSON.stringify(rows)).toBeDefined();
    const tags = Object.fromEntries((await ctl.tags()).map((t) => [t.id, parseInt(t.tag, 16)]));
    expect(bySilkworm.outerSrc).toBe('198.18.7.11');
    expect(byKernel.outerSrc).toBe('198.18.7.12');
    // Same flags (G|I, no D/A), same VNI, Group Policy ID = the source app's tag.
    expect(byKernel.flags).toBe('0x8800');
    expect(bySilkworm.flags).toBe(byKernel.flags);
    expect(bySilkworm.vni).toBe('1');
    expect(byKernel.vni).toBe(bySilkworm.vni);
    expect(Number(bySilkworm.gbp)).toBe(tags.appA);
    expect(Number(byKernel.gbp)).toBe(tags.appB);
    // Inner frame shape: VTEP MACs (dst remote VTEP, src local VTEP), TTL 63 after one cell, outer TTL 64.
    expect(bySilkworm.innerEthSrc).toBe(`ee:ee:${macTail(ipA)}`);
    expect(bySilkworm.innerEthDst).toBe(`ee:ee:${macTail(ipB)}`);
    expect(byKernel.innerEthSrc).toBe(`ee:ee:${macTail(ipB)}`);
    expect(byKernel.innerEthDst).toBe(`ee:ee:${macTail(ipA)}`);
    expect(bySilkworm.innerTtl).toBe('63');
    expect(byKernel.innerTtl).toBe(bySilkworm.innerTtl);
    expect(byKernel.outerTtl).toBe('64');
    expect(bySilkworm.outerTtl).toBe(byKernel.outerTtl);
  });

  it('removing a policy makes the kernel REJECT one way and silkworm REJECT the other', async () => {
    const rejected0 = (await admin('cell2', '/counters')).drops['policy-denied'] as number;
    await ctl.deletePolicies([policy('appA', 'appB')]);
    await waitAccepts({ cell1: 1, cell2: 0 });
    expect((await curl(`${P}-appA-0`, ipB)).code).toBe(7);
    expect((await admin('cell2', '/counters')).drops['policy-denied']).toBeGreaterThan(rejected0);
    expect((await curl(`${P}-appB-0`, ipA)).code).toBe(0);

    const denied0 = (await admin('cell1', '/counters')).drops['policy-denied'] as number;
    await ctl.deletePolicies([policy('appB', 'appA')]);
    await waitAccepts({ cell1: 0, cell2: 0 });
    expect((await curl(`${P}-appB-0`, ipA)).code).toBe(7);
    expect((await admin('cell1', '/counters')).drops['policy-denied']).toBeGreaterThan(denied0);
  });

  it('lab down removes the kernel cell with everything it made', async () => {
    await labDown(P);
    expect(listNetns().filter((n) => n.startsWith(`${P}-`))).toEqual([]);
    const root = await sh('ip', ['-o', 'link', 'show']);
    expect(root.stdout).not.toMatch(/silk-vtep|s-0102550/);
  });
});

/** "10.255.1.0" of the container's lease → "0a:ff:01:00" (the VTEP MAC's tail). */
function macTail(containerIp: string): string {
  const [a, b, c] = containerIp.split('.').map(Number);
  return [a!, b!, c!, 0].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
