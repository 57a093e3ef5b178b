// Request validation for the controller's APIs. Rules follow cf-networking's
// policy-server validator (cf-networking-release: src/code.cloudfoundry.org/
// policy-server/api/policy_validator.go: missing ids, protocol tcp|udp, ports
// 1-65535 with start <= end, "tags may not be specified") and silk-controller's
// lease handlers. Unknown fields are ignored, as Go's encoding/json does, so
// a GET's output (or a newer client's) can be posted back.
//
// Every error carries two texts: `message`, one sentence that starts with the
// JSON path of the offending field (for logs and the CLI), and `upstream`, the
// exact text the upstream server answers for the same body, which is what the
// HTTP API sends (the cf CLI shows it to users).
import { isIpv4 } from '../util/ip.js';
import type { PolicyRecord } from '../net/controller-types.js';

export class ValidationError extends Error {
  /** The upstream server's error text for the same request. */
  readonly upstream: string;
  /** The HTTP status upstream answers with (400 unless said otherwise). */
  readonly status: number;
  constructor(message: string, upstream?: string, status = 400) {
    super(message);
    this.name = 'ValidationError';
    this.upstream = upstream ?? message;
    this.status = status;
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

/** A tag the client set: Go's decoder leaves an empty or null tag as "not specified". */
function hasTag(o: Obj): boolean {
  return o.tag !== undefined && o.tag !== null && o.tag !== '';
}

/** One policy object (external shape, v1 `ports` or legacy v0 `port`). */
export function validatePolicy(p: unknown, where: string): PolicyKey {
  if (!isObj(p)) throw new ValidationError(`${where} must be an object with source and destination, got ${typeName(p)}`);
  const src = p.source;
  const dst = p.destination;
  if (src === undefined) throw new ValidationError(`${where}.source is missing`);
  if (!isObj(src)) throw new ValidationError(`${where}.source must be an object like {"id":"appA"}, got ${typeName(src)}`);
  if (hasTag(src)) throw new ValidationError(`${where}.source.tag: tags may not be specified, the controller assigns them`);
  const source = checkId(src.id, `${where}.source.id`, 'source');

  if (dst === undefined) throw new ValidationError(`${where}.destination is missing`);
  if (!isObj(dst)) throw new ValidationError(`${where}.destination must be an object, got ${typeName(dst)}`);
  if (hasTag(dst)) throw new ValidationError(`${where}.destination.tag: tags may not be specified, the controller assigns them`);
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
  try {
    if (body === undefined) throw new ValidationError('the request has no body: send {"policies":[…]}');
    if (!isObj(body)) throw new ValidationError(`the request body must be an object like {"policies":[…]}, got ${typeName(body)}`);
    const ps = body.policies;
    if (ps === undefined) throw new ValidationError('policies is missing: send {"policies":[…]}');
    if (!Array.isArray(ps)) throw new ValidationError(`policies must be an array, got ${typeName(ps)}`);
    if (ps.length === 0) throw new ValidationError('policies is empty: give at least one policy');
    return ps.map((p, i) => validatePolicy(p, `policies[${i}]`));
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    // What the policy server says about the same body; silkworm's own checks
    // (ids with commas or control characters, very long ids) have no upstream
    // text and keep their sentence behind upstream's prefix.
    throw new ValidationError(e.message, upstreamPoliciesError(body) ?? `mapper: validate policies: ${e.message}`);
  }
}

// ---------------------------------------------------------------------------
// The policy server's answer to a policies body, step by step as its code
// does it: encoding/json into api.PoliciesPayload (cf-networking-release:
// src/code.cloudfoundry.org/policy-server/api/api.go), where a wrong JSON type
// is an UnmarshalTypeError and null or absent is the zero value, then
// PolicyValidator.ValidatePolicies (api/policy_validator.go), then the
// mapper's and handler's prefixes (api/api_policy_mapper.go,
// handlers/policies_create.go). Undefined when upstream accepts the body.

function goKind(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'boolean') return 'bool';
  return typeof v; // object, string, number
}

class GoDecode {
  first: string | undefined;
  /** A Go string field: returns '' for null/absent, records a type error otherwise. */
  str(o: Obj, key: string, field: string): string {
    const v = o[key];
    if (v === undefined || v === null) return '';
    if (typeof v === 'string') return v;
    this.fail(v, field, 'string');
    return '';
  }
  int(o: Obj, key: string, field: string): number {
    const v = o[key];
    if (v === undefined || v === null) return 0;
    if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
    this.fail(v, field, 'int', typeof v === 'number' ? `number ${v}` : undefined);
    return 0;
  }
  /** An embedded struct: returns {} for null/absent, records a type error for a non-object. */
  obj(o: Obj, key: string, field: string, type: string): Obj {
    const v = o[key];
    if (v === undefined || v === null) return {};
    if (isObj(v)) return v;
    this.fail(v, field, type);
    return {};
  }
  fail(v: unknown, field: string, type: string, shown?: string): void {
    this.first ??= `json: cannot unmarshal ${shown ?? goKind(v)} into Go struct field ${field} of type ${type}`;
  }
}

interface GoPolicy {
  srcId: string;
  srcTag: string;
  dstId: string;
  dstTag: string;
  protocol: string;
  start: number;
  end: number;
}

export function upstreamPoliciesError(body: unknown): string | undefined {
  const pre = 'mapper: unmarshal json: ';
  if (body === undefined) return pre + 'unexpected end of JSON input';
  if (body !== null && !isObj(body)) return `${pre}json: cannot unmarshal ${goKind(body)} into Go value of type api.PoliciesPayload`;
  const d = new GoDecode();
  const list: GoPolicy[] = [];
  const ps = body === null ? undefined : body.policies;
  if (ps !== undefined && ps !== null && !Array.isArray(ps)) {
    d.fail(ps, 'PoliciesPayload.policies', '[]api.Policy');
  } else {
    for (const p of ps ?? []) {
      if (p !== null && !isObj(p)) {
        d.fail(p, 'PoliciesPayload.policies', 'api.Policy');
        list.push({ srcId: '', srcTag: '', dstId: '', dstTag: '', protocol: '', start: 0, end: 0 });
        continue;
      }
      const o: Obj = p ?? {};
      const src = d.obj(o, 'source', 'Policy.policies.source', 'api.Source');
      const srcId = d.str(src, 'id', 'Source.policies.source.id');
      const srcTag = d.str(src, 'tag', 'Source.policies.source.tag');
      d.str(src, 'type', 'Source.policies.source.type');
      const dst = d.obj(o, 'destination', 'Policy.policies.destination', 'api.Destination');
      const dstId = d.str(dst, 'id', 'Destination.policies.destination.id');
      const dstTag = d.str(dst, 'tag', 'Destination.policies.destination.tag');
      const protocol = d.str(dst, 'protocol', 'Destination.policies.destination.protocol');
      d.str(dst, 'type', 'Destination.policies.destination.type');
      const ports = d.obj(dst, 'ports', 'Destination.policies.destination.ports', 'api.Ports');
      const start = d.int(ports, 'start', 'Ports.policies.destination.ports.start');
      const end = d.int(ports, 'end', 'Ports.policies.destination.ports.end');
      list.push({ srcId, srcTag, dstId, dstTag, protocol, start, end });
    }
  }
  if (d.first !== undefined) return pre + d.first;
  const v = 'mapper: validate policies: ';
  if (list.length === 0) return v + 'missing policies';
  for (const p of list) {
    if (p.srcId === '') return v + 'missing source id';
    if (p.dstId === '') return v + 'missing destination id';
    if (p.protocol !== 'udp' && p.protocol !== 'tcp') return v + 'invalid destination protocol, specify either udp or tcp';
    if (p.start > p.end) return v + `invalid port range ${p.start}-${p.end}, start must be less than or equal to end`;
    if (p.start < 0) return v + `invalid start port ${p.start}, must be in range 1-65535`;
    if (p.start === 0) return v + 'missing start port';
    if (p.end > 65535) return v + `invalid end port ${p.end}, must be in range 1-65535`;
    if (p.srcTag !== '' || p.dstTag !== '') return v + 'tags may not be specified';
  }
  return undefined;
}

/**
 * A lease body's fields as silk-controller's handlers decode them (encoding/
 * json into a Go struct, silk-release: src/code.cloudfoundry.org/silk/
 * controller/handlers/*.go): a wrong JSON type is answered 400
 * "unmarshal-request: json: cannot unmarshal …", a missing body 400
 * "unmarshal-request: unexpected end of JSON input".
 */
function leaseFields(body: unknown, struct: string, fields: [string, 'string' | 'bool'][], shape: string): Obj {
  if (body === undefined) {
    throw new ValidationError(`the request has no body: send ${shape}`, 'unmarshal-request: unexpected end of JSON input');
  }
  if (!isObj(body)) {
    throw new ValidationError(
      `the request body must be an object like ${shape}, got ${typeName(body)}`,
      `unmarshal-request: json: cannot unmarshal ${goKind(body)} into Go value of type ${struct ? 'controller.' + struct : 'struct { ' + fields.map(([k, t]) => `${goField(k)} ${t} "json:\\"${k}\\""`).join('; ') + ' }'}`,
    );
  }
  // As Go's decoder: "UNDERLAY_IP" fills underlay_ip (silk's client sends lower case; Go accepts any case).
  const o: Obj = { ...body, ...goJsonFields(body, fields.map(([k]) => k)) };
  for (const [k, t] of fields) {
    const v = o[k];
    if (v === undefined || v === null) continue;
    if ((t === 'string' && typeof v !== 'string') || (t === 'bool' && typeof v !== 'boolean')) {
      throw new ValidationError(
        `${k} must be ${t === 'string' ? 'a string' : 'true or false'}, got ${typeName(v)}`,
        `unmarshal-request: json: cannot unmarshal ${goKind(v)} into Go struct field ${struct}.${k} of type ${t}`,
      );
    }
  }
  return o;
}

/**
 * The object's members under the field names a Go struct with these `json`
 * names would decode them into: encoding/json takes a key that matches a
 * name exactly and otherwise one that matches it ignoring case (a later
 * key overwrites an earlier one); unknown keys are dropped. Upstream's own
 * clients rely on it: vxlan-policy-agent's policy_client sends
 * PUT /networking/v1/internal/tags as {"ID":"INGRESS_ROUTER","Type":"router"}
 * (TagRequest has no json tags), which the policy server decodes into
 * {"id","type"} (handlers/tags_create.go).
 */
export function goJsonFields(body: Obj, names: readonly string[]): Obj {
  const out: Obj = {};
  for (const key of Object.keys(body)) {
    const name = names.includes(key) ? key : names.find((n) => n.toLowerCase() === key.toLowerCase());
    if (name !== undefined) out[name] = body[key];
  }
  return out;
}

function goField(k: string): string {
  return k.replace(/(^|_)([a-z])/g, (_m, _u, c: string) => c.toUpperCase()).replace(/Ip$/, 'IP');
}

/** Body of PUT /leases/acquire: {"underlay_ip": "198.18.0.11"}, optionally "single_overlay_ip": true. */
export function validateAcquireRequest(body: unknown): { underlay_ip: string; single_overlay_ip: boolean } {
  const o = leaseFields(body, '', [['underlay_ip', 'string'], ['single_overlay_ip', 'bool']], '{"underlay_ip":"198.18.0.11"}');
  const ip = o.underlay_ip;
  // silk answers 500 "invalid ipv4 address: X" (lease_controller.go); a bad
  // request is the client's fault, so silkworm keeps the text and says 400.
  const underlay_ip = checkUnderlayIp(ip, 'underlay_ip', `invalid ipv4 address: ${typeof ip === 'string' ? ip : ''}`);
  return { underlay_ip, single_overlay_ip: o.single_overlay_ip === true };
}

/** The underlay IP of an acquire body (see validateAcquireRequest). */
export function validateAcquireBody(body: unknown): string {
  return validateAcquireRequest(body).underlay_ip;
}

/**
 * Body of PUT /leases/renew: a whole lease. As silk's LeaseValidator
 * (leaser/validator.go), a lease that does not parse is non-retriable: 409
 * "renew-subnet-lease: …".
 */
export function validateLeaseBody(body: unknown): { underlay_ip: string; overlay_subnet: string; overlay_hardware_addr?: string } {
  const o = leaseFields(
    body,
    'Lease',
    [['underlay_ip', 'string'], ['overlay_subnet', 'string'], ['overlay_hardware_addr', 'string']],
    'a lease object',
  );
  const ipText = typeof o.underlay_ip === 'string' ? o.underlay_ip : '';
  const underlay_ip = checkUnderlayIp(o.underlay_ip, 'underlay_ip', `renew-subnet-lease: invalid underlay ip: ${ipText}`, 409);
  const s = o.overlay_subnet;
  const badCidr = `renew-subnet-lease: invalid CIDR address: ${typeof s === 'string' ? s : ''}`;
  if (s === undefined || s === null) throw new ValidationError('overlay_subnet is missing', badCidr, 409);
  if (typeof s !== 'string') throw new ValidationError(`overlay_subnet must be a string, got ${typeName(s)}`, badCidr, 409);
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(s);
  if (!m || !isIpv4(m[1]!) || Number(m[2]) > 32) {
    throw new ValidationError(`overlay_subnet "${s}" is not an IPv4 prefix like 10.255.1.0/24`, badCidr, 409);
  }
  const hw = o.overlay_hardware_addr;
  if (hw !== undefined && hw !== null && !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(hw as string)) {
    throw new ValidationError(
      `overlay_hardware_addr "${String(hw)}" is not a MAC address like ee:ee:0a:ff:01:00`,
      `renew-subnet-lease: address ${String(hw)}: invalid MAC address`,
      409,
    );
  }
  return { underlay_ip, overlay_subnet: s, overlay_hardware_addr: (hw ?? undefined) as string | undefined };
}

/** Body of PUT /leases/release: {"underlay_ip"} (silk today) or a whole lease (older silk). */
export function validateReleaseBody(body: unknown): { underlay_ip: string; overlay_subnet?: string } {
  const o = leaseFields(body, '', [['underlay_ip', 'string']], '{"underlay_ip":"198.18.0.11"}');
  if (o.overlay_subnet !== undefined && o.overlay_subnet !== null) {
    const l = validateLeaseBody(body);
    return { underlay_ip: l.underlay_ip, overlay_subnet: l.overlay_subnet };
  }
  return { underlay_ip: checkUnderlayIp(o.underlay_ip, 'underlay_ip') };
}

/**
 * Body of PUT /networking/v1/internal/tags: {"id":"…","type":"app"} (the
 * policy server's handlers/tags_create.go; a body that does not decode is 400
 * "failed parsing request body").
 */
export function validateTagBody(body: unknown): { id: string; type: string } {
  const parse = 'failed parsing request body';
  if (!isObj(body)) throw new ValidationError(`the request body must be an object like {"id":"appA","type":"app"}, got ${typeName(body)}`, parse);
  // Go's decoder matches keys ignoring case: vxlan-policy-agent sends {"ID":…,"Type":…}.
  const o = goJsonFields(body, ['id', 'type']);
  if (o.type !== undefined && o.type !== null && typeof o.type !== 'string') {
    throw new ValidationError(`type must be a string, got ${typeName(o.type)}`, parse);
  }
  let id: string;
  try {
    id = checkId(o.id, 'id', 'group');
  } catch (e) {
    // Upstream would store an empty id; silkworm refuses ids it could not list or log.
    throw new ValidationError((e as Error).message, (e as Error).message);
  }
  return { id, type: (o.type as string | undefined | null) ?? '' };
}

function checkUnderlayIp(v: unknown, where: string, upstream?: string, status = 400): string {
  if (v === undefined || v === null) throw new ValidationError(`${where} is missing: give the cell's underlay IPv4 address`, upstream, status);
  if (typeof v !== 'string') throw new ValidationError(`${where} must be a string, got ${typeName(v)}`, upstream, status);
  if (!isIpv4(v)) throw new ValidationError(`${where} "${v}" is not an IPv4 address`, upstream, status);
  if (v === '0.0.0.0' || v === '255.255.255.255') throw new ValidationError(`${where} ${v} cannot be a cell's address`, upstream, status);
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
