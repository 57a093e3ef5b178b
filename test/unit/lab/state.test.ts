import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { emptyState, readState, recordedPids, validateState, writeState, type LabState } from '../../../src/lab/state.js';
import { CliError } from '../../../src/cli/util.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sw-state-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function sample(): LabState {
  const s = emptyState('t1', new Date('2025-01-02T03:04:05.000Z'));
  s.namespaces.push('t1-underlay', 't1-cell1');
  s.controller = { socket: '/run/silkworm/t1/controller.sock', pid: 100, log: '/run/silkworm/t1/controller.log' };
  s.cells.push({ name: 'cell1', underlayIp: '198.18.0.11', netns: 't1-cell1', socket: '/run/silkworm/t1/cell1.sock', pid: 101, log: 'l' });
  s.containers.push({ app: 'appA', netns: 't1-appA-0', ip: '10.255.1.2', cell: 'cell1', mac: 'ee:ee:0a:ff:01:02' });
  s.apps.push({ pid: 102, netns: 't1-appA-0', app: 'appA', port: 8080, log: 'a' });
  return s;
}

describe('lab state file', () => {
  it('round-trips through the file exactly', () => {
    const file = path.join(tmp, 'a', 'state.json');
    const s = sample();
    writeState(s, file);
    expect(readState('t1', file)).toEqual(s);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).createdAt).toBe('2025-01-02T03:04:05.000Z');
    // no temp file left beside it
    expect(fs.readdirSync(path.dirname(file))).toEqual(['state.json']);
  });

  it('is null when absent', () => {
    expect(readState('t1', path.join(tmp, 'nope', 'state.json'))).toBeNull();
  });

  it('lists PIDs apps first, controller last (stop order)', () => {
    expect(recordedPids(sample())).toEqual([102, 101, 100]);
  });

  it('rejects a namespace outside the prefix so down cannot delete it', () => {
    const s = sample() as unknown as { namespaces: string[] };
    s.namespaces.push('production');
    expect(() => validateState(s, 't1')).toThrow(/namespace "production" is not t1-\*/);
    const t = sample() as unknown as { namespaces: string[] };
    t.namespaces = ['t10-cell1'];
    expect(() => validateState(t, 't1')).toThrow(CliError);
  });

  it('rejects bad PIDs, wrong prefix and junk', () => {
    const s = sample() as unknown as { apps: { pid: unknown }[] };
    s.apps[0]!.pid = -1;
    expect(() => validateState(s, 't1')).toThrow(/app 0 is malformed/);
    const c = sample() as unknown as { cells: { pid: unknown }[] };
    c.cells[0]!.pid = '101';
    expect(() => validateState(c, 't1')).toThrow(/cell 0 is malformed/);
    expect(() => validateState(sample(), 't2')).toThrow(/prefix is "t1"/);
    expect(() => validateState([], 't1')).toThrow(/not an object/);
    const file = path.join(tmp, 'bad.json');
    fs.writeFileSync(file, '{"prefix": "t1", ');
    expect(() => readState('t1', file)).toThrow(/not valid JSON/);
  });
});
