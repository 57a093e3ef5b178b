// `show conntrack` as a stream over real HTTP (a loopback TCP server):
// the same lines as the table, NDJSON, filters and limit from the query
// string, the event loop free between slices, a slow reader pausing the
// walk, and a reader that goes away.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { conntrackSlice, parseConntrackQuery, streamConntrack, type ConntrackStreamResult, type ConntrackStreamOptions } from '../../../src/cell/conntrack-stream.js';
import { HttpError } from '../../../src/net/http.js';
import { ConnTrack, TCP_ACK, TCP_SYN, conntrackJson, formatConntrack } from '../../../src/policy/conntrack.js';
import { ipToU32 as ip } from '../../../src/util/ip.js';

const TCP = 6;
const UDP = 17;
const B = ip('10.255.2.2');
const NOW = 100;

/** n flows: every 4th UDP to port 53, the rest TCP to 8080, one in 2 TCP established; sources spread over 10.255.1.0/24 … */
function table(n: number, capacity = n + 16): ConnTrack {
  const ct = new ConnTrack({ capacity, seed: 40 });
  for (let i = 0; i < n; i++) {
    const src = (ip('10.255.1.0') + (i >>> 8) * 256 + (i & 0xff)) >>> 0;
    if (i % 4 === 0) {
      ct.process(src, B, UDP, 5000 + (i % 1000), 53, 0, NOW, true);
    } else {
      ct.process(src, B, TCP, 30000 + (i % 1000), 8080, TCP_SYN, NOW, true, i % 3);
      if (i % 2 === 0) {
        ct.process(B, src, TCP, 8080, 30000 + (i % 1000), TCP_SYN | TCP_ACK, NOW, false);
        ct.process(src, B, TCP, 30000 + (i % 1000), 8080, TCP_ACK, NOW, true);
      }
    }
  }
  return ct;
}

let server: http.Server | undefined;
afterEach(async () => {
  if (server) await new Promise<void>((r) => server!.close(() => r()));
  server = undefined;
});

/** Serve GET /conntrack?… from `ct`; resolves with the port and a promise of each stream's result. */
async function serveTable(ct: ConnTrack, opts: ConntrackStreamOptions = {}) {
  const results: Promise<ConntrackStreamResult>[] = [];
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    try {
      const q = parseConntrackQuery(url.searchParams);
      results.push(streamConntrack(ct, res, q, { now: () => NOW, ...opts }));
    } catch (err) {
      res.writeHead((err as HttpError).status ?? 500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: (err as Error).message }));
    }
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as AddressInfo).port, results };
}

function get(port: number, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

const linesOf = (body: string) => body.split('\n').filter((l) => l.length > 0);

describe('parseConntrackQuery', () => {
  const q = (s: string) => parseConntrackQuery(new URLSearchParams(s));
  it('reads conntrack -L filters, limit and format', () => {
    expect(q('')).toEqual({ filter: {}, limit: undefined, json: false });
    expect(q('src=10.255.1.2&dst=10.255.2.0/24&proto=tcp&sport=1&dport=8080&state=established&mark=4&limit=10&format=json')).toEqual({
      filter: { src: ip('10.255.1.2'), srcPrefixLen: 32, dst: ip('10.255.2.0'), dstPrefixLen: 24, proto: 6, sport: 1, dport: 8080, tcpState: 3, mark: 4 },
      limit: 10,
      json: true,
    });
    expect(q('proto=UDP').filter.proto).toBe(17);
    expect(q('proto=132').filter.proto).toBe(132);
  });
  it('answers 400 with one sentence for anything else', () => {
    const cases: [string, string][] = [
      ['srcx=1', 'unknown conntrack filter "srcx"; use src, dst, proto, sport, dport, state, mark, limit, format'],
      ['src=10.255.1', 'src must be an IPv4 address or prefix like 10.255.1.0/24, got "10.255.1"'],
      ['dst=10.255.1.0/33', 'dst prefix length must be an integer in 0..32, got 33'],
      ['proto=sctpx', 'proto must be tcp, udp, icmp or a protocol number, got "sctpx"'],
      ['proto=256', 'proto must be an integer in 0..255, got 256'],
      ['dport=65536', 'dport must be an integer in 0..65535, got 65536'],
      ['sport=-1', 'sport must be an integer in 0..65535, got "-1"'],
      ['state=OPEN', 'state must be one of NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, got "OPEN"'],
      ['limit=0', 'limit must be an integer in 1..4294967295, got 0'],
      ['format=xml', 'format must be text or json, got "xml"'],
      ['dport=80&dport=81', 'conntrack filter "dport" given twice'],
    ];
    for (const [query, msg] of cases) {
      let err: unknown;
      try {
        q(query);
      } catch (e) {
        err = e;
      }
      expect(err, query).toBeInstanceOf(HttpError);
      expect([(err as HttpError).status, (err as HttpError).message]).toEqual([400, msg]);
    }
  });
});

describe('streamConntrack', () => {
  it('streams the same lines as conntrack -L would print, with the size and capacity in headers', async () => {
    const ct = table(5000);
    const { port, results } = await serveTable(ct);
    const r = await get(port, '/conntrack');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(r.headers['transfer-encoding']).toBe('chunked');
    expect([r.headers['x-conntrack-size'], r.headers['x-conntrack-capacity']]).toEqual(['5000', '5016']);
    const want = ct.entries(NOW).map((e) => formatConntrack(e, NOW));
    expect(linesOf(r.body).sort()).toEqual(want.sort());
    expect(want).toHaveLength(5000);
    const res = await results[0]!;
    expect([res.entries, res.aborted]).toEqual([5000, false]);
  });

  it('streams more tables after the first (a cell\'s other workers), slice by slice, with the summed size', async () => {
    const ct = table(3000);
    const other = new ConnTrack({ capacity: 4096, seed: 41 });
    for (let i = 0; i < 2000; i++) other.process(ip('10.255.3.2'), B, UDP, 1000 + i, 53, 0, NOW, true);
    let asked = 0;
    const more = [
      {
        slice: async (cursor: number, left: number) => {
          asked++;
          await new Promise((r) => setImmediate(r));
          return conntrackSlice(other, cursor, NOW, { filter: {}, limit: undefined, json: false }, left, 0.01);
        },
      },
    ];
    const { port } = await serveTable(ct, { more, size: 5000, capacity: 7112 });
    const r = await get(port, '/conntrack');
    expect([r.headers['x-conntrack-size'], r.headers['x-conntrack-capacity']]).toEqual(['5000', '7112']);
    const want = [...ct.entries(NOW), ...other.entries(NOW)].map((e) => formatConntrack(e, NOW));
    expect(linesOf(r.body).sort()).toEqual(want.sort());
    expect(asked).toBeGreaterThan(1);
    // The limit counts across tables.
    const limited = await get(port, '/conntrack?limit=3500');
    expect(linesOf(limited.body)).toHaveLength(3500);
  });

  it('streams NDJSON, filtered and limited', async () => {
    const ct = table(5000);
    const { port } = await serveTable(ct);
    const all = await get(port, '/conntrack?format=json');
    expect(all.headers['content-type']).toBe('application/x-ndjson');
    const objs = linesOf(all.body).map((l) => JSON.parse(l));
    expect(objs).toHaveLength(5000);
    const byKey = (o: { proto: string; src: string; sport: number }) => `${o.proto} ${o.src} ${o.sport}`;
    expect(objs.map(byKey).sort()).toEqual(ct.entries(NOW).map((e) => byKey(conntrackJson(e, NOW))).sort());
    expect(objs[0]).toEqual(conntrackJson(ct.entries(NOW).find((e) => byKey(conntrackJson(e, NOW)) === byKey(objs[0]))!, NOW));

    const est = linesOf((await get(port, '/conntrack?format=json&proto=tcp&state=ESTABLISHED&src=10.255.2.0/24')).body).map((l) => JSON.parse(l));
    const want = ct.entries(NOW, { proto: TCP, tcpState: 3, src: ip('10.255.2.0'), srcPrefixLen: 24 });
    expect(est.length).toBe(want.length);
    expect(est.length).toBeGreaterThan(50);
    expect(est.every((o) => o.state === 'ESTABLISHED' && o.src.startsWith('10.255.2.'))).toBe(true);

    expect(linesOf((await get(port, '/conntrack?dport=53&limit=7')).body)).toHaveLength(7);
    expect(linesOf((await get(port, '/conntrack?dport=54')).body)).toHaveLength(0);
    const bad = await get(port, '/conntrack?dport=x');
    expect([bad.status, JSON.parse(bad.body).error]).toEqual([400, 'dport must be an integer in 0..65535, got "x"']);
  });

  it('yields to the event loop between every two slices on a 100,000-entry table', async () => {
    const ct = table(100_000, 262_144);
    // One callback per event-loop turn: the counter must move between any two slices.
    let turns = 0;
    let spinning = true;
    const spin = () => {
      turns++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    const atSlice: number[] = [];
    const { port, results } = await serveTable(ct, { sliceMs: 5, onSlice: () => atSlice.push(turns) });
    try {
      for (const path of ['/conntrack?format=json', '/conntrack']) {
        atSlice.length = 0;
        const r = await get(port, path);
        expect(linesOf(r.body)).toHaveLength(100_000);
        expect(atSlice.length).toBeGreaterThan(10);
        const stuck = atSlice.slice(1).filter((t, i) => t === atSlice[i]).length;
        expect(stuck, `${path}: slices without an event-loop turn between them`).toBe(0);
      }
    } finally {
      spinning = false;
    }
    const res = await results[0]!;
    expect(res.entries).toBe(100_000);
    expect(res.slices).toBeGreaterThan(10);
  });

  it('pauses while the reader does not read, and finishes when it reads again', async () => {
    const ct = table(50_000); // ~11 MB of text: more than the loopback socket buffers hold
    let sliced = 0;
    let stalledAt = -1;
    const { port, results } = await serveTable(ct, { onSlice: () => sliced++ });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/conntrack', agent: false }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.once('data', (c: string) => {
            text += c;
            res.pause();
            void (async () => {
              // The socket buffers fill, then the walk must stop and stay stopped.
              let prev = -1;
              for (let i = 0; i < 100 && sliced !== prev; i++) {
                prev = sliced;
                await sleep(100);
              }
              const before = sliced;
              await sleep(300);
              if (sliced === before) stalledAt = sliced;
              res.on('data', (d: string) => (text += d));
              res.resume();
            })();
          });
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    expect(stalledAt).toBeGreaterThan(0);
    expect(stalledAt).toBeLessThan(sliced);
    expect(linesOf(body)).toHaveLength(50_000);
    expect((await results[0]!).aborted).toBe(false);
  });

  it('stops and resolves when the reader goes away', async () => {
    const ct = table(100_000, 131_072);
    const { port, results } = await serveTable(ct, { sliceMs: 1 });
    await new Promise<void>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/conntrack', agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
    });
    const res = await results[0]!;
    expect(res.aborted).toBe(true);
    expect(res.entries).toBeLessThan(100_000);
  });
});
