// Where a lab keeps its state: /run/silkworm/P/ (SILKWORM_RUN_DIR overrides
// the root) holds the controller's socket, each cell's admin socket and the
// logs. The CLI uses the same helpers to find a lab's sockets from --lab P.
import path from 'node:path';

export const LAB_ROOT = process.env.SILKWORM_RUN_DIR ?? '/run/silkworm';
export const DEFAULT_LAB = 'sw';

export function labDir(prefix: string): string {
  return path.join(LAB_ROOT, prefix);
}
export function labControllerSocket(prefix: string): string {
  return path.join(labDir(prefix), 'controller.sock');
}
export function labCellSocket(prefix: string, cell: string): string {
  return path.join(labDir(prefix), `${cell}.sock`);
}
