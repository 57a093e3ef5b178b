// The one reading of the addon's refusal messages for an existing device (native/tap.cc RefusalDetail).
import { describe, expect, it } from 'vitest';
import { tapRefusal } from '../../../src/io/tap.js';

const errnoErr = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('tapRefusal', () => {
  it('names the queue mode the existing TAP has, or that it is no TAP', () => {
    expect(tapRefusal(errnoErr('EINVAL', 'openTap s-0aff0102: TUNSETIFF: TAP s-0aff0102 exists without multi-queue'))).toBe('single');
    expect(tapRefusal(errnoErr('EINVAL', 'openTapInNetns eth0: TUNSETIFF: TAP eth0 exists with multi-queue'))).toBe('multi');
    expect(tapRefusal(errnoErr('EINVAL', 'openTap eth0: TUNSETIFF: eth0 exists and is not a TAP'))).toBe('not-tap');
  });
  it('is undefined for any other error', () => {
    expect(tapRefusal(errnoErr('EINVAL', 'openTap x: TUNSETIFF: Invalid argument'))).toBeUndefined();
    expect(tapRefusal(errnoErr('ENODEV', 'TAP x exists without multi-queue'))).toBeUndefined();
    expect(tapRefusal(undefined)).toBeUndefined();
    expect(tapRefusal('EINVAL')).toBeUndefined();
  });
});
