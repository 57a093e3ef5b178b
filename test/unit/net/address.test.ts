import { describe, expect, it } from 'vitest';
import { AddressError, formatAddress, parseAddress } from '../../../src/net/address.js';

describe('addresses', () => {
  it('reads https://host:port as TLS, http:// and host:port as plain TCP, paths as unix sockets', () => {
    expect(parseAddress('https://198.18.0.1:4003')).toEqual({ kind: 'tcp', host: '198.18.0.1', port: 4003, tls: true });
    expect(parseAddress('https://198.18.0.1:4003/')).toEqual({ kind: 'tcp', host: '198.18.0.1', port: 4003, tls: true });
    expect(parseAddress('http://127.0.0.1:4003')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 4003 });
    expect(parseAddress('127.0.0.1:4003')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 4003 });
    expect(parseAddress('https://[::1]:4003')).toEqual({ kind: 'tcp', host: '::1', port: 4003, tls: true });
    expect(parseAddress('/run/silkworm/sw/controller.sock')).toEqual({ kind: 'unix', path: '/run/silkworm/sw/controller.sock' });
    expect(formatAddress(parseAddress('https://198.18.0.1:4003'))).toBe('https://198.18.0.1:4003');
    expect(formatAddress(parseAddress('https://[::1]:4003'))).toBe('https://[::1]:4003');
    expect(formatAddress(parseAddress('127.0.0.1:4003'))).toBe('127.0.0.1:4003');
  });

  it('says what is wrong with a bad one', () => {
    expect(() => parseAddress('ftp://x:1')).toThrow(new AddressError('"ftp://x:1" is not an address: the scheme must be http:// or https://'));
    expect(() => parseAddress('https://x:1/leases')).toThrow(/without a path/);
    expect(() => parseAddress('https://x')).toThrow(/is not an address/);
    expect(() => parseAddress('https://x:70000')).toThrow(/port outside 1-65535/);
  });
});
