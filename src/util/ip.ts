// IPv4 addresses travel through silkworm as unsigned 32-bit numbers (host
// order, `>>> 0`), never as strings, so the hot path allocates nothing.
// These helpers convert at the edges (config, CLI, API, printing).

export function ipToU32(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`"${text}" is not an IPv4 address`);
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) throw new Error(`"${text}" is not an IPv4 address`);
    const n = Number(p);
    if (n > 255) throw new Error(`"${text}" is not an IPv4 address`);
    v = v * 256 + n;
  }
  return v >>> 0;
}

export function isIpv4(text: string): boolean {
  try {
    ipToU32(text);
    return true;
  } catch {
    return false;
  }
}

export function u32ToIp(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** "10.255.1.0/24" → { addr, len }; the address is masked to the prefix. */
export function parseCidr(text: string): { addr: number; len: number } {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  if (!m) throw new Error(`"${text}" is not an IPv4 prefix like 10.255.0.0/16`);
  const len = Number(m[2]);
  if (len > 32) throw new Error(`"${text}" has a prefix length above 32`);
  return { addr: (ipToU32(m[1]!) & prefixMask(len)) >>> 0, len };
}

export function prefixMask(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

export function formatCidr(addr: number, len: number): string {
  return `${u32ToIp(addr)}/${len}`;
}

export function inPrefix(ip: number, addr: number, len: number): boolean {
  return ((ip & prefixMask(len)) >>> 0) === addr >>> 0;
}

/** silk's MACs: a 2-byte prefix (ee:ee container/VTEP, aa:aa cell side) + the IP's 4 bytes. */
export function macFromIp(prefix: 0xeeee | 0xaaaa, ip: number): Uint8Array {
  const mac = new Uint8Array(6);
  writeMacFromIp(mac, 0, prefix, ip);
  return mac;
}

export function writeMacFromIp(buf: Uint8Array, off: number, prefix: number, ip: number): void {
  buf[off] = (prefix >>> 8) & 255;
  buf[off + 1] = prefix & 255;
  buf[off + 2] = (ip >>> 24) & 255;
  buf[off + 3] = (ip >>> 16) & 255;
  buf[off + 4] = (ip >>> 8) & 255;
  buf[off + 5] = ip & 255;
}

export function formatMac(mac: Uint8Array, off = 0): string {
  const out: string[] = [];
  for (let i = 0; i < 6; i++) out.push(mac[off + i]!.toString(16).padStart(2, '0'));
  return out.join(':');
}

export function parseMac(text: string): Uint8Array {
  const m = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i.exec(text);
  if (!m) throw new Error(`"${text}" is not a MAC address like ee:ee:0a:ff:01:02`);
  return Uint8Array.from(m.slice(1).map((h) => parseInt(h, 16)));
}

/** silk's host-side interface name for a container IP: 10.255.108.184 → s-010255108184. */
export function silkIfName(ip: number): string {
  return 's-' + u32ToIp(ip).split('.').map((o) => o.padStart(3, '0')).join('');
}
