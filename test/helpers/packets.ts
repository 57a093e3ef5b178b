// Frame builders for tests: a container's frame as its kernel would send it
// on eth0 (dst aa:aa:<ip>, src ee:ee:<ip>), and VXLAN payloads as a peer cell
// would send them. Built with the wire module's emitters.
import { emitIpv4 } from '../../src/wire/ipv4.js';
import { emitTcp } from '../../src/wire/tcp.js';
import { emitUdp } from '../../src/wire/udp.js';
import { emitIcmp } from '../../src/wire/icmp.js';
import { writeVxlanHeader } from '../../src/wire/vxlan.js';
import { ipToU32, writeMacFromIp } from '../../src/util/ip.js';

export interface L4 {
  proto: 'tcp' | 'udp' | 'icmp';
  sport?: number;
  dport?: number;
  flags?: number; // TCP flags
  icmpType?: number;
  icmpCode?: number;
  echoId?: number;
  payload?: Uint8Array;
  ttl?: number;
  dontFrag?: boolean;
}

const PROTO = { tcp: 6, udp: 17, icmp: 1 } as const;

/** An IPv4 packet (no Ethernet header). */
export function ipPacket(src: string | number, dst: string | number, l4: L4): Uint8Array {
  const s = typeof src === 'number' ? src : ipToU32(src);
  const d = typeof dst === 'number' ? dst : ipToU32(dst);
  const payload = l4.payload ?? new Uint8Array(0);
  const l4hdr = l4.proto === 'tcp' ? 20 : 8;
  const buf = new Uint8Array(20 + l4hdr + payload.length);
  buf.set(payload, 20 + l4hdr);
  if (l4.proto === 'tcp') {
    emitTcp({ srcPort: l4.sport ?? 40000, dstPort: l4.dport ?? 8080, seq: 1000, ack: 0, flags: l4.flags ?? 0x02, window: 64240, urgent: 0, options: new Uint8Array(0), payloadLen: payload.length }, buf, 20, s, d);
  } else if (l4.proto === 'udp') {
    emitUdp({ srcPort: l4.sport ?? 40000, dstPort: l4.dport ?? 8080, payloadLen: payload.length }, buf, 20, s, d);
  } else {
    const type = l4.icmpType ?? 8;
    const rest = type === 8 || type === 0 ? ((l4.echoId ?? 77) << 16) | 1 : 0;
    emitIcmp({ type, code: l4.icmpCode ?? 0, restOfHeader: rest >>> 0, payloadLen: payload.length }, buf, 20);
  }
  emitIpv4({ src: s, dst: d, protocol: PROTO[l4.proto], ttl: l4.ttl ?? 64, payloadLen: buf.length - 20, dscpEcn: 0, ident: 0x1234, dontFrag: l4.dontFrag ?? true, moreFrags: false, fragOffset: 0, options: new Uint8Array(0) }, buf, 0);
  return buf;
}

/** The frame container `src` sends on its eth0 (to the gateway's aa:aa MAC). */
export function containerFrame(src: string, dst: string, l4: L4): Uint8Array {
  const ip = ipPacket(src, dst, l4);
  const f = new Uint8Array(14 + ip.length);
  const s = ipToU32(src);
  writeMacFromIp(f, 0, 0xaaaa, s);
  writeMacFromIp(f, 6, 0xeeee, s);
  f[12] = 0x08;
  f[13] = 0x00;
  f.set(ip, 14);
  return f;
}

/** A VXLAN UDP payload a peer cell would send: header + inner frame between VTEP MACs. */
export function vxlanPayload(opts: { fromVtep: string; toVtep: string; gpid: number; vni?: number; inner: Uint8Array; flags?: number }): Uint8Array {
  const out = new Uint8Array(8 + 14 + opts.inner.length);
  writeVxlanHeader(out, 0, opts.vni ?? 1, opts.gpid);
  if (opts.flags !== undefined) out[0] = opts.flags;
  writeMacFromIp(out, 8, 0xeeee, ipToU32(opts.toVtep));
  writeMacFromIp(out, 14, 0xeeee, ipToU32(opts.fromVtep));
  out[20] = 0x08;
  out[21] = 0x00;
  out.set(opts.inner, 22);
  return out;
}
