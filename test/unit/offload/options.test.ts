// OffloadOptions: flags > deprecated environment > default, decided once; and
// the negotiation record `show counters` prints (requested vs in effect).
import { describe, expect, it } from 'vitest';
import { ALL_OFFLOADS, NO_OFFLOADS, OffloadNegotiation, formatOffloads, resolveOffloads } from '../../../src/offload/options.js';

describe('resolveOffloads', () => {
  it('is all on by default, with no deprecated variables seen', () => {
    expect(resolveOffloads({}, {})).toEqual({ options: ALL_OFFLOADS, deprecatedEnv: [] });
  });

  it('--offload names the whole set; all and none work', () => {
    expect(resolveOffloads({ offload: 'tap-tso,udp-gro' }, {}).options).toEqual({ tapTso: true, tapGro: false, udpGso: false, udpGro: true });
    expect(resolveOffloads({ offload: 'none' }, {}).options).toEqual(NO_OFFLOADS);
    expect(resolveOffloads({ offload: 'all' }, {}).options).toEqual(ALL_OFFLOADS);
    expect(resolveOffloads({ offload: ' tap-gro , ' }, {}).options).toEqual({ ...NO_OFFLOADS, tapGro: true });
  });

  it('--no-offload turns off only what it names; with --offload it subtracts', () => {
    expect(resolveOffloads({ noOffload: 'udp-gso' }, {}).options).toEqual({ ...ALL_OFFLOADS, udpGso: false });
    expect(resolveOffloads({ offload: 'all', noOffload: 'tap-tso,tap-gro' }, {}).options).toEqual({ ...ALL_OFFLOADS, tapTso: false, tapGro: false });
  });

  it('the old variables are aliases (and reported), below any flag', () => {
    expect(resolveOffloads({}, { SILKWORM_TAP_VNET: '0' })).toEqual({
      options: { ...ALL_OFFLOADS, tapGro: false, tapTso: false },
      deprecatedEnv: ['SILKWORM_TAP_VNET'],
    });
    expect(resolveOffloads({}, { SILKWORM_TAP_TSO: '0' }).options).toEqual({ ...ALL_OFFLOADS, tapTso: false });
    expect(resolveOffloads({}, { SILKWORM_UNDERLAY_GSO: '0' }).options).toEqual({ ...ALL_OFFLOADS, udpGso: false, udpGro: false });
    // "1" keeps the default but is still the deprecated spelling: reported.
    expect(resolveOffloads({}, { SILKWORM_TAP_TSO: '1' })).toEqual({ options: ALL_OFFLOADS, deprecatedEnv: ['SILKWORM_TAP_TSO'] });
    // A flag naming an offload wins over the environment for that offload only.
    expect(resolveOffloads({ offload: 'all' }, { SILKWORM_UNDERLAY_GSO: '0', SILKWORM_TAP_TSO: '0' }).options).toEqual(ALL_OFFLOADS);
    expect(resolveOffloads({ noOffload: 'tap-gro' }, { SILKWORM_UNDERLAY_GSO: '0' }).options).toEqual({ ...ALL_OFFLOADS, tapGro: false, udpGso: false, udpGro: false });
  });

  it('refuses unknown names with one clear sentence', () => {
    expect(() => resolveOffloads({ offload: 'tso' }, {})).toThrow('--offload: "tso" is not an offload (use tap-tso, tap-gro, udp-gso, udp-gro, all or none)');
    expect(() => resolveOffloads({ noOffload: 'tap-tso,gro' }, {})).toThrow(/^--no-offload: "gro" is not an offload/);
  });

  it('formats the set in use', () => {
    expect(formatOffloads(ALL_OFFLOADS)).toBe('tap-tso,tap-gro,udp-gso,udp-gro');
    expect(formatOffloads(NO_OFFLOADS)).toBe('none');
  });
});

describe('OffloadNegotiation', () => {
  it('in effect only when requested and granted by every device that asked; refusals say why', () => {
    const n = new OffloadNegotiation({ ...ALL_OFFLOADS, udpGro: false });
    // Nothing asked yet: requested but not known to be in effect.
    expect(n.status()['tap-tso']).toEqual({ requested: true, in_effect: null, granted: 0, refused: 0 });
    n.record('tap-tso', true);
    n.record('tap-gro', true);
    n.record('udp-gso', false, 'ENOPROTOOPT');
    n.record('tap-tso', true);
    const s = n.status();
    expect(s['tap-tso']).toEqual({ requested: true, in_effect: true, granted: 2, refused: 0 });
    expect(s['tap-gro']).toEqual({ requested: true, in_effect: true, granted: 1, refused: 0 });
    expect(s['udp-gso']).toEqual({ requested: true, in_effect: false, granted: 0, refused: 1, reason: 'ENOPROTOOPT' });
    expect(s['udp-gro']).toEqual({ requested: false, in_effect: false, granted: 0, refused: 0 });
    n.record('tap-tso', false, 'EINVAL');
    expect(n.status()['tap-tso']).toMatchObject({ in_effect: false, granted: 2, refused: 1, reason: 'EINVAL' });
  });
});
