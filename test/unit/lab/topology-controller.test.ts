import { describe, expect, it } from 'vitest';
import { planLab } from '../../../src/lab/topology.js';

describe('the lab controller on the underlay', () => {
  it("takes the underlay network's first address, port 4003, in P-underlay, with TLS material under P/tls", () => {
    const p = planLab({ prefix: 'x1' });
    expect(p.controller).toMatchObject({
      netns: 'x1-underlay',
      ip: '198.18.0.1',
      prefixLen: 24,
      port: 4003,
      url: 'https://198.18.0.1:4003',
      tlsDir: `${p.dir}/tls`,
    });
    expect(planLab({ prefix: 'x2', underlayBase: '198.19.7.200/16' }).controller.url).toBe('https://198.19.0.1:4003');
  });

  it('refuses an underlay base that puts a cell on that address', () => {
    expect(() => planLab({ underlayBase: '198.18.0.1/24' })).toThrow(/puts a cell on 198\.18\.0\.1, the controller's address on the underlay/);
  });
});
