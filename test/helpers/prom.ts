// Prometheus text from an admin socket (a cell's or the controller's
// /metrics), parsed strictly: test/e2e/observe.test.ts, test/e2e/workers.test.ts.
import http from 'node:http';

/** GET a path on a unix socket; resolves with status, content type and body (never rejects on a status). */
export function getText(socketPath: string, urlPath: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: urlPath, method: 'GET', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('timeout', () => req.destroy(new Error('no answer')));
    req.on('error', reject);
    req.end();
  });
}

/** Parse the Prometheus text exposition format strictly enough to catch a broken endpoint. */
export function parseProm(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) continue;
    const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (t) {
      typed.add(t[1]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.eE+-]+|[Nn][Aa][Nn]|[+-]?Inf)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${line}`);
    const base = m[1]!.replace(/_(bucket|sum|count|total)$/, '');
    if (!typed.has(m[1]!) && !typed.has(base) && !typed.has(`${base}_total`)) throw new Error(`sample before its # TYPE: ${line}`);
    samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return samples;
}
