// Prometheus metrics for a cell, read from the data plane's counters at
// scrape time (collect callbacks), so the hot path pays nothing for them.
// Served as text on the admin socket's GET /metrics and, with
// `silkworm cell --metrics host:port`, on a TCP port for a scraper.
import client from 'prom-client';
import type { Cell } from './cell.js';
import { DROP_NAMES, STAT_NAMES, Drop, Stat } from '../dataplane/counters.js';

export function cellRegistry(cell: Cell): client.Registry {
  const reg = new client.Registry();
  reg.setDefaultLabels({ cell: cell.name });
  client.collectDefaultMetrics({ register: reg, prefix: 'silkworm_process_' });

  new client.Counter({
    name: 'silkworm_drops_total',
    help: 'Frames the data plane dropped (or answered with an ICMP error), by reason',
    labelNames: ['reason'],
    registers: [reg],
    collect() {
      const d = cell.counterTotals().drops;
      this.reset();
      for (let i = 0; i < Drop.Count; i++) this.labels(DROP_NAMES[i]!).inc(d[i]!);
    },
  });
  const stat = (name: string, help: string, idx: Stat) =>
    new client.Counter({
      name,
      help,
      registers: [reg],
      collect() {
        this.reset();
        this.inc(cell.counterTotals().stats[idx]!);
      },
    });
  stat('silkworm_egress_packets_total', 'Frames read from containers', Stat.EgressPackets);
  stat('silkworm_egress_bytes_total', 'Bytes read from containers', Stat.EgressBytes);
  stat('silkworm_ingress_packets_total', 'VXLAN datagrams received on the underlay', Stat.IngressPackets);
  stat('silkworm_ingress_bytes_total', 'Bytes received on the underlay', Stat.IngressBytes);
  stat('silkworm_encapsulated_total', 'Frames encapsulated toward another cell', Stat.Encapsulated);
  stat('silkworm_delivered_total', 'Frames delivered to a local container from another cell', Stat.DeliveredRemote);
  stat('silkworm_delivered_same_cell_total', 'Frames delivered between containers of this cell', Stat.DeliveredLocal);
  stat('silkworm_icmp_sent_total', 'ICMP errors generated (rejects, unreachables, time exceeded)', Stat.IcmpSent);
  stat('silkworm_policy_allowed_total', 'New connections allowed by a policy rule', Stat.PolicyAllowed);
  stat('silkworm_icmp_rate_limited_total', 'ICMP errors not sent because of the rate limit (the packets that caused them are counted under their drop reasons)', Stat.IcmpRateLimited);
  stat('silkworm_checksum_completed_total', 'TCP/UDP checksums a kernel sender left partial, finished before delivery', Stat.ChecksumCompleted);
  stat('silkworm_written_to_containers_total', 'Final outcome: frames written to a container TAP (deliveries and ICMP errors)', Stat.Delivered);
  stat('silkworm_sent_on_underlay_total', 'Final outcome: packets sent on the underlay (encapsulated frames and ICMP errors)', Stat.Sent);
  stat('silkworm_conntrack_invalid_total', "TCP packets connection tracking calls INVALID (bad flag mix, or no connection to open or pick up): forwarded untracked, as the kernel's conntrack does", Stat.ConntrackInvalid);
  new client.Counter({
    name: 'silkworm_policy_denies_total',
    help: 'Packets denied by policy (rejected with ICMP port unreachable or dropped)',
    registers: [reg],
    collect() {
      this.reset();
      this.inc(cell.counterTotals().drops[Drop.PolicyDenied]!);
    },
  });
  new client.Gauge({
    name: 'silkworm_conntrack_entries',
    help: 'Tracked connections',
    registers: [reg],
    async collect() {
      const ws = await cell.workerStats();
      this.set(ws.reduce((n, w) => n + (w?.conntrack ?? 0), cell.dp.conntrack.size));
    },
  });
  new client.Counter({
    name: 'silkworm_conntrack_evictions_total',
    help: 'Connections evicted because the table was full',
    registers: [reg],
    async collect() {
      const ws = await cell.workerStats();
      this.reset();
      this.inc(ws.reduce((n, w) => n + (w?.evictions ?? 0), cell.dp.conntrack.evictions));
    },
  });
  new client.Gauge({
    name: 'silkworm_containers',
    help: 'Containers attached to this cell',
    registers: [reg],
    collect() {
      this.set(cell.dp.listPorts().length);
    },
  });
  new client.Counter({
    name: 'silkworm_lease_renew_failures_total',
    help: 'Lease renewals the controller refused or did not answer',
    registers: [reg],
    collect() {
      this.reset();
      this.inc(cell.renewFailures);
    },
  });
  new client.Counter({
    name: 'silkworm_watch_errors_total',
    help: 'Failed watch (long-poll) calls to the controller',
    registers: [reg],
    collect() {
      this.reset();
      this.inc(cell.watchErrors);
    },
  });
  new client.Gauge({
    name: 'silkworm_watch_staleness_seconds',
    help: "Seconds since the last successful round-trip with the controller (a watch that returned, changed or not): under the controller's watch hold (~25 s) plus a round-trip on a healthy cell; -1 before the first",
    registers: [reg],
    collect() {
      this.set(cell.lastContactAt ? (Date.now() - cell.lastContactAt) / 1000 : -1);
    },
  });
  new client.Gauge({
    name: 'silkworm_state_version',
    help: "The controller's state version this cell has applied",
    registers: [reg],
    collect() {
      this.set(cell.version);
    },
  });
  cell.applyHistogram = new client.Histogram({
    name: 'silkworm_snapshot_apply_seconds',
    help: 'Time to apply a controller snapshot (rebuild tables, replan policy)',
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
    registers: [reg],
  });
  cell.watchLagHistogram = new client.Histogram({
    name: 'silkworm_watch_lag_seconds',
    help: "From the controller's change (its clock) to this cell applying it",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    registers: [reg],
  });
  return reg;
}

export { STAT_NAMES };
