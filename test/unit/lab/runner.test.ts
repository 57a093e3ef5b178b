// The command line `lab up` starts each cell with (and `lab restart` runs again).
import { describe, expect, it } from 'vitest';
import { cellCommand, type CellSpec } from '../../../src/lab/runner.js';

const spec: CellSpec = {
  name: 'cell1',
  netns: 'sw-cell1',
  controllerSocket: '/run/silkworm/sw/controller.sock',
  underlayIp: '198.18.0.11',
  underlayDev: 'eth0',
  adminSocket: '/run/silkworm/sw/cell1.sock',
  mtu: 1500,
  log: '/run/silkworm/sw/cell1.log',
};

const after = (argv: string[], flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);

describe('cellCommand', () => {
  it('is the plain documented command line by default', () => {
    const argv = cellCommand(spec, { node: 'node', silkworm: 'silkworm.js' });
    expect(argv.slice(0, 6)).toEqual(['ip', 'netns', 'exec', 'sw-cell1', 'node', 'silkworm.js']);
    expect(argv).not.toContain('--workers');
    expect(argv).not.toContain('--capture');
    expect(cellCommand({ ...spec, workers: 1 })).not.toContain('--workers');
  });

  it('passes --workers to userspace cells only, when more than one', () => {
    expect(after(cellCommand({ ...spec, workers: 3 }), '--workers')).toBe('3');
    expect(cellCommand({ ...spec, workers: 3, dataplane: 'kernel' })).not.toContain('--workers');
  });
});
