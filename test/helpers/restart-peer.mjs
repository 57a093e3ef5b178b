// The two ends of a long-lived TCP connection for the restart tests, each run
// inside a container namespace:
//   node restart-peer.mjs server PORT
//       echoes every byte back (prints "listening" once bound)
//   node restart-peer.mjs client HOST PORT SECONDS [LOCALPORT]
//       (from LOCALPORT when given, else a port the kernel picks) sends "N\n" every 50 ms (N = 1, 2, …), reads the echoes, and after
//       SECONDS (or on SIGTERM) prints one JSON line: counters sent and
//       echoed, whether every echo came back in order, any socket error
//       (a reset would show here), and every pause between two echoes longer
//       than 200 ms as [from, to] in epoch milliseconds.
import net from 'node:net';

const [mode, ...rest] = process.argv.slice(2);

if (mode === 'server') {
  const port = Number(rest[0]);
  const server = net.createServer((s) => {
    s.setNoDelay(true);
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  server.listen(port, '0.0.0.0', () => process.stdout.write('listening\n'));
} else if (mode === 'client') {
  const [host, portText, secondsText, localPortText] = rest;
  const seconds = Number(secondsText);
  const result = { sent: 0, echoed: 0, inOrder: true, error: null, closed: false, gaps: [], connectedAt: 0, lastEchoAt: 0 };
  let expect = 1;
  let buf = '';
  let last = 0;
  const s = net.connect({ host, port: Number(portText), ...(localPortText ? { localPort: Number(localPortText) } : {}) });
  s.setNoDelay(true);
  let timer;
  const finish = () => {
    clearInterval(timer);
    process.stdout.write(JSON.stringify(result) + '\n');
    s.destroy();
    process.exit(0);
  };
  s.on('connect', () => {
    result.connectedAt = Date.now();
    last = result.connectedAt;
    timer = setInterval(() => {
      result.sent++;
      s.write(`${result.sent}\n`);
    }, 50);
  });
  s.on('data', (d) => {
    buf += d.toString('latin1');
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const n = Number(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      if (n !== expect) result.inOrder = false;
      expect = n + 1;
      result.echoed++;
      const now = Date.now();
      if (now - last > 200) result.gaps.push([last, now]);
      last = now;
      result.lastEchoAt = now;
    }
  });
  s.on('error', (err) => {
    result.error = err.code ?? err.message;
  });
  s.on('close', () => {
    result.closed = true;
    finish();
  });
  setTimeout(finish, seconds * 1000);
  process.on('SIGTERM', finish);
} else {
  process.stderr.write('usage: restart-peer.mjs server PORT | client HOST PORT SECONDS [LOCALPORT]\n');
  process.exit(2);
}
