import { describe, expect, it } from 'vitest';
import { IFNAME_MAX, labNamespaces, planLab, validatePrefix } from '../../../src/lab/topology.js';
import { CliError } from '../../../src/cli/util.js';

describe('lab plan', () => {
  it('names everything after the prefix, as the lab promises', () => {
    const p = planLab({ prefix: 'sw' });
    expect(p.namespaces).toEqual(['sw-underlay', 'sw-cell1', 'sw-cell2', 'sw-appA-0', 'sw-appB-0']);
    expect(p.dir).toMatch(/\/sw$/);
    expect(p.controller.socket).toBe(`${p.dir}/controller.sock`);
    expect(p.controller.store).toBe(`${p.dir}/controller.db`);
    expect(p.state).toBe(`${p.dir}/state.json`);
    expect(p.underlay).toEqual({ netns: 'sw-underlay', bridge: 'br0', cidr: '198.18.0.0/24' });
    expect(p.cells.map((c) => [c.name, c.netns, c.underlayIp, c.underlayPrefixLen, c.dev, c.bridgePort, c.socket, c.log])).toEqual([
      ['cell1', 'sw-cell1', '198.18.0.11', 24, 'eth0', 'sw-cell1', `${p.dir}/cell1.sock`, `${p.dir}/cell1.log`],
      ['cell2', 'sw-cell2', '198.18.0.12', 24, 'eth0', 'sw-cell2', `${p.dir}/cell2.sock`, `${p.dir}/cell2.log`],
    ]);
    expect(p.apps.map((a) => [a.app, a.cell, a.netns, a.port])).toEqual([
      ['appA', 'cell1', 'sw-appA-0', 8080],
      ['appB', 'cell2', 'sw-appB-0', 8080],
    ]);
    expect(p.mtu).toBe(1500);
  });

  it('counts cell addresses up from a configurable base', () => {
    const p = planLab({ prefix: 'x1', underlayBase: '198.19.7.200/16', appPort: 9000 });
    expect(p.cells.map((c) => c.underlayIp)).toEqual(['198.19.7.200', '198.19.7.201']);
    expect(p.underlay.cidr).toBe('198.19.0.0/16');
    expect(p.apps[0]!.port).toBe(9000);
  });

  it('keeps every interface name within IFNAMSIZ for the longest prefix', () => {
    const p = planLab({ prefix: 'abcdefghi' });
    for (const c of p.cells) expect(c.bridgePort.length).toBeLessThanOrEqual(IFNAME_MAX);
    expect(p.cells[1]!.bridgePort).toBe('abcdefghi-cell2');
  });

  it('refuses prefixes that could collide or overflow interface names', () => {
    for (const bad of ['', 'sw-x', '1ab', 'abcdefghij', 'a b', 'a/b', '../x']) {
      expect(() => validatePrefix(bad)).toThrow(CliError);
    }
    expect(validatePrefix('t12345')).toBe('t12345');
    expect(() => labNamespaces('sw-x')).toThrow(/must be 1-9 letters/);
  });

  it('refuses underlay addresses outside 198.18.0.0/15 or without room for two cells', () => {
    expect(() => planLab({ underlayBase: '10.0.0.11/24' })).toThrow(/198\.18\.0\.0\/15/);
    expect(() => planLab({ underlayBase: '198.20.0.11/24' })).toThrow(/198\.18\.0\.0\/15/);
    expect(() => planLab({ underlayBase: '198.18.0.254/24' })).toThrow(/no room/);
    expect(() => planLab({ underlayBase: '198.18.0.0/24' })).toThrow(/no room/);
    expect(() => planLab({ underlayBase: '198.18.0.11/8' })).toThrow(/prefix length/);
    expect(() => planLab({ underlayBase: '198.18.0.11' })).toThrow(/must look like/);
    expect(() => planLab({ underlayBase: '198.18.0.300/24' })).toThrow(/not an IPv4/);
  });

  it('refuses silly MTUs and ports', () => {
    expect(() => planLab({ mtu: 100 })).toThrow(/MTU/);
    expect(() => planLab({ appPort: 0 })).toThrow(/port/);
  });
});
