// Request validation for the controller's APIs. Rules follow cf-networking's
// policy-server validator (missing ids, protocol tcp|udp, ports 1-65535 with
// start <= end, "tags may not be specified"), plus one thing Go's JSON decoder
// does not do: unknown fields and wrong types are rejected, so a typo such as
// "destinaton" cannot silently create a different policy. Every error is one
// sentence that starts with the JSON path of the offending field.
import { isIpv4 } from '../util/ip.js';
import type { PolicyRecord } from '../net/controller-types.js';

export class ValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ValidationError';
  }
}

/** A validated policy, without tags: the unit the store keeps. */
export interface PolicyKey {
  source: string;
  dest: string;
  protocol: 'tcp' | 'udp';
  start: number;
  end: number;
}

/** App ids are CF app GUIDs in practice; bound them so a client cannot bloat the store. */
export const MAX_ID_LENGTH = 255;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'number') return 'a number';
  return `a ${typeof v}`;
}

function onlyKeys(o: Obj, where: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      throw new ValidationError(`${where ? where + '.' : ''}${k} is not a known field (expected ${allowed.join(', ')})`);
    }
  }
}

function checkId(v: unknown, where: string, what: string): string {
  if (v === undefined) throw new ValidationError(`${where} is missing: give the ${what} app's id`);
  if (typeof v !== 'string') throw new ValidationError(`${where} must be a string, got ${typeName(v)}`);
  if (v.length === 0) throw new ValidationError(`${where} must not be empty: give the ${what} app's id`);
  if (v.length > MAX_ID_LENGTH) throw new ValidationError(`${where} is longer than ${MAX_ID_LENGTH} characters`);
  // Control characters would break the text table and the logs; CF GUIDs never have them.
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(v)) throw new ValidationError(`${where} contains a control character`);
  if (v.includes(',')) throw new ValidationError(`${where} must not contain a comma (list filters split on commas)`);
  return v;
}

function checkPort(v: unknown, where: string): number {
  if (typeof v !== 'number') throw new ValidationError(`${where} must be a number, got ${typeName(v)}`);
  if (!Number.isInteger(v)) throw new ValidationError(`${where} must be a whole number, got ${v}`);
  if (v < 1 || v > 65535) throw new ValidationError(`${where} is ${v}, must be in range 1-65535`);
  return v;
}

/** One policy object (external shape, v1 `ports` or legacy v0 `port`). */
export function validatePolicy(p: unknown, where: string): PolicyKey {
  if (!isObj(p)) throw new ValidationError(`${where} must be an object with source and destination, got ${typeName(p)}`);
  onlyKeys(p, where, ['source', 'destination']);
  const src = p.source;
  const dst = p.destination;
  if (src === undefined) throw new ValidationError(`${where}.source is missing`);
  if (!isObj(src)) throw new ValidationError(`${where}.source must be an object like {"id":"appA"}, got ${typeName(src)}`);
  if ('tag' in src) throw new ValidationError(`${where}.source.tag: tags may not be specified, the controller assigns them`);
  onlyKeys(src, `${where}.source`, ['id']);
  const source = checkId(src.id, `${where}.source.id`, 'source');

  if (dst === undefined) throw new ValidationError(`${where}.destination is missing`);
  if (!isObj(dst)) throw new ValidationError(`${where}.destination must be an object, got ${typeName(dst)}`);
  if ('tag' in dst) throw new ValidationError(`${where}.destination.tag: tags may not be specified, the controller assigns them`);
  onlyKeys(dst, `${where}.destination`, ['id', 'protocol', 'ports', 'port']);
  const dest = checkId(dst.id, `${where}.destination.id`, 'destination');

  const proto = dst.protocol;
  if (proto === undefined) throw new ValidationError(`${where}.destination.protocol is missing: specify either udp or tcp`);
  if (proto !== 'tcp' && proto !== 'udp') {
    const shown = typeof proto === 'string' ? `"${proto}"` : typeName(proto);
    throw new ValidationError(`${where}.destination.protocol is ${shown}: specify either udp or tcp`);
  }

  let start: number;
  let end: number;
  if (dst.ports !== undefined) {
    const ports = dst.ports;
    if (!isObj(ports)) {
      throw new ValidationError(`${where}.destination.ports must be an object like {"start":8080,"end":8080}, got ${typeName(ports)}`);
    }
    onlyKeys(ports, `${where}.destination.ports`, ['start', 'end']);
    if (ports.start === undefined) throw new ValidationError(`${where}.destination.ports.start is missing`);
    if (ports.end === undefined) throw new ValidationError(`${where}.destination.ports.end is missing`);
    start = checkPort(ports.start, `${where}.destination.ports.start`);
    end = checkPort(ports.end, `${where}.destination.ports.end`);
    if (start > end) {
      throw new ValidationError(
        `${where}.destination.ports is the range ${start}-${end}: start must be less than or equal to end`,
      );
    }
    if (dst.port !== undefined) {
      // v0's single port next to v1's range: accept only if they say the same thing.
      const port = checkPort(dst.port, `${where}.destination.port`);
      if (port !== start || port !== end) {
        throw new ValidationError(`${where}.destination.port (${port}) disagrees with ports ${start}-${end}: give one of them`);
      }
    }
  } else if (dst.port !== undefined) {
    start = end = checkPort(dst.port, `${where}.destination.port`);
  } else {
    throw new ValidationError(`${where}.destination.ports is missing: give {"start":N,"end":M}`);
  }
  return { source, dest, protocol: proto, start, end };
}

/** Body of POST /networking/v1/external/policies and …/delete. */
export function validatePoliciesBody(body: unknown): PolicyKey[] {
  if (body === undefined) throw new ValidationError('the request has no body: send {"policies":[…]}');
  if (!isObj(body)) throw new ValidationError(`the request body must be an object like {"policies":[…]}, got ${typeName(body)}`);
  onlyKeys(body, '', ['policies']);
  const ps = body.policies;
  if (ps === undefined) throw new ValidationError('policies is missing: send {"policies":[…]}');
  if (!Array.isArray(ps)) throw new ValidationError(`policies must be an array, got ${typeName(ps)}`);
  if (ps.length === 0) throw new ValidationError('policies is empty: give at least one policy');
  return ps.map((p, i) => validatePolicy(p, `policies[${i}]`));
}

/** Body of PUT /leases/acquire: {"underlay_ip": "198.18.0.11"}. */
export function validateAcquireBody(body: unknown): string {
  if (!isObj(body)) throw new ValidationError(`the request body must be an object like {"underlay_ip":"198.18.0.11"}, got ${typeName(body)}`);
  onlyKeys(body, '', ['underlay_ip', 'single_overlay_ip']);
  if (body.single_overlay_ip !== undefined && body.single_overlay_ip !== false) {
    // silk's single-IP leases are for Windows cells; silkworm cells always take a subnet.
    throw new ValidationError('single_overlay_ip leases are not supported: omit the field or set it to false');
  }
  return checkUnderlayIp(body.underlay_ip, 'underlay_ip');
}

/** Body of PUT /leases/renew: a whole lease. */
export function validateLeaseBody(body: unknown): { underlay_ip: string; overlay_subnet: string; overlay_hardware_addr?: string } {
  if (!isObj(body)) throw new ValidationError(`the request body must be a lease object, got ${typeName(body)}`);
  onlyKeys(body, '', ['underlay_ip', 'overlay_subnet', 'overlay_hardware_addr']);
  const underlay_ip = checkUnderlayIp(body.underlay_ip, 'underlay_ip');
  const s = body.overlay_subnet;
  if (s === undefined) throw new ValidationError('overlay_subnet is missing');
  if (typeof s !== 'string') throw new ValidationError(`overlay_subnet must be a string, got ${typeName(s)}`);
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(s);
  if (!m || !isIpv4(m[1]!) || Number(m[2]) > 32) throw new ValidationError(`overlay_subnet "${s}" is not an IPv4 prefix like 10.255.1.0/24`);
  const hw = body.overlay_hardware_addr;
  if (hw !== undefined && typeof hw !== 'string') {
    throw new ValidationError(`overlay_hardware_addr must be a string, got ${typeName(hw)}`);
  }
  return { underlay_ip, overlay_subnet: s, overlay_hardware_addr: hw as string | undefined };
}

/** Body of PUT /leases/release: {"underlay_ip"} (silk today) or a whole lease (older silk). */
export function validateReleaseBody(body: unknown): { underlay_ip: string; overlay_subnet?: string } {
  if (!isObj(body)) throw new ValidationError(`the request body must be an object like {"underlay_ip":"198.18.0.11"}, got ${typeName(body)}`);
  if (body.overlay_subnet !== undefined) return validateLeaseBody(body);
  onlyKeys(body, '', ['underlay_ip', 'overlay_hardware_addr']);
  return { underlay_ip: checkUnderlayIp(body.underlay_ip, 'underlay_ip') };
}

function checkUnderlayIp(v: unknown, where: string): string {
  if (v === undefined) throw new ValidationError(`${where} is missing: give the cell's underlay IPv4 address`);
  if (typeof v !== 'string') throw new ValidationError(`${where} must be a string, got ${typeName(v)}`);
  if (!isIpv4(v)) throw new ValidationError(`${where} "${v}" is not an IPv4 address`);
  if (v === '0.0.0.0' || v === '255.255.255.255') throw new ValidationError(`${where} ${v} cannot be a cell's address`);
  return v;
}

/** Turn a key back into the wire shape (external when tags are not given). */
export function policyRecord(k: PolicyKey, srcTag?: string, dstTag?: string): PolicyRecord {
  if (srcTag === undefined) {
    return {
      source: { id: k.source },
      destination: { id: k.dest, protocol: k.protocol, ports: { start: k.start, end: k.end } },
    };
  }
  return {
    source: { id: k.source, tag: srcTag },
    destination: { id: k.dest, tag: dstTag, protocol: k.protocol, ports: { start: k.start, end: k.end } },
  };
}

/** A stable identity for a policy ('\0' cannot appear in an id: control characters are rejected). */
export function policyKeyString(k: PolicyKey): string {
  return `${k.source}\0${k.dest}\0${k.protocol}\0${k.start}\0${k.end}`;
}
