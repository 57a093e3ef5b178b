// As a user looks: `tcpdump -i silk-vtep` in a cell's namespace
// (lab up --capture) shows the inner frame of a curl with the VTEP MACs, as
// the seed's walkthrough shows on the kernel's VTEP; the cell's and the
// controller's /metrics parse as Prometheus text and move with traffic.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { cleanup, curl, isRoot, labUp, macOf, RUN_DIR, silkwormOk, tcpdump, uniquePrefix, vtepIpOf, type Lab } from '../helpers/lab.js';
import { getText, parseProm } from '../helpers/prom.js';

const prefix = uniquePrefix('o');
let lab: Lab;

describe.skipIf(!isRoot())(`observability (prefix ${prefix})`, () => {
  beforeAll(async () => {
    await cleanup(prefix);
    lab = await labUp(prefix, ['--capture']);
  }, 90_000);
  afterAll(async () => {
    await cleanup(prefix);
  }, 60_000);

  it('tcpdump -i silk-vtep in cell2 shows the inner SYN between VTEP MACs with TTL 63', async () => {
    await silkwormOk(['policy', 'add', 'appB', 'appA', '--protocol', 'tcp', '--port', '8080', '--lab', prefix]);
    const cap = tcpdump(lab.ns.cell2, ['-nei', 'silk-vtep', '-c', '1', '-v', 'tcp[tcpflags] & tcp-syn != 0 and dst port 8080'], 15_000);
    await cap.ready;
    const got = await curl(lab.appB.netns, `http://${lab.appA.ip}:8080/`, 5);
    expect(got.body).toBe(`appA ${lab.appA.ip}\n`);
    const out = (await cap.done).stdout;
    const srcVtep = macOf('ee:ee', vtepIpOf(lab.appB.ip));
    const dstVtep = macOf('ee:ee', vtepIpOf(lab.appA.ip));
    expect(out).toContain(`${srcVtep} > ${dstVtep}`);
    expect(out).toMatch(/ttl 63/);
    expect(out).toContain(`${lab.appB.ip}.`);
    expect(out).toContain(`${lab.appA.ip}.8080`);
  }, 40_000);

  it('tcpdump -i silk-vtep in cell1 shows the received inner frame before policy (as the kernel VTEP would)', async () => {
    const cap = tcpdump(lab.ns.cell1, ['-nei', 'silk-vtep', '-c', '1', '-v', 'tcp and dst port 8081'], 15_000);
    await cap.ready;
    const got = await curl(lab.appB.netns, `http://${lab.appA.ip}:8081/`, 5);
    expect(got.code).toBe(7); // no policy for 8081: rejected, yet seen on silk-vtep
    const out = (await cap.done).stdout;
    expect(out).toContain(`${macOf('ee:ee', vtepIpOf(lab.appB.ip))} > ${macOf('ee:ee', vtepIpOf(lab.appA.ip))}`);
    expect(out).toMatch(/ttl 63/);
  }, 40_000);

  it("the cell's /metrics is Prometheus text and its policy-deny counter moves with a refused curl", async () => {
    const sock = path.join(RUN_DIR, prefix, 'cell1.sock');
    const before = await getText(sock, '/metrics');
    expect(before.status).toBe(200);
    expect(before.type).toMatch(/^text\/plain/);
    const b = parseProm(before.body);
    const key = 'silkworm_drops_total{reason="policy-denied",cell="cell1"}';
    expect(b.has(key)).toBe(true);
    expect(b.get('silkworm_containers{cell="cell1"}')).toBe(1);
    const got = await curl(lab.appB.netns, `http://${lab.appA.ip}:8082/`, 5);
    expect(got.code).toBe(7);
    const a = parseProm((await getText(sock, '/metrics')).body);
    expect(a.get(key)! - b.get(key)!).toBe(1);
    expect(a.get('silkworm_policy_denies_total{cell="cell1"}')! - b.get('silkworm_policy_denies_total{cell="cell1"}')!).toBe(1);
    expect(a.get('silkworm_icmp_sent_total{cell="cell1"}')! - b.get('silkworm_icmp_sent_total{cell="cell1"}')!).toBe(1);
    expect([...a.keys()].some((k) => k.startsWith('silkworm_watch_lag_seconds_bucket'))).toBe(true);
  }, 30_000);

  it("the controller's /metrics is Prometheus text with its policy and lease counts", async () => {
    const res = await getText(path.join(RUN_DIR, prefix, 'controller.sock'), '/metrics');
    expect(res.status).toBe(200);
    const m = parseProm(res.body);
    expect(m.get('silkworm_controller_policies')).toBe(1);
    expect(m.get('silkworm_controller_leases')).toBe(2);
    expect(m.get('silkworm_controller_watchers')).toBe(2);
  }, 20_000);
});
