// `silkworm cell --offload / --no-offload`: bad lists are one clear sentence
// and exit 1 before anything starts; --help documents precedence with examples.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../../src/cli/main.js';

function capture(): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  return { out: () => out, err: () => err };
}

afterEach(() => {
  vi.restoreAllMocks();
});

const CELL = ['cell', '--name', 'cellx', '--underlay-ip', '198.18.0.99', '--controller', '/nonexistent/controller.sock'];

describe('silkworm cell offload flags', () => {
  it('refuses an unknown offload name with one sentence', async () => {
    const io = capture();
    expect(await main([...CELL, '--offload', 'tap-tso,tso'])).toBe(1);
    expect(io.err()).toBe('silkworm: --offload: "tso" is not an offload (use tap-tso, tap-gro, udp-gso, udp-gro, all or none)\n');
    const io2 = capture();
    expect(await main([...CELL, '--no-offload', 'gro'])).toBe(1);
    expect(io2.err()).toMatch(/^silkworm: --no-offload: "gro" is not an offload/);
  });

  it('refuses the offload flags for the kernel data plane', async () => {
    const io = capture();
    expect(await main([...CELL, '--dataplane', 'kernel', '--no-offload', 'tap-tso'])).toBe(1);
    expect(io.err()).toMatch(/^silkworm: --offload and --no-offload are for the userspace data plane/);
  });

  it('--help names every offload, the precedence and an example', async () => {
    const io = capture();
    expect(await main(['cell', '--help'])).toBe(0);
    const help = io.out();
    expect(help).toContain('--offload <list>');
    expect(help).toContain('--no-offload <list>');
    expect(help).toContain('Precedence, per offload: --offload / --no-offload > the deprecated environment variables');
    expect(help).toContain('--no-offload tap-tso,udp-gso');
  });
});
