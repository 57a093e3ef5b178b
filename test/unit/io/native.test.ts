// The native addon's argument checks and the syscalls that need no root
// (write() to a regular file, errors on bad fds). TAP and socket behaviour is
// covered by test/e2e/io.test.ts in network namespaces.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { EBADFD, errnoError, errnoName, isDeviceGone, loadNative, NOT_BUILT_MESSAGE } from '../../../src/io/native.js';

const EINVAL = 22;
const EBADF = 9;
const ENOTSOCK = 88;

const dir = mkdtempSync(join(tmpdir(), 'swio-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('native loader', () => {
  it('exports the documented functions', () => {
    const n = loadNative();
    for (const f of ['openTap', 'openTapInNetns', 'setPersist', 'closeFd', 'ifNameToIndex', 'writeFrames', 'openRawSocket', 'sendBatch', 'TapReader', 'UdpReceiver']) {
      expect(typeof (n as unknown as Record<string, unknown>)[f], f).toBe('function');
    }
    expect(n.maxBatch).toBe(1024);
  });

  it('says how to build the addon when it is missing', async () => {
    vi.resetModules();
    const saved = process.env.SILKWORM_NATIVE;
    process.env.SILKWORM_NATIVE = join(dir, 'missing.node');
    try {
      const fresh = await import('../../../src/io/native.js');
      expect(() => fresh.loadNative()).toThrow(NOT_BUILT_MESSAGE);
      expect(fresh.nativeAvailable()).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.SILKWORM_NATIVE;
      else process.env.SILKWORM_NATIVE = saved;
      vi.resetModules();
    }
  });

  it('names errnos the way Node does and knows which mean "device gone"', () => {
    expect(errnoName(11)).toBe('EAGAIN');
    expect(errnoName(EBADFD)).toBe('EBADFD');
    const e = errnoError('TAP x write', 19);
    expect(e.message).toBe('TAP x write: ENODEV');
    expect(e.code).toBe('ENODEV');
    expect(isDeviceGone(EBADFD)).toBe(true);
    expect(isDeviceGone(19)).toBe(true);
    expect(isDeviceGone(11)).toBe(false);
    expect(isDeviceGone(EINVAL)).toBe(false);
  });
});

describe('adaptive busy polling (setBusyPoll)', () => {
  it('is off until set, reports its window, and never spins without traffic', async () => {
    const n = loadNative();
    expect(typeof n.setBusyPoll).toBe('function');
    const before = n.busyPollCounters!();
    n.setBusyPoll!(1000);
    expect(n.busyPollCounters!().windowUs).toBe(1000);
    // No reader drained anything: the idle handle is never started, the loop sleeps as before.
    await new Promise((r) => setTimeout(r, 30));
    const after = n.busyPollCounters!();
    expect(after.spins).toBe(before.spins);
    expect(after.windows).toBe(before.windows);
    n.setBusyPoll!(0);
    expect(n.busyPollCounters!().windowUs).toBe(0);
    expect(() => n.setBusyPoll!(-1)).toThrow();
  });
});

describe('native argument checks (no root)', () => {
  const n = loadNative();

  it('refuses bad interface names before any syscall', () => {
    expect(() => n.openTap('a/b')).toThrow(/not a valid interface name/);
    expect(() => n.openTap('x'.repeat(16))).toThrow(/not a valid interface name/);
    expect(() => n.openTap('bad name', { multiQueue: true })).toThrow(/not a valid interface name/);
    expect(() => n.ifNameToIndex('')).toThrow(/not a valid interface name/);
    expect(n.ifNameToIndex('swio-none-0')).toBe(0);
  });

  it('checks the steering worker count before any syscall', () => {
    expect(() => n.steerTap!(0, 1)).toThrow(/n must be from 2 to 64, not 1/);
    expect(() => n.steerTap!(0, 65)).toThrow(RangeError);
    expect(() => n.steerTap!(-1, 2)).toThrow(TypeError);
  });

  it('reports a missing namespace with the errno code and the path', () => {
    try {
      n.openTapInNetns(join(dir, 'no-such-ns'), 'eth0');
      expect.fail('should throw');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      expect(e.code).toBe('ENOENT');
      expect(e.errno).toBe(2);
      expect(e.message).toContain('no-such-ns eth0: open namespace');
    }
  });

  it('checks reader geometry and array types', () => {
    const slab = new Uint8Array(4 * 256);
    const lens = new Uint32Array(4);
    const noop = () => undefined;
    expect(() => new n.TapReader(0, slab, 256, 64, 5, lens, noop, noop)).toThrow(RangeError);
    expect(() => new n.TapReader(0, slab, 256, 256, 4, lens, noop, noop)).toThrow(RangeError);
    expect(() => new n.TapReader(0, slab, 256, 64, 4, new Uint16Array(4) as unknown as Uint32Array, noop, noop)).toThrow(/lengths must be a Uint32Array/);
    expect(() => new n.TapReader(-1, slab, 256, 64, 4, lens, noop, noop)).toThrow(/fd must be an integer/);
    expect(() => new n.UdpReceiver(0, 70000, slab, 256, 64, 4, lens, new Uint32Array(4), new Uint16Array(4), noop)).toThrow(RangeError);
    expect(() => new n.UdpReceiver(0, 4789, slab, 256, 64, 4, lens, new Uint32Array(3), new Uint16Array(4), noop)).toThrow(RangeError);
  });

  it('gives a clear error when the fd cannot be polled (a regular file)', () => {
    const fd = openSync(join(dir, 'plain'), 'w');
    try {
      const lens = new Uint32Array(2);
      expect(() => new n.TapReader(fd, new Uint8Array(512), 256, 64, 2, lens, () => undefined, () => undefined)).toThrow(/uv_poll_init: Operation not permitted/);
    } finally {
      closeSync(fd);
    }
  });
});

describe('writeFrames on a regular file (one write() per frame)', () => {
  const n = loadNative();

  it('writes each frame from a slab that starts at a non-zero byte offset', () => {
    const path = join(dir, 'frames');
    const fd = openSync(path, 'w');
    try {
      // The slab is a view 16 bytes into a larger buffer: offsets are relative to the view.
      const backing = new Uint8Array(16 + 64);
      for (let i = 0; i < backing.length; i++) backing[i] = i;
      const slab = backing.subarray(16);
      const offs = Uint32Array.of(10, 40, 0);
      const lens = Uint32Array.of(3, 5, 2);
      expect(n.writeFrames(fd, slab, offs, lens, 3)).toBe(3);
      expect(n.writeFrames(fd, slab, offs, lens, 3, 2)).toBe(1); // start at frame 2 only
    } finally {
      closeSync(fd);
    }
    expect(Array.from(readFileSync(path))).toEqual([26, 27, 28, 56, 57, 58, 59, 60, 16, 17, 16, 17]);
  });

  it('stops before a frame outside the slab and reports it alone as -EINVAL', () => {
    const path = join(dir, 'partial');
    const fd = openSync(path, 'w');
    try {
      const slab = new Uint8Array(32).fill(7);
      const offs = Uint32Array.of(0, 30, 4);
      const lens = Uint32Array.of(4, 4, 4);
      expect(n.writeFrames(fd, slab, offs, lens, 3)).toBe(1);
      expect(n.writeFrames(fd, slab, offs, lens, 3, 1)).toBe(-EINVAL);
      expect(n.writeFrames(fd, slab, offs, lens, 3, 2)).toBe(1);
      expect(() => n.writeFrames(fd, slab, offs, lens, 4)).toThrow(RangeError);
      expect(() => n.writeFrames(fd, slab, offs, lens, 2, 3)).toThrow(/start is past count/);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(path).length).toBe(8);
  });

  it('returns -EBADF for a closed fd and -ENOTSOCK when sendBatch gets a file', () => {
    const fd = openSync(join(dir, 'closed'), 'w');
    const slab = new Uint8Array(64);
    const offs = Uint32Array.of(0);
    const lens = Uint32Array.of(28);
    expect(n.sendBatch(fd, slab, offs, lens, Uint32Array.of(0xc6120001), 1)).toBe(-ENOTSOCK);
    expect(() => n.sendBatch(fd, slab, offs, lens, new Uint32Array(0), 1)).toThrow(/dsts/);
    closeSync(fd);
    expect(n.writeFrames(fd, slab, offs, lens, 1)).toBe(-EBADF);
  });
});
