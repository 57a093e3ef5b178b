// A cell's control loop against upstream's contract (recorded pairs in
// src/testing/fake-upstream.ts, served over mutual TLS on loopback): it
// acquires, renews with the lease it holds (silk answers {}), lists leases,
// polls policies as vxlan-policy-agent does (policies_last_updated skips
// unchanged rounds), treats 409 on renew as fatal, and detects silk by the
// 404 on /watch. Certificates come from the certs module (openssl).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createCerts } from '../../../src/control/certs.js';
import { loadTlsMaterial, TlsError, type TlsMaterial } from '../../../src/net/tls.js';
import { ControllerClient, detectControllerApi, type Snapshot } from '../../../src/net/controller-client.js';
import { SilkPollLoop } from '../../../src/agent/silk-loop.js';
import { logger } from '../../../src/util/log.js';
import { startController } from '../../../src/control/server.js';
import {
  FakeUpstream,
  POLICY_SERVER_RECORDED,
  RECORDED_LEASE,
  RECORDED_OTHER_LEASE,
  RECORDED_POLICY,
  SILK_CONTROLLER_RECORDED,
  SILK_RENEW_CONFLICT,
} from '../../../src/testing/fake-upstream.js';

let dir: string;
let server: TlsMaterial;
let client: TlsMaterial;
let silk: FakeUpstream;
let policy: FakeUpstream;
let silkPort: number;
let policyPort: number;

const until = async <T>(what: string, fn: () => T | undefined, ms = 5000): Promise<T> => {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swsilk-'));
  createCerts({ dir, hosts: ['127.0.0.1'], clients: ['cell1'] });
  const f = (n: string) => path.join(dir, n);
  server = loadTlsMaterial({ cert: f('controller.pem'), key: f('controller-key.pem'), ca: f('ca.pem') }, "the controller's");
  client = loadTlsMaterial({ cert: f('cell1.pem'), key: f('cell1-key.pem'), ca: f('ca.pem') }, "this cell's");
  const m = { cert: server.cert!, key: server.key!, ca: server.ca! };
  silk = new FakeUpstream(SILK_CONTROLLER_RECORDED, m);
  policy = new FakeUpstream(POLICY_SERVER_RECORDED, m);
  silkPort = await silk.start();
  policyPort = await policy.start();
}, 60_000);

afterAll(async () => {
  await silk?.close();
  await policy?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function loop(apps: string[], fatal: Error[], snaps: Snapshot[]): SilkPollLoop {
  return new SilkPollLoop({
    client: new ControllerClient({ kind: 'tcp', host: '127.0.0.1', port: silkPort, tls: true }, { tls: client }),
    policyServer: new ControllerClient({ kind: 'tcp', host: '127.0.0.1', port: policyPort, tls: true }, { tls: client }),
    underlayIp: RECORDED_LEASE.underlay_ip,
    log: logger('test'),
    leasePollS: 0.1,
    policyPollS: 0.1,
    localApps: () => apps,
    onSnapshot: (s) => void snaps.push(s),
    onFatal: (e) => void fatal.push(e),
  });
}

describe('a cell against upstream silk-controller and policy server (recorded contract, mutual TLS)', () => {
  it('detects silk by the 404 on /watch, and silkworm by its answer', async () => {
    const c = new ControllerClient({ kind: 'tcp', host: '127.0.0.1', port: silkPort, tls: true }, { tls: client });
    expect(await detectControllerApi(c)).toBe('silk');
    const ours = await startController({ listen: { kind: 'unix', path: path.join(dir, 'c.sock') }, store: ':memory:' });
    try {
      expect(await detectControllerApi(new ControllerClient(ours.address))).toBe('silkworm');
    } finally {
      await ours.close();
    }
  });

  it('acquires, renews with the lease it holds, lists every lease and polls policies, skipping unchanged rounds', async () => {
    silk.requests.length = 0;
    policy.requests.length = 0;
    const fatal: Error[] = [];
    const snaps: Snapshot[] = [];
    const l = loop(['appA'], fatal, snaps);
    expect(await l.acquire()).toEqual(RECORDED_LEASE);
    expect(silk.seen('PUT', '/leases/acquire')[0]!.body).toEqual({ underlay_ip: RECORDED_LEASE.underlay_ip });
    await l.start();
    try {
      // The first snapshot: both leases, appA's policy with its tags.
      expect(snaps[0]).toMatchObject({
        version: 0,
        leases: [RECORDED_LEASE, RECORDED_OTHER_LEASE],
        policies: [RECORDED_POLICY],
        tags: [
          { id: 'appA', tag: '0002' },
          { id: 'appB', tag: '0001' },
        ],
      });
      // silk answers a renew with {}: every renewal sends the lease the cell holds, unchanged.
      await until('three renewals', () => (silk.seen('PUT', '/leases/renew').length >= 3 ? true : undefined));
      for (const r of silk.seen('PUT', '/leases/renew')) expect(r.body).toEqual(RECORDED_LEASE);
      expect(l.lease).toEqual(RECORDED_LEASE);
      // Renew comes before each GET /leases (vxlan_planner.go DoCycle).
      const order = silk.requests.filter((r) => r.path === '/leases/renew' || r.path === '/leases').map((r) => r.path);
      expect(order.slice(0, 4)).toEqual(['/leases/renew', '/leases', '/leases/renew', '/leases']);
      // policies_last_updated did not move: rounds are skipped, policies are not asked again.
      await until('skipped rounds', () => (l.skippedPolicyRounds >= 3 ? true : undefined));
      expect(policy.seen('GET', '/networking/v1/internal/policies')).toHaveLength(1);
      expect(policy.seen('GET', '/networking/v1/internal/policies')[0]!.path).toBe('/networking/v1/internal/policies?id=appA');
      expect(snaps).toHaveLength(1);

      // A policy change: last_updated moves, the next round fetches, a new snapshot follows.
      const newer = { ...RECORDED_POLICY, destination: { ...RECORDED_POLICY.destination, ports: { start: 9000, end: 9001 } } };
      policy.set({ ...POLICY_SERVER_RECORDED[1]!, response: { total_policies: 2, policies: [RECORDED_POLICY, newer] } });
      // A change 1 ns later: 19-digit nanoseconds are past 2^53 (a double would read both as one
      // value), so the cell compares them exactly.
      policy.set({ ...POLICY_SERVER_RECORDED[0]!, response: '1796039918941272001' });
      const s2 = await until('a second snapshot', () => snaps[1]);
      expect(s2.version).toBe(1);
      expect(s2.policies).toEqual([RECORDED_POLICY, newer]);
      expect(policy.seen('GET', '/networking/v1/internal/policies')).toHaveLength(2);

      // A lease change on silk's side shows up by GET /leases.
      silk.set({ ...SILK_CONTROLLER_RECORDED[2]!, response: { leases: [RECORDED_LEASE] } });
      const s3 = await until('a third snapshot', () => snaps[2]);
      expect(s3.leases).toEqual([RECORDED_LEASE]);
      expect(fatal).toEqual([]);
    } finally {
      l.stop();
      silk.set(SILK_CONTROLLER_RECORDED[2]!);
      policy.set(POLICY_SERVER_RECORDED[0]!);
      policy.set(POLICY_SERVER_RECORDED[1]!);
    }
  });

  it('treats 409 on renew as silk-daemon does: fatal at once ("non-retriable: …"), and stops polling', async () => {
    const fatal: Error[] = [];
    const snaps: Snapshot[] = [];
    const l = loop(['appC'], fatal, snaps);
    await l.acquire();
    await l.start();
    expect(snaps[0]!.policies).toEqual([]);
    silk.set(SILK_RENEW_CONFLICT);
    try {
      const e = await until('the fatal error', () => fatal[0]);
      expect(e.message).toBe('non-retriable: renew-subnet-lease: lease mismatch');
      const n = silk.seen('PUT', '/leases/renew').length;
      await new Promise((r) => setTimeout(r, 400));
      expect(silk.seen('PUT', '/leases/renew').length).toBe(n);
      expect(fatal).toHaveLength(1);
    } finally {
      l.stop();
      silk.set(SILK_CONTROLLER_RECORDED[1]!);
    }
  });

  it('is refused in the handshake without a client certificate, and says so in one sentence', async () => {
    const bare = new ControllerClient({ kind: 'tcp', host: '127.0.0.1', port: silkPort, tls: true }, { tls: { ca: client.ca, caFile: client.caFile } });
    const err = await bare.leases().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TlsError);
    expect((err as Error).message).toMatch(/^https:\/\/127\.0\.0\.1:\d+ (requires a client certificate \(mutual TLS\): give --tls-cert and --tls-key|refused this client's certificate.*)$/);
  });
});
