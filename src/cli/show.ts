// `silkworm show routes|neigh|fdb|rules|conntrack|counters --cell NAME`:
// a live cell's tables, printed as ip route / ip neigh / bridge fdb /
// iptables -S / conntrack -L would print them (--json for machines).
import http from 'node:http';
import type { Command } from 'commander';
import { callCell } from './container.js';
import { cellAddress, fail, formatAddress, table } from './util.js';

const WHAT: Record<string, string> = {
  routes: 'routes as `ip route` prints them',
  neigh: 'neighbors as `ip neigh` prints them',
  fdb: 'forwarding database as `bridge fdb` prints it',
  rules: 'the policy plan as the iptables rules silk\'s vxlan-policy-agent would write',
  conntrack: 'tracked connections as `conntrack -L` prints them',
  counters: 'packets, bytes and drops by reason',
};

function printCounters(body: any): void {
  const rows: string[][] = [];
  for (const [k, v] of Object.entries(body.stats as Record<string, number>)) rows.push([k, String(v)]);
  console.log(table(['COUNTER', 'VALUE'], rows));
  const drops = Object.entries(body.drops as Record<string, number>).filter(([, v]) => v > 0);
  console.log('');
  console.log(drops.length ? table(['DROP REASON', 'PACKETS'], drops.map(([k, v]) => [k, String(v)])) : 'no drops');
  // Offloads (userspace cells): asked for vs granted by the kernel; in --json under io.offload.
  const off = body.io?.offload as Record<string, { requested: boolean; in_effect: boolean | null; refused: number; reason?: string }> | undefined;
  if (off && typeof off === 'object') {
    console.log('');
    const onOff = (v: boolean) => (v ? 'on' : 'off');
    console.log(
      table(
        ['OFFLOAD', 'REQUESTED', 'IN EFFECT', 'NOTE'],
        Object.entries(off).map(([name, s]) => [
          name,
          onOff(s.requested),
          s.in_effect === null ? '-' : onOff(s.in_effect),
          s.refused > 0 ? `refused by the kernel${s.reason ? ` (${s.reason})` : ''}, fell back` : s.in_effect === null ? 'no device has asked yet' : '',
        ]),
      ),
    );
  }
  if (body.containers?.length) {
    console.log('');
    console.log(
      table(
        ['CONTAINER', 'APP', 'IP', 'TX PKTS', 'TX BYTES', 'RX PKTS', 'RX BYTES', 'TAP QUEUE DROPS'],
        body.containers.map((c: any) => [c.handle, c.app, c.ip, String(c.tx_packets), String(c.tx_bytes), String(c.rx_packets), String(c.rx_bytes), c.tap_queue_drops === null || c.tap_queue_drops === undefined ? '-' : String(c.tap_queue_drops)]),
      ),
    );
  }
}

/**
 * GET a streamed listing and copy it to stdout as it arrives (the cell writes
 * it in slices, so neither side ever holds the whole table). A 4xx answer is
 * the cell's one-sentence error.
 */
function streamFromCell(o: { cell?: string; lab?: string }, path: string): Promise<void> {
  const addr = cellAddress(o);
  const target = addr.kind === 'unix' ? { socketPath: addr.path } : { host: addr.host, port: addr.port };
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path, agent: false }, (res) => {
      if ((res.statusCode ?? 500) >= 300) {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let msg = `the cell answered HTTP ${res.statusCode}`;
          try {
            msg = JSON.parse(text).error ?? msg;
          } catch {
            /* not JSON */
          }
          reject(new Error(msg));
        });
        return;
      }
      res.pipe(process.stdout, { end: false });
      res.on('end', () => resolve());
      res.on('error', reject);
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') reject(new Error(`cannot reach the cell at ${formatAddress(addr)}: is it running? (silkworm lab status)`));
      else reject(err);
    });
  });
}

function registerConntrack(show: Command): void {
  show
    .command('conntrack')
    .description(`${WHAT.conntrack}, streamed in slices (a full table never stalls the cell); filters as conntrack -L has them`)
    .requiredOption('--cell <name|addr>', 'cell name in the lab (cell1) or its admin socket')
    .option('--lab <prefix>', 'lab prefix', 'sw')
    .option('--src <ip[/len]>', 'original source address or prefix')
    .option('--dst <ip[/len]>', 'original destination address or prefix')
    .option('--proto <p>', 'tcp, udp, icmp or a protocol number')
    .option('--sport <port>', 'original source port')
    .option('--dport <port>', 'original destination port')
    .option('--state <state>', 'TCP state, e.g. ESTABLISHED')
    .option('--mark <n>', 'the mark (the source tag) the entry was created with')
    .option('--limit <n>', 'print at most N entries')
    .option('--json', 'one JSON object per line (NDJSON), streamed')
    .addHelpText('after', '\nExamples:\n  silkworm show conntrack --cell cell1\n  silkworm show conntrack --cell cell1 --proto tcp --dport 8080 --limit 10\n  silkworm show conntrack --cell cell1 --src 10.255.2.0/24 --json | jq .')
    .action(async (o) => {
      const q = new URLSearchParams();
      for (const k of ['src', 'dst', 'proto', 'sport', 'dport', 'state', 'mark', 'limit'] as const) if (o[k] !== undefined) q.set(k, String(o[k]));
      if (o.json) q.set('format', 'json');
      const qs = q.toString();
      try {
        await streamFromCell(o, `/conntrack/stream${qs ? `?${qs}` : ''}`);
      } catch (err) {
        fail((err as Error).message);
      }
    });
}

export function register(program: Command): void {
  const show = program.command('show').description("show a live cell's tables");
  registerConntrack(show);
  for (const [what, desc] of Object.entries(WHAT)) {
    if (what === 'conntrack') continue;
    show
      .command(what)
      .description(desc)
      .requiredOption('--cell <name|addr>', 'cell name in the lab (cell1) or its admin socket')
      .option('--lab <prefix>', 'lab prefix', 'sw')
      .option('--json', 'print JSON')
      .addHelpText('after', `\nExample:\n  silkworm show ${what} --cell cell1`)
      .action(async (o) => {
        const body = await callCell(o, 'GET', `/${what}`);
        if (o.json) {
          console.log(JSON.stringify(what === 'counters' || what === 'conntrack' ? body : what === 'rules' ? { marks: body.marks, accepts: body.accepts, lines: body.lines } : body.entries, null, 2));
          return;
        }
        if (what === 'counters') return printCounters(body);
        if (body.lines.length) console.log(body.lines.join('\n'));
      });
  }
}
