import { describe, expect, it } from 'vitest';
import {
  validatePoliciesBody,
  validateAcquireBody,
  validateLeaseBody,
  validateReleaseBody,
  ValidationError,
} from '../../../src/control/validate.js';

const good = {
  source: { id: 'appA' },
  destination: { id: 'appB', protocol: 'tcp', ports: { start: 8080, end: 8090 } },
};

/** Every bad policy body, the field its error must name, and a phrase of the reason. */
const BAD_POLICY_BODIES: [string, unknown, RegExp][] = [
  ['no body', undefined, /no body/],
  ['an array body', [good], /must be an object/],
  ['policies missing', {}, /^policies is missing/],
  ['policies not an array', { policies: good }, /^policies must be an array/],
  ['policies empty', { policies: [] }, /^policies is empty/],
  ['policy is a string', { policies: ['appA'] }, /^policies\[0\] must be an object/],
  ['source missing', { policies: [{ destination: good.destination }] }, /^policies\[0\]\.source is missing/],
  ['source id missing', { policies: [{ ...good, source: {} }] }, /^policies\[0\]\.source\.id is missing/],
  ['source id empty', { policies: [{ ...good, source: { id: '' } }] }, /^policies\[0\]\.source\.id must not be empty/],
  ['source id a number', { policies: [{ ...good, source: { id: 7 } }] }, /^policies\[0\]\.source\.id must be a string/],
  ['source tag set', { policies: [{ ...good, source: { id: 'appA', tag: '0001' } }] }, /source\.tag: tags may not be specified/],
  [
    'destination tag set',
    { policies: [{ ...good, destination: { ...good.destination, tag: '0002' } }] },
    /destination\.tag: tags may not be specified/,
  ],
  ['destination missing', { policies: [{ source: good.source }] }, /^policies\[0\]\.destination is missing/],
  [
    'destination id missing',
    { policies: [{ ...good, destination: { protocol: 'tcp', ports: { start: 1, end: 1 } } }] },
    /^policies\[0\]\.destination\.id is missing/,
  ],
  [
    'protocol icmp',
    { policies: [{ ...good, destination: { ...good.destination, protocol: 'icmp' } }] },
    /destination\.protocol is "icmp": specify either udp or tcp/,
  ],
  [
    'protocol missing',
    { policies: [{ ...good, destination: { id: 'appB', ports: { start: 1, end: 1 } } }] },
    /destination\.protocol is missing/,
  ],
  [
    'protocol upper case',
    { policies: [{ ...good, destination: { ...good.destination, protocol: 'TCP' } }] },
    /destination\.protocol is "TCP"/,
  ],
  [
    'ports missing',
    { policies: [{ ...good, destination: { id: 'appB', protocol: 'tcp' } }] },
    /destination\.ports is missing/,
  ],
  [
    'start port 0',
    { policies: [{ ...good, destination: { ...good.destination, ports: { start: 0, end: 80 } } }] },
    /destination\.ports\.start is 0, must be in range 1-65535/,
  ],
  [
    'end port 65536',
    { policies: [{ ...good, destination: { ...good.destination, ports: { start: 80, end: 65536 } } }] },
    /destination\.ports\.end is 65536, must be in range 1-65535/,
  ],
  [
    'start above end',
    { policies: [{ ...good, destination: { ...good.destination, ports: { start: 9000, end: 8000 } } }] },
    /destination\.ports is the range 9000-8000: start must be less than or equal to end/,
  ],
  [
    'port as a string',
    { policies: [{ ...good, destination: { ...good.destination, ports: { start: '8080', end: 8080 } } }] },
    /destination\.ports\.start must be a number, got a string/,
  ],
  [
    'fractional port',
    { policies: [{ ...good, destination: { ...good.destination, ports: { start: 80.5, end: 81 } } }] },
    /destination\.ports\.start must be a whole number/,
  ],
  [
    'legacy port out of range',
    { policies: [{ ...good, destination: { id: 'appB', protocol: 'tcp', port: 70000 } }] },
    /destination\.port is 70000/,
  ],
  [
    'legacy port disagrees with ports',
    { policies: [{ ...good, destination: { ...good.destination, port: 1 } }] },
    /destination\.port \(1\) disagrees/,
  ],
  [
    'second policy bad',
    { policies: [good, { ...good, destination: { ...good.destination, protocol: 'sctp' } }] },
    /^policies\[1\]\.destination\.protocol/,
  ],
  ['id with a comma', { policies: [{ ...good, source: { id: 'a,b' } }] }, /source\.id must not contain a comma/],
  ['id with a control character', { policies: [{ ...good, source: { id: 'a\nb' } }] }, /control character/],
  ['id too long', { policies: [{ ...good, source: { id: 'x'.repeat(256) } }] }, /longer than 255/],
];

describe('validatePoliciesBody', () => {
  it('accepts the v1 shape and returns the keys', () => {
    expect(validatePoliciesBody({ policies: [good] })).toEqual([
      { source: 'appA', dest: 'appB', protocol: 'tcp', start: 8080, end: 8090 },
    ]);
  });

  it('accepts legacy "port" as a one-port range, as cf-networking v0', () => {
    expect(
      validatePoliciesBody({ policies: [{ source: { id: 'a' }, destination: { id: 'b', protocol: 'udp', port: 53 } }] }),
    ).toEqual([{ source: 'a', dest: 'b', protocol: 'udp', start: 53, end: 53 }]);
    // both given and agreeing is fine
    expect(
      validatePoliciesBody({
        policies: [{ source: { id: 'a' }, destination: { id: 'b', protocol: 'tcp', port: 80, ports: { start: 80, end: 80 } } }],
      })[0],
    ).toEqual({ source: 'a', dest: 'b', protocol: 'tcp', start: 80, end: 80 });
  });

  it.each(BAD_POLICY_BODIES)('rejects %s naming the field', (_name, body, want) => {
    let err: unknown;
    try {
      validatePoliciesBody(body);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toMatch(want);
    // one sentence: no line breaks
    expect((err as Error).message).not.toMatch(/\n/);
  });

  // These were rejected once and are accepted now: the policy server's Go
  // decoder ignores unknown fields, so posting a GET's output back works.
  it('ignores unknown fields at every level, as Go\'s encoding/json does', () => {
    const want = [{ source: 'appA', dest: 'appB', protocol: 'tcp', start: 8080, end: 8090 }];
    expect(validatePoliciesBody({ policies: [good], extra: 1 })).toEqual(want);
    expect(
      validatePoliciesBody({ policies: [{ ...good, destination: { ...good.destination, ports: { start: 8080, end: 8090, step: 1 } } }] }),
    ).toEqual(want);
    expect(validatePoliciesBody({ policies: [{ ...good, destination: { ...good.destination, protocl: 'tcp' } }] })).toEqual(want);
  });

  it('has at least 20 distinct bad cases', () => {
    expect(new Set(BAD_POLICY_BODIES.map((b) => b[0])).size).toBeGreaterThanOrEqual(20);
  });
});

describe('lease bodies', () => {
  it('acquire wants an IPv4 underlay_ip and nothing else', () => {
    expect(validateAcquireBody({ underlay_ip: '198.18.0.11' })).toBe('198.18.0.11');
    expect(validateAcquireBody({ underlay_ip: '198.18.0.11', single_overlay_ip: false })).toBe('198.18.0.11');
    expect(() => validateAcquireBody({})).toThrow(/underlay_ip is missing/);
    expect(() => validateAcquireBody({ underlay_ip: '198.18.0' })).toThrow(/not an IPv4 address/);
    expect(() => validateAcquireBody({ underlay_ip: 5 })).toThrow(/must be a string/);
    expect(() => validateAcquireBody({ underlay_ip: '0.0.0.0' })).toThrow(/cannot be a cell/);
    // Unknown fields are ignored and single-IP leases are supported, as silk-controller does.
    expect(validateAcquireBody({ underlay_ip: '198.18.0.1', x: 1 })).toBe('198.18.0.1');
    expect(validateAcquireBody({ underlay_ip: '198.18.0.1', single_overlay_ip: true })).toBe('198.18.0.1');
    expect(() => validateAcquireBody('198.18.0.1')).toThrow(/must be an object/);
  });
  it('renew wants a whole lease', () => {
    const l = { underlay_ip: '198.18.0.11', overlay_subnet: '10.255.1.0/24', overlay_hardware_addr: 'ee:ee:0a:ff:01:00' };
    expect(validateLeaseBody(l)).toEqual(l);
    expect(() => validateLeaseBody({ underlay_ip: '198.18.0.11' })).toThrow(/overlay_subnet is missing/);
    expect(() => validateLeaseBody({ ...l, overlay_subnet: '10.255.1.0' })).toThrow(/not an IPv4 prefix/);
  });
  it('release takes silk\'s {"underlay_ip"} or a whole lease', () => {
    expect(validateReleaseBody({ underlay_ip: '198.18.0.11' })).toEqual({ underlay_ip: '198.18.0.11' });
    expect(validateReleaseBody({ underlay_ip: '198.18.0.11', overlay_subnet: '10.255.1.0/24' })).toMatchObject({
      overlay_subnet: '10.255.1.0/24',
    });
    expect(() => validateReleaseBody({ underlay_ip: 'x' })).toThrow(/not an IPv4/);
  });
});
