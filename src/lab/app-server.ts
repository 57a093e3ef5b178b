// The lab's "app": a tiny HTTP server run inside a container namespace
//   ip netns exec P-appA-0 node dist/lab/app-server.js --name appA --port 8080
// that answers every GET with "<app> <its own IP>\n" (e.g. "appA 10.255.1.2\n"),
// so a curl shows at a glance which container answered and on which address.
// It imports only node builtins on purpose: it must run standalone in a
// container namespace and tests transpile this one file on its own.
import http from 'node:http';
import { pathToFileURL } from 'node:url';

/** "::ffff:10.255.1.2" (IPv4-mapped, RFC 4291 §2.5.5.2) → "10.255.1.2". */
export function plainAddress(addr: string | undefined): string {
  if (!addr) return 'unknown';
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

export function appBody(name: string, localAddress: string | undefined): string {
  return `${name} ${plainAddress(localAddress)}\n`;
}

export function createAppServer(name: string): http.Server {
  return http.createServer((req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      res.end('only GET\n');
      return;
    }
    // The address the client reached us on: the container's overlay IP.
    const body = appBody(name, req.socket.localAddress);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
}

export interface AppArgs {
  name: string;
  port: number;
  host: string;
}

/** Parse `--name N --port P [--host H]`; throws one sentence on bad input. */
export function parseAppArgs(argv: string[]): AppArgs {
  const out: AppArgs = { name: '', port: 8080, host: '0.0.0.0' };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const val = argv[i + 1];
    if (flag === '--name' || flag === '--port' || flag === '--host') {
      if (val === undefined) throw new Error(`${flag} needs a value`);
      i++;
      if (flag === '--name') out.name = val;
      else if (flag === '--host') out.host = val;
      else {
        if (!/^\d{1,5}$/.test(val) || Number(val) < 1 || Number(val) > 65535) throw new Error(`--port must be 1-65535, got "${val}"`);
        out.port = Number(val);
      }
    } else {
      throw new Error(`unknown argument "${flag}" (usage: app-server --name appA --port 8080 [--host 0.0.0.0])`);
    }
  }
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(out.name)) throw new Error('--name must be 1-64 letters, digits, _ . or -');
  return out;
}

function main(argv: string[]): void {
  let args: AppArgs;
  try {
    args = parseAppArgs(argv);
  } catch (err) {
    process.stderr.write(`app-server: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const server = createAppServer(args.name);
  server.on('error', (err) => {
    process.stderr.write(JSON.stringify({ msg: 'app-server-error', name: args.name, error: err.message }) + '\n');
    process.exit(1);
  });
  // IPv4 only: the lab's containers run with IPv6 disabled, as silk's do.
  server.listen(args.port, args.host, () => {
    process.stderr.write(JSON.stringify({ msg: 'app-server-listening', name: args.name, host: args.host, port: args.port, pid: process.pid }) + '\n');
  });
  const stop = () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    // A client mid-request must not keep `lab down` waiting for its grace period.
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// Run only as a program, not when imported (tests import the functions).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2));
