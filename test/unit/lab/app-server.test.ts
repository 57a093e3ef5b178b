import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { appBody, createAppServer, parseAppArgs, plainAddress } from '../../../src/lab/app-server.js';

function get(port: number, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const server = createAppServer('appA');
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('lab app server', () => {
  it('answers GET with its name and the address it was reached on', async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    expect(await get(port)).toEqual({ status: 200, body: 'appA 127.0.0.1\n' });
    expect((await get(port, 'POST')).status).toBe(405);
  });

  it('prints IPv4-mapped addresses as plain IPv4', () => {
    expect(plainAddress('::ffff:10.255.1.2')).toBe('10.255.1.2');
    expect(plainAddress('fe80::1')).toBe('fe80::1');
    expect(plainAddress(undefined)).toBe('unknown');
    expect(appBody('appB', '::ffff:10.255.2.2')).toBe('appB 10.255.2.2\n');
  });

  it('parses its flags and refuses bad ones', () => {
    expect(parseAppArgs(['--name', 'appA', '--port', '8080'])).toEqual({ name: 'appA', port: 8080, host: '0.0.0.0' });
    expect(() => parseAppArgs(['--name', 'appA', '--port', '70000'])).toThrow(/--port/);
    expect(() => parseAppArgs(['--port', '80'])).toThrow(/--name/);
    expect(() => parseAppArgs(['--name'])).toThrow(/needs a value/);
    expect(() => parseAppArgs(['--name', 'a', '--bogus'])).toThrow(/unknown argument/);
  });
});
