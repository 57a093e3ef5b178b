// The drop-reason table: one row per reason, names stable (they are metric
// labels and `show counters` keys), every row with a help line.
import { describe, expect, it } from 'vitest';
import { Counters, DROPS, DROP_HELP, DROP_NAMES, Drop, STAT_NAMES, Stat, dropName } from '../../../src/dataplane/counters.js';

describe('drop reasons', () => {
  it('keep their names and numbers', () => {
    expect(DROP_NAMES).toEqual([
      'truncated',
      'not-ipv4',
      'arp',
      'bad-ip-header',
      'bad-ip-checksum',
      'fragment',
      'spoofed-source',
      'no-route',
      'no-neighbor',
      'no-fdb',
      'ttl-exceeded',
      'too-big',
      'to-cell',
      'bad-vxlan',
      'bad-vxlan-flags',
      'wrong-vni',
      'unknown-underlay-source',
      'spoofed-inner-source',
      'wrong-inner-mac',
      'no-container',
      'policy-denied',
      'bad-l4-header',
      'unrelated-icmp-error',
      // 'icmp-rate-limited' was here: a suppressed ICMP error is no second drop of its packet (it is a stat now)
      'port-gone',
      // the io layer's block, appended after the pipeline's reasons
      'tap-rx-oversize',
      'tap-rx-bad-vnet',
      'tap-rx-unsupported-gso',
      'tap-tx-full',
      'tap-tx-refused',
      'tap-tx-gone',
      'underlay-rx-oversize',
      'underlay-tx-full',
      'underlay-tx-refused',
      // fragments and ECN, appended after the io layer's
      'fragment-overlap',
      'fragment-duplicate',
      'fragment-invalid',
      'fragment-oversize',
      'fragment-ecn',
      'fragment-memory',
      'fragment-timeout',
      'fragment-too-many',
      'fragment-no-room',
      'ecn-ce-on-not-ect',
      'bad-vxlan-reserved',
    ]);
    expect(DROP_NAMES.length).toBe(Drop.Count);
    expect(Object.keys(DROPS).length).toBe(Drop.Count);
  });

  it('are unique kebab-case names, each with one line of help', () => {
    expect(new Set(DROP_NAMES).size).toBe(DROP_NAMES.length);
    for (const [i, n] of DROP_NAMES.entries()) {
      expect(n).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
      expect(DROP_HELP[i]!.length, n).toBeGreaterThan(10);
      expect(DROP_HELP[i]).not.toMatch(/\n/);
    }
    expect(dropName(Drop.PolicyDenied)).toBe('policy-denied');
    expect(dropName(999)).toBe('reason-999');
  });

  it('stats keep their names', () => {
    expect(STAT_NAMES).toEqual([
      'egress-packets',
      'egress-bytes',
      'ingress-packets',
      'ingress-bytes',
      'encapsulated',
      'decapsulated',
      'delivered-same-cell',
      'delivered-from-remote',
      'icmp-sent',
      'policy-allowed',
      'conntrack-allowed',
      'checksum-completed',
      'icmp-rate-limited',
      'delivered',
      'sent',
      'conntrack-invalid',
    ]);
  });
});

describe('Counters in a shared buffer (a cell worker counts, the main thread sums)', () => {
  it('counts into the buffer another view reads, and add() sums tables', () => {
    const buf = new SharedArrayBuffer(Counters.BYTES);
    const mine = new Counters(buf);
    const seen = new Counters(buf);
    mine.drop(Drop.PolicyDenied);
    mine.drop(Drop.PolicyDenied);
    mine.stats[Stat.Sent] = 7;
    expect(seen.drops[Drop.PolicyDenied]).toBe(2);
    expect(seen.stats[Stat.Sent]).toBe(7);
    // Drops and stats do not overlap in the buffer.
    expect(seen.stats.reduce((a, b) => a + b, 0)).toBe(7);
    expect(seen.drops.reduce((a, b) => a + b, 0)).toBe(2);
    const sum = new Counters();
    sum.drop(Drop.Truncated);
    sum.add(seen);
    sum.add(seen);
    expect([sum.drops[Drop.Truncated], sum.drops[Drop.PolicyDenied], sum.stats[Stat.Sent]]).toEqual([1, 4, 14]);
    expect(sum.snapshot().drops['policy-denied']).toBe(4);
  });
});
