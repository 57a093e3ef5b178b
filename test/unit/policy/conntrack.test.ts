import { describe, expect, it } from 'vitest';
import {
  ConnTrack,
  CtState,
  TCP_ACK,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
  conntrackJson,
  formatConntrack,
  tcpFlagsValid,
} from '../../../src/policy/conntrack.js';
import { ipToU32 as ip } from '../../../src/util/ip.js';

const A = ip('10.255.1.2'); // client
const B = ip('10.255.2.2'); // server
const TCP = 6;
const UDP = 17;
const ICMP = 1;
const PSH = 0x08;
const URG = 0x20;
const ECE = 0x40;
const CWR = 0x80;

const lines = (ct: ConnTrack, now: number) => ct.entries(now).map((e) => formatConntrack(e, now));

describe('ConnTrack: TCP', () => {
  it('follows the three-way handshake, data, and an orderly close', () => {
    const ct = new ConnTrack({ capacity: 16, seed: 1 });
    const t = 1000;
    // SYN from the client creates the entry.
    expect(ct.process(A, B, TCP, 40000, 8080, TCP_SYN, t, true, 4)).toBe(CtState.New);
    expect(lines(ct, t)).toEqual([
      'tcp      6 120 SYN_SENT src=10.255.1.2 dst=10.255.2.2 sport=40000 dport=8080 [UNREPLIED] src=10.255.2.2 dst=10.255.1.2 sport=8080 dport=40000 mark=4 use=1',
    ]);
    // A retransmitted SYN is still the original direction without a reply: New.
    expect(ct.process(A, B, TCP, 40000, 8080, TCP_SYN, t + 1, true)).toBe(CtState.New);
    expect(ct.size).toBe(1);
    // SYN+ACK from the server: reply direction.
    expect(ct.process(B, A, TCP, 8080, 40000, TCP_SYN | TCP_ACK, t + 1, false)).toBe(CtState.Reply);
    expect(lines(ct, t + 1)).toEqual([
      'tcp      6 60 SYN_RECV src=10.255.1.2 dst=10.255.2.2 sport=40000 dport=8080 src=10.255.2.2 dst=10.255.1.2 sport=8080 dport=40000 mark=4 use=1',
    ]);
    // ACK from the client: original direction after a reply → Established.
    expect(ct.process(A, B, TCP, 40000, 8080, TCP_ACK, t + 2, true)).toBe(CtState.Established);
    expect(lines(ct, t + 3)).toEqual([
      'tcp      6 431999 ESTABLISHED src=10.255.1.2 dst=10.255.2.2 sport=40000 dport=8080 src=10.255.2.2 dst=10.255.1.2 sport=8080 dport=40000 [ASSURED] mark=4 use=1',
    ]);
    expect(ct.process(A, B, TCP, 40000, 8080, PSH | TCP_ACK, t + 3, true)).toBe(CtState.Established);
    expect(ct.process(B, A, TCP, 8080, 40000, TCP_ACK, t + 3, false)).toBe(CtState.Reply);
    // Orderly close: client FIN, server ACKs it, server FIN, client ACKs it.
    const state = (now: number) => ct.entries(now)[0]!.tcpState;
    const left = (now: number) => conntrackJson(ct.entries(now)[0]!, now).timeout;
    ct.process(A, B, TCP, 40000, 8080, TCP_FIN | TCP_ACK, t + 4, true);
    expect([state(t + 4), left(t + 4)]).toEqual(['FIN_WAIT', 120]);
    ct.process(B, A, TCP, 8080, 40000, TCP_ACK, t + 4, false);
    expect([state(t + 4), left(t + 4)]).toEqual(['CLOSE_WAIT', 60]);
    ct.process(B, A, TCP, 8080, 40000, TCP_FIN | TCP_ACK, t + 5, false);
    expect([state(t + 5), left(t + 5)]).toEqual(['LAST_ACK', 30]);
    ct.process(A, B, TCP, 40000, 8080, TCP_ACK, t + 5, true);
    expect([state(t + 5), left(t + 5)]).toEqual(['TIME_WAIT', 120]);
    // Expired after time_wait: tick removes it.
    expect(ct.tick(t + 5 + 119.9)).toBe(0);
    expect(ct.tick(t + 5 + 120)).toBe(1);
    expect(ct.size).toBe(0);
  });

  it('moves to CLOSE on RST from either side and expires 10 s later', () => {
    for (const fromServer of [false, true]) {
      const ct = new ConnTrack({ capacity: 16, seed: 2 });
      ct.process(A, B, TCP, 40001, 8080, TCP_SYN, 0, true);
      ct.process(B, A, TCP, 8080, 40001, TCP_SYN | TCP_ACK, 0, false);
      ct.process(A, B, TCP, 40001, 8080, TCP_ACK, 0, true);
      if (fromServer) expect(ct.process(B, A, TCP, 8080, 40001, TCP_RST | TCP_ACK, 5, false)).toBe(CtState.Reply);
      else expect(ct.process(A, B, TCP, 40001, 8080, TCP_RST, 5, true)).toBe(CtState.Established);
      expect(ct.entries(5)[0]!.tcpState).toBe('CLOSE');
      expect(ct.tick(14.9)).toBe(0);
      expect(ct.tick(15)).toBe(1);
    }
  });

  it('a SYN reopens a connection in TIME_WAIT as a fresh SYN_SENT', () => {
    const ct = new ConnTrack({ capacity: 16, seed: 3 });
    ct.process(A, B, TCP, 40002, 80, TCP_SYN, 0, true);
    ct.process(B, A, TCP, 80, 40002, TCP_SYN | TCP_ACK, 0, false);
    ct.process(A, B, TCP, 40002, 80, TCP_ACK, 0, true);
    ct.process(A, B, TCP, 40002, 80, TCP_RST, 1, true);
    expect(ct.process(A, B, TCP, 40002, 80, TCP_SYN, 2, true)).toBe(CtState.New);
    const e = ct.entries(2)[0]!;
    expect([e.tcpState, e.seenReply, e.assured]).toEqual(['SYN_SENT', false, false]);
  });

  it('creates nothing for a first packet conntrack calls INVALID (tcp_new: only a SYN or an ACK opens one), nor without `create`', () => {
    const ct = new ConnTrack({ capacity: 16, seed: 4 });
    // Valid flag mixes that cannot open a connection: the NONE column of the kernel's tcp_conntracks.
    for (const f of [TCP_RST, TCP_RST | TCP_ACK, TCP_SYN | TCP_ACK, TCP_FIN | TCP_ACK, TCP_FIN | TCP_ACK | URG]) {
      expect(ct.process(A, B, TCP, 1, 2, f, 0, true), `flags 0x${f.toString(16)}`).toBe(CtState.Invalid);
    }
    expect(ct.process(A, B, TCP, 1, 2, TCP_SYN, 0, false)).toBe(CtState.New);
    expect(ct.size).toBe(0);
    expect(ct.process(B, A, TCP, 2, 1, TCP_ACK, 0, false)).toBe(CtState.New);
    expect(ct.process(B, A, TCP, 2, 1, TCP_SYN | TCP_ACK, 0, false)).toBe(CtState.Invalid);
    expect(ct.size).toBe(0);
    // What does open one: a SYN (ECE, CWR, PSH and URG aside) and, picked up mid-stream, an ACK.
    for (const [sport, f, st] of [
      [10, TCP_SYN, 'SYN_SENT'],
      [11, TCP_SYN | ECE | CWR, 'SYN_SENT'],
      [12, TCP_SYN | URG, 'SYN_SENT'],
      [13, TCP_ACK, 'ESTABLISHED'],
      [14, TCP_ACK | PSH, 'ESTABLISHED'],
      [15, TCP_ACK | URG, 'ESTABLISHED'],
    ] as const) {
      expect(ct.process(A, B, TCP, sport, 2, f, 0, true)).toBe(CtState.New);
      expect(ct.entries(0).find((e) => e.sport === sport)?.tcpState).toBe(st);
    }
    expect(ct.size).toBe(6);
  });

  it('a flag mix outside tcp_valid_flags is INVALID with or without a connection, and changes nothing', () => {
    const ct = new ConnTrack({ capacity: 16, seed: 7 });
    // tcp_error: FIN alone, no flags, PSH alone, URG alone, SYN|FIN, SYN|RST, FIN|PSH|URG, every flag.
    const bad = [TCP_FIN, 0, PSH, URG, TCP_SYN | TCP_FIN, TCP_SYN | TCP_RST, TCP_FIN | PSH | URG, 0x3f, TCP_FIN | URG, TCP_RST | TCP_FIN | TCP_ACK];
    for (const f of bad) expect(ct.process(A, B, TCP, 1, 2, f, 0, true), `flags 0x${f.toString(16)}`).toBe(CtState.Invalid);
    expect(ct.size).toBe(0);
    // An established connection: its entry is not touched (state, expiry) by them, in either direction.
    ct.process(A, B, TCP, 40000, 80, TCP_SYN, 0, true);
    ct.process(B, A, TCP, 80, 40000, TCP_SYN | TCP_ACK, 0, false);
    ct.process(A, B, TCP, 40000, 80, TCP_ACK, 0, true);
    const before = lines(ct, 0);
    for (const f of bad) {
      expect(ct.process(A, B, TCP, 40000, 80, f, 100, true)).toBe(CtState.Invalid);
      expect(ct.process(B, A, TCP, 80, 40000, f, 100, false)).toBe(CtState.Invalid);
    }
    expect(lines(ct, 0)).toEqual(before);
    expect(tcpFlagsValid(TCP_FIN | TCP_ACK)).toBe(true);
    expect(tcpFlagsValid(TCP_FIN)).toBe(false);
  });

  describe('before any reply (nf_conntrack_tcp_packet: "If only reply is a RST, ... delete the conntrack immediately")', () => {
    const SEQ = 1_000_000;
    /** A SYN from A with 100 bytes of data: the opener's end is SEQ + 101. */
    const opened = () => {
      const ct = new ConnTrack({ capacity: 16, seed: 8 });
      expect(ct.process(A, B, TCP, 40000, 8081, TCP_SYN, 0, true, 0, SEQ, 0, 100)).toBe(CtState.New);
      return ct;
    };
    const left = (ct: ConnTrack, now: number) => ct.entries(now).map((e) => [e.tcpState, Math.round(e.expires - now)]);

    it('a RST from the opener, starting at or before its end, deletes the entry (it still belongs to it: New)', () => {
      for (const seq of [SEQ + 101, SEQ, SEQ - 2_000_000_000, 0]) {
        const ct = opened();
        expect(ct.process(A, B, TCP, 40000, 8081, TCP_RST, 1, true, 0, seq), `seq ${seq}`).toBe(CtState.New);
        expect(ct.size).toBe(0);
      }
    });

    it('a RST from the opener past its end is INVALID and changes nothing', () => {
      const ct = opened();
      expect(ct.process(A, B, TCP, 40000, 8081, TCP_RST, 5, true, 0, SEQ + 102)).toBe(CtState.Invalid);
      expect(left(ct, 5)).toEqual([['SYN_SENT', 115]]);
    });

    it("a RST|ACK from the opener acknowledging what the silent peer never sent is INVALID or ignored; ACK 0 is a broken stack's RST", () => {
      const ct = opened();
      expect(ct.process(A, B, TCP, 40000, 8081, TCP_RST | TCP_ACK, 1, true, 0, SEQ, 12345)).toBe(CtState.Invalid);
      expect(ct.process(A, B, TCP, 40000, 8081, TCP_RST | TCP_ACK, 1, true, 0, SEQ, 0x90000000)).toBe(CtState.New); // ignored
      expect(left(ct, 1)).toEqual([['SYN_SENT', 119]]);
      expect(ct.process(A, B, TCP, 40000, 8081, TCP_RST | TCP_ACK, 2, true, 0, SEQ, 2 ** 32 - 66000)).toBe(CtState.New);
      expect(ct.size).toBe(0);
      const ct2 = opened();
      expect(ct2.process(A, B, TCP, 40000, 8081, TCP_RST | TCP_ACK, 2, true, 0, SEQ, 0)).toBe(CtState.New);
      expect(ct2.size).toBe(0);
    });

    it('the first reply a RST|ACK of the SYN ("connection refused"): deleted; one acknowledging past the SYN is INVALID', () => {
      const ct = opened();
      expect(ct.process(B, A, TCP, 8081, 40000, TCP_RST | TCP_ACK, 1, false, 0, 0, SEQ + 200)).toBe(CtState.Invalid);
      expect(ct.size).toBe(1);
      expect(ct.process(B, A, TCP, 8081, 40000, TCP_RST | TCP_ACK, 1, false, 0, 0, SEQ + 101)).toBe(CtState.Reply);
      expect(ct.size).toBe(0);
    });

    it('from the opener, a SYN+ACK, FIN+ACK or ACK before any reply is INVALID (sIV in SYN_SENT); a later SYN moves its end', () => {
      const ct = opened();
      for (const f of [TCP_SYN | TCP_ACK, TCP_FIN | TCP_ACK, TCP_ACK, TCP_ACK | PSH]) {
        expect(ct.process(A, B, TCP, 40000, 8081, f, 10, true, 0, SEQ + 101, 5), `flags 0x${f.toString(16)}`).toBe(CtState.Invalid);
      }
      expect(left(ct, 10)).toEqual([['SYN_SENT', 110]]);
      // A SYN far ahead re-initialises the end (RFC 793 "reinitialized"); a RST at the old end is then in window too.
      expect(ct.process(A, B, TCP, 40000, 8081, TCP_SYN, 11, true, 0, SEQ + 3_000_000)).toBe(CtState.New);
      expect(ct.process(A, B, TCP, 40000, 8081, TCP_RST, 12, true, 0, SEQ + 3_000_001)).toBe(CtState.New);
      expect(ct.size).toBe(0);
    });

    it('an entry picked up mid-stream (liberal window) goes on any RST from either side; a reply first makes a RST close it', () => {
      for (const [dir, flags] of [[0, TCP_RST], [0, TCP_RST | TCP_ACK], [1, TCP_RST], [1, TCP_RST | TCP_ACK]] as const) {
        const ct = new ConnTrack({ capacity: 16, seed: 9 });
        ct.process(A, B, TCP, 40000, 8080, TCP_ACK, 0, true, 0, 7, 8, 10);
        const r = dir === 0 ? ct.process(A, B, TCP, 40000, 8080, flags, 1, true, 0, 123456789, 987654321) : ct.process(B, A, TCP, 8080, 40000, flags, 1, false, 0, 123456789, 987654321);
        expect(r).toBe(dir === 0 ? CtState.New : CtState.Reply);
        expect(ct.size).toBe(0);
      }
      const ct = new ConnTrack({ capacity: 16, seed: 10 });
      ct.process(A, B, TCP, 40000, 8080, TCP_ACK, 0, true);
      ct.process(B, A, TCP, 8080, 40000, TCP_ACK, 0, false);
      expect(ct.process(B, A, TCP, 8080, 40000, TCP_RST, 1, false)).toBe(CtState.Reply);
      expect(left(ct, 1)).toEqual([['CLOSE', 10]]);
    });

    it('a SYN reopening a closed connection starts a new end: a RST before the new reply is judged against it', () => {
      const ct = new ConnTrack({ capacity: 16, seed: 12 });
      ct.process(A, B, TCP, 40000, 80, TCP_SYN, 0, true, 0, 5000);
      ct.process(B, A, TCP, 80, 40000, TCP_SYN | TCP_ACK, 0, false, 0, 9000, 5001);
      ct.process(A, B, TCP, 40000, 80, TCP_RST, 1, true, 0, 5001); // answered: CLOSE
      expect(ct.process(A, B, TCP, 40000, 80, TCP_SYN, 2, true, 0, 2_000_000_000)).toBe(CtState.New);
      expect(left(ct, 2)).toEqual([['SYN_SENT', 120]]);
      // Past the old end, at the new one: in window, deletes the reopened entry.
      expect(ct.process(A, B, TCP, 40000, 80, TCP_RST, 3, true, 0, 2_000_000_001)).toBe(CtState.New);
      expect(ct.size).toBe(0);
    });

    it('a TCP header whose data offset is below 5 or past the packet (segLen -1) is INVALID', () => {
      const ct = opened();
      expect(ct.process(A, B, TCP, 40000, 8081, TCP_RST, 1, true, 0, SEQ, 0, -1)).toBe(CtState.Invalid);
      expect(ct.process(A, B, TCP, 40001, 8081, TCP_SYN, 1, true, 0, SEQ, 0, -1)).toBe(CtState.Invalid);
      expect(ct.size).toBe(1);
    });
  });

  it('readOnly: answers as it would, changes nothing (trace)', () => {
    const ct = new ConnTrack({ capacity: 16, seed: 11 });
    ct.process(A, B, TCP, 40000, 80, TCP_SYN, 0, true);
    const before = lines(ct, 1);
    ct.readOnly = true;
    expect(ct.process(A, B, TCP, 40001, 80, TCP_SYN, 1, true)).toBe(CtState.New); // would create
    expect(ct.process(B, A, TCP, 80, 40000, TCP_SYN | TCP_ACK, 1, false)).toBe(CtState.Reply); // would answer
    expect(ct.process(A, B, TCP, 40000, 80, TCP_RST, 1, true)).toBe(CtState.New); // would delete
    expect(ct.process(A, B, TCP, 40000, 80, TCP_SYN, 200, true)).toBe(CtState.New); // would expire and reopen
    expect(lines(ct, 1)).toEqual(before);
    ct.readOnly = false;
    expect(ct.process(A, B, TCP, 40000, 80, TCP_RST, 1, true)).toBe(CtState.New);
    expect(ct.size).toBe(0);
  });

  it('picks up the seed 002 data segment mid-stream as ESTABLISHED (loose pickup)', () => {
    // Seed 002, destination container capture: 10.255.99.3.56766 > 10.255.132.2.7777, Flags [P.] (0x18).
    const seg = Uint8Array.from([0xdd, 0xbe, 0x1e, 0x61, 0x8c, 0x78, 0x3a, 0x6f, 0x80, 0xd3, 0x13, 0xea, 0x80, 0x18]);
    const sport = (seg[0]! << 8) | seg[1]!;
    const dport = (seg[2]! << 8) | seg[3]!;
    const flags = seg[13]!;
    const src = ip('10.255.99.3');
    const dst = ip('10.255.132.2');
    const ct = new ConnTrack({ capacity: 16, seed: 5 });
    expect(ct.process(src, dst, TCP, sport, dport, flags, 0, true, 1)).toBe(CtState.New);
    expect(ct.process(dst, src, TCP, dport, sport, TCP_ACK, 0.5, false)).toBe(CtState.Reply);
    expect(ct.process(src, dst, TCP, sport, dport, flags, 1, true)).toBe(CtState.Established);
    expect(lines(ct, 1)).toEqual([
      'tcp      6 432000 ESTABLISHED src=10.255.99.3 dst=10.255.132.2 sport=56766 dport=7777 src=10.255.132.2 dst=10.255.99.3 sport=7777 dport=56766 [ASSURED] mark=1 use=1',
    ]);
  });
});

describe('ConnTrack: UDP and ICMP', () => {
  it('UDP: 30 s unreplied, 120 s once replied; expiry via tick and on lookup', () => {
    const ct = new ConnTrack({ capacity: 16, seed: 6 });
    expect(ct.process(A, B, UDP, 5000, 53, 0, 10, true)).toBe(CtState.New);
    expect(lines(ct, 10)).toEqual([
      'udp      17 30 src=10.255.1.2 dst=10.255.2.2 sport=5000 dport=53 [UNREPLIED] src=10.255.2.2 dst=10.255.1.2 sport=53 dport=5000 mark=0 use=1',
    ]);
    expect(ct.tick(39.99)).toBe(0);
    expect(ct.tick(40)).toBe(1);
    // Again, this time with a reply.
    ct.process(A, B, UDP, 5000, 53, 0, 50, true);
    expect(ct.process(B, A, UDP, 53, 5000, 0, 51, false)).toBe(CtState.Reply);
    expect(ct.process(A, B, UDP, 5000, 53, 0, 52, true)).toBe(CtState.Established);
    expect(lines(ct, 52)).toEqual([
      'udp      17 120 src=10.255.1.2 dst=10.255.2.2 sport=5000 dport=53 src=10.255.2.2 dst=10.255.1.2 sport=53 dport=5000 [ASSURED] mark=0 use=1',
    ]);
    // Not ticked yet, but expired at lookup time: a late reply is not admitted.
    expect(ct.process(B, A, UDP, 53, 5000, 0, 172, false)).toBe(CtState.New);
    expect(ct.size).toBe(0);
    // Ports swapped the wrong way are another flow.
    ct.process(A, B, UDP, 5000, 53, 0, 200, true);
    expect(ct.process(B, A, UDP, 5000, 53, 0, 200, false)).toBe(CtState.New);
  });

  it('ICMP echo: (id, 0) in both directions; another id is another flow', () => {
    const ct = new ConnTrack({ capacity: 16, seed: 7 });
    expect(ct.process(A, B, ICMP, 0x1234, 0, 0, 0, true)).toBe(CtState.New);
    expect(ct.process(B, A, ICMP, 0x1234, 0, 0, 0.1, false)).toBe(CtState.Reply);
    expect(ct.process(B, A, ICMP, 0x1235, 0, 0, 0.1, false)).toBe(CtState.New);
    expect(ct.process(A, B, ICMP, 0x1234, 0, 0, 1, true)).toBe(CtState.Established);
    expect(lines(ct, 1)).toEqual([
      'icmp     1 30 src=10.255.1.2 dst=10.255.2.2 type=8 code=0 id=4660 src=10.255.2.2 dst=10.255.1.2 type=0 code=0 id=4660 mark=0 use=1',
    ]);
    expect(ct.tick(31)).toBe(1);
  });
});

describe('ConnTrack.related', () => {
  it('matches an ICMP error quoting a packet of a tracked flow, in either direction', () => {
    const ct = new ConnTrack({ capacity: 16, seed: 8 });
    ct.process(A, B, TCP, 40000, 8080, TCP_SYN, 0, true);
    ct.process(A, B, UDP, 6000, 9999, 0, 0, true);
    ct.process(A, B, ICMP, 77, 0, 0, 0, true);
    // Port unreachable from B quoting A's datagram.
    expect(ct.related(A, B, UDP, 6000, 9999)).toBe(true);
    // Fragmentation needed from a router quoting B's reply segment.
    expect(ct.related(B, A, TCP, 8080, 40000)).toBe(true);
    // Host unreachable quoting the echo request.
    expect(ct.related(A, B, ICMP, 77, 0)).toBe(true);
    expect(ct.related(A, B, UDP, 6000, 9998)).toBe(false);
    expect(ct.related(A, B, TCP, 6000, 9999)).toBe(false);
    expect(ct.related(B, A, UDP, 6000, 9999)).toBe(false);
    // With `now`, an expired (not yet ticked) entry does not count.
    expect(ct.related(A, B, UDP, 6000, 9999, 29)).toBe(true);
    expect(ct.related(A, B, UDP, 6000, 9999, 30)).toBe(false);
  });
});

describe('ConnTrack: bounded table', () => {
  it('evicts the least recently seen non-assured flow when full, and counts it', () => {
    const ct = new ConnTrack({ capacity: 4, seed: 9 });
    // f0: assured TCP, seen long ago.
    ct.process(A, B, TCP, 1, 80, TCP_SYN, 0, true);
    ct.process(B, A, TCP, 80, 1, TCP_SYN | TCP_ACK, 0, false);
    ct.process(A, B, TCP, 1, 80, TCP_ACK, 0, true);
    ct.process(A, B, UDP, 2, 53, 0, 1, true); // f1: unreplied, seen at 1
    ct.process(A, B, UDP, 3, 53, 0, 2, true); // f2: unreplied, seen at 2
    ct.process(A, B, TCP, 4, 80, TCP_SYN, 3, true); // f3: SYN_SENT, seen at 3
    ct.process(A, B, UDP, 2, 53, 0, 3.5, true); // f1 seen again: now f2 is the oldest non-assured
    expect(ct.size).toBe(4);
    expect(ct.evictions).toBe(0);
    expect(ct.process(A, B, UDP, 5, 53, 0, 4, true)).toBe(CtState.New); // never fails
    expect(ct.size).toBe(4);
    expect(ct.evictions).toBe(1);
    const ports = () => ct.entries(4).map((e) => `${e.proto}/${e.sport}`).sort();
    expect(ports()).toEqual(['17/2', '17/5', '6/1', '6/4']);
  });

  it('prefers an expired entry, even an assured one', () => {
    const ct = new ConnTrack({ capacity: 2, seed: 10, timeouts: { udpReplied: 5 } });
    ct.process(A, B, UDP, 1, 53, 0, 0, true);
    ct.process(B, A, UDP, 53, 1, 0, 0, false); // assured, expires at 5
    ct.process(A, B, UDP, 2, 53, 0, 4, true); // unreplied, expires at 34
    ct.process(A, B, UDP, 3, 53, 0, 6, true);
    expect(ct.evictions).toBe(1);
    expect(ct.entries(6).map((e) => e.sport).sort()).toEqual([2, 3]);
  });

  it('evicts the oldest assured flow when every flow is assured', () => {
    const ct = new ConnTrack({ capacity: 3, seed: 11 });
    for (const [port, t] of [[1, 5], [2, 1], [3, 9]] as const) {
      ct.process(A, B, UDP, port, 53, 0, t, true);
      ct.process(B, A, UDP, 53, port, 0, t, false);
    }
    ct.process(A, B, UDP, 4, 53, 0, 10, true);
    expect(ct.entries(10).map((e) => e.sport).sort()).toEqual([1, 3, 4]);
  });

  it('stays consistent with a reference model through 20,000 random packets, ticks and evictions', () => {
    const cap = 256;
    const ct = new ConnTrack({ capacity: cap, seed: 12 });
    // Reference: original tuple key → { expires, replied, last }.
    const ref = new Map<string, { expires: number; replied: boolean }>();
    // mulberry32: the low bits of a plain LCG repeat with a short period, which would correlate the fields.
    let s = 7;
    const next = (n: number) => {
      s = (s + 0x6d2b79f5) >>> 0;
      let t = Math.imul(s ^ (s >>> 15), s | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    let now = 0;
    let evicted = 0;
    for (let k = 0; k < 20_000; k++) {
      now += next(100) / 10000; // dense enough to fill the table within the UDP timeouts
      if (k % 997 === 0) {
        const before = ct.size;
        const removed = ct.tick(now);
        for (const [key, v] of ref) if (v.expires <= now) ref.delete(key);
        expect(before - removed).toBe(ref.size);
      }
      const a = ip('10.255.1.0') + next(4);
      const b = ip('10.255.2.0') + next(4);
      const p = 1000 + next(40);
      const reverse = next(2) === 1;
      const fwd = `${a}>${b}:${p}`;
      const [src, dst, sp, dp] = reverse ? [b, a, 53, p] : [a, b, p, 53];
      const e = ref.get(fwd);
      const live = e && e.expires > now ? e : undefined;
      if (e && !live) ref.delete(fwd);
      let want: CtState;
      if (!live) {
        want = CtState.New;
        if (!reverse) {
          if (ref.size >= cap) {
            // The table is full: it evicts one; which one is its choice. Mirror it.
            const got = ct.process(src, dst, 17, sp, dp, 0, now, true);
            expect(got).toBe(CtState.New);
            evicted++;
            // entries(-Infinity) lists expired-but-unticked entries too, as the model keeps them.
            const after = new Set(ct.entries(-Infinity).map((x) => `${x.src}>${x.dst}:${x.sport}`));
            for (const key of [...ref.keys()]) if (!after.has(key)) ref.delete(key);
            ref.set(fwd, { expires: now + 30, replied: false });
            expect(ct.size).toBe(ref.size);
            continue;
          }
          ref.set(fwd, { expires: now + 30, replied: false });
        }
      } else if (reverse) {
        want = CtState.Reply;
        live.replied = true;
        live.expires = now + 120;
      } else {
        want = live.replied ? CtState.Established : CtState.New;
        live.expires = now + (live.replied ? 120 : 30);
      }
      expect(ct.process(src, dst, 17, sp, dp, 0, now, !reverse)).toBe(want);
    }
    expect(evicted).toBeGreaterThan(100);
    expect(ct.evictions).toBe(evicted);
  });

  it('never fails past capacity: 100,000 flows into 1,024 slots', () => {
    const ct = new ConnTrack({ capacity: 1024, seed: 13 });
    for (let i = 0; i < 100_000; i++) {
      ct.process(A + (i >>> 16), B, UDP, (i & 0xffff) | 0, 53, 0, i / 1000, true);
    }
    expect(ct.size).toBe(1024);
    expect(ct.evictions).toBe(100_000 - 1024);
    // The latest flow is there and answers to its reply.
    const i = 99_999;
    expect(ct.process(B, A + (i >>> 16), UDP, 53, i & 0xffff, 0, 100, false)).toBe(CtState.Reply);
  });

  it('rejects a bad configuration clearly', () => {
    expect(() => new ConnTrack({ capacity: 0 })).toThrow('conntrack capacity must be an integer in 1..16777216, got 0');
    expect(() => new ConnTrack({ timeouts: { udp: -1 } })).toThrow('conntrack timeout udp must be a positive number of seconds, got -1');
    expect(new ConnTrack().capacity).toBe(65536);
  });
});
