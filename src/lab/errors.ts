// The lab's errors: one sentence for the person running `silkworm lab …`
// (a bad prefix, a namespace that is in the way, a process that did not come
// up). The CLI prints them as it prints its own (both are UserErrors).
import { UserError } from '../util/errors.js';

export class LabError extends UserError {}

/** Throw a LabError: the lab stops what it is doing and says why in one sentence. */
export function fail(message: string): never {
  throw new LabError(message);
}
