// silk's vxlan-policy-agent planner, as pure data: policies (the policy
// server's internal shape) + the containers on this cell → the rules this
// cell enforces. The planner never touches the data path; the data path
// compiles the plan (compiled.ts) and swaps it in whole (make before break),
// and tests assert the exact rule lists (as silk-release's planner tests do).
//
// What silk does (vxlan-policy-agent planner_linux.go + lib/rules/rules.go):
// - for each local container of a policy's *source* app: one rule
//   `--source IP -j MARK --set-xmark 0x<tag>` commented `src:<app guid>`;
// - for each local container of a policy's *destination* app: one rule
//   `-d IP -p PROTO --dport S:E -m mark --mark 0x<source tag> -j ACCEPT`
//   commented `src:<src guid>_dst:<dst guid>`;
// - both lists sorted, in one chain `vpa--<unix timestamp>` jumped to from
//   FORWARD; then each container's `overlay--<handle>` chain (written by
//   silk-cni) accepts RELATED,ESTABLISHED and rejects the rest with
//   icmp-port-unreachable.
//
// What silkworm chose, and why:
// - Mark rules for every local container whose app has a tag, whether the app
//   appears as source or destination: every packet from a tagged app
//   carries the tag (docs/ARCHITECTURE.md, "Policy"). (silk marks only sources; a
//   destination-only app's tag then just rides on reply packets, which
//   conntrack admits anyway, so the wire behaviour toward a kernel silk peer
//   is the same.)
// - An app's tag comes from any policy that names it (source.tag or
//   destination.tag). If policies disagree (a controller bug), the lowest
//   tag wins so the plan does not depend on input order.
// - Policies that are malformed (bad protocol, ports outside 1–65535 or
//   start > end, empty ids) are skipped; `validatePolicy` says why, for the
//   caller to log. A policy whose source has no valid tag yields no accept
//   rule (tag 0 means "untagged" on the wire and never matches).
// - Exact duplicate accept rules (the same policy twice) are emitted once.
// - renderIptables prints one overlay chain for the whole cell, not one per
//   container: the data plane applies it to every local destination, and the
//   rules are the same two lines silk writes per container.
import { u32ToIp } from '../util/ip.js';
import { parseTag, protocolNumber, type LocalContainer, type PolicyRecord } from './types.js';

/** Stamp `tag` on every packet from container `ip` (of app `app`). */
export interface MarkRule {
  ip: number;
  app: string;
  tag: number;
}

/** Accept packets to `dstIp` with GBP tag `tag`, IP protocol `protocol`, destination port in portStart..portEnd. */
export interface AcceptRule {
  dstIp: number;
  dstApp: string;
  srcApp: string;
  tag: number;
  protocol: 6 | 17;
  portStart: number;
  portEnd: number;
}

export interface Plan {
  /** Sorted by ip, then app. */
  marks: MarkRule[];
  /** Sorted by dstIp, protocol, portStart, portEnd, tag, srcApp, dstApp. */
  accepts: AcceptRule[];
}

/** Why a policy cannot be enforced, or undefined if it can. */
export function validatePolicy(p: PolicyRecord): string | undefined {
  if (!p || typeof p !== 'object' || !p.source || !p.destination) return 'policy needs a source and a destination';
  if (typeof p.source.id !== 'string' || p.source.id === '') return 'policy source needs an id';
  if (typeof p.destination.id !== 'string' || p.destination.id === '') return 'policy destination needs an id';
  if (protocolNumber(p.destination.protocol) === undefined) {
    return `policy protocol must be tcp or udp, got ${JSON.stringify(p.destination.protocol)}`;
  }
  const ports = p.destination.ports;
  if (!ports || !isPort(ports.start) || !isPort(ports.end)) return 'policy ports must be in 1-65535';
  if (ports.start > ports.end) return `policy port range ${ports.start}-${ports.end} is backwards`;
  return undefined;
}

function isPort(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function acceptOrder(a: AcceptRule, b: AcceptRule): number {
  return (
    a.dstIp - b.dstIp ||
    a.protocol - b.protocol ||
    a.portStart - b.portStart ||
    a.portEnd - b.portEnd ||
    a.tag - b.tag ||
    cmpStr(a.srcApp, b.srcApp) ||
    cmpStr(a.dstApp, b.dstApp)
  );
}

/** Turn policies + this cell's containers into the sorted rule lists this cell enforces. */
export function plan(policies: PolicyRecord[], containers: LocalContainer[]): Plan {
  const valid = policies.filter((p) => validatePolicy(p) === undefined);

  // app → tag, from every policy that names the app; lowest wins on conflict.
  const tags = new Map<string, number>();
  const note = (app: string, tagText: string | undefined) => {
    const t = parseTag(tagText);
    if (t === undefined) return;
    const cur = tags.get(app);
    if (cur === undefined || t < cur) tags.set(app, t);
  };
  for (const p of valid) {
    note(p.source.id, p.source.tag);
    note(p.destination.id, p.destination.tag);
  }

  // Containers grouped by app, sorted and deduplicated by IP (silk's `visited` map).
  const sorted = [...containers].sort((a, b) => a.ip - b.ip || cmpStr(a.app, b.app));
  const seenIp = new Set<number>();
  const locals: LocalContainer[] = [];
  for (const c of sorted) {
    if (seenIp.has(c.ip)) continue;
    seenIp.add(c.ip);
    locals.push(c);
  }
  const byApp = new Map<string, LocalContainer[]>();
  for (const c of locals) {
    const list = byApp.get(c.app);
    if (list) list.push(c);
    else byApp.set(c.app, [c]);
  }

  const marks: MarkRule[] = [];
  for (const c of locals) {
    const tag = tags.get(c.app);
    if (tag !== undefined) marks.push({ ip: c.ip >>> 0, app: c.app, tag });
  }

  const accepts: AcceptRule[] = [];
  for (const p of valid) {
    const dsts = byApp.get(p.destination.id);
    if (!dsts) continue; // no container of the destination app on this cell
    const tag = tags.get(p.source.id);
    if (tag === undefined) continue;
    const protocol = protocolNumber(p.destination.protocol)!;
    for (const c of dsts) {
      accepts.push({
        dstIp: c.ip >>> 0,
        dstApp: p.destination.id,
        srcApp: p.source.id,
        tag,
        protocol,
        portStart: p.destination.ports.start,
        portEnd: p.destination.ports.end,
      });
    }
  }
  accepts.sort(acceptOrder);
  const unique = accepts.filter((r, i) => i === 0 || acceptOrder(r, accepts[i - 1]!) !== 0);
  return { marks, accepts: unique };
}

/**
 * Quote a string argument as iptables-save does (xtables_save_string): bare
 * if it is only [A-Za-z0-9_-], else in double quotes with `"`, `\` and `'`
 * escaped by a backslash.
 */
function saveString(s: string): string {
  if (/^[A-Za-z0-9_-]+$/.test(s)) return s;
  return '"' + s.replace(/["\\']/g, (c) => '\\' + c) + '"';
}

/** silk's comments replace spaces by underscores (lib/rules AppendComment). */
function comment(text: string): string {
  return `-m comment --comment ${saveString(text.replace(/ /g, '_'))}`;
}

function hex(n: number): string {
  return '0x' + (n >>> 0).toString(16);
}

/**
 * The plan as `iptables -S` would print silk's rules: the policy chain
 * (`-N chain`, mark rules, accept rules) then the overlay chain
 * (RELATED,ESTABLISHED accept, then REJECT with icmp-port-unreachable).
 * Matches and targets appear in the order iptables-save normalises them to
 * (`-s/-d` with /32, `-p tcp -m tcp --dport`, marks as 0x%x, `--set-xmark
 * value/mask`). `chain` defaults to `vpa--0`; silk names it
 * `vpa--<unix timestamp>` — pass that for realism, a constant in tests.
 */
export function renderIptables(p: Plan, chain = 'vpa--0', overlayChain = 'overlay'): string[] {
  const out: string[] = [`-N ${chain}`];
  for (const m of p.marks) {
    out.push(`-A ${chain} -s ${u32ToIp(m.ip)}/32 ${comment(`src:${m.app}`)} -j MARK --set-xmark ${hex(m.tag)}/0xffffffff`);
  }
  for (const a of p.accepts) {
    const proto = a.protocol === 6 ? 'tcp' : 'udp';
    const ports = a.portStart === a.portEnd ? `${a.portStart}` : `${a.portStart}:${a.portEnd}`;
    out.push(
      `-A ${chain} -d ${u32ToIp(a.dstIp)}/32 -p ${proto} -m ${proto} --dport ${ports}` +
        ` -m mark --mark ${hex(a.tag)} ${comment(`src:${a.srcApp}_dst:${a.dstApp}`)} -j ACCEPT`,
    );
  }
  out.push(`-N ${overlayChain}`);
  out.push(`-A ${overlayChain} -m state --state RELATED,ESTABLISHED -j ACCEPT`);
  out.push(`-A ${overlayChain} -j REJECT --reject-with icmp-port-unreachable`);
  return out;
}
