import { describe, expect, it } from 'vitest';
import { Controller, ConflictError } from '../../../src/control/controller.js';
import { MemoryStore } from '../../../src/control/store.js';
import type { PolicyKey } from '../../../src/control/validate.js';

const pk = (source: string, dest: string, start = 8080, end = start, protocol: 'tcp' | 'udp' = 'tcp'): PolicyKey => ({
  source,
  dest,
  protocol,
  start,
  end,
});

function make(opts: { now?: () => number; store?: MemoryStore; leaseExpirySeconds?: number; overlayNetwork?: string; subnetPrefixLength?: number } = {}) {
  const store = opts.store ?? new MemoryStore();
  return { store, c: new Controller({ ...opts, store }) };
}

describe('Controller policies and tags', () => {
  it('allocates tags source first, lowest free, and fills both tags on the internal list (the internal API shape)', () => {
    const { c } = make();
    expect(c.addPolicies([pk('appA', 'appB')])).toBe(1);
    expect(c.internalPolicies()).toEqual([
      {
        source: { id: 'appA', tag: '0001' },
        destination: { id: 'appB', tag: '0002', protocol: 'tcp', ports: { start: 8080, end: 8080 } },
      },
    ]);
    expect(c.listPolicies()).toEqual([
      { source: { id: 'appA' }, destination: { id: 'appB', protocol: 'tcp', ports: { start: 8080, end: 8080 } } },
    ]);
    expect(c.tags()).toEqual([
      { id: 'appA', tag: '0001' },
      { id: 'appB', tag: '0002' },
    ]);
    expect(c.version).toBe(1);
  });

  it('duplicate create is idempotent and does not move the version', () => {
    const { c, store } = make();
    c.addPolicies([pk('a', 'b'), pk('a', 'b')]);
    expect(c.policyCount).toBe(1);
    expect(c.addPolicies([pk('a', 'b')])).toBe(0);
    expect(c.version).toBe(1);
    expect(store.commits).toBe(1);
  });

  it('an app keeps one tag across many policies; its tag is freed with its last policy and reused lowest first', () => {
    const { c } = make();
    c.addPolicies([pk('a', 'b'), pk('a', 'c'), pk('d', 'a', 9000, 9100, 'udp')]);
    expect(c.tags().map((t) => `${t.id}=${t.tag}`)).toEqual(['a=0001', 'b=0002', 'c=0003', 'd=0004']);
    c.deletePolicies([pk('a', 'b')]);
    // b had only that policy: 0002 is free; a still has two.
    expect(c.tagFor('b')).toBeUndefined();
    expect(c.tagFor('a')).toBe('0001');
    c.addPolicies([pk('e', 'f')]);
    expect(c.tagFor('e')).toBe('0002'); // lowest free first: the freed one
    expect(c.tagFor('f')).toBe('0005');
    c.deletePolicies([pk('a', 'c'), pk('d', 'a', 9000, 9100, 'udp')]);
    expect(c.tags().map((t) => `${t.id}=${t.tag}`)).toEqual(['e=0002', 'f=0005']);
  });

  it('deleting what does not exist changes nothing', () => {
    const { c, store } = make();
    c.addPolicies([pk('a', 'b')]);
    expect(c.deletePolicies([pk('a', 'b', 9999)])).toBe(0);
    expect(c.version).toBe(1);
    expect(store.commits).toBe(1);
  });

  it('a policy from an app to itself takes one tag, freed when it goes', () => {
    const { c } = make();
    c.addPolicies([pk('self', 'self')]);
    expect(c.tags()).toEqual([{ id: 'self', tag: '0001' }]);
    c.deletePolicies([pk('self', 'self')]);
    expect(c.tags()).toEqual([]);
  });

  it('filters like cf-networking: id is source or destination, source_id and dest_id narrow', () => {
    const { c } = make();
    c.addPolicies([pk('a', 'b'), pk('b', 'c'), pk('c', 'a'), pk('x', 'y')]);
    const pairs = (ps: { source: { id: string }; destination: { id: string } }[]) =>
      ps.map((p) => `${p.source.id}>${p.destination.id}`);
    expect(pairs(c.listPolicies({ id: ['a'] }))).toEqual(['a>b', 'c>a']);
    expect(pairs(c.listPolicies({ id: ['a', 'y'] }))).toEqual(['a>b', 'c>a', 'x>y']);
    expect(pairs(c.listPolicies({ source_id: ['b', 'c'] }))).toEqual(['b>c', 'c>a']);
    expect(pairs(c.listPolicies({ dest_id: ['a'] }))).toEqual(['c>a']);
    expect(pairs(c.listPolicies({ source_id: ['b', 'c'], dest_id: ['a'] }))).toEqual(['c>a']);
    expect(pairs(c.internalPolicies(['y']))).toEqual(['x>y']);
  });

  it('a failed store commit changes nothing, tags included', () => {
    const { c, store } = make();
    c.addPolicies([pk('a', 'b')]);
    store.failNext = new Error('disk full');
    expect(() => c.addPolicies([pk('c', 'd')])).toThrow('disk full');
    expect(c.policyCount).toBe(1);
    expect(c.version).toBe(1);
    expect(c.tagFor('c')).toBeUndefined();
    // the tags the failed plan took were given back
    c.addPolicies([pk('c', 'd')]);
    expect(c.tagFor('c')).toBe('0003');
    store.failNext = new Error('disk full');
    expect(() => c.deletePolicies([pk('a', 'b')])).toThrow('disk full');
    expect(c.tagFor('a')).toBe('0001');
    expect(c.policyCount).toBe(2);
  });

  it('restarting from the store gives the same policies, order, tags and version', () => {
    const { c, store } = make();
    c.addPolicies([pk('a', 'b'), pk('c', 'd')]);
    c.deletePolicies([pk('a', 'b')]);
    c.addPolicies([pk('e', 'a')]);
    const again = new Controller({ store });
    expect(again.version).toBe(c.version);
    expect(again.internalPolicies()).toEqual(c.internalPolicies());
    expect(again.tags()).toEqual(c.tags());
    // e took 0001 and a 0002 after a→b freed them; c 0003, d 0004
    expect(again.tags().map((t) => `${t.id}=${t.tag}`)).toEqual(['e=0001', 'a=0002', 'c=0003', 'd=0004']);
    // and the reloaded allocator continues lowest free first
    again.deletePolicies([pk('c', 'd')]);
    again.addPolicies([pk('z', 'z')]);
    expect(again.tagFor('z')).toBe('0003');
  });
});

describe('Controller leases', () => {
  it('hands out /24s from 10.255.1.0 up with silk-controller shapes; re-acquire returns the same lease', () => {
    const { c } = make();
    const l1 = c.acquireLease('198.18.0.11');
    const l2 = c.acquireLease('198.18.0.12');
    expect(l1).toEqual({ underlay_ip: '198.18.0.11', overlay_subnet: '10.255.1.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:01:00' });
    expect(l2).toEqual({ underlay_ip: '198.18.0.12', overlay_subnet: '10.255.2.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:02:00' });
    const v = c.version;
    expect(c.acquireLease('198.18.0.11')).toEqual(l1);
    expect(c.version).toBe(v);
    expect(c.leases()).toEqual([l1, l2]);
  });

  it('renew of a lease that is not yours is a conflict; your own renews', () => {
    const { c } = make();
    const l1 = c.acquireLease('198.18.0.11');
    c.acquireLease('198.18.0.12');
    expect(() => c.renewLease({ ...l1, underlay_ip: '198.18.0.12' })).toThrow(ConflictError);
    expect(() => c.renewLease({ ...l1, underlay_ip: '198.18.0.12' })).toThrow(/holds 10.255.2.0\/24 for 198.18.0.12/);
    expect(() => c.renewLease({ ...l1, underlay_ip: '198.18.0.13' })).toThrow(/leased to another cell \(198.18.0.11\)/);
    expect(() => c.renewLease({ ...l1, overlay_hardware_addr: 'ee:ee:0a:ff:09:00' })).toThrow(/does not belong/);
    expect(() => c.renewLease({ ...l1, overlay_subnet: '10.255.1.0/25' })).toThrow(/not a \/24 lease/);
    expect(() => c.renewLease({ ...l1, overlay_subnet: '10.255.0.0/24' })).toThrow(/not a \/24 lease/);
    expect(() => c.renewLease({ ...l1, overlay_subnet: '10.254.1.0/24' })).toThrow(/not a \/24 lease/);
    expect(c.renewLease(l1)).toEqual(l1);
  });

  it('renew re-creates a lease the controller lost if the subnet is free', () => {
    const { c } = make();
    const lease = { underlay_ip: '198.18.0.20', overlay_subnet: '10.255.7.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:07:00' };
    expect(c.renewLease(lease)).toEqual(lease);
    expect(c.leases()).toEqual([lease]);
    // and the next new cell still gets the lowest free subnet
    expect(c.acquireLease('198.18.0.21').overlay_subnet).toBe('10.255.1.0/24');
  });

  it('409 when no subnet is free; release frees one', () => {
    const { c } = make({ overlayNetwork: '10.255.0.0/22', subnetPrefixLength: 24 });
    expect(c.acquireLease('198.18.0.1').overlay_subnet).toBe('10.255.1.0/24');
    expect(c.acquireLease('198.18.0.2').overlay_subnet).toBe('10.255.2.0/24');
    expect(c.acquireLease('198.18.0.3').overlay_subnet).toBe('10.255.3.0/24');
    expect(() => c.acquireLease('198.18.0.4')).toThrow(/no overlay subnet is free: all 3 \/24 leases in 10.255.0.0\/22 are held/);
    expect(c.releaseLease({ underlay_ip: '198.18.0.2' })).toBe(true);
    expect(c.releaseLease({ underlay_ip: '198.18.0.2' })).toBe(false);
    expect(c.acquireLease('198.18.0.4').overlay_subnet).toBe('10.255.2.0/24');
    expect(() => c.releaseLease({ underlay_ip: '198.18.0.1', overlay_subnet: '10.255.3.0/24' })).toThrow(/lease mismatch/);
  });

  it('leases expire without renewal: hidden, swept, and their subnet taken over when nothing is free', () => {
    let now = 1_000_000;
    const { c } = make({ now: () => now, leaseExpirySeconds: 10, overlayNetwork: '10.255.0.0/23' });
    c.acquireLease('198.18.0.1'); // the only subnet: 10.255.1.0/24
    now += 9_000;
    c.renewLease({ underlay_ip: '198.18.0.1', overlay_subnet: '10.255.1.0/24' });
    now += 9_000; // 18 s after acquire, 9 s after renew: still valid
    expect(c.leases()).toHaveLength(1);
    expect(() => c.acquireLease('198.18.0.2')).toThrow(ConflictError);
    now += 2_000;
    expect(c.leases()).toHaveLength(0);
    expect(c.acquireLease('198.18.0.2').overlay_subnet).toBe('10.255.1.0/24');
    // the old holder coming back is told its lease is gone
    expect(() => c.renewLease({ underlay_ip: '198.18.0.1', overlay_subnet: '10.255.1.0/24' })).toThrow(/another cell/);
    now += 11_000;
    const v = c.version;
    expect(c.sweepExpiredLeases()).toBe(1);
    expect(c.version).toBe(v + 1);
    expect(c.sweepExpiredLeases()).toBe(0);
  });

  it('supports other networks and prefix lengths', () => {
    const { c } = make({ overlayNetwork: '10.240.0.0/12', subnetPrefixLength: 20 });
    expect(c.acquireLease('198.18.0.1')).toEqual({
      underlay_ip: '198.18.0.1',
      overlay_subnet: '10.240.16.0/20',
      overlay_hardware_addr: 'ee:ee:0a:f0:10:00',
    });
    expect(() => make({ subnetPrefixLength: 16 })).toThrow(/must be longer than/);
  });

  it('leases survive a restart', () => {
    const { c, store } = make();
    const l = c.acquireLease('198.18.0.11');
    const again = new Controller({ store });
    expect(again.leases()).toEqual([l]);
    expect(again.acquireLease('198.18.0.11')).toEqual(l);
  });
});

describe('Controller watch', () => {
  it('returns at once when the version differs, else wakes on the next change', async () => {
    const { c } = make();
    expect(await c.waitForChange(5, 1000)).toBe(true); // ahead of the controller: resync now
    const t0 = performance.now();
    const waiting = c.waitForChange(0, 5000);
    expect(c.watcherCount).toBe(1);
    setTimeout(() => c.addPolicies([pk('a', 'b')]), 20);
    expect(await waiting).toBe(true);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(c.watcherCount).toBe(0);
    const snap = JSON.parse(c.snapshotJson().toString());
    expect(snap.version).toBe(1);
    expect(snap.policies[0].source).toEqual({ id: 'a', tag: '0001' });
    expect(snap.tags).toEqual([
      { id: 'a', tag: '0001' },
      { id: 'b', tag: '0002' },
    ]);
  });

  it('times out with false, and stops waiting when aborted', async () => {
    const { c } = make();
    expect(await c.waitForChange(0, 30)).toBe(false);
    const ac = new AbortController();
    const p = c.waitForChange(0, 10_000, ac.signal);
    ac.abort();
    expect(await p).toBe(false);
    expect(c.watcherCount).toBe(0);
  });

  it('caches one snapshot per version', () => {
    const { c } = make();
    const a = c.snapshotJson();
    expect(c.snapshotJson()).toBe(a);
    c.acquireLease('198.18.0.1');
    const b = c.snapshotJson();
    expect(b).not.toBe(a);
    expect(JSON.parse(b.toString()).leases).toHaveLength(1);
  });

  it('the cached JSON texts equal a plain serialisation, through deletes and tag reuse', () => {
    const { c } = make();
    c.addPolicies([pk('a', 'b'), pk('b', 'c', 53, 53, 'udp'), pk('a "quoted"', 'c')]);
    c.acquireLease('198.18.0.9');
    const first = c.snapshotJson().toString(); // caches fragments
    expect(first).toBe(JSON.stringify(c.snapshot()));
    c.deletePolicies([pk('a', 'b'), pk('a "quoted"', 'c')]); // frees a's tag 0001
    c.addPolicies([pk('n', 'a')]); // n takes 0001, a comes back with a new tag
    expect(c.snapshotJson().toString()).toBe(JSON.stringify(c.snapshot()));
    expect(JSON.parse(c.internalPoliciesJson().toString())).toEqual({ total_policies: 2, policies: c.internalPolicies() });
    expect(JSON.parse(c.externalPoliciesJson().toString())).toEqual({ total_policies: 2, policies: c.listPolicies() });
    expect(c.internalPolicies()[1]).toEqual({
      source: { id: 'n', tag: '0001' },
      destination: { id: 'a', tag: '0004', protocol: 'tcp', ports: { start: 8080, end: 8080 } },
    });
  });
});
