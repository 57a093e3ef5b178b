// Which offloads a cell uses, decided once where the process starts and passed
// down as plain data: the io layer never reads the environment.
//
//   tap-tso  TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4) on each container TAP: the
//            container's stack sends TCP super-frames, cut into MTU-sized
//            frames by GsoSegmenter (src/offload/gso.ts). Needs IFF_VNET_HDR.
//   tap-gro  IFF_VNET_HDR on each container TAP and GroPlanner
//            (src/offload/gro.ts): in-order TCP segments written to a TAP are
//            merged into one GSO super-frame.
//   udp-gso  UDP_SEGMENT on the underlay's send side (pool sockets per source port).
//   udp-gro  UDP_GRO on the underlay's receive socket.
//
// Precedence, per offload: an explicit flag (`--offload LIST` names the whole
// set in use; `--no-offload LIST` turns the named ones off) > the deprecated
// environment variables (SILKWORM_TAP_VNET=0: tap-gro and tap-tso off;
// SILKWORM_TAP_TSO=0: tap-tso off; SILKWORM_UNDERLAY_GSO=0: udp-gso and
// udp-gro off) > the default (all on).
//
// What is asked for is not always what the kernel grants: as wireguard-go's
// tun/tun_linux.go (initFromFlags) and conn/features_linux.go do, each device
// asks, falls back when refused, and the result is recorded here
// (OffloadNegotiation) for `silkworm show counters`.
import { endianness } from 'node:os';

export const OFFLOAD_NAMES = ['tap-tso', 'tap-gro', 'udp-gso', 'udp-gro'] as const;
export type OffloadName = (typeof OFFLOAD_NAMES)[number];

/** What the cell asks the kernel for. */
export interface OffloadOptions {
  tapTso: boolean;
  tapGro: boolean;
  udpGso: boolean;
  udpGro: boolean;
}

const FIELD: Record<OffloadName, keyof OffloadOptions> = {
  'tap-tso': 'tapTso',
  'tap-gro': 'tapGro',
  'udp-gso': 'udpGso',
  'udp-gro': 'udpGro',
};

export const ALL_OFFLOADS: Readonly<OffloadOptions> = Object.freeze({ tapTso: true, tapGro: true, udpGso: true, udpGro: true });
export const NO_OFFLOADS: Readonly<OffloadOptions> = Object.freeze({ tapTso: false, tapGro: false, udpGso: false, udpGro: false });

export function offloadEnabled(o: OffloadOptions, name: OffloadName): boolean {
  return o[FIELD[name]];
}

/** The deprecated alias SILKWORM_TAP_VNET: the TAP's virtio_net_hdr is on unless it is "0" (or the host is big-endian). */
export function vnetDefault(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.SILKWORM_TAP_VNET !== '0' && endianness() === 'LE';
}

/** The deprecated alias SILKWORM_TAP_TSO: TAP TSO is on unless it is "0". */
export function tsoDefault(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.SILKWORM_TAP_TSO !== '0';
}

/** The deprecated alias SILKWORM_UNDERLAY_GSO: UDP GSO and GRO are on unless it is "0". */
export function gsoDefault(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.SILKWORM_UNDERLAY_GSO !== '0';
}

export const DEPRECATED_ENV = ['SILKWORM_TAP_VNET', 'SILKWORM_TAP_TSO', 'SILKWORM_UNDERLAY_GSO'] as const;

/** Parse "tap-tso,udp-gro" (also "all" and "none"); throws one clear sentence for anything else. */
export function parseOffloadList(list: string, flag: string): Set<OffloadName> {
  const out = new Set<OffloadName>();
  for (const raw of list.split(',')) {
    const w = raw.trim();
    if (w === '') continue;
    if (w === 'all') {
      for (const n of OFFLOAD_NAMES) out.add(n);
      continue;
    }
    if (w === 'none') continue;
    if (!(OFFLOAD_NAMES as readonly string[]).includes(w)) {
      throw new Error(`${flag}: "${w}" is not an offload (use ${OFFLOAD_NAMES.join(', ')}, all or none)`);
    }
    out.add(w as OffloadName);
  }
  return out;
}

export interface ResolvedOffloads {
  options: OffloadOptions;
  /** Deprecated environment variables that were set and used (for one warning). */
  deprecatedEnv: string[];
}

/**
 * Resolve the cell's offloads from its flags and environment (flags > env > default), once.
 * `offload`: the value of --offload (the complete set in use); `noOffload`: --no-offload (turned off).
 */
export function resolveOffloads(flags: { offload?: string; noOffload?: string }, env: NodeJS.ProcessEnv = process.env): ResolvedOffloads {
  const deprecatedEnv = DEPRECATED_ENV.filter((k) => env[k] !== undefined);
  const o: OffloadOptions = { ...ALL_OFFLOADS };
  const explicit = new Set<OffloadName>();
  if (flags.offload !== undefined) {
    const on = parseOffloadList(flags.offload, '--offload');
    for (const n of OFFLOAD_NAMES) {
      o[FIELD[n]] = on.has(n);
      explicit.add(n);
    }
  }
  const off = flags.noOffload !== undefined ? parseOffloadList(flags.noOffload, '--no-offload') : new Set<OffloadName>();
  for (const n of off) {
    o[FIELD[n]] = false;
    explicit.add(n);
  }
  // The environment only decides what no flag named.
  const fromEnv: Partial<OffloadOptions> = {};
  if (!vnetDefault(env)) {
    fromEnv.tapGro = false;
    fromEnv.tapTso = false;
  }
  if (!tsoDefault(env)) fromEnv.tapTso = false;
  if (!gsoDefault(env)) {
    fromEnv.udpGso = false;
    fromEnv.udpGro = false;
  }
  for (const n of OFFLOAD_NAMES) {
    const v = fromEnv[FIELD[n]];
    if (!explicit.has(n) && v !== undefined) o[FIELD[n]] = v;
  }
  return { options: o, deprecatedEnv };
}

/** "tap-tso,tap-gro" for the offloads that are on ("none" when none is). */
export function formatOffloads(o: OffloadOptions): string {
  const on = OFFLOAD_NAMES.filter((n) => o[FIELD[n]]);
  return on.length > 0 ? on.join(',') : 'none';
}

/** One offload's state, as `show counters` prints it. */
export interface OffloadState {
  requested: boolean;
  /**
   * Whether it is in use: true when requested and every device that asked got it; false when not
   * requested or refused; null when requested but no device has asked yet (no container attached).
   */
  in_effect: boolean | null;
  /** Devices that asked and got it. */
  granted: number;
  /** Devices that asked and were refused (and fell back). */
  refused: number;
  /** Why the last refusal happened (an errno name such as EINVAL), if any. */
  reason?: string;
}

export type OffloadStatus = Record<OffloadName, OffloadState>;

/** What each device got when it asked: recorded as devices open, read by `show counters`. */
export class OffloadNegotiation {
  readonly requested: OffloadOptions;
  private readonly granted = new Map<OffloadName, number>();
  private readonly refused = new Map<OffloadName, number>();
  private readonly reasons = new Map<OffloadName, string>();

  constructor(requested: OffloadOptions) {
    this.requested = { ...requested };
  }

  /** A device asked for `name` (only call when it was requested) and got it, or was refused. */
  record(name: OffloadName, granted: boolean, reason?: string): void {
    const m = granted ? this.granted : this.refused;
    m.set(name, (m.get(name) ?? 0) + 1);
    if (!granted && reason !== undefined) this.reasons.set(name, reason);
  }

  status(): OffloadStatus {
    const out = {} as OffloadStatus;
    for (const n of OFFLOAD_NAMES) {
      const requested = this.requested[FIELD[n]];
      const granted = this.granted.get(n) ?? 0;
      const refused = this.refused.get(n) ?? 0;
      const s: OffloadState = {
        requested,
        in_effect: !requested ? false : refused > 0 ? false : granted > 0 ? true : null,
        granted,
        refused,
      };
      const reason = this.reasons.get(n);
      if (reason !== undefined) s.reason = reason;
      out[n] = s;
    }
    return out;
  }
}
