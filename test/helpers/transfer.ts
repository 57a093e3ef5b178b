// A byte-exact TCP transfer through a lab, checked by sha256
// (test/e2e/lab-transfer.test.ts, test/e2e/workers.test.ts): a listener that
// hashes everything one connection sends and writes {bytes, sha} to a file,
// a sender of deterministic pseudo-random bytes (xorshift32 from a seed), and
// the sha256 those bytes must have. A misplaced or mis-summed segment cannot
// pass unnoticed: TCP drops a segment whose checksum is wrong (the transfer
// stalls), and a wrong payload with a right checksum changes the hash.
import { createHash } from 'node:crypto';

/** Node code for `node -e`: accept one connection on `port`, hash it, write {bytes, sha} to `out`, print "listening" once bound. */
export const hashingServer = (port: number, out: string): string =>
  `const net=require('net'),c=require('crypto'),fs=require('fs');` +
  `const s=net.createServer((k)=>{const h=c.createHash('sha256');let n=0;` +
  `k.on('data',(d)=>{h.update(d);n+=d.length});` +
  `k.on('end',()=>{fs.writeFileSync(${JSON.stringify(out)},JSON.stringify({bytes:n,sha:h.digest('hex')}));k.end();s.close()})});` +
  `s.listen(${port},()=>console.log('listening'));`;

/** Node code for `node -e`: send `bytes` pseudo-random bytes (xorshift32 from `seed`) to host:port, 1 MB at a time (from `localPort` when given). */
export const seededSender = (host: string, port: number, bytes: number, seed: number, localPort?: number): string =>
  `const net=require('net');let x=${seed}>>>0,left=${bytes};` +
  `const k=net.connect({port:${port},host:${JSON.stringify(host)}${localPort === undefined ? '' : `,localPort:${localPort}`}},()=>{const more=()=>{while(left>0){` +
  `const n=Math.min(1e6,left),b=Buffer.allocUnsafe(n);` +
  `for(let i=0;i<n;i++){x^=x<<13;x>>>=0;x^=x>>>17;x^=x<<5;x>>>=0;b[i]=x&255}` +
  `left-=n;if(!k.write(b)){k.once('drain',more);return}}k.end()};more()});` +
  `k.on('error',(e)=>{console.error(e.message);process.exit(1)});k.on('close',()=>process.exit(0));`;

/** The sha256 of what seededSender(…, bytes, seed) sends. */
export function seededSha(bytes: number, seed: number): string {
  const h = createHash('sha256');
  let x = seed >>> 0;
  let left = bytes;
  while (left > 0) {
    const n = Math.min(1e6, left);
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      b[i] = x & 255;
    }
    h.update(b);
    left -= n;
  }
  return h.digest('hex');
}
