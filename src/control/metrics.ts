// Prometheus metrics for the controller, read at scrape time.
import client from 'prom-client';
import type { Controller } from './controller.js';

export function controllerRegistry(c: Controller): client.Registry {
  const reg = new client.Registry();
  client.collectDefaultMetrics({ register: reg, prefix: 'silkworm_controller_process_' });
  const gauge = (name: string, help: string, read: () => number) =>
    new client.Gauge({
      name,
      help,
      registers: [reg],
      collect() {
        this.set(read());
      },
    });
  gauge('silkworm_controller_policies', 'Policies held', () => c.policyCount);
  gauge('silkworm_controller_tags', 'Apps with a tag (16-bit; 65,535 at most)', () => c.tags().length);
  gauge('silkworm_controller_leases', 'Subnet leases held by cells', () => c.leases().length);
  gauge('silkworm_controller_version', 'State version (grows by one per acknowledged change)', () => c.version);
  gauge('silkworm_controller_watchers', 'Cells currently holding a watch (long-poll)', () => c.watcherCount);
  return reg;
}
