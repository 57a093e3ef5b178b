// Conntrack at scale: which entry a full table gives up (early-drop order),
// new connections on a full table, listing in slices with `conntrack -L`
// filters, and the table's footprint.
import { describe, expect, it } from 'vitest';
import {
  CT_LIST_DONE,
  ConnTrack,
  CtState,
  DEFAULT_CONNTRACK_MAX,
  EVICT_SAMPLE,
  LRU_STEP,
  TCP_ACK,
  TCP_ESTABLISHED,
  TCP_FIN,
  TCP_RST,
  TCP_STATE_NAMES,
  TCP_SYN,
  type CtEntryInfo,
  type CtFilter,
} from '../../../src/policy/conntrack.js';
import { DEFAULT_CONFIG } from '../../../src/dataplane/dataplane.js';
import { ipToU32 as ip } from '../../../src/util/ip.js';

const A = ip('10.255.1.2');
const B = ip('10.255.2.2');
const TCP = 6;
const UDP = 17;
const ICMP = 1;

/** A full TCP handshake A:sport → B:dport at `t`: ESTABLISHED and ASSURED. */
function established(ct: ConnTrack, sport: number, dport: number, t: number, src = A, dst = B): void {
  ct.process(src, dst, TCP, sport, dport, TCP_SYN, t, true);
  ct.process(dst, src, TCP, dport, sport, TCP_SYN | TCP_ACK, t, false);
  expect(ct.process(src, dst, TCP, sport, dport, TCP_ACK, t, true)).toBe(CtState.Established);
}

const sports = (ct: ConnTrack) => ct.entries(-Infinity).map((e) => `${e.proto}/${e.sport}`).sort();

/** Add a new UDP flow at `t` and return which original tuple (proto/sport) went. */
function evictedBy(ct: ConnTrack, sport: number, t: number): string[] {
  const before = new Set(sports(ct));
  const n = ct.evictions;
  ct.process(A, B, UDP, sport, 53, 0, t, true);
  expect(ct.evictions).toBe(n + 1);
  const after = new Set(sports(ct));
  return [...before].filter((k) => !after.has(k));
}

describe('ConnTrack eviction order (early drop)', () => {
  it('gives up not-assured and closing entries oldest first, and assured established ones only after them', () => {
    const ct = new ConnTrack({ capacity: 6, seed: 21 });
    established(ct, 1, 80, 0); // 6/1: assured ESTABLISHED, the oldest of all
    ct.process(A, B, UDP, 2, 53, 0, 1, true); // 17/2: unreplied
    ct.process(A, B, TCP, 3, 80, TCP_SYN, 2, true); // 6/3: SYN_SENT
    established(ct, 4, 80, 3); // 6/4: assured ESTABLISHED …
    ct.process(A, B, TCP, 4, 80, TCP_FIN | TCP_ACK, 4, true); // … then closing (FIN_WAIT): evictable again
    ct.process(A, B, ICMP, 5, 0, 0, 5, true); // 1/5: echo request, no reply
    established(ct, 6, 80, 6); // 6/6: assured ESTABLISHED, the newest
    expect(ct.size).toBe(6);
    // Evictable, by last seen: 17/2 (1), 6/3 (2), 6/4 (4), 1/5 (5). Then 6/1 (0), 6/6 (6).
    expect(evictedBy(ct, 100, 10)).toEqual(['17/2']);
    expect(evictedBy(ct, 101, 11)).toEqual(['6/3']);
    expect(evictedBy(ct, 102, 12)).toEqual(['6/4']);
    expect(evictedBy(ct, 103, 13)).toEqual(['1/5']);
    // Now only the new unreplied flows 100..103 are evictable: they go first, oldest first.
    expect(evictedBy(ct, 104, 14)).toEqual(['17/100']);
    expect(ct.evictionsProtected).toBe(0);
    expect(sports(ct)).toEqual(['17/101', '17/102', '17/103', '17/104', '6/1', '6/6'].sort());
  });

  it('a packet makes an entry young again, at most once per LRU_STEP', () => {
    expect(LRU_STEP).toBe(1);
    const ct = new ConnTrack({ capacity: 3, seed: 22 });
    ct.process(A, B, UDP, 1, 53, 0, 0, true);
    ct.process(A, B, UDP, 2, 53, 0, 0.5, true);
    ct.process(A, B, UDP, 3, 53, 0, 0.6, true);
    // 17/1 seen again within LRU_STEP of its last move: stays first in line.
    ct.process(A, B, UDP, 1, 53, 0, 0.9, true);
    expect(evictedBy(ct, 4, 0.95)).toEqual(['17/1']);
    // 17/2 seen again a full step later: goes to the back; 17/3 is the oldest now.
    ct.process(A, B, UDP, 2, 53, 0, 1.5, true);
    expect(evictedBy(ct, 5, 1.6)).toEqual(['17/3']);
  });

  it('a connection becoming assured moves out of the evictable line, and back in when it closes', () => {
    const ct = new ConnTrack({ capacity: 3, seed: 23 });
    ct.process(A, B, TCP, 1, 80, TCP_SYN, 0, true);
    ct.process(A, B, UDP, 2, 53, 0, 1, true);
    ct.process(A, B, UDP, 3, 53, 0, 2, true);
    // 6/1 completes its handshake: protected although the oldest.
    ct.process(B, A, TCP, 80, 1, TCP_SYN | TCP_ACK, 3, false);
    ct.process(A, B, TCP, 1, 80, TCP_ACK, 3, true);
    expect(evictedBy(ct, 4, 4)).toEqual(['17/2']);
    // RST: CLOSE is evictable (tcp_can_early_drop), and the most recent one.
    ct.process(A, B, TCP, 1, 80, TCP_RST, 5, true);
    expect(evictedBy(ct, 5, 6)).toEqual(['17/3']);
    expect(evictedBy(ct, 6, 7)).toEqual(['17/4']);
    expect(evictedBy(ct, 7, 8)).toEqual(['6/1']);
  });

  it(`prefers an expired entry among the first ${EVICT_SAMPLE} in line to an older live one`, () => {
    const ct = new ConnTrack({ capacity: 3, seed: 24, timeouts: { tcpClose: 1 } });
    ct.process(A, B, TCP, 1, 80, TCP_SYN, 0, true); // SYN_SENT, lives 120 s
    ct.process(A, B, TCP, 2, 80, TCP_RST | TCP_ACK, 1, true); // a first RST creates nothing
    ct.process(A, B, TCP, 2, 80, TCP_ACK, 1, true); // picked up mid-stream, answered …
    ct.process(B, A, TCP, 80, 2, TCP_ACK, 1, false);
    ct.process(A, B, TCP, 2, 80, TCP_RST, 2, true); // … then CLOSE, expires at 3 (before any reply, a RST deletes the entry)
    ct.process(A, B, UDP, 3, 53, 0, 3, true);
    expect(evictedBy(ct, 4, 5)).toEqual(['6/2']);
  });

  it('after the clock jumps back, new flows are not the first to go, and each costs a bounded walk', () => {
    const ct = new ConnTrack({ capacity: 300, seed: 32 });
    for (let i = 0; i < 300; i++) ct.process(A, B, UDP, 10_000 + i, 53, 0, 1000 + i, true);
    // The clock restarts near 0 (another process's clock, say): 200 new flows.
    const gone: string[] = [];
    for (let i = 0; i < 200; i++) gone.push(...evictedBy(ct, 30_000 + i, i / 1000));
    // The oldest entries go, in order; none of the new flows does.
    expect(gone).toEqual(Array.from({ length: 200 }, (_, i) => `17/${10_000 + i}`));
  });

  it('a full table of established connections still takes a new one, giving up the least recently seen (counted)', () => {
    const ct = new ConnTrack({ capacity: 4, seed: 25 });
    for (let p = 1; p <= 4; p++) established(ct, p, 80, p);
    ct.process(A, B, TCP, 1, 80, TCP_ACK, 10, true); // 6/1 is active again
    expect(ct.process(A, B, TCP, 50, 80, TCP_SYN, 11, true)).toBe(CtState.New);
    expect(sports(ct)).toEqual(['6/1', '6/3', '6/4', '6/50']);
    expect([ct.evictions, ct.evictionsProtected]).toEqual([1, 1]);
    // The new connection completes and answers.
    expect(ct.process(B, A, TCP, 80, 50, TCP_SYN | TCP_ACK, 11, false)).toBe(CtState.Reply);
    expect(ct.process(A, B, TCP, 50, 80, TCP_ACK, 11, true)).toBe(CtState.Established);
  });

  it('a SYN flood on a full table evicts only its own entries: established connections and a new legitimate one keep working', () => {
    const cap = 1024;
    const ct = new ConnTrack({ capacity: cap, seed: 26 });
    for (let p = 0; p < 200; p++) established(ct, 10_000 + p, 8080, 0);
    let t = 1;
    const flood = (n: number) => {
      for (let i = 0; i < n; i++) {
        const src = (ip('10.255.9.0') + (i & 0xff)) >>> 0;
        ct.process(src, B, TCP, 1024 + ((i * 7919) & 0x7fff), 8080, TCP_SYN, t, true);
        t += 0.001;
      }
    };
    flood(20_000);
    expect(ct.size).toBe(cap);
    expect(ct.evictions).toBeGreaterThan(20_000 - cap);
    expect(ct.evictionsProtected).toBe(0);
    for (let p = 0; p < 200; p++) expect(ct.process(B, A, TCP, 8080, 10_000 + p, TCP_ACK, t, false)).toBe(CtState.Reply);
    // A new connection in the middle of the flood completes its handshake.
    ct.process(A, B, TCP, 40_000, 8080, TCP_SYN, t, true);
    flood(cap / 2);
    expect(ct.process(B, A, TCP, 8080, 40_000, TCP_SYN | TCP_ACK, t, false)).toBe(CtState.Reply);
    expect(ct.process(A, B, TCP, 40_000, 8080, TCP_ACK, t, true)).toBe(CtState.Established);
    flood(10 * cap);
    expect(ct.process(B, A, TCP, 8080, 40_000, TCP_ACK, t, false)).toBe(CtState.Reply);
    expect(ct.evictionsProtected).toBe(0);
  });

  it('evicts exactly what a reference model of early drop picks, through 15,000 random TCP/UDP packets', () => {
    // Time advances by LRU_STEP per packet, so the model's "last seen" is exact.
    const cap = 24;
    const ct = new ConnTrack({ capacity: cap, seed: 27, timeouts: { udp: 20, udpReplied: 40, tcpSynSent: 30, tcpClose: 5, tcpTimeWait: 15 } });
    let s = 99;
    const next = (n: number) => {
      s = (s + 0x6d2b79f5) >>> 0;
      let x = Math.imul(s ^ (s >>> 15), s | 1);
      x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
      return ((x ^ (x >>> 14)) >>> 0) % n;
    };
    const key = (proto: number, sport: number) => `${proto}/${sport}`;
    const last = new Map<string, number>();
    const FLAGS = [TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK, TCP_ACK, TCP_FIN | TCP_ACK, TCP_RST];
    let evictions = 0;
    let protectedEvictions = 0;
    let now = 0;
    let k = 0;
    const packet = (proto: number, sport: number, fromClient: boolean, flags: number) => {
      now += LRU_STEP;
      if (++k % 500 === 0) ct.tick(now);
      const live = new Map(ct.entries(-Infinity).map((e) => [key(e.proto, e.sport), e] as const));
      const id = key(proto, sport);
      // Only a SYN or an ACK opens a TCP connection (the kernel's tcp_new: a first SYN+ACK, FIN+ACK or RST is INVALID).
      const creates = fromClient && !live.has(id) && !(proto === TCP && flags !== TCP_SYN && flags !== TCP_ACK);
      let want: string | undefined;
      if (creates && live.size === cap) {
        const all = [...live.values()].sort((a, b) => last.get(key(a.proto, a.sport))! - last.get(key(b.proto, b.sport))!);
        const evictable = all.filter((e) => !e.assured || (e.proto === TCP && e.tcpState !== 'ESTABLISHED'));
        const prot = all.filter((e) => !evictable.includes(e));
        const pick =
          evictable.slice(0, EVICT_SAMPLE).find((e) => e.expires <= now) ??
          (prot[0] && prot[0].expires <= now ? prot[0] : undefined) ??
          evictable[0] ??
          prot[0]!;
        want = key(pick.proto, pick.sport);
        evictions++;
        if (prot.includes(pick) && pick.expires > now) protectedEvictions++;
      }
      const r = fromClient ? ct.process(A, B, proto, sport, 80, flags, now, true) : ct.process(B, A, proto, 80, sport, flags, now, false);
      const after = new Set(ct.entries(-Infinity).map((e) => key(e.proto, e.sport)));
      if (want !== undefined) {
        expect(after.has(want), `packet ${k}: expected ${want} evicted`).toBe(false);
        const lost = [...live.keys()].filter((x) => x !== want && x !== id && !after.has(x));
        if (lost.length > 0) expect(lost, `packet ${k}: only ${want} evicted`).toEqual([]);
      }
      if (ct.evictions !== evictions) expect(ct.evictions, `packet ${k}: evictions`).toBe(evictions);
      // An INVALID packet (an ACK or FIN+ACK from the opener of a SYN_SENT entry) leaves the entry as it was.
      if (after.has(id) && r !== CtState.Invalid) last.set(id, now);
    };
    while (k < 15_000) {
      const proto = next(2) ? TCP : UDP;
      const sport = 1000 + next(20); // 40 connections for 24 slots
      if (next(2)) {
        // A whole handshake: makes assured entries, so the protected line fills too.
        packet(proto, sport, true, proto === TCP ? TCP_SYN : 0);
        packet(proto, sport, false, proto === TCP ? TCP_SYN | TCP_ACK : 0);
        packet(proto, sport, true, proto === TCP ? TCP_ACK : 0);
      } else {
        packet(proto, sport, next(2) !== 0, proto === TCP ? FLAGS[next(FLAGS.length)]! : 0);
      }
    }
    expect(evictions).toBeGreaterThan(1000);
    expect(ct.evictionsProtected).toBe(protectedEvictions);
    expect(protectedEvictions).toBeGreaterThan(100);
  });
});

describe('ConnTrack sizes', () => {
  it('the cell defaults to 262,144 entries, and a table that size is about 21 MB of typed arrays', () => {
    expect(DEFAULT_CONNTRACK_MAX).toBe(262_144);
    expect(DEFAULT_CONFIG.conntrackCapacity).toBe(DEFAULT_CONNTRACK_MAX);
    const ct = new ConnTrack({ capacity: DEFAULT_CONNTRACK_MAX, seed: 28 });
    expect(ct.footprintBytes).toBeLessThanOrEqual(22 * 1024 * 1024);
  });

  it('holds 100,000 flows without eviction at the default size, each answering its reply', () => {
    const ct = new ConnTrack({ capacity: DEFAULT_CONNTRACK_MAX, seed: 29 });
    for (let i = 0; i < 100_000; i++) ct.process((A + (i >>> 12)) >>> 0, B, TCP, 1024 + (i & 0xfff), 8080, TCP_SYN, 0, true);
    expect([ct.size, ct.evictions]).toEqual([100_000, 0]);
    for (let i = 0; i < 100_000; i += 997) {
      expect(ct.process(B, (A + (i >>> 12)) >>> 0, TCP, 8080, 1024 + (i & 0xfff), TCP_SYN | TCP_ACK, 1, false)).toBe(CtState.Reply);
    }
  });
});

/** A mixed table: 3 sources × 4 destinations × TCP/UDP/ICMP × a few ports, some established. */
function mixedTable(): ConnTrack {
  const ct = new ConnTrack({ capacity: 4096, seed: 30 });
  let t = 0;
  for (let s = 0; s < 3; s++) {
    for (let d = 0; d < 4; d++) {
      const src = ip(`10.255.${1 + s}.${2 + s}`);
      const dst = ip(`10.255.${10 + d}.${5 + d}`);
      for (let p = 0; p < 5; p++) {
        const dport = [80, 443, 8080, 53, 9999][p]!;
        const sport = 30_000 + s * 100 + d * 10 + p;
        if (p % 2 === 0) established(ct, sport, dport, t, src, dst);
        else ct.process(src, dst, TCP, sport, dport, TCP_SYN, t, true, p);
        ct.process(src, dst, UDP, sport, dport, 0, t, true, 7);
        ct.process(src, dst, ICMP, sport, 0, 0, t, true);
        t += 0.01;
      }
    }
  }
  return ct;
}

const tupleKey = (e: CtEntryInfo) => `${e.proto} ${e.src}>${e.dst} ${e.sport}>${e.dport}`;

/** The same filter, slowly: what `conntrack -L` would print. */
function reference(all: CtEntryInfo[], f: CtFilter): string[] {
  const inPfx = (a: number, b: number, len: number) => len === 0 || a >>> (32 - len) === b >>> (32 - len);
  return all
    .filter(
      (e) =>
        (f.proto === undefined || e.proto === f.proto) &&
        (f.src === undefined || inPfx(e.src, f.src, f.srcPrefixLen ?? 32)) &&
        (f.dst === undefined || inPfx(e.dst, f.dst, f.dstPrefixLen ?? 32)) &&
        (f.sport === undefined || e.sport === f.sport) &&
        (f.dport === undefined || e.dport === f.dport) &&
        (f.tcpState === undefined || e.tcpState === TCP_STATE_NAMES[f.tcpState]) &&
        (f.mark === undefined || e.mark === f.mark),
    )
    .map(tupleKey)
    .sort();
}

/** Everything `list` yields for `f`, in slices of `max`. */
function listAll(ct: ConnTrack, f: CtFilter, max: number, now = 1): string[] {
  const out: CtEntryInfo[] = [];
  let calls = 0;
  for (let c = 0; c !== CT_LIST_DONE; calls++) {
    const before = out.length;
    c = ct.list(c, max, now, f, out);
    expect(out.length - before).toBeLessThanOrEqual(max);
  }
  expect(calls).toBeGreaterThan(0);
  return out.map(tupleKey).sort();
}

describe('ConnTrack.list: filters as conntrack -L has them', () => {
  const ct = mixedTable();
  const all = ct.entries(1);
  const cases: [string, CtFilter, number][] = [
    ['everything', {}, 180],
    ['--proto tcp', { proto: TCP }, 60],
    ['--proto icmp', { proto: ICMP }, 60],
    ['--src 10.255.2.3', { src: ip('10.255.2.3') }, 60],
    ['--src 10.255.0.0/16 (all)', { src: ip('10.255.0.0'), srcPrefixLen: 16 }, 180],
    ['--src 10.255.2.0/23 (sources 1 and 2)', { src: ip('10.255.2.0'), srcPrefixLen: 23 }, 120],
    ['--dst 10.255.12.7', { dst: ip('10.255.12.7') }, 45],
    ['--dst 10.255.12.7 --proto udp --dport 53', { dst: ip('10.255.12.7'), proto: UDP, dport: 53 }, 3],
    ['--dport 8080', { dport: 8080 }, 24],
    ['--sport 30112', { sport: 30112 }, 3],
    ['--state ESTABLISHED', { tcpState: TCP_ESTABLISHED }, 36],
    ['--mark 7', { mark: 7 }, 60],
    ['--src 10.255.3.4 --dst 10.255.10.5 --proto tcp --dport 443', { src: ip('10.255.3.4'), dst: ip('10.255.10.5'), proto: TCP, dport: 443 }, 1],
    ['no match', { dport: 1 }, 0],
  ];
  for (const [name, f, n] of cases) {
    it(`${name}: ${n} entries, in slices or at once`, () => {
      const want = reference(all, f);
      expect(want).toHaveLength(n);
      expect(listAll(ct, f, 7)).toEqual(want);
      expect(listAll(ct, f, 100_000)).toEqual(want);
      expect(ct.entries(1, f).map(tupleKey).sort()).toEqual(want);
    });
  }

  it('bounds the work of one call by scanMax, whatever the filter', () => {
    const out: CtEntryInfo[] = [];
    let c = 0;
    let calls = 0;
    while (c !== CT_LIST_DONE) {
      const prev = c;
      c = ct.list(c, 10, 1, { dport: 1 }, out, 512);
      expect(c === CT_LIST_DONE || c - prev === 512).toBe(true);
      calls++;
    }
    expect([out.length, calls]).toEqual([0, 4096 / 512]);
  });

  it('rejects a bad cursor or filter with one clear sentence', () => {
    expect(() => ct.list(-1, 10, 0)).toThrow('conntrack cursor must be an integer in 0..4096, got -1');
    expect(() => ct.list(5000, 10, 0)).toThrow('conntrack cursor must be an integer in 0..4096, got 5000');
    expect(() => ct.list(0, 0, 0)).toThrow('conntrack slice size must be a positive integer, got 0');
    expect(() => ct.list(0, 1, 0, { dport: 70000 })).toThrow('conntrack filter dport must be an integer in 0..65535, got 70000');
    expect(() => ct.list(0, 1, 0, { src: 1, srcPrefixLen: 33 })).toThrow('conntrack filter src prefix length must be 0..32, got 33');
    expect(ct.list(4096, 1, 0)).toBe(CT_LIST_DONE);
  });
});

describe('ConnTrack.list: a walk in slices while the table changes', () => {
  it('lists every entry that lives throughout exactly once, and nothing twice, while entries expire and arrive between slices', () => {
    const cap = 20_000;
    const ct = new ConnTrack({ capacity: cap, seed: 31, timeouts: { udp: 20 } });
    // 15,000 flows, id i created at (15000 - i) / 1000 s: UDP ones expire at
    // 35 - i / 1000, some before the walk (starting at 15, about 1 s per
    // 1,000 ids) reaches them; TCP SYN_SENT ones (120 s) outlive the walk.
    const N = 15_000;
    const tuple = (i: number) => [(A + (i >>> 10)) >>> 0, B, i % 3 === 0 ? TCP : UDP, 1024 + (i & 0x3ff), 9000] as const;
    const keyOf = (i: number) => {
      const [src, dst, proto, sp, dp] = tuple(i);
      return `${proto} ${src}>${dst} ${sp}>${dp}`;
    };
    for (let i = 0; i < N; i++) {
      const [src, dst, proto, sp, dp] = tuple(i);
      ct.process(src, dst, proto, sp, dp, TCP_SYN, (N - i) / 1000, true);
    }
    const seen = new Map<string, number>();
    const expired: string[] = [];
    const out: CtEntryInfo[] = [];
    let now = 15;
    let born = 0;
    let slices = 0;
    for (let c = 0; c !== CT_LIST_DONE; slices++) {
      c = ct.list(c, 250, now, {}, out);
      for (const e of out) {
        seen.set(tupleKey(e), (seen.get(tupleKey(e)) ?? 0) + 1);
        if (e.expires <= now) expired.push(tupleKey(e));
      }
      out.length = 0;
      // Between slices: time passes (UDP flows expire and are swept), and new
      // flows arrive (taking freed ids, before and after the cursor).
      now += 0.25;
      ct.tick(now);
      for (let k = 0; k < 100; k++, born++) ct.process(ip('10.255.77.1'), B, UDP, 1 + born, 53, 0, now, true);
    }
    expect(slices).toBeGreaterThan(20);
    expect(expired).toEqual([]);
    expect(Math.max(...seen.values())).toBe(1);
    let missed = 0;
    const notOnce: string[] = [];
    for (let i = 0; i < N; i++) {
      const expires = i % 3 === 0 ? (N - i) / 1000 + 120 : 35 - i / 1000;
      // Alive at the end of the walk: alive throughout, so listed exactly once.
      if (expires > now) {
        if (seen.get(keyOf(i)) !== 1) notOnce.push(keyOf(i));
      } else if (!seen.has(keyOf(i))) missed++;
    }
    expect(notOnce).toEqual([]);
    // Some flows did expire during the walk before it reached them.
    expect(missed).toBeGreaterThan(1000);
  });
});
