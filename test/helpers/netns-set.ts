// Network namespaces a test file makes for itself: `ip` and `ip netns exec`
// wrappers that throw with the command's stderr, a veth pair between two of
// them, and removal of every one it made (for afterAll; never throws).
import { execFileSync } from 'node:child_process';

export class NetnsSet {
  private readonly created: string[] = [];

  /** `ip ARGS…`; its stdout. */
  ip(...args: string[]): string {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** `ip netns exec NS CMD…` with a time bound; its stdout. */
  exec(ns: string, cmd: string[], timeout = 20_000): string {
    return execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout });
  }

  /** A new namespace with IPv6 off (no router solicitations or DAD in captures) and loopback up. */
  add(ns: string): void {
    this.ip('netns', 'add', ns);
    this.created.push(ns);
    this.exec(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    this.ip('-n', ns, 'link', 'set', 'lo', 'up');
  }

  /** A veth pair devA@nsA (ipA/24) — devB@nsB (ipB/24), both up. */
  veth(devA: string, nsA: string, ipA: string, devB: string, nsB: string, ipB: string): void {
    this.ip('link', 'add', devA, 'netns', nsA, 'type', 'veth', 'peer', 'name', devB, 'netns', nsB);
    this.ip('-n', nsA, 'addr', 'add', `${ipA}/24`, 'dev', devA);
    this.ip('-n', nsB, 'addr', 'add', `${ipB}/24`, 'dev', devB);
    this.ip('-n', nsA, 'link', 'set', devA, 'up');
    this.ip('-n', nsB, 'link', 'set', devB, 'up');
  }

  /** Delete every namespace made here (one a test deleted on purpose is skipped). */
  removeAll(): void {
    for (const ns of this.created.splice(0)) {
      try {
        this.ip('netns', 'del', ns);
      } catch {
        /* already gone */
      }
    }
  }
}
