// The CNI protocol pieces without a cell: environment, CNI_ARGS, the network
// configuration, the app id's three sources, result shapes per version,
// host-local's ranges from a lease, and CHECK's comparison.
import { describe, expect, it } from 'vitest';
import { buildResult, CniError, ErrorCode, firstIp, parseArgs, parseConf, parseEnv, resolveApp } from '../../../src/cni/spec.js';
import { freeRanges, ipamSection } from '../../../src/cni/ipam.js';
import { compareSandbox, type SandboxState } from '../../../src/cni/sandbox.js';

const codeOf = (fn: () => unknown): number => {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err.code;
    throw err;
  }
  throw new Error('did not throw');
};

const ENV = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/usr/lib/cni:/opt/cni/bin' };
const CONF = { cniVersion: '1.0.0', name: 'silkworm', type: 'silkworm-cni', cell: '/run/silkworm/sw/cell1.sock' };

describe('environment', () => {
  it('parses what ADD needs and splits CNI_PATH', () => {
    expect(parseEnv(ENV)).toEqual({ command: 'ADD', containerId: 'abc', netns: '/run/netns/x', ifname: 'eth0', args: '', path: ['/usr/lib/cni', '/opt/cni/bin'] });
  });
  it('a missing or bad variable is code 4', () => {
    for (const k of ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH']) {
      expect(codeOf(() => parseEnv({ ...ENV, [k]: '' })), k).toBe(ErrorCode.InvalidEnv);
    }
    expect(codeOf(() => parseEnv({ ...ENV, CNI_COMMAND: 'FROB' }))).toBe(4);
    expect(codeOf(() => parseEnv({ ...ENV, CNI_IFNAME: 'a/b' }))).toBe(4);
    expect(codeOf(() => parseEnv({ ...ENV, CNI_NETNS: 'relative' }))).toBe(4);
    expect(codeOf(() => parseEnv({ ...ENV, CNI_CONTAINERID: '../../x' }))).toBe(4);
  });
  it('DEL may come without CNI_NETNS; VERSION needs nothing else', () => {
    expect(parseEnv({ ...ENV, CNI_COMMAND: 'DEL', CNI_NETNS: '' }).netns).toBe('');
    expect(parseEnv({ CNI_COMMAND: 'VERSION' }).command).toBe('VERSION');
  });
  it('CNI_ARGS: known keys, IgnoreUnknown', () => {
    expect(parseArgs('SILKWORM_APP=appB', ['SILKWORM_APP']).get('SILKWORM_APP')).toBe('appB');
    expect(codeOf(() => parseArgs('K8S_POD_NAME=x;SILKWORM_APP=a', ['SILKWORM_APP']))).toBe(4);
    expect(parseArgs('IgnoreUnknown=1;K8S_POD_NAME=x;SILKWORM_APP=a', ['SILKWORM_APP']).get('SILKWORM_APP')).toBe('a');
    expect(parseArgs('IgnoreUnknown=true;K=x', ['SILKWORM_APP']).size).toBe(0);
    expect(codeOf(() => parseArgs('novalue', ['SILKWORM_APP']))).toBe(4);
  });
});

describe('network configuration', () => {
  it('bad JSON is 6, bad fields 7, an unknown version 1', () => {
    expect(codeOf(() => parseConf('{nope'))).toBe(ErrorCode.DecodeFailure);
    expect(codeOf(() => parseConf('[1]'))).toBe(6);
    expect(codeOf(() => parseConf(JSON.stringify({ ...CONF, cell: undefined })))).toBe(ErrorCode.InvalidConfig);
    expect(codeOf(() => parseConf(JSON.stringify({ ...CONF, mtu: 'big' })))).toBe(7);
    expect(codeOf(() => parseConf(JSON.stringify({ ...CONF, ipam: { type: '../../bin/sh' } })))).toBe(7);
    expect(codeOf(() => parseConf(JSON.stringify({ ...CONF, cniVersion: '9.9.9' })))).toBe(ErrorCode.IncompatibleVersion);
    expect(parseConf(JSON.stringify({ ...CONF, ipam: {} })).ipam).toBeUndefined();
  });
  it('the app id: runtimeConfig, else CNI_ARGS, else the config; none is 103', () => {
    const conf = (extra: object) => parseConf(JSON.stringify({ ...CONF, ...extra }));
    const args = parseArgs('SILKWORM_APP=fromArgs', ['SILKWORM_APP']);
    expect(resolveApp(conf({ app: 'fromConf', runtimeConfig: { metadata: { policy_group_id: 'fromMeta' } } }), args)).toEqual({ app: 'fromMeta', source: 'runtimeConfig' });
    expect(resolveApp(conf({ app: 'fromConf' }), args)).toEqual({ app: 'fromArgs', source: 'CNI_ARGS' });
    expect(resolveApp(conf({ app: 'fromConf' }), new Map())).toEqual({ app: 'fromConf', source: 'config' });
    expect(codeOf(() => resolveApp(conf({}), new Map()))).toBe(ErrorCode.NoAppId);
    expect(codeOf(() => resolveApp(conf({ app: 'bad app!' }), new Map()))).toBe(7);
  });
});

describe('results', () => {
  const a = { ifname: 'eth0', mac: 'ee:ee:0a:ff:01:02', sandbox: '/run/netns/x', ip: '10.255.1.2' };
  it('1.0.0 has no ip version; 0.4.0 has "version": "4"', () => {
    expect(buildResult('1.0.0', a)).toEqual({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', mac: 'ee:ee:0a:ff:01:02', sandbox: '/run/netns/x' }],
      ips: [{ address: '10.255.1.2/32', gateway: '169.254.0.1', interface: 0 }],
      routes: [{ dst: '0.0.0.0/0', gw: '169.254.0.1' }],
      dns: {},
    });
    expect((buildResult('0.4.0', a).ips as object[])[0]).toEqual({ version: '4', address: '10.255.1.2/32', gateway: '169.254.0.1', interface: 0 });
  });
  it('appends to a chained prevResult', () => {
    const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'lo' }], ips: [{ address: '127.0.0.1/8', interface: 0 }], dns: { nameservers: ['10.0.0.53'] } };
    const r = buildResult('1.0.0', a, prev);
    expect(r.interfaces).toHaveLength(2);
    expect((r.ips as { interface: number }[])[1]!.interface).toBe(1);
    expect(r.dns).toEqual({ nameservers: ['10.0.0.53'] });
    expect(firstIp(r)).toEqual({ ip: '127.0.0.1', prefix: 8 });
  });
});

describe('host-local ranges from the lease', () => {
  it('the whole lease from .2 when nothing is used', () => {
    expect(freeRanges('10.255.1.0/24', [])).toEqual([{ subnet: '10.255.1.0/24', rangeStart: '10.255.1.2', rangeEnd: '10.255.1.254' }]);
  });
  it('skips the addresses the cell handed out', () => {
    expect(freeRanges('10.255.1.0/24', ['10.255.1.2', '10.255.1.5', '10.255.1.254'])).toEqual([
      { subnet: '10.255.1.0/24', rangeStart: '10.255.1.3', rangeEnd: '10.255.1.4' },
      { subnet: '10.255.1.0/24', rangeStart: '10.255.1.6', rangeEnd: '10.255.1.253' },
    ]);
  });
  it('ipamSection fills only a host-local section without subnet or ranges', () => {
    expect(ipamSection({ type: 'host-local' }, '10.255.1.0/29', ['10.255.1.3'])).toEqual({
      type: 'host-local',
      ranges: [[{ subnet: '10.255.1.0/29', rangeStart: '10.255.1.2', rangeEnd: '10.255.1.2' }, { subnet: '10.255.1.0/29', rangeStart: '10.255.1.4', rangeEnd: '10.255.1.6' }]],
    });
    expect(ipamSection({ type: 'host-local', subnet: '10.255.1.0/24' }, '10.255.9.0/24')).toEqual({ type: 'host-local', subnet: '10.255.1.0/24' });
    expect(ipamSection({ type: 'static', addresses: [] }, '10.255.1.0/24')).toEqual({ type: 'static', addresses: [] });
    expect(codeOf(() => ipamSection({ type: 'host-local' }, '10.255.1.0/30', ['10.255.1.2']))).toBe(ErrorCode.LeaseExhausted);
  });
});

describe('CHECK compares the namespace with silk addressing', () => {
  const good: SandboxState = {
    link: { ifname: 'eth0', address: 'ee:ee:0a:ff:01:02', mtu: 1450, flags: ['NOARP', 'UP'], addr_info: [{ family: 'inet', local: '10.255.1.2', address: '169.254.0.1', prefixlen: 32 }] },
    routes: [{ dst: 'default', gateway: '169.254.0.1', dev: 'eth0', prefsrc: '10.255.1.2' }],
    neighs: [{ dst: '169.254.0.1', lladdr: 'aa:aa:0a:ff:01:02', state: ['PERMANENT'] }],
  };
  const e = { ifname: 'eth0', ip: '10.255.1.2', mac: 'ee:ee:0a:ff:01:02', gatewayMac: 'aa:aa:0a:ff:01:02' };
  it('matches', () => expect(compareSandbox(good, e)).toEqual([]));
  it('each difference is named', () => {
    expect(compareSandbox({ ...good, link: null }, e)).toEqual(['interface eth0 is missing']);
    expect(compareSandbox({ ...good, link: { ...good.link!, addr_info: [] } }, e)).toEqual(['eth0 has no address 10.255.1.2']);
    expect(compareSandbox({ ...good, routes: [] }, e)).toEqual(['there is no default route']);
    expect(compareSandbox({ ...good, neighs: [] }, e)).toHaveLength(1);
    expect(compareSandbox({ ...good, link: { ...good.link!, flags: [] } }, e)).toEqual(['eth0 is down']);
    expect(compareSandbox({ ...good, link: { ...good.link!, address: '02:00:00:00:00:01' } }, e)).toHaveLength(1);
  });
});
