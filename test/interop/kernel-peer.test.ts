// A kernel silk cell built by hand next to a userspace lab, as root: a
// namespace P-kpeer with a veth on the lab's underlay bridge, a lease taken
// through the controller's lease API (PUT /leases/acquire, curl on the unix
// socket), and silk's layout made with `ip`, `bridge` and `iptables` only —
// silk-vtep (vxlan gbp, nolearning), per remote lease a route, a permanent
// neighbor and an FDB entry, a container P-kapp on a veth `s-<ip>`, the
// vxlan-policy-agent chains (MARK by source, ACCEPT by mark, REJECT) —
// with every offload left at its default. Its kernel leaves the inner
// TCP/UDP checksums partial (CHECKSUM_PARTIAL over veth) and hands bulk TCP
// over as UDP-tunnel super-packets; curl must pass both ways under policy, a
// 20 MiB transfer kernel → user must arrive whole, and a datagram with a
// genuinely wrong inner checksum must still be dropped by the container's
// stack.
//
// Runs the built CLI (bin/silkworm.js → dist/). Own prefix; everything it
// makes is inside namespaces it names, and cleanup deletes them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ipToU32, formatMac, macFromIp, silkIfName, u32ToIp } from '../../src/util/ip.js';
import { pseudoHeaderSum } from '../../src/wire/checksum.js';
import { ipPacket, vxlanPayload } from '../helpers/packets.js';
import {
  background,
  cellGet,
  cleanup,
  curl,
  inNetns,
  isRoot,
  labUp,
  REPO,
  RUN_DIR,
  run,
  silkwormOk,
  sleep,
  uniquePrefix,
  waitFor,
  type Background,
  type Lab,
} from '../helpers/lab.js';

const have = (cmd: string) => ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => fs.existsSync(path.join(d, cmd)));
const ready = isRoot() && have('curl') && have('iptables') && have('bridge');
const prefix = uniquePrefix('kp');
const KNS = `${prefix}-kpeer`;
const KAPP = `${prefix}-kapp`;
const PORT = 8080;
const UDP_PORT = 5000;
const APP_SERVER = path.join(REPO, 'dist', 'lab', 'app-server.js');

interface Lease {
  underlay_ip: string;
  overlay_subnet: string;
  overlay_hardware_addr: string;
}

let lab: Lab;
let lease: Lease;
let kip = '';
let peerUnderlay = '';
const procs: Background[] = [];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-kpeer-'));

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}
const ip = (...args: string[]) => must('ip', args);
const inK = (cmd: string, ...args: string[]) => must('ip', ['netns', 'exec', KNS, cmd, ...args]);

/** The controller's HTTP API over its unix socket, with curl, as an operator would. */
async function controller(method: string, urlPath: string, body?: unknown): Promise<any> {
  const sock = path.join(RUN_DIR, prefix, 'controller.sock');
  const args = ['-s', '--max-time', '10', '--unix-socket', sock, '-X', method, '-H', 'content-type: application/json'];
  if (body !== undefined) args.push('-d', JSON.stringify(body));
  const out = await must('curl', [...args, `http://controller${urlPath}`]);
  return JSON.parse(out);
}

/** The kernel peer's policy, as vxlan-policy-agent writes it, from the controller's tags. */
async function programPolicy(accepts: { srcApp: string; proto: 'tcp' | 'udp'; port: number }[]): Promise<void> {
  const tags: Record<string, number> = {};
  for (const t of (await controller('GET', '/networking/v1/external/tags')).tags as { id: string; tag: string }[]) tags[t.id] = parseInt(t.tag, 16);
  const lines = ['*filter', ':vpa--1 - [0:0]', ':overlay - [0:0]', '-F vpa--1', '-F overlay'];
  if (tags.appK !== undefined) lines.push(`-A vpa--1 -s ${kip}/32 -j MARK --set-xmark 0x${tags.appK.toString(16)}/0xffffffff`);
  for (const a of accepts) {
    lines.push(`-A vpa--1 -d ${kip}/32 -p ${a.proto} -m ${a.proto} --dport ${a.port} -m mark --mark 0x${tags[a.srcApp]!.toString(16)} -j ACCEPT`);
  }
  lines.push('-A overlay -m state --state RELATED,ESTABLISHED -j ACCEPT', '-A overlay -j REJECT --reject-with icmp-port-unreachable', 'COMMIT', '');
  const r = await run('ip', ['netns', 'exec', KNS, 'iptables-restore', '--noflush'], { input: lines.join('\n'), timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`iptables-restore: ${r.stderr}`);
}

/** Wait until a silkworm cell enforces `n` accept rules. */
async function waitRules(cell: string, n: number): Promise<void> {
  await waitFor(`${cell} to enforce ${n} accept rules`, async () => ((await cellGet<{ accepts: unknown[] }>(prefix, cell, '/rules')).accepts.length === n ? true : undefined), 10_000, 100);
}

function fold16(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** Udp counters of a namespace's stack (/proc/net/snmp is per network namespace). */
async function udpSnmp(ns: string): Promise<Record<string, number>> {
  const out = (await inNetns(ns, 'cat', ['/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Udp:'));
  const names = out[0]!.split(/\s+/).slice(1);
  const vals = out[1]!.split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(names.map((n, i) => [n, vals[i]!]));
}

describe.skipIf(!ready)(`a kernel silk peer built by hand (prefix ${prefix})`, () => {
  beforeAll(async () => {
    await cleanup(prefix, [KNS, KAPP]);
    lab = await labUp(prefix);
    const cell1 = lab.cellIp.cell1!;
    peerUnderlay = cell1.replace(/\.\d+$/, '.13');

    // The host: a veth on the lab's underlay bridge, default offloads.
    await ip('netns', 'add', KNS);
    await ip('netns', 'add', KAPP);
    await ip('-n', lab.ns.underlay, 'link', 'add', `${prefix}-kp`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', KNS);
    await ip('-n', lab.ns.underlay, 'link', 'set', `${prefix}-kp`, 'master', 'br0', 'up');
    await ip('-n', KNS, 'addr', 'add', `${peerUnderlay}/24`, 'dev', 'eth0');
    await ip('-n', KNS, 'link', 'set', 'eth0', 'up');
    await ip('-n', KNS, 'link', 'set', 'lo', 'up');
    await inK('sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');

    // Join through the lease API.
    lease = await controller('PUT', '/leases/acquire', { underlay_ip: peerUnderlay });
    const [net] = lease.overlay_subnet.split('/');
    const vtep = ipToU32(net!);
    const vtepMac = formatMac(macFromIp(0xeeee, vtep));
    expect(lease.overlay_hardware_addr).toBe(vtepMac);

    // silk-daemon's VTEP and, per remote lease, route + neighbor + FDB.
    await ip('-n', KNS, 'link', 'add', 'silk-vtep', 'address', vtepMac, 'mtu', '1450', 'type', 'vxlan', 'id', '1', 'dev', 'eth0', 'local', peerUnderlay, 'dstport', '4789', 'nolearning', 'gbp');
    await ip('-n', KNS, 'addr', 'add', `${net}/16`, 'scope', 'link', 'dev', 'silk-vtep');
    await ip('-n', KNS, 'link', 'set', 'dev', 'silk-vtep', 'up');
    for (const l of (await controller('GET', '/leases')).leases as Lease[]) {
      if (l.underlay_ip === peerUnderlay) continue;
      const [rnet, len] = l.overlay_subnet.split('/');
      await ip('-n', KNS, 'neigh', 'replace', rnet!, 'lladdr', l.overlay_hardware_addr, 'dev', 'silk-vtep', 'nud', 'permanent');
      await ip('-n', KNS, 'route', 'replace', `${rnet}/${len}`, 'via', rnet!, 'dev', 'silk-vtep', 'src', net!);
      await must('bridge', ['-n', KNS, 'fdb', 'replace', l.overlay_hardware_addr, 'dev', 'silk-vtep', 'dst', l.underlay_ip, 'self', 'permanent']);
    }

    // silk-cni's container: a veth s-<ip> (host side 169.254.0.1, NOARP, permanent neighbors).
    const cip = vtep + 2;
    kip = u32ToIp(cip);
    const host = silkIfName(cip);
    const peer = 'c' + host.slice(1);
    const hostMac = formatMac(macFromIp(0xaaaa, cip));
    const ctrMac = formatMac(macFromIp(0xeeee, cip));
    await ip('-n', KNS, 'link', 'add', host, 'mtu', '1450', 'address', hostMac, 'type', 'veth', 'peer', 'name', peer, 'mtu', '1450');
    await ip('-n', KNS, 'link', 'set', peer, 'netns', KAPP);
    await ip('-n', KNS, 'link', 'set', 'dev', host, 'arp', 'off', 'up');
    await ip('-n', KNS, 'addr', 'add', '169.254.0.1', 'peer', `${kip}/32`, 'dev', host, 'scope', 'link');
    await ip('-n', KNS, 'neigh', 'replace', kip, 'lladdr', ctrMac, 'dev', host, 'nud', 'permanent');
    await ip('-n', KAPP, 'link', 'set', 'dev', peer, 'name', 'eth0');
    await ip('-n', KAPP, 'link', 'set', 'dev', 'eth0', 'address', ctrMac, 'arp', 'off');
    await ip('-n', KAPP, 'link', 'set', 'dev', 'lo', 'up');
    await ip('-n', KAPP, 'addr', 'add', kip, 'peer', '169.254.0.1/32', 'dev', 'eth0', 'scope', 'link');
    await ip('-n', KAPP, 'link', 'set', 'dev', 'eth0', 'up');
    await ip('-n', KAPP, 'neigh', 'replace', '169.254.0.1', 'lladdr', hostMac, 'dev', 'eth0', 'nud', 'permanent');
    await ip('-n', KAPP, 'route', 'replace', 'default', 'via', '169.254.0.1', 'dev', 'eth0', 'src', kip);

    // vxlan-policy-agent's chains, with no policy yet: FORWARD → vpa--1 (marks, accepts), then overlay for containers.
    await programPolicy([]);
    await inK('iptables', '-A', 'FORWARD', '-j', 'vpa--1');
    await inK('iptables', '-A', 'FORWARD', '-o', 's-+', '-j', 'overlay');

    procs.push(await background(KAPP, 'sh', ['-c', `exec ${process.execPath} ${APP_SERVER} --name appK --port ${PORT} 2>&1`], /app-server-listening/));
    // The silkworm cells learn the new lease by their watch.
    await waitFor('cell1 to route to the kernel peer', async () => {
      const r = await cellGet<{ lines?: string[] }>(prefix, 'cell1', '/routes');
      return JSON.stringify(r).includes(lease.overlay_subnet) ? true : undefined;
    }, 10_000, 100);
  }, 120_000);

  afterAll(async () => {
    for (const p of procs) await p.stop().catch(() => undefined);
    if (lease) await controller('PUT', '/leases/release', lease).catch(() => undefined);
    await cleanup(prefix, [KNS, KAPP]);
    fs.rmSync(tmp, { recursive: true, force: true });
  }, 60_000);

  it('keeps its offloads at their defaults (TX checksumming on the underlay veth and silk-vtep)', async () => {
    if (!have('ethtool')) return;
    for (const dev of ['eth0', 'silk-vtep']) {
      const k = await inK('ethtool', '-k', dev);
      expect(k, dev).toMatch(/^tx-checksumming: on/m);
    }
  });

  it('is refused both ways without a policy (REJECT: curl exits 7 at once)', async () => {
    expect((await curl(KAPP, `http://${lab.appA.ip}:${PORT}/`, 3)).code).toBe(7);
    expect((await curl(lab.appA.netns, `http://${kip}:${PORT}/`, 3)).code).toBe(7);
  });

  it('passes curl both ways under policy; silkworm finishes the checksums the kernel left partial', async () => {
    await silkwormOk(['policy', 'add', 'appK', 'appA', '--protocol', 'tcp', '--port', String(PORT), '--lab', prefix]);
    await silkwormOk(['policy', 'add', 'appA', 'appK', '--protocol', 'tcp', '--port', String(PORT), '--lab', prefix]);
    await waitRules('cell1', 1);
    await programPolicy([{ srcApp: 'appA', proto: 'tcp', port: PORT }]);
    const before = (await cellGet<{ stats: Record<string, number> }>(prefix, 'cell1', '/counters')).stats['checksum-completed'] ?? 0;

    const toUser = await curl(KAPP, `http://${lab.appA.ip}:${PORT}/`, 5);
    expect(toUser.code, toUser.stderr).toBe(0);
    expect(toUser.body).toBe(`appA ${lab.appA.ip}\n`);
    const toKernel = await curl(lab.appA.netns, `http://${kip}:${PORT}/`, 5);
    expect(toKernel.code, toKernel.stderr).toBe(0);
    expect(toKernel.body).toBe(`appK ${kip}\n`);

    const after = (await cellGet<{ stats: Record<string, number> }>(prefix, 'cell1', '/counters')).stats['checksum-completed']!;
    expect(after).toBeGreaterThan(before);
  });

  it('carries a bulk TCP transfer kernel → user (TSO super-packets cut by the cell) and counts it', async () => {
    await silkwormOk(['policy', 'add', 'appK', 'appA', '--protocol', 'tcp', '--port', '9000', '--lab', prefix]);
    await waitRules('cell1', 2);
    const MB = 20;
    const got = path.join(tmp, 'bulk.txt');
    const server = `let n=0;require('net').createServer((c)=>{c.on('data',(d)=>n+=d.length);c.on('end',()=>{require('fs').writeFileSync(${JSON.stringify(got)},String(n));c.end();});}).listen(9000,()=>console.log('listening'))`;
    procs.push(await background(lab.appA.netns, process.execPath, ['-e', server], /listening/));
    const before = (await cellGet<{ stats: Record<string, number>; drops: Record<string, number> }>(prefix, 'cell1', '/counters'));
    const client = `const c=require('net').connect(9000,${JSON.stringify(lab.appA.ip)},()=>{const b=Buffer.alloc(1<<20,7);let i=0;const w=()=>{while(i<${MB}){i++;if(!c.write(b))return c.once('drain',w);}c.end();};w();});c.on('close',()=>process.exit(0));c.on('error',(e)=>{console.error(e.message);process.exit(1);})`;
    const t0 = Date.now();
    const r = await inNetns(KAPP, process.execPath, ['-e', client], { timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    await waitFor('the server to count the bytes', () => (fs.existsSync(got) && fs.readFileSync(got, 'utf8') !== '' ? true : undefined), 5000, 50);
    expect(Number(fs.readFileSync(got, 'utf8'))).toBe(MB << 20);
    const after = (await cellGet<{ stats: Record<string, number>; drops: Record<string, number> }>(prefix, 'cell1', '/counters'));
    // Every datagram the kernel peer sent ended delivered; nothing was dropped as oversize.
    expect(after.drops['underlay-rx-oversize']).toBe(before.drops['underlay-rx-oversize']);
    expect(after.stats['delivered-from-remote']! - before.stats['delivered-from-remote']!).toBeGreaterThan((MB << 20) / 1450);
    console.log(`kernel → user: ${MB} MiB in ${Date.now() - t0} ms`);
  });

  it('a datagram with a partial inner checksum reaches the container; one with a wrong checksum is dropped by its stack', async () => {
    await silkwormOk(['policy', 'add', 'appK', 'appA', '--protocol', 'udp', '--port', String(UDP_PORT), '--lab', prefix]);
    await waitRules('cell1', 3);
    const tags: Record<string, number> = {};
    for (const t of (await controller('GET', '/networking/v1/external/tags')).tags as { id: string; tag: string }[]) tags[t.id] = parseInt(t.tag, 16);

    // A UDP listener in appA that appends what it gets to a file.
    const got = path.join(tmp, 'got.txt');
    fs.writeFileSync(got, '');
    const listener = `const d=require('dgram').createSocket('udp4');d.on('message',(m)=>require('fs').appendFileSync(${JSON.stringify(got)},m.toString()+'\\n'));d.bind(${UDP_PORT},()=>console.log('listening'))`;
    procs.push(await background(lab.appA.netns, process.execPath, ['-e', listener], /listening/));

    const src = ipToU32(kip);
    const dst = ipToU32(lab.appA.ip);
    const datagram = (text: string, kind: 'good' | 'partial' | 'wrong'): string => {
      const pkt = ipPacket(kip, lab.appA.ip, { proto: 'udp', sport: 5555, dport: UDP_PORT, payload: new TextEncoder().encode(text), ttl: 63, dontFrag: false });
      if (kind === 'partial') {
        const v = fold16(pseudoHeaderSum(src, dst, 17, pkt.length - 20));
        pkt[26] = v >>> 8;
        pkt[27] = v & 0xff;
      } else if (kind === 'wrong') {
        pkt[27] ^= 0x5a;
      }
      const [net] = lease.overlay_subnet.split('/');
      const cell1Vtep = u32ToIp((dst & 0xffffff00) >>> 0);
      return Buffer.from(vxlanPayload({ fromVtep: net!, toVtep: cell1Vtep, gpid: tags.appK!, inner: pkt })).toString('hex');
    };
    const sends = [datagram('good-1', 'good'), datagram('partial-1', 'partial'), datagram('wrong-1', 'wrong'), datagram('good-2', 'good')];
    const before = await udpSnmp(lab.appA.netns);
    // Sent from the peer's underlay address (a lease holder), as its silk-vtep would, to cell1's UDP 4789.
    const sender = `const d=require('dgram').createSocket('udp4');const h=${JSON.stringify(sends)};d.bind(0,${JSON.stringify(peerUnderlay)},async()=>{for(const x of h){await new Promise(r=>d.send(Buffer.from(x,'hex'),4789,${JSON.stringify(lab.cellIp.cell1)},r));await new Promise(r=>setTimeout(r,50));}d.close();})`;
    const r = await inNetns(KNS, process.execPath, ['-e', sender], { timeoutMs: 10_000 });
    expect(r.code, r.stderr).toBe(0);
    await waitFor('the two good datagrams and the partial one', () => (fs.readFileSync(got, 'utf8').split('\n').filter(Boolean).length >= 3 ? true : undefined), 5000, 50);
    await sleep(300);
    expect(fs.readFileSync(got, 'utf8').split('\n').filter(Boolean).sort()).toEqual(['good-1', 'good-2', 'partial-1']);
    const after = await udpSnmp(lab.appA.netns);
    expect(after.InCsumErrors! - before.InCsumErrors!).toBe(1);
  });
});
