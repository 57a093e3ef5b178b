// The controller as users meet it: a real `silkworm controller` process on a
// temporary unix socket and SQLite file, driven over HTTP and through the CLI.
// Needs no root. Runs the compiled dist/ (npx tsc -p . first).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { httpJson } from '../../src/net/http.js';
import { ControllerClient, ControllerError } from '../../src/net/controller-client.js';
import type { Address } from '../../src/cli/util.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PROC = path.join(ROOT, 'test/e2e/controller-proc.mjs');
const BIN = path.join(ROOT, 'bin/silkworm.js');

/** bin/silkworm.js once src/cli/commands.ts registers the controller, else our own entry. */
function entry(): string {
  const commands = path.join(ROOT, 'dist/cli/commands.js');
  return fs.existsSync(commands) && fs.readFileSync(commands, 'utf8').includes('controller.js') ? BIN : PROC;
}

function checkBuilt(): void {
  const pairs = [
    ['src/control/controller.ts', 'dist/control/controller.js'],
    ['src/control/server.ts', 'dist/control/server.js'],
    ['src/control/store.ts', 'dist/control/store.js'],
    ['src/control/validate.ts', 'dist/control/validate.js'],
    ['src/net/http.ts', 'dist/net/http.js'],
    ['src/cli/controller.ts', 'dist/cli/controller.js'],
    ['src/cli/policy.ts', 'dist/cli/policy.js'],
  ];
  for (const [src, out] of pairs) {
    const o = path.join(ROOT, out!);
    if (!fs.existsSync(o) || fs.statSync(o).mtimeMs < fs.statSync(path.join(ROOT, src!)).mtimeMs) {
      throw new Error(`${out} is missing or older than ${src}: run npx tsc -p . first`);
    }
  }
}

interface Proc {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

function startProc(sock: string, db: string, extra: string[] = []): Proc {
  const child = spawn(process.execPath, [entry(), 'controller', '--listen', sock, '--store', db, ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, SILKWORM_LOG_LEVEL: 'info' },
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, stderr: () => err, exited };
}

async function waitReady(addr: Address, proc: Proc): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) throw new Error(`controller exited: ${proc.stderr()}`);
    try {
      const r = await httpJson(addr, 'GET', '/healthz', undefined, { timeoutMs: 1000 });
      if (r.status === 200) return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`controller did not come up: ${proc.stderr()}`);
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [entry(), ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const P = (source: string, dest: string, start = 8080, end = start, protocol: 'tcp' | 'udp' = 'tcp') => ({
  source: { id: source },
  destination: { id: dest, protocol, ports: { start, end } },
});

let dir: string;
let sock: string;
let db: string;
let addr: Address;
let proc: Proc;
let client: ControllerClient;

async function start(extra: string[] = []): Promise<void> {
  proc = startProc(sock, db, extra);
  await waitReady(addr, proc);
}
async function stop(): Promise<number | null> {
  if (proc.child.exitCode !== null) return proc.child.exitCode;
  proc.child.kill('SIGTERM');
  return proc.exited;
}

beforeAll(() => checkBuilt());
afterAll(async () => {
  if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
});

describe('silkworm controller (real process)', () => {
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'swctl-'));
    sock = path.join(dir, 'controller.sock');
    db = path.join(dir, 'controller.db');
    addr = { kind: 'unix', path: sock };
    client = new ControllerClient(addr);
    await start();
  });
  afterAll(async () => {
    await stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('logs controller-listening', async () => {
    // The socket answers a moment before the log line is through the pipe on a loaded machine.
    for (let i = 0; i < 50 && !/"msg":"controller-listening"/.test(proc.stderr()); i++) await new Promise((r) => setTimeout(r, 100));
    expect(proc.stderr()).toMatch(/"msg":"controller-listening"/);
  });

  it('creates, lists, filters and deletes policies; the internal API carries tags 0001 and 0002', async () => {
    await client.addPolicies([P('appA', 'appB')]);
    const internal = await httpJson(addr, 'GET', '/networking/v1/internal/policies');
    expect(internal).toEqual({
      status: 200,
      body: {
        total_policies: 1,
        policies: [
          {
            source: { id: 'appA', tag: '0001' },
            destination: { id: 'appB', tag: '0002', protocol: 'tcp', ports: { start: 8080, end: 8080 } },
          },
        ],
      },
    });
    await client.addPolicies([P('appB', 'appC', 9000, 9010, 'udp'), P('appA', 'appB')]); // second is a duplicate
    const ext = await httpJson(addr, 'GET', '/networking/v1/external/policies');
    expect(ext.body).toEqual({ total_policies: 2, policies: [P('appA', 'appB'), P('appB', 'appC', 9000, 9010, 'udp')] });
    expect((await httpJson(addr, 'GET', '/networking/v1/external/policies?id=appC')).body).toEqual({
      total_policies: 1,
      policies: [P('appB', 'appC', 9000, 9010, 'udp')],
    });
    expect((await httpJson(addr, 'GET', '/networking/v1/external/policies?source_id=appA,appX')).body.total_policies).toBe(1);
    expect((await httpJson(addr, 'GET', '/networking/v1/external/policies?dest_id=appB')).body.policies).toEqual([P('appA', 'appB')]);
    expect((await httpJson(addr, 'GET', '/networking/v1/internal/policies?id=appC')).body.policies).toEqual([
      {
        source: { id: 'appB', tag: '0002' },
        destination: { id: 'appC', tag: '0003', protocol: 'udp', ports: { start: 9000, end: 9010 } },
      },
    ]);
    // Tags carry the policy server's group type, "app" for every tag a policy made.
    expect((await httpJson(addr, 'GET', '/networking/v1/external/tags')).body).toEqual({
      tags: [
        { id: 'appA', tag: '0001', type: 'app' },
        { id: 'appB', tag: '0002', type: 'app' },
        { id: 'appC', tag: '0003', type: 'app' },
      ],
    });
    // delete: appA's only policy goes, so 0001 is freed and the next new app reuses it
    expect(await httpJson(addr, 'POST', '/networking/v1/external/policies/delete', { policies: [P('appA', 'appB')] })).toEqual({
      status: 200,
      body: {},
    });
    expect(await client.policies()).toEqual([P('appB', 'appC', 9000, 9010, 'udp')]);
    expect((await client.tags()).map((t) => `${t.id}=${t.tag}`)).toEqual(['appB=0002', 'appC=0003']);
    await client.addPolicies([P('appD', 'appC')]);
    expect((await client.tags()).map((t) => `${t.id}=${t.tag}`)).toEqual(['appD=0001', 'appB=0002', 'appC=0003']);
  });

  it('legacy "port" is accepted as a one-port range', async () => {
    const r = await httpJson(addr, 'POST', '/networking/v1/external/policies', {
      policies: [{ source: { id: 'legacyA' }, destination: { id: 'legacyB', protocol: 'tcp', port: 7000 } }],
    });
    expect(r.status).toBe(200);
    expect(await client.policies({ id: ['legacyA'] })).toEqual([P('legacyA', 'legacyB', 7000)]);
    await client.deletePolicies([P('legacyA', 'legacyB', 7000)]);
    expect(await client.policies({ id: ['legacyA'] })).toEqual([]);
  });

  const good = P('badA', 'badB');
  const withDest = (d: Record<string, unknown>) => ({ policies: [{ source: { id: 'badA' }, destination: d }] });
  // The bodies say what cf-networking's policy server says for the
  // same request (api/policy_validator.go behind api/api_policy_mapper.go's
  // "mapper: …" prefixes), exactly; unknown fields are ignored as Go's
  // decoder does, so the two "unknown field" rows of this table moved to
  // test/unit/control/upstream.test.ts as accepted bodies.
  const V = 'mapper: validate policies: ';
  const U = 'mapper: unmarshal json: json: cannot unmarshal ';
  const BAD: [string, unknown, string][] = [
    ['not an object', 'hello', U + 'string into Go value of type api.PoliciesPayload'],
    ['an array', [good], U + 'array into Go value of type api.PoliciesPayload'],
    ['no policies', {}, V + 'missing policies'],
    ['policies is an object', { policies: good }, U + 'object into Go struct field PoliciesPayload.policies of type []api.Policy'],
    ['empty policies', { policies: [] }, V + 'missing policies'],
    ['policy is null', { policies: [null] }, V + 'missing source id'],
    ['missing source', { policies: [{ destination: good.destination }] }, V + 'missing source id'],
    ['empty source id', { policies: [{ source: { id: '' }, destination: good.destination }] }, V + 'missing source id'],
    ['numeric source id', { policies: [{ source: { id: 42 }, destination: good.destination }] }, U + 'number into Go struct field Source.policies.source.id of type string'],
    ['client-set source tag', { policies: [{ source: { id: 'badA', tag: '0009' }, destination: good.destination }] }, V + 'tags may not be specified'],
    ['client-set destination tag', withDest({ ...good.destination, tag: '0009' }), V + 'tags may not be specified'],
    ['missing destination', { policies: [{ source: { id: 'badA' } }] }, V + 'missing destination id'],
    ['missing destination id', withDest({ protocol: 'tcp', ports: { start: 1, end: 1 } }), V + 'missing destination id'],
    ['protocol icmp', withDest({ ...good.destination, protocol: 'icmp' }), V + 'invalid destination protocol, specify either udp or tcp'],
    ['protocol missing', withDest({ id: 'badB', ports: { start: 1, end: 1 } }), V + 'invalid destination protocol, specify either udp or tcp'],
    ['ports missing', withDest({ id: 'badB', protocol: 'tcp' }), V + 'missing start port'],
    ['start 0', withDest({ ...good.destination, ports: { start: 0, end: 10 } }), V + 'missing start port'],
    ['end 65536', withDest({ ...good.destination, ports: { start: 10, end: 65536 } }), V + 'invalid end port 65536, must be in range 1-65535'],
    ['start above end', withDest({ ...good.destination, ports: { start: 9, end: 8 } }), V + 'invalid port range 9-8, start must be less than or equal to end'],
    ['port as string', withDest({ ...good.destination, ports: { start: '80', end: 80 } }), U + 'string into Go struct field Ports.policies.destination.ports.start of type int'],
    ['good then bad', { policies: [good, P('badC', 'badD', 70000)] }, V + 'invalid end port 70000, must be in range 1-65535'],
  ];

  it(`${BAD.length} kinds of bad body each get 400 with a one-sentence error and change nothing`, async () => {
    const before = await httpJson(addr, 'GET', '/watch?since=-1');
    expect(before.status).toBe(200);
    for (const [name, body, want] of BAD) {
      for (const p of ['/networking/v1/external/policies', '/networking/v1/external/policies/delete']) {
        const r = await httpJson(addr, 'POST', p, body);
        expect(r.status, `${name} → ${p}`).toBe(400);
        expect(r.body.error, name).toBe(want);
        expect(r.body.error, name).not.toMatch(/\n/);
      }
    }
    // and a body that is not JSON at all
    const raw = await rawPost(sock, '/networking/v1/external/policies', '{"policies":[');
    expect(raw).toMatch(/^HTTP\/1.1 400/);
    expect(raw).toMatch(/not valid JSON/);
    const after = await httpJson(addr, 'GET', '/watch?since=-1');
    expect(after.body).toEqual(before.body); // same version, policies, tags, leases
    expect((await client.tags()).some((t) => t.id.startsWith('bad'))).toBe(false);
  });

  it('leases: distinct /24s from 10.255.1.0 up, re-acquire returns the same, renew of a lease not yours is 409', async () => {
    const l1 = (await httpJson(addr, 'PUT', '/leases/acquire', { underlay_ip: '198.18.0.11' })).body;
    const l2 = (await httpJson(addr, 'PUT', '/leases/acquire', { underlay_ip: '198.18.0.12' })).body;
    expect(l1).toEqual({ underlay_ip: '198.18.0.11', overlay_subnet: '10.255.1.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:01:00' });
    expect(l2).toEqual({ underlay_ip: '198.18.0.12', overlay_subnet: '10.255.2.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:02:00' });
    expect(await client.acquireLease('198.18.0.11')).toEqual(l1);
    expect(await httpJson(addr, 'GET', '/leases')).toEqual({ status: 200, body: { leases: [l1, l2] } });
    const steal = await httpJson(addr, 'PUT', '/leases/renew', { ...l1, underlay_ip: '198.18.0.12' });
    expect(steal.status).toBe(409);
    expect(steal.body.error).toMatch(/lease mismatch/);
    const e = await client.renewLease({ ...l2, underlay_ip: '198.18.0.13' }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ControllerError);
    expect((e as ControllerError).status).toBe(409);
    expect(await client.renewLease(l2)).toEqual(l2);
    const bad = await httpJson(addr, 'PUT', '/leases/acquire', { underlay_ip: 'cell1' });
    // silk-controller's text (lease_controller.go); silk says 500, silkworm 400.
    expect(bad).toEqual({ status: 400, body: { error: 'invalid ipv4 address: cell1' } });
    expect((await httpJson(addr, 'POST', '/leases/acquire', { underlay_ip: '198.18.0.11' })).status).toBe(405);
  });

  it('watch delivers a change to a waiting client, and returns at once for an old version', async () => {
    const snap = await client.watch(-1);
    const t0 = performance.now();
    const watching = client.watch(snap.version);
    await new Promise((r) => setTimeout(r, 50)); // the watch is held by now
    await client.addPolicies([P('watchA', 'watchB')]);
    const next = await watching;
    const ms = performance.now() - t0 - 50;
    expect(next.version).toBe(snap.version + 1);
    expect(next.policies).toContainEqual({
      source: { id: 'watchA', tag: next.tags.find((t) => t.id === 'watchA')!.tag },
      destination: { id: 'watchB', tag: next.tags.find((t) => t.id === 'watchB')!.tag, protocol: 'tcp', ports: { start: 8080, end: 8080 } },
    });
    expect(next.leases.map((l) => l.overlay_subnet)).toEqual(['10.255.1.0/24', '10.255.2.0/24']);
    expect(ms).toBeLessThan(1000); // generous: the benchmark measures the real figure
    const old = await client.watch(snap.version);
    expect(old.version).toBe(next.version);
    expect((await httpJson(addr, 'GET', '/watch?since=abc')).status).toBe(400);
  });

  it('the CLI adds, lists and removes policies and shows tags', async () => {
    const add = await cli(['policy', 'add', 'cliA', 'cliB', '--protocol', 'udp', '--ports', '5000-5005', '--controller', sock]);
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    const tags = await client.tags();
    const tagOf = (id: string) => tags.find((t) => t.id === id)!.tag;
    expect(add.stdout).toBe(`added policy cliA → cliB udp 5000-5005 (tags: cliA ${tagOf('cliA')}, cliB ${tagOf('cliB')})\n`);
    const list = await cli(['policy', 'list', '--app', 'cliA', '--json', '--controller', sock]);
    expect(JSON.parse(list.stdout)).toEqual({
      total_policies: 1,
      policies: [
        {
          source: { id: 'cliA', tag: tagOf('cliA') },
          destination: { id: 'cliB', tag: tagOf('cliB'), protocol: 'udp', ports: { start: 5000, end: 5005 } },
        },
      ],
    });
    const text = await cli(['policy', 'list', '--app', 'cliB', '--controller', sock]);
    expect(text.stdout.split('\n')[0]).toMatch(/^SOURCE\s+SOURCE-TAG\s+DESTINATION\s+DEST-TAG\s+PROTOCOL\s+PORTS$/);
    expect(text.stdout).toContain(`cliA    ${tagOf('cliA')}`);
    const t = await cli(['tags', '--json', '--controller', sock]);
    expect(JSON.parse(t.stdout)).toEqual({ tags: await client.tags() });
    const wrong = await cli(['policy', 'remove', 'cliA', 'cliB', '--protocol', 'udp', '--port', '5000', '--controller', sock]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toBe('silkworm: there is no policy cliA → cliB udp 5000 (see silkworm policy list)\n');
    const rm = await cli(['policy', 'remove', 'cliA', 'cliB', '--protocol', 'udp', '--ports', '5000-5005', '--controller', sock]);
    expect(rm.code).toBe(0);
    expect(await client.policies({ id: ['cliA'] })).toEqual([]);
    const badProto = await cli(['policy', 'add', 'a', 'b', '--protocol', 'icmp', '--controller', sock]);
    expect(badProto.code).toBe(1);
    expect(badProto.stderr).toBe('silkworm: --protocol must be tcp or udp, got "icmp"\n');
  });

  it('the CLI says clearly when the controller is not running', async () => {
    const r = await cli(['tags', '--lab', 'nolab'], { SILKWORM_RUN_DIR: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `silkworm: cannot reach the controller at ${path.join(dir, 'nolab', 'controller.sock')}: is the lab up? (silkworm lab up)\n`,
    );
  });

  it('SIGTERM closes cleanly; a restart has the same tags, leases and version', async () => {
    const before = await client.watch(-1);
    expect(await stop()).toBe(0);
    expect(fs.existsSync(sock)).toBe(false);
    expect(proc.stderr()).toMatch(/"msg":"controller-stopped"/);
    await start();
    const after = await client.watch(-1);
    // changed_at is this process's clock at load; the state must be the same.
    expect({ ...after, changed_at: 0 }).toEqual({ ...before, changed_at: 0 });
  });

  it('a SIGKILLed controller leaves its socket; the next one removes it and starts', async () => {
    proc.child.kill('SIGKILL');
    await proc.exited;
    expect(fs.existsSync(sock)).toBe(true);
    await start();
    expect((await httpJson(addr, 'GET', '/healthz')).body.ok).toBe(true);
  });

  it('bad flags fail with one sentence', async () => {
    const r = await cli(['controller', '--listen', path.join(dir, 'x.sock'), '--store', db, '--overlay-network', '10.255.0.0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('silkworm: --overlay-network: "10.255.0.0" is not an IPv4 prefix like 10.255.0.0/16\n');
    const busy = await cli(['controller', '--listen', sock, '--store', path.join(dir, 'other.db')]);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toBe(`silkworm: the controller could not start: another process is already listening on ${sock}\n`);
  });
});

describe('lease expiry (real process)', () => {
  let d2: string;
  afterEach(async () => {
    await stop();
    fs.rmSync(d2, { recursive: true, force: true });
  });
  it('an unrenewed lease expires and the watch sees it go', async () => {
    d2 = fs.mkdtempSync(path.join(os.tmpdir(), 'swctl-exp-'));
    sock = path.join(d2, 'c.sock');
    db = path.join(d2, 'c.db');
    addr = { kind: 'unix', path: sock };
    client = new ControllerClient(addr);
    await start(['--lease-expiry', '1', '--overlay-network', '10.255.0.0/23']);
    const l = await client.acquireLease('198.18.0.50');
    expect(l.overlay_subnet).toBe('10.255.1.0/24');
    const s = await client.watch(-1);
    expect(s.leases).toEqual([l]);
    const next = await client.watch(s.version); // held until the sweep drops the lease
    expect(next.leases).toEqual([]);
    expect(next.version).toBe(s.version + 1);
  });
});

function rawPost(sockPath: string, p: string, body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(sockPath);
    let out = '';
    c.on('data', (d) => (out += d.toString()));
    c.on('end', () => resolve(out));
    c.on('error', reject);
    c.write(`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
}
