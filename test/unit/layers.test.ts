// The layer rules of src/, checked on every file's imports. Rooms, lowest
// first (a room may import rooms below it, never above):
//
//   net, util                  the bottom: addresses, HTTP, the controller API; ip, log, errors, silk names
//   wire                       views, reprs, checksums
//   tables                     route, neighbor, FDB
//   policy                     planner, compiled rules, conntrack, tags
//   dataplane                  the pipeline over batches
//   offload, io                TAP/UDP offloads; devices and the native addon
//   agent                      lease, watch, containers, IPAM, admin container routes, Backend
//   cell, kernel, control      the userspace backend, the kernel backend, the controller
//   lab                        namespaces and processes of `silkworm lab`
//   cli, cni                   commander commands; silkworm-cni (the CNI plugin a runtime executes)
//
// Rooms on one level do not import each other, except the edges in
// SAME_LEVEL_ALLOWED (each with its reason). src/testing (in-memory devices
// and fakes) may import anything, and nothing in src/ outside it may import it:
// only tests do.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const LEVELS: readonly (readonly string[])[] = [
  ['net', 'util'],
  ['wire'],
  ['tables'],
  ['policy'],
  ['dataplane'],
  ['offload', 'io'],
  ['agent'],
  ['cell', 'kernel', 'control'],
  ['lab'],
  ['cli', 'cni'],
];

/** Same-level imports that are allowed, as "from->to". */
const SAME_LEVEL_ALLOWED: ReadonlyMap<string, string> = new Map([
  // The TAP device runs the offload planners (GRO/TSO segmentation) on what it reads and writes.
  ['io->offload', 'the TAP device applies the offload planners to its frames'],
]);

const TESTING = 'testing';

const LEVEL_OF = new Map<string, number>();
LEVELS.forEach((rooms, level) => rooms.forEach((r) => LEVEL_OF.set(r, level)));

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SRC = path.join(ROOT, 'src');

/** The module specifiers a TypeScript source imports: static, export-from, side-effect, and dynamic with a literal. */
function importsOf(text: string): string[] {
  // Drop comments so an example in prose is not taken for an import.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of code.matchAll(re)) out.push(m[1]!);
  return out;
}

/** The room of a path under src/ ("src/cell/cell.ts" → "cell"), or undefined for a path outside src/. */
function roomOf(relToSrc: string): string | undefined {
  if (relToSrc.startsWith('..') || path.isAbsolute(relToSrc)) return undefined;
  const parts = relToSrc.split(path.sep);
  return parts.length > 1 ? parts[0] : '(src root)';
}

/** Why an import from `file` of `target` (both relative to src/) breaks the rules, or undefined if it does not. */
function violation(file: string, target: string): string | undefined {
  const from = roomOf(file);
  const to = roomOf(target);
  if (from === undefined || to === undefined || from === to) return undefined;
  if (to === TESTING) return from === TESTING ? undefined : `${file} imports ${target}: only tests may import src/testing`;
  if (from === TESTING) return undefined;
  const lf = LEVEL_OF.get(from);
  const lt = LEVEL_OF.get(to);
  if (lf === undefined) return `${file} is in room "${from}", which the layer table does not know: add it to LEVELS`;
  if (lt === undefined) return `${file} imports ${target} in room "${to}", which the layer table does not know: add it to LEVELS`;
  if (lt > lf) return `${file} imports ${target}: ${from} (level ${lf}) must not import ${to} (level ${lt}), a higher room`;
  if (lt === lf && !SAME_LEVEL_ALLOWED.has(`${from}->${to}`)) {
    return `${file} imports ${target}: ${from} and ${to} are on one level and must not import each other`;
  }
  return undefined;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.(ts|mts|cts)$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every violation in the tree under `srcDir`. */
function violationsIn(srcDir: string): string[] {
  const out: string[] = [];
  for (const file of sourceFiles(srcDir)) {
    const rel = path.relative(srcDir, file);
    for (const spec of importsOf(fs.readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue; // node: builtins and packages
      const target = path.relative(srcDir, path.resolve(path.dirname(file), spec));
      const why = violation(rel, target);
      if (why) out.push(why);
    }
  }
  return out;
}

describe('layer rules of src/', () => {
  it('no room imports a higher room (or a same-level one), and only tests import src/testing', () => {
    expect(violationsIn(SRC)).toEqual([]);
  });

  it('every room under src/ is in the layer table', () => {
    const rooms = fs.readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
    const unknown = rooms.filter((r) => r !== TESTING && !LEVEL_OF.has(r));
    expect(unknown).toEqual([]);
  });

  describe('the checker itself', () => {
    it('reads static, type-only, export-from, side-effect and dynamic imports, and skips comments', () => {
      const text = [
        "import { a } from './a.js';",
        "import type { B } from '../b/b.js';",
        'import {\n  c,\n  d,\n} from "../c/c.js";',
        "export { e } from '../e/e.js';",
        "export * from '../f/f.js';",
        "import '../g/g.js';",
        "const h = await import('../h/h.js');",
        "// import { x } from '../cli/util.js';",
        "/* export * from '../lab/lab.js'; */",
        "import fs from 'node:fs';",
      ].join('\n');
      expect(importsOf(text)).toEqual(['./a.js', '../b/b.js', '../c/c.js', '../e/e.js', '../f/f.js', 'node:fs', '../g/g.js', '../h/h.js']);
    });

    it('names the file and the import of an upward edge', () => {
      expect(violation('control/http.ts', 'cli/util.js')).toBe(
        'control/http.ts imports cli/util.js: control (level 7) must not import cli (level 9), a higher room',
      );
      expect(violation('wire/ipv4.ts', 'dataplane/batch.js')).toMatch(/wire \(level 1\) must not import dataplane/);
      expect(violation('lab/lab.ts', 'cli/util.js')).toMatch(/must not import cli/);
    });

    it('refuses same-level edges unless allowed, and src/testing outside tests', () => {
      expect(violation('kernel/kernel-cell.ts', 'cell/netns.js')).toMatch(/on one level/);
      expect(violation('control/server.ts', 'kernel/plan.js')).toMatch(/on one level/);
      expect(violation('net/http.ts', 'util/ip.js')).toMatch(/on one level/);
      expect(violation('io/tap.ts', 'offload/gro.js')).toBeUndefined();
      expect(violation('offload/gro.ts', 'io/tap.js')).toMatch(/on one level/);
      expect(violation('cni/plugin.ts', 'cli/util.js')).toMatch(/on one level/);
      expect(violation('cli/lab.ts', 'cni/plugin.js')).toMatch(/on one level/);
      expect(violation('cell/cell.ts', 'testing/memory.js')).toMatch(/only tests may import src\/testing/);
      expect(violation('testing/memory.ts', 'io/types.js')).toBeUndefined();
      expect(violation('newroom/x.ts', 'util/ip.js')).toMatch(/does not know/);
    });

    it('allows downward edges and imports inside one room', () => {
      expect(violation('cli/cell.ts', 'cell/cell.js')).toBeUndefined();
      expect(violation('cell/cell.ts', 'agent/agent.js')).toBeUndefined();
      expect(violation('kernel/plan.ts', 'agent/converger.js')).toBeUndefined();
      expect(violation('dataplane/x.ts', 'dataplane/y.js')).toBeUndefined();
      expect(violation('agent/agent.ts', 'net/controller-client.js')).toBeUndefined();
      expect(violation('cni/plugin.ts', 'net/http.js')).toBeUndefined();
    });

    it('finds a violating edge in a tree on disk', () => {
      const dir = fs.mkdtempSync(path.join(fs.realpathSync(process.env.TMPDIR ?? '/tmp'), 'sw-layers-'));
      try {
        fs.mkdirSync(path.join(dir, 'wire'));
        fs.mkdirSync(path.join(dir, 'cli'));
        fs.writeFileSync(path.join(dir, 'wire/ipv4.ts'), "import { fail } from '../cli/util.js';\n");
        fs.writeFileSync(path.join(dir, 'cli/util.ts'), "import { x } from '../wire/ipv4.js';\n");
        expect(violationsIn(dir)).toEqual(['wire/ipv4.ts imports cli/util.js: wire (level 1) must not import cli (level 9), a higher room']);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
