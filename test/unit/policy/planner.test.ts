import { describe, expect, it } from 'vitest';
import { plan, renderIptables, validatePolicy, type Plan } from '../../../src/policy/planner.js';
import type { LocalContainer, PolicyRecord } from '../../../src/policy/types.js';
import { formatTag, parseTag } from '../../../src/policy/types.js';
import { ipToU32 as ip } from '../../../src/util/ip.js';

function pol(src: string, srcTag: string | undefined, dst: string, dstTag: string | undefined, protocol: 'tcp' | 'udp', start: number, end = start): PolicyRecord {
  return { source: { id: src, tag: srcTag }, destination: { id: dst, tag: dstTag, protocol, ports: { start, end } } };
}
const ctr = (handle: string, addr: string, app: string): LocalContainer => ({ handle, ip: ip(addr), app });

describe('plan()', () => {
  const cases: { name: string; policies: PolicyRecord[]; containers: LocalContainer[]; want: Plan }[] = [
    {
      name: 'seed 000: appA (0004) → appB (0005) tcp 8080, both apps on this cell',
      policies: [pol('appA', '0004', 'appB', '0005', 'tcp', 8080)],
      containers: [ctr('b0', '10.255.1.3', 'appB'), ctr('a0', '10.255.1.2', 'appA')],
      want: {
        marks: [
          { ip: ip('10.255.1.2'), app: 'appA', tag: 4 },
          { ip: ip('10.255.1.3'), app: 'appB', tag: 5 },
        ],
        accepts: [{ dstIp: ip('10.255.1.3'), dstApp: 'appB', srcApp: 'appA', tag: 4, protocol: 6, portStart: 8080, portEnd: 8080 }],
      },
    },
    {
      name: 'same app as source and destination, two instances here, udp port range',
      policies: [pol('appA', '0001', 'appA', '0001', 'udp', 9000, 9010)],
      containers: [ctr('a1', '10.255.1.9', 'appA'), ctr('a0', '10.255.1.2', 'appA')],
      want: {
        marks: [
          { ip: ip('10.255.1.2'), app: 'appA', tag: 1 },
          { ip: ip('10.255.1.9'), app: 'appA', tag: 1 },
        ],
        accepts: [
          { dstIp: ip('10.255.1.2'), dstApp: 'appA', srcApp: 'appA', tag: 1, protocol: 17, portStart: 9000, portEnd: 9010 },
          { dstIp: ip('10.255.1.9'), dstApp: 'appA', srcApp: 'appA', tag: 1, protocol: 17, portStart: 9000, portEnd: 9010 },
        ],
      },
    },
    {
      name: 'destination app without containers here: marks only; unrelated policy: nothing',
      policies: [pol('appA', '0001', 'appD', '0002', 'tcp', 80), pol('appX', '0003', 'appY', '0004', 'tcp', 80)],
      containers: [ctr('a0', '10.255.1.2', 'appA')],
      want: { marks: [{ ip: ip('10.255.1.2'), app: 'appA', tag: 1 }], accepts: [] },
    },
    {
      name: 'no containers at all',
      policies: [pol('appA', '0001', 'appB', '0002', 'tcp', 80)],
      containers: [],
      want: { marks: [], accepts: [] },
    },
    {
      name: 'several sources to one destination: sorted by dst, protocol, ports, tag; duplicates once',
      policies: [
        pol('appC', '0003', 'appB', '0002', 'tcp', 8080),
        pol('appA', '0001', 'appB', '0002', 'udp', 53),
        pol('appA', '0001', 'appB', '0002', 'tcp', 8080, 8090),
        pol('appA', '0001', 'appB', '0002', 'tcp', 8080),
        pol('appA', '0001', 'appB', '0002', 'tcp', 8080), // duplicate
      ],
      containers: [ctr('b0', '10.255.1.3', 'appB'), ctr('b1', '10.255.1.4', 'appB')],
      want: {
        marks: [
          { ip: ip('10.255.1.3'), app: 'appB', tag: 2 },
          { ip: ip('10.255.1.4'), app: 'appB', tag: 2 },
        ],
        accepts: [
          { dstIp: ip('10.255.1.3'), dstApp: 'appB', srcApp: 'appA', tag: 1, protocol: 6, portStart: 8080, portEnd: 8080 },
          { dstIp: ip('10.255.1.3'), dstApp: 'appB', srcApp: 'appC', tag: 3, protocol: 6, portStart: 8080, portEnd: 8080 },
          { dstIp: ip('10.255.1.3'), dstApp: 'appB', srcApp: 'appA', tag: 1, protocol: 6, portStart: 8080, portEnd: 8090 },
          { dstIp: ip('10.255.1.3'), dstApp: 'appB', srcApp: 'appA', tag: 1, protocol: 17, portStart: 53, portEnd: 53 },
          { dstIp: ip('10.255.1.4'), dstApp: 'appB', srcApp: 'appA', tag: 1, protocol: 6, portStart: 8080, portEnd: 8080 },
          { dstIp: ip('10.255.1.4'), dstApp: 'appB', srcApp: 'appC', tag: 3, protocol: 6, portStart: 8080, portEnd: 8080 },
          { dstIp: ip('10.255.1.4'), dstApp: 'appB', srcApp: 'appA', tag: 1, protocol: 6, portStart: 8080, portEnd: 8090 },
          { dstIp: ip('10.255.1.4'), dstApp: 'appB', srcApp: 'appA', tag: 1, protocol: 17, portStart: 53, portEnd: 53 },
        ],
      },
    },
    {
      name: 'malformed policies and a source without a tag are skipped; conflicting tags → lowest',
      policies: [
        pol('appA', undefined, 'appB', '0002', 'tcp', 80), // no source tag: no accept
        pol('appC', '0007', 'appB', '0002', 'tcp', 0), // port 0
        pol('appC', '0007', 'appB', '0002', 'tcp', 90, 80), // backwards
        { source: { id: 'appC', tag: '0007' }, destination: { id: 'appB', tag: '0002', protocol: 'icmp' as 'tcp', ports: { start: 1, end: 1 } } },
        pol('appE', '0009', 'appB', '0002', 'tcp', 443),
        pol('appE', '0008', 'appB', '0002', 'tcp', 444),
      ],
      containers: [ctr('b0', '10.255.1.3', 'appB'), ctr('e0', '10.255.1.5', 'appE'), ctr('c0', '10.255.1.6', 'appC')],
      want: {
        marks: [
          { ip: ip('10.255.1.3'), app: 'appB', tag: 2 },
          { ip: ip('10.255.1.5'), app: 'appE', tag: 8 },
        ],
        accepts: [
          { dstIp: ip('10.255.1.3'), dstApp: 'appB', srcApp: 'appE', tag: 8, protocol: 6, portStart: 443, portEnd: 443 },
          { dstIp: ip('10.255.1.3'), dstApp: 'appB', srcApp: 'appE', tag: 8, protocol: 6, portStart: 444, portEnd: 444 },
        ],
      },
    },
  ];

  it.each(cases)('$name', ({ policies, containers, want }) => {
    expect(plan(policies, containers)).toEqual(want);
    // Input order does not change the plan.
    expect(plan([...policies].reverse(), [...containers].reverse())).toEqual(want);
  });

  it('validatePolicy explains what is wrong', () => {
    expect(validatePolicy(pol('a', '0001', 'b', '0002', 'tcp', 80))).toBeUndefined();
    expect(validatePolicy(pol('a', '0001', 'b', '0002', 'tcp', 0))).toBe('policy ports must be in 1-65535');
    expect(validatePolicy(pol('a', '0001', 'b', '0002', 'udp', 90, 80))).toBe('policy port range 90-80 is backwards');
    expect(validatePolicy(pol('', '0001', 'b', '0002', 'udp', 80))).toBe('policy source needs an id');
    expect(validatePolicy({ source: { id: 'a' }, destination: { id: 'b', protocol: 'sctp' as 'tcp', ports: { start: 1, end: 2 } } })).toBe(
      'policy protocol must be tcp or udp, got "sctp"',
    );
  });
});

describe('tags', () => {
  it.each([
    ['0004', 4],
    ['00AB', 0xab],
    ['ffff', 0xffff],
    ['0000', undefined],
    ['10000', undefined],
    ['xyz', undefined],
    [undefined, undefined],
  ])('parseTag(%s) = %s', (text, n) => expect(parseTag(text)).toBe(n));
  it('formatTag pads to 4 upper-case hex digits', () => {
    expect(formatTag(4)).toBe('0004');
    expect(formatTag(0xab)).toBe('00AB');
  });
});

describe('renderIptables', () => {
  it('prints the seed 000 plan as iptables -S shows silk rules', () => {
    const p = plan([pol('appA', '0004', 'appB', '0005', 'tcp', 8080)], [ctr('a0', '10.255.1.2', 'appA'), ctr('b0', '10.255.2.2', 'appB')]);
    expect(renderIptables(p, 'vpa--1700000000')).toEqual([
      '-N vpa--1700000000',
      '-A vpa--1700000000 -s 10.255.1.2/32 -m comment --comment "src:appA" -j MARK --set-xmark 0x4/0xffffffff',
      '-A vpa--1700000000 -s 10.255.2.2/32 -m comment --comment "src:appB" -j MARK --set-xmark 0x5/0xffffffff',
      '-A vpa--1700000000 -d 10.255.2.2/32 -p tcp -m tcp --dport 8080 -m mark --mark 0x4 -m comment --comment "src:appA_dst:appB" -j ACCEPT',
      '-N overlay',
      '-A overlay -m state --state RELATED,ESTABLISHED -j ACCEPT',
      '-A overlay -j REJECT --reject-with icmp-port-unreachable',
    ]);
  });

  it('prints port ranges, udp, hex tags and escapes comments', () => {
    const p: Plan = {
      marks: [{ ip: ip('10.255.1.2'), app: 'my app', tag: 0xab }],
      accepts: [{ dstIp: ip('10.255.1.3'), dstApp: 'b"q', srcApp: 'my app', tag: 0xab, protocol: 17, portStart: 8080, portEnd: 8090 }],
    };
    expect(renderIptables(p, 'c', 'ov')).toEqual([
      '-N c',
      '-A c -s 10.255.1.2/32 -m comment --comment "src:my_app" -j MARK --set-xmark 0xab/0xffffffff',
      '-A c -d 10.255.1.3/32 -p udp -m udp --dport 8080:8090 -m mark --mark 0xab -m comment --comment "src:my_app_dst:b\\"q" -j ACCEPT',
      '-N ov',
      '-A ov -m state --state RELATED,ESTABLISHED -j ACCEPT',
      '-A ov -j REJECT --reject-with icmp-port-unreachable',
    ]);
  });

  it('an empty plan still has the overlay chain', () => {
    expect(renderIptables({ marks: [], accepts: [] })).toEqual([
      '-N vpa--0',
      '-N overlay',
      '-A overlay -m state --state RELATED,ESTABLISHED -j ACCEPT',
      '-A overlay -j REJECT --reject-with icmp-port-unreachable',
    ]);
  });
});
