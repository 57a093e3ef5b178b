// A controller for agent tests without a server: it hands out one lease,
// renews it as is, answers every snapshot with the same state, and holds
// every watch until the agent stops (aborts it).
import type { ControllerClient, Lease, Snapshot } from '../net/controller-client.js';

export function fakeController(lease: Lease, snap: Snapshot): ControllerClient {
  const hold = (_v: number, signal?: AbortSignal) =>
    new Promise((_r, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted'))));
  return {
    addr: { kind: 'unix', path: '/fake/controller.sock' },
    acquireLease: async () => lease,
    renewLease: async (l: Lease) => l,
    snapshot: async () => snap,
    watch: hold,
    watchDelta: hold,
  } as unknown as ControllerClient;
}
