// Tracked connections across a cell restart: a table with every TCP state,
// UDP with and without a reply and ICMP echo is written to bytes and replayed
// into a fresh table, which must then hold the same entries (tuple, state,
// flags, mark) and answer packets the same way.
import { describe, expect, it } from 'vitest';
import { ConntrackWriter, decodeConntrack, encodeConntrack, restoreConntrack, restoreConntrackBytes } from '../../../src/cell/conntrack-state.js';
import { ConnTrack, CtState, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, type CtEntryInfo } from '../../../src/policy/conntrack.js';
import { IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP } from '../../../src/policy/types.js';
import { ipToU32 } from '../../../src/util/ip.js';
import { steerWorkerOfFlow } from '../../../src/dataplane/steer.js';

const A = ipToU32('10.255.2.2');
const B = ipToU32('10.255.1.2');

/** Packets for one TCP connection (sport = port): [direction, flags] each. */
function tcp(ct: ConnTrack, port: number, steps: [number, number][], now: number, mark = 0): void {
  steps.forEach(([dir, flags], i) => {
    if (dir === 0) ct.process(A, B, IPPROTO_TCP, port, 8080, flags, now, i === 0, mark);
    else ct.process(B, A, IPPROTO_TCP, 8080, port, flags, now, false);
  });
}

/** A table with one entry in each state this cell can hold. */
function sample(now: number): ConnTrack {
  const ct = new ConnTrack({ capacity: 256, seed: 1 });
  const hs: [number, number][] = [[0, TCP_SYN], [1, TCP_SYN | TCP_ACK], [0, TCP_ACK]];
  tcp(ct, 40001, [[0, TCP_SYN]], now, 7); // SYN_SENT
  tcp(ct, 40002, [[0, TCP_SYN], [1, TCP_SYN | TCP_ACK]], now); // SYN_RECV
  tcp(ct, 40003, hs, now, 0x12); // ESTABLISHED, assured
  tcp(ct, 40004, [[0, TCP_ACK]], now); // picked up mid-stream, no reply yet
  tcp(ct, 40005, [...hs, [1, TCP_FIN | TCP_ACK]], now); // FIN_WAIT (the reply side closed first)
  tcp(ct, 40006, [...hs, [0, TCP_FIN | TCP_ACK], [1, TCP_ACK]], now); // CLOSE_WAIT
  tcp(ct, 40007, [...hs, [0, TCP_FIN | TCP_ACK], [1, TCP_FIN | TCP_ACK]], now); // LAST_ACK
  tcp(ct, 40008, [...hs, [0, TCP_FIN | TCP_ACK], [1, TCP_FIN | TCP_ACK], [0, TCP_ACK]], now); // TIME_WAIT
  tcp(ct, 40009, [...hs, [1, TCP_RST]], now); // CLOSE
  ct.process(A, B, IPPROTO_UDP, 5000, 53, 0, now, true, 3); // UDP unreplied
  ct.process(A, B, IPPROTO_UDP, 5001, 53, 0, now, true);
  ct.process(B, A, IPPROTO_UDP, 53, 5001, 0, now, false); // UDP replied: assured
  ct.process(A, B, IPPROTO_ICMP, 77, 0, 0, now, true); // echo request
  ct.process(B, A, IPPROTO_ICMP, 77, 0, 0, now, false); // its reply
  return ct;
}

const shape = (es: CtEntryInfo[]) => es.map(({ expires: _e, ...rest }) => rest);

describe('conntrack state across a restart', () => {
  it('restores every entry with its tuple, TCP state, reply/assured flags and mark', () => {
    const old = sample(100);
    const want = old.entries(100);
    expect(want).toHaveLength(12);
    expect(new Set(want.map((e) => e.tcpState)).size).toBe(9); // eight TCP states + undefined for UDP/ICMP
    const fresh = new ConnTrack({ capacity: 256, seed: 99 });
    expect(restoreConntrack(fresh, decodeConntrack(encodeConntrack(want)), 5)).toBe(12);
    expect(shape(fresh.entries(5))).toEqual(shape(want));
    // Straight from the bytes (what a starting cell does): the same table.
    const direct = new ConnTrack({ capacity: 256, seed: 5 });
    expect(restoreConntrackBytes(direct, encodeConntrack(want), 5)).toBe(12);
    expect(shape(direct.entries(5))).toEqual(shape(want));
  });

  it('with several workers each keeps the entries its flows hash to, and together they keep all', () => {
    const want = sample(100).entries(100);
    const bytes = encodeConntrack(want);
    const n = 3;
    const tables = [0, 1, 2].map((k) => {
      const t = new ConnTrack({ capacity: 256, seed: 10 + k });
      restoreConntrackBytes(t, bytes, 5, (e) => steerWorkerOfFlow(e.src, e.dst, e.proto, e.sport, e.dport, n) === k);
      return t;
    });
    const got = tables.flatMap((t) => t.entries(5));
    expect(shape(got).sort((a, b) => a.sport - b.sport || a.proto - b.proto)).toEqual(shape(want).sort((a, b) => a.sport - b.sport || a.proto - b.proto));
    tables.forEach((t, k) => {
      for (const e of t.entries(5)) expect(steerWorkerOfFlow(e.src, e.dst, e.proto, e.sport, e.dport, n)).toBe(k);
    });
    // The TCP connections (ports hashed) do not all land on one worker.
    expect(new Set(want.filter((e) => e.proto === IPPROTO_TCP).map((e) => steerWorkerOfFlow(e.src, e.dst, e.proto, e.sport, e.dport, n))).size).toBeGreaterThan(1);
  });

  it('a restored connection answers as before: established without policy, replies as replies', () => {
    const fresh = new ConnTrack({ capacity: 256 });
    restoreConntrack(fresh, decodeConntrack(encodeConntrack(sample(100).entries(100))), 0);
    expect(fresh.process(A, B, IPPROTO_TCP, 40003, 8080, TCP_ACK, 1, false)).toBe(CtState.Established);
    expect(fresh.process(B, A, IPPROTO_TCP, 8080, 40003, TCP_ACK, 1, false)).toBe(CtState.Reply);
    expect(fresh.process(B, A, IPPROTO_UDP, 53, 5001, 0, 1, false)).toBe(CtState.Reply);
    // A flow that was never tracked is still new.
    expect(fresh.process(A, B, IPPROTO_TCP, 49999, 8080, TCP_ACK, 1, false)).toBe(CtState.New);
  });

  it('ConntrackWriter walks a live table in small steps to the same bytes', () => {
    const now = 100;
    const ct = new ConnTrack({ capacity: 8192, seed: 3 });
    for (let i = 0; i < 5000; i++) ct.process(A, B + (i % 200), IPPROTO_UDP, 1024 + i, 53, 0, now, true, i);
    const w = new ConntrackWriter(ct, now);
    let steps = 1;
    while (!w.step(0)) steps++;
    expect(steps).toBeGreaterThan(1);
    const got = decodeConntrack(w.bytes());
    expect(got).toHaveLength(5000);
    const want = decodeConntrack(encodeConntrack(ct.entries(now)));
    const key = (e: { sport: number }) => e.sport;
    expect([...got].sort((x, y) => key(x) - key(y))).toEqual([...want].sort((x, y) => key(x) - key(y)));
  });

  it('refuses bytes that are not a conntrack state file', () => {
    const good = encodeConntrack(sample(1).entries(1));
    expect(() => decodeConntrack(good.subarray(0, 8))).toThrow('conntrack state is truncated');
    expect(() => decodeConntrack(good.subarray(0, good.length - 4))).toThrow(/says 12 entries but holds 11/);
    const bad = new Uint8Array(good);
    bad[0] ^= 0xff;
    expect(() => decodeConntrack(bad)).toThrow('wrong magic number');
    expect(decodeConntrack(encodeConntrack([]))).toEqual([]);
  });
});
