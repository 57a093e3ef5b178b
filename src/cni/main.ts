// The executable's body (bin/silkworm-cni): read stdin to its end, run one
// CNI command, print the result or error on stdout, notes on stderr.
import { runPlugin } from './plugin.js';

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return '';
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function main(): Promise<number> {
  if (process.stdin.isTTY && !process.env.CNI_COMMAND) {
    process.stderr.write(
      'silkworm-cni is a CNI plugin: a container runtime runs it with CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS,\n' +
        'CNI_IFNAME, CNI_PATH in the environment and the network configuration on stdin (see docs/cni.md).\n',
    );
  }
  const out = await runPlugin(process.env, await readStdin());
  for (const n of out.notes) process.stderr.write(n + '\n');
  if (out.stdout) process.stdout.write(out.stdout + '\n');
  return out.exitCode;
}
