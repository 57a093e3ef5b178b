// The cell's neighbor (ARP) table: overlay IP → MAC on a device. silk installs
// one PERMANENT entry per remote VTEP (`ip neigh` on a silk cell: "10.255.43.0 dev
// silk-vtep lladdr ee:ee:0a:ff:2b:00 PERMANENT") and never runs ARP on the overlay, so
// there is no resolution state machine here: an entry exists or it does not.
//
// Keyed by the IPv4 address as u32 in a U32Map, so a per-packet `get`
// allocates nothing and returns the stored entry.
import { formatMac, u32ToIp } from '../util/ip.js';
import { U32Map } from './u32map.js';

export interface NeighborEntry {
  ip: number;
  mac: Uint8Array;
  dev: string;
}

function checkIp(ip: number): void {
  if (!Number.isInteger(ip) || ip < 0 || ip > 0xffffffff) {
    throw new RangeError(`neighbor address must be an IPv4 address as u32, got ${ip}`);
  }
}

function checkMac(mac: Uint8Array): void {
  if (!(mac instanceof Uint8Array) || mac.length !== 6) throw new TypeError('a MAC address is 6 bytes');
}

export class NeighborTable {
  private readonly index = new U32Map();
  private slots: (NeighborEntry | undefined)[] = [];
  private free: number[] = [];

  /** Add or replace the entry for `ip` (`ip neigh replace … nud permanent`). The MAC is copied. */
  set(ip: number, mac: Uint8Array, dev: string): void {
    checkIp(ip);
    checkMac(mac);
    if (typeof dev !== 'string' || dev.length === 0) throw new TypeError('neighbor needs a device name');
    const e: NeighborEntry = { ip: ip >>> 0, mac: Uint8Array.from(mac), dev };
    const slot = this.index.get(e.ip);
    if (slot >= 0) {
      this.slots[slot] = e;
      return;
    }
    const s = this.free.length > 0 ? this.free.pop()! : this.slots.length;
    this.slots[s] = e;
    this.index.set(e.ip, s);
  }

  delete(ip: number): boolean {
    const slot = this.index.get(ip >>> 0);
    if (slot < 0) return false;
    this.index.delete(ip >>> 0);
    this.slots[slot] = undefined;
    this.free.push(slot);
    return true;
  }

  /** Allocation-free; returns the stored entry (do not mutate it). */
  get(ip: number): NeighborEntry | undefined {
    const slot = this.index.get(ip);
    return slot >= 0 ? this.slots[slot] : undefined;
  }

  /** All entries sorted by address (copies). */
  entries(): NeighborEntry[] {
    const out: NeighborEntry[] = [];
    for (const e of this.slots) if (e) out.push({ ip: e.ip, mac: Uint8Array.from(e.mac), dev: e.dev });
    return out.sort((a, b) => a.ip - b.ip);
  }

  clear(): void {
    this.index.clear();
    this.slots = [];
    this.free = [];
  }

  get size(): number {
    return this.index.size;
  }
}

/** One line as `ip neigh` prints a permanent entry: `10.255.43.0 dev silk-vtep lladdr ee:ee:0a:ff:2b:00 PERMANENT`. */
export function formatNeighbor(e: NeighborEntry): string {
  return `${u32ToIp(e.ip)} dev ${e.dev} lladdr ${formatMac(e.mac)} PERMANENT`;
}

export interface NeighborJson {
  dst: string;
  dev: string;
  lladdr: string;
  state: string[];
}

/** The shape `ip -j neigh` prints for one entry. */
export function neighborJson(e: NeighborEntry): NeighborJson {
  return { dst: u32ToIp(e.ip), dev: e.dev, lladdr: formatMac(e.mac), state: ['PERMANENT'] };
}
