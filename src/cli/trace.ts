// `silkworm trace --from appB-0 --to 10.255.1.2:8080/tcp`: one packet's path,
// step by step, through the cells' real pipelines (not a model of them): the
// source cell runs the probe through its egress code with a tracer attached,
// and the destination cell runs the resulting VXLAN datagram through its
// ingress code. Nothing is sent and no state changes.
import type { Command } from 'commander';
import { httpJson, UnreachableError } from '../net/http.js';
import { fail, formatAddress, parseAddress, type Address, DEFAULT_LAB } from './util.js';
import { readState } from '../lab/state.js';
import type { CellTraceStep } from '../cell/trace.js';

/** One cell's part of the walk, as its admin socket's /trace/egress or /trace/ingress returns it. */
interface Hop { cell: string; steps: CellTraceStep[]; result: Record<string, any> }

async function call(addr: Address, method: string, path: string, body?: unknown) {
  try {
    const res = await httpJson(addr, method, path, body, { timeoutMs: 10_000 });
    if (res.status >= 300) fail(res.body?.error ?? `HTTP ${res.status} from ${formatAddress(addr)}`);
    return res.body;
  } catch (err) {
    if (err instanceof UnreachableError) fail(`cannot reach the cell at ${formatAddress(addr)}: is it running? (silkworm lab status)`);
    throw err;
  }
}

export function parseTarget(text: string): { ip: string; port: number; protocol: 'tcp' | 'udp' | 'icmp' } {
  const m = /^(\d+\.\d+\.\d+\.\d+)(?::(\d{1,5}))?(?:\/(tcp|udp|icmp))?$/.exec(text);
  if (!m) fail(`--to "${text}" is not IP:PORT/PROTOCOL, e.g. 10.255.1.2:8080/tcp`);
  const protocol = (m[3] ?? (m[2] ? 'tcp' : 'icmp')) as 'tcp' | 'udp' | 'icmp';
  const port = m[2] ? Number(m[2]) : 0;
  if (protocol !== 'icmp' && (port < 1 || port > 65535)) fail(`--to "${text}" needs a port from 1 to 65535 for ${protocol}`);
  return { ip: m[1]!, port, protocol };
}

export function register(program: Command): void {
  program
    .command('trace')
    .description("explain one packet's path, step by step, with the table entries each cell used")
    .requiredOption('--from <container>', 'source container: its handle or namespace (appB-0 also finds <lab>-appB-0)')
    .requiredOption('--to <ip:port/proto>', 'destination, e.g. 10.255.1.2:8080/tcp (udp, or icmp without a port)')
    .option('--sport <n>', 'source port of the probe', '40000')
    .option('--lab <prefix>', 'lab prefix (finds the cells)', DEFAULT_LAB)
    .option('--cells <addrs>', 'comma-separated cell admin sockets (instead of the lab)')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExample:\n  silkworm trace --from appB-0 --to 10.255.1.2:8080/tcp')
    .action(async (o) => {
      const to = parseTarget(o.to);
      let cells: Address[];
      if (o.cells) cells = String(o.cells).split(',').map((s) => parseAddress(s.trim()));
      else {
        const st = readState(o.lab);
        if (!st) fail(`no lab "${o.lab}" is up: start one with silkworm lab up, or pass --cells`);
        cells = st.cells.map((c) => parseAddress(c.socket));
      }
      const names = [o.from, `${o.lab}-${o.from}`];
      let src: Address | undefined;
      for (const c of cells) {
        const body = await call(c, 'GET', '/containers');
        if (body.containers.some((x: any) => names.includes(x.handle) || names.includes(x.netns))) {
          src = c;
          break;
        }
      }
      if (!src) fail(`no cell has a container named ${o.from}`);
      const srcBody = await call(src, 'GET', '/containers');
      const from = srcBody.containers.find((x: any) => names.includes(x.handle) || names.includes(x.netns)).handle;
      const hops: Hop[] = [];
      const first: Hop = await call(src, 'POST', '/trace/egress', { from, dst: to.ip, port: to.port, protocol: to.protocol, sport: Number(o.sport) });
      hops.push(first);
      if (first.result.action === 'underlay') {
        let dst: Address | undefined;
        for (const c of cells) {
          const st = await call(c, 'GET', '/status');
          if (st.underlay_ip === first.result.underlay_dst) dst = c;
        }
        if (dst) hops.push(await call(dst, 'POST', '/trace/ingress', { payload_hex: first.result.payload_hex, src_ip: first.result.underlay_src }));
        else hops.push({ cell: '?', steps: [], result: { action: 'drop', reason: `no known cell at underlay ${first.result.underlay_dst}` } });
      }
      const last = hops[hops.length - 1]!.result;
      const rejected = hops.some((h) => h.steps.some((s) => s.step === 'icmp-error'));
      const verdict = rejected ? 'rejected' : last.action === 'tap' ? 'delivered' : 'dropped';
      if (o.json) {
        console.log(JSON.stringify({ from, to, verdict, hops }, null, 2));
        return;
      }
      let n = 0;
      for (const h of hops) {
        console.log(`on ${h.cell}:`);
        for (const s of h.steps) console.log(`  ${String(++n).padStart(2)}. ${s.step.padEnd(16)} ${s.text}`);
      }
      const tail =
        verdict === 'delivered'
          ? `delivered to ${last.container} (app ${last.app})`
          : verdict === 'dropped'
            ? `dropped: ${last.reason}`
            : `answered with an ICMP error back to ${last.underlay_dst ?? last.container ?? 'the sender'}`;
      console.log(`verdict: ${verdict} — ${tail}`);
      if (verdict !== 'delivered') process.exitCode = 2;
    });
}
