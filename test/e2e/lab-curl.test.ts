// As a user meets it: `silkworm lab up`, curl between
// the containers with and without a policy, tcpdump/tshark on each hop, a
// second container on the same cell, the cells' tables and counters, and
// `lab down` leaving nothing behind. Everything runs through the CLI and
// iproute2/curl/tcpdump/tshark in the lab's namespaces.
//
// Root only. The lab's prefix is this file's own (`e<pid>c`), so a running lab
// (default prefix `sw`) or another test is never touched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanup,
  counters,
  curl,
  delta,
  dirExists,
  inNetns,
  ipSync,
  isRoot,
  labUp,
  listLinks,
  listNetns,
  macOf,
  moved,
  pidAlive,
  RUN_DIR,
  run,
  silkworm,
  silkwormJson,
  silkwormOk,
  tcpdump,
  tshark,
  uniquePrefix,
  vtepIpOf,
  waitFor,
  containerCounters,
  type CurlResult,
  type Lab,
} from '../helpers/lab.js';
import fs from 'node:fs';
import path from 'node:path';

const P = uniquePrefix('c');
const EXTRA_NS = `${P}-appB-1`;
/** Generous for curl, so "refused fast" is clearly the ICMP reject and not the bound. */
const MAX_TIME_S = 5;
/** A refused connect must come back well under MAX_TIME_S (one RTT plus process start-up). */
const FAST_MS = 1500;

describe.skipIf(!isRoot())(`lab as a user meets it (prefix ${P})`, () => {
  let lab: Lab;
  let appBTag: number;
  let secondIp = '';
  // Distinct local ports per curl, so each connection is identifiable in conntrack.
  let nextPort = 41000 + (process.pid % 1000) * 10;

  // curl --local-port when given, so the tuple `show conntrack` prints is known exactly.
  const curlFrom = (ns: string, port = 8080, localPort?: number): Promise<CurlResult> => {
    const u = `http://${lab.appA.ip}:${port}/`;
    return curl(ns, u, MAX_TIME_S, localPort === undefined ? [] : ['--local-port', String(localPort)]);
  };

  const snapshot = async () => {
    const [c1, c2] = await Promise.all([counters(P, 'cell1'), counters(P, 'cell2')]);
    return { c1, c2 };
  };

  beforeAll(async () => {
    await cleanup(P, [EXTRA_NS]); // remains of an earlier run with the same pid
    lab = await labUp(P);
  }, 120_000);

  afterAll(async () => {
    await cleanup(P, [EXTRA_NS]);
  }, 120_000);

  it('lab up gives appA on cell1 and appB on cell2 in different /24 leases, in under 30 s', () => {
    expect(lab.status.up).toBe(true);
    expect(lab.upMs).toBeLessThan(30_000);
    expect(lab.appA.netns).toBe(`${P}-appA-0`);
    expect(lab.appB.netns).toBe(`${P}-appB-0`);
    expect(lab.status.containers.find((c) => c.app === 'appA')!.cell).toBe('cell1');
    expect(lab.status.containers.find((c) => c.app === 'appB')!.cell).toBe('cell2');
    expect(vtepIpOf(lab.appA.ip)).not.toBe(vtepIpOf(lab.appB.ip));
    expect(lab.appA.ip.startsWith('10.255.')).toBe(true);
  });

  it('without a policy, curl appB → appA:8080 is refused at once (ICMP reject, exit 7), not a hang', async () => {
    const before = await snapshot();
    const r = await curlFrom(lab.ns.appB);
    const after = await snapshot();
    expect(r.code, `curl stderr: ${r.stderr}`).toBe(7);
    expect(r.connectError).toBe('Connection refused'); // ECONNREFUSED: ICMP port unreachable (RFC 1122 §4.2.3.9)
    expect(r.body).toBe('');
    expect(r.ms).toBeLessThan(FAST_MS);
    // One SYN crossed the underlay, was rejected by cell1 with one ICMP error
    // that went back to cell2; appA's container saw nothing.
    const d1 = delta(before.c1.drops, after.c1.drops);
    const s1 = delta(before.c1.stats, after.c1.stats);
    const s2 = delta(before.c2.stats, after.c2.stats);
    expect(moved(d1)).toEqual({ 'policy-denied': 1 });
    expect(s1['icmp-sent']).toBe(1);
    expect(s1['policy-allowed']).toBe(0);
    expect(s2['encapsulated']).toBe(1);
    expect(s1['ingress-packets']).toBe(1); // the SYN arrived on cell1's underlay
    expect(s2['ingress-packets']).toBe(1); // and arrived on cell2
    expect(containerCounters(after.c1, lab.appA.ip).rx_packets - containerCounters(before.c1, lab.appA.ip).rx_packets).toBe(0);
  });

  it('`policy add appB appA --protocol tcp --port 8080` lets curl return appA\'s body; replies flow via conntrack', async () => {
    const out = await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
    expect(out).toMatch(/appB/);
    // The change reaches the cells by watch; allow it a moment, no more.
    const first = await waitFor('appA to answer appB under the policy', async () => {
      const r = await curlFrom(lab.ns.appB);
      return r.code === 0 ? r : undefined;
    }, 5000, 200);
    expect(first.body.trim()).toBe(`appA ${lab.appA.ip}`);

    // One more connection, counted exactly: only its SYN needs the policy,
    // everything after it (both directions) is admitted by connection tracking.
    const before = await snapshot();
    const localPort = nextPort++;
    const r = await curlFrom(lab.ns.appB, 8080, localPort);
    const after = await snapshot();
    expect(r.code, r.stderr).toBe(0);
    expect(r.body.trim()).toBe(`appA ${lab.appA.ip}`);
    const s1 = delta(before.c1.stats, after.c1.stats);
    const s2 = delta(before.c2.stats, after.c2.stats);
    expect(s1['policy-allowed']).toBe(1);
    expect(s1['conntrack-allowed']).toBeGreaterThanOrEqual(2); // at least the handshake's ACK and the request
    expect(s2['policy-allowed']).toBe(0); // no policy appA → appB: replies pass on conntrack only
    expect(s2['conntrack-allowed']).toBeGreaterThanOrEqual(2); // at least SYN-ACK and the response
    expect(moved(delta(before.c1.drops, after.c1.drops))).toEqual({});
    expect(moved(delta(before.c2.drops, after.c2.drops))).toEqual({});
    // Nothing lost on the lab's underlay: what one cell encapsulates the other decapsulates.
    expect(s2['encapsulated']).toBeGreaterThanOrEqual(4);
    expect(s1['decapsulated']).toBe(s2['encapsulated']);
    expect(s2['decapsulated']).toBe(s1['encapsulated']);
    const rxA = containerCounters(after.c1, lab.appA.ip).rx_packets - containerCounters(before.c1, lab.appA.ip).rx_packets;
    expect(rxA).toBe(s1['decapsulated']);

    // The connection is in cell1's table, conntrack -L style, with both directions.
    const ct = await silkwormOk(['show', 'conntrack', '--cell', 'cell1', '--lab', P]);
    const line = new RegExp(
      `^tcp\\s+6\\s+\\d+\\s+[A-Z_]+\\s+src=${lab.appB.ip} dst=${lab.appA.ip} sport=${localPort} dport=8080 src=${lab.appA.ip} dst=${lab.appB.ip} sport=8080 dport=${localPort}\\b`,
      'm',
    );
    expect(ct).toMatch(line);
  });

  it('a port outside the policy stays refused (the cell rejects it: nothing reaches appA)', async () => {
    const before = await snapshot();
    const r = await curlFrom(lab.ns.appB, 8081);
    const after = await snapshot();
    expect(r.code, r.stderr).toBe(7);
    expect(r.connectError).toBe('Connection refused');
    expect(r.ms).toBeLessThan(FAST_MS);
    // Refused by the policy on cell1, not by appA's kernel (no listener on
    // 8081 would also refuse, so the counters tell the two apart).
    expect(moved(delta(before.c1.drops, after.c1.drops))).toEqual({ 'policy-denied': 1 });
    expect(delta(before.c1.stats, after.c1.stats)['icmp-sent']).toBe(1);
    expect(containerCounters(after.c1, lab.appA.ip).rx_packets - containerCounters(before.c1, lab.appA.ip).rx_packets).toBe(0);
  });

  it('tcpdump shows VXLAN flags [I] (0x88) vni 1 between VTEP MACs; tshark shows appB\'s tag as Group Policy ID; appA sees TTL 62, aa:aa → ee:ee', async () => {
    const tags = await silkwormJson<{ tags: { id: string; tag: string }[] }>(['tags', '--lab', P]);
    const tagHex = tags.tags.find((t) => t.id === 'appB')?.tag;
    expect(tagHex, 'appB has a tag once it is in a policy').toMatch(/^[0-9A-F]{4}$/);
    appBTag = parseInt(tagHex!, 16);
    expect(appBTag).toBeGreaterThan(0);

    const cell1Ip = lab.cellIp['cell1']!;
    const cell2Ip = lab.cellIp['cell2']!;
    // The first datagram of appB → appA on each hop; each capture is bounded.
    const onCell2 = tcpdump(lab.ns.cell2, ['-n', '-e', '-v', '-i', 'eth0', '-c', '1', `udp port 4789 and src host ${cell2Ip} and dst host ${cell1Ip}`]);
    const onCell1 = tcpdump(lab.ns.cell1, ['-n', '-e', '-v', '-i', 'eth0', '-c', '1', `udp port 4789 and src host ${cell2Ip}`]);
    const gbp = tshark(lab.ns.cell1, ['-n', '-i', 'eth0', '-c', '1', '-f', `udp port 4789 and src host ${cell2Ip}`, '-d', 'udp.port==4789,vxlan', '-V']);
    const inA = tcpdump(lab.ns.appA, ['-n', '-e', '-v', '-i', 'eth0', '-c', '1', 'tcp dst port 8080 and tcp[tcpflags] & tcp-syn != 0']);
    await Promise.all([onCell2.ready, onCell1.ready, gbp.ready, inA.ready]);

    const r = await curlFrom(lab.ns.appB);
    expect(r.code, r.stderr).toBe(0);
    const [t2, t1, ts, ta] = await Promise.all([onCell2.done, onCell1.done, gbp.done, inA.done]);

    const vtepA = vtepIpOf(lab.appA.ip);
    const vtepB = vtepIpOf(lab.appB.ip);
    const vtepMacA = macOf('ee:ee', vtepA);
    const vtepMacB = macOf('ee:ee', vtepB);
    const esc = (s: string) => s.replace(/[.]/g, '\\.');
    for (const [where, t] of [['cell2 (sending)', t2], ['cell1 (receiving)', t1]] as const) {
      expect(t.stdout, `tcpdump on ${where}: ${t.stderr}`).toMatch(
        new RegExp(`${esc(cell2Ip)}\\.\\d+ > ${esc(cell1Ip)}\\.4789: (\\[[^\\]]*\\] )?VXLAN, flags \\[I\\] \\(0x88\\), vni 1\\n`),
      );
      // Inner frame: remote VTEP MAC ← local VTEP MAC, TTL 64 − 1 at the sending cell.
      expect(t.stdout).toMatch(new RegExp(`\\n${vtepMacB} > ${vtepMacA}, ethertype IPv4 \\(0x0800\\), length \\d+: \\(tos 0x0, ttl 63,`));
      expect(t.stdout).toMatch(new RegExp(`${esc(lab.appB.ip)}\\.\\d+ > ${esc(lab.appA.ip)}\\.8080: Flags \\[S\\]`));
    }

    expect(ts.stdout, `tshark: ${ts.stderr}`).toMatch(/Virtual eXtensible Local Area Network/);
    const gpid = /Group Policy ID: (\d+)/.exec(ts.stdout);
    expect(gpid, 'tshark decodes the Group Policy ID').not.toBeNull();
    expect(Number(gpid![1])).toBe(appBTag);
    expect(ts.stdout).toMatch(/VXLAN Network Identifier \(VNI\): 1\n/);
    expect(ts.stdout).toMatch(/GBP Extension: Defined/);
    // The second Ethernet header is the inner one: VTEP MACs.
    const eth = [...ts.stdout.matchAll(/Ethernet II, Src: ([0-9a-f:]{17}), Dst: ([0-9a-f:]{17})/g)];
    expect(eth.length).toBe(2);
    expect(eth[1]![1]).toBe(vtepMacB);
    expect(eth[1]![2]).toBe(vtepMacA);

    // Delivered into appA's container as in the seed: aa:aa:<ip> → ee:ee:<ip>, TTL 62.
    expect(ta.stdout, `tcpdump in appA: ${ta.stderr}`).toMatch(
      new RegExp(`${macOf('aa:aa', lab.appA.ip)} > ${macOf('ee:ee', lab.appA.ip)}, ethertype IPv4 \\(0x0800\\), length \\d+: \\(tos 0x0, ttl 62,`),
    );
    expect(ta.stdout).toMatch(new RegExp(`${esc(lab.appB.ip)}\\.\\d+ > ${esc(lab.appA.ip)}\\.8080: Flags \\[S\\]`));
  }, 60_000);

  it('same cell: a second appB container on cell1 reaches appA only under the policy', async () => {
    ipSync(['netns', 'add', EXTRA_NS]);
    const added = await silkwormJson<{ ip: string; cell: string; app: string }>([
      'container', 'add', '--cell', 'cell1', '--app', 'appB', '--netns', EXTRA_NS, '--lab', P,
    ]);
    secondIp = added.ip;
    // An address from cell1's lease, the same /24 as appA (docs/ARCHITECTURE.md, Addressing).
    expect(vtepIpOf(secondIp)).toBe(vtepIpOf(lab.appA.ip));
    expect(secondIp).not.toBe(lab.appA.ip);

    // Start from no policy.
    await silkwormOk(['policy', 'remove', 'appB', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
    const refusedBefore = await waitFor('the removal to reach cell1', async () => {
      const r = await curlFrom(EXTRA_NS);
      return r.code === 7 && r.connectError === 'Connection refused' ? r : undefined;
    }, 5000, 200);
    expect(refusedBefore.ms).toBeLessThan(FAST_MS);
    // And stays refused (not a leftover of the propagation race).
    const before = await snapshot();
    const again = await curlFrom(EXTRA_NS);
    const after = await snapshot();
    expect(again.code).toBe(7);
    expect(again.connectError).toBe('Connection refused');
    expect(again.ms).toBeLessThan(FAST_MS);
    expect(moved(delta(before.c1.drops, after.c1.drops))).toEqual({ 'policy-denied': 1 });
    // Same-cell traffic never touches the underlay or cell2.
    expect(moved(delta(before.c2.stats, after.c2.stats))).toEqual({});
    expect(delta(before.c1.stats, after.c1.stats)['encapsulated']).toBe(0);

    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
    const ok = await waitFor('the policy to reach cell1', async () => {
      const r = await curlFrom(EXTRA_NS);
      return r.code === 0 ? r : undefined;
    }, 5000, 200);
    expect(ok.body.trim()).toBe(`appA ${lab.appA.ip}`);

    const b2 = await snapshot();
    const localPort = nextPort++;
    const r = await curlFrom(EXTRA_NS, 8080, localPort);
    const a2 = await snapshot();
    expect(r.code, r.stderr).toBe(0);
    expect(r.body.trim()).toBe(`appA ${lab.appA.ip}`);
    const s1 = delta(b2.c1.stats, a2.c1.stats);
    expect(s1['policy-allowed']).toBe(1);
    expect(s1['delivered-same-cell']).toBeGreaterThanOrEqual(4);
    expect(s1['encapsulated']).toBe(0);
    expect(moved(delta(b2.c2.stats, a2.c2.stats))).toEqual({});
    const ct = await silkwormOk(['show', 'conntrack', '--cell', 'cell1', '--lab', P]);
    expect(ct).toMatch(
      new RegExp(`^tcp\\s+6\\s+\\d+\\s+[A-Z_]+\\s+src=${secondIp} dst=${lab.appA.ip} sport=${localPort} dport=8080 src=${lab.appA.ip} dst=${secondIp} sport=8080 dport=${localPort}\\b`, 'm'),
    );

    await silkwormOk(['policy', 'remove', 'appB', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', P]);
    const refusedAfter = await waitFor('the removal to reach cell1', async () => {
      const x = await curlFrom(EXTRA_NS);
      return x.code === 7 && x.connectError === 'Connection refused' ? x : undefined;
    }, 5000, 200);
    expect(refusedAfter.ms).toBeLessThan(FAST_MS);
    // The cross-cell container is refused again too.
    const fromB0 = await curlFrom(lab.ns.appB);
    expect(fromB0.code).toBe(7);
    expect(fromB0.connectError).toBe('Connection refused');
  }, 60_000);

  it('the cells hold their leases and watches over mutual TLS on the underlay (198.18.0.1:4003); the unix socket serves the local CLI', async () => {
    const status = await silkwormJson<{ controller: { url?: string; netns?: string; tlsAnswers?: boolean; answers: boolean } }>([
      'lab', 'status', '--prefix', P, '--json',
    ]);
    expect(status.controller).toMatchObject({ url: 'https://198.18.0.1:4003', netns: `${P}-underlay`, tlsAnswers: true, answers: true });
    // Each cell keeps a connection to the controller's TLS port across the underlay bridge.
    const peers = await waitFor('both cells connected to 198.18.0.1:4003', async () => {
      const r = await inNetns(`${P}-underlay`, 'ss', ['-Htn', 'state', 'established', '( sport = :4003 )']);
      const ips = [...new Set([...r.stdout.matchAll(/(198\.18\.0\.1[12]):\d+\s*$/gm)].map((m) => m[1]))].sort();
      return ips.length === 2 ? ips : undefined;
    }, 10_000, 200);
    expect(peers).toEqual(['198.18.0.11', '198.18.0.12']);
    // Both leases, as the controller holds them (asked on the unix socket).
    const local = await run('curl', ['-s', '-m', '3', '--unix-socket', path.join(RUN_DIR, P, 'controller.sock'), 'http://controller/leases']);
    const leases = JSON.parse(local.stdout) as { leases: { underlay_ip: string }[] };
    expect(leases.leases.map((l) => l.underlay_ip).sort()).toEqual(['198.18.0.11', '198.18.0.12']);
    // The watch over TLS delivered every change: the cells never logged a failed watch or renewal.
    for (const cell of ['cell1', 'cell2']) {
      const log = fs.readFileSync(path.join(RUN_DIR, P, `${cell}.log`), 'utf8');
      expect(log, cell).not.toMatch(/"watch-failed"|"lease-renew-failed"/);
    }
    // Without a client certificate, the TLS listener refuses the lease API (asked from inside the underlay).
    const tlsDir = path.join(RUN_DIR, P, 'tls');
    const bare = await inNetns(`${P}-underlay`, 'curl', ['-s', '-m', '3', '--cacert', path.join(tlsDir, 'ca.pem'), '-o', '/dev/null', '-w', '%{http_code}', 'https://198.18.0.1:4003/leases']);
    expect(bare.stdout).toBe('401');
  }, 60_000);

  it('`lab down` leaves nothing behind: namespaces, root links, processes, /run/silkworm/P', async () => {
    const pids = [...lab.pids];
    expect(pids.length).toBeGreaterThanOrEqual(5); // controller, 2 cells, 2 app servers
    const down = await silkworm(['lab', 'down', '--prefix', P], { timeoutMs: 60_000 });
    expect(down.code, down.stderr).toBe(0);

    // The device the lab made in our own namespace (the TAP moved in as eth0) is gone.
    if (listNetns().includes(EXTRA_NS)) {
      expect(listLinks(EXTRA_NS).filter((l) => l !== 'lo')).toEqual([]);
      ipSync(['netns', 'del', EXTRA_NS]);
    }
    expect(listNetns().filter((n) => n.startsWith(`${P}-`))).toEqual([]);
    const rootNow = listLinks();
    expect(rootNow.filter((l) => !lab.rootLinksBefore.includes(l))).toEqual([]);
    expect(rootNow.filter((l) => l.startsWith(P))).toEqual([]);
    // Processes: give the kernel a moment to reap, then none of them may live.
    const alive = await waitFor('the lab processes to exit', () => {
      const a = pids.filter(pidAlive);
      return a.length === 0 ? a : undefined;
    }, 5000).catch(() => pids.filter(pidAlive));
    expect(alive).toEqual([]);
    // Nor anything else naming the lab's directory on its command line.
    const mark = path.join(RUN_DIR, P) + '/';
    const stray = fs
      .readdirSync('/proc')
      .filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid)
      .filter((e) => {
        try {
          return fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').some((a) => a.startsWith(mark));
        } catch {
          return false;
        }
      });
    expect(stray).toEqual([]);
    expect(dirExists(path.join(RUN_DIR, P))).toBe(false);
    // Idempotent: a second down is fine and finds nothing.
    const again = await silkworm(['lab', 'down', '--prefix', P]);
    expect(again.code).toBe(0);
  }, 90_000);
});
