// The fakes stay fakes: nothing under src/ outside src/testing imports
// src/testing, and the io room exports only real devices.
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SRC = join(ROOT, 'src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Relative module specifiers of every import/export ... from '...' and import('...') in a file. */
function specifiers(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g)) out.push(m[1]!);
  return out;
}

describe('src/testing', () => {
  it('is imported by nothing in src/ outside it', () => {
    const offenders: string[] = [];
    for (const f of tsFiles(SRC)) {
      if (f.startsWith(join(SRC, 'testing') + '/')) continue;
      for (const s of specifiers(readFileSync(f, 'utf8'))) {
        if (!s.startsWith('.')) continue;
        const target = resolve(dirname(f), s);
        if (target === join(SRC, 'testing') || target.startsWith(join(SRC, 'testing') + '/')) offenders.push(`${relative(ROOT, f)} → ${s}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('the io index exports no in-memory device', async () => {
    const io = await import('../../../src/io/index.js');
    expect(Object.keys(io).filter((k) => /memory/i.test(k))).toEqual([]);
    expect(io.TapDevice).toBeDefined();
  });

  it('finds an import when there is one (the scan itself works)', () => {
    expect(specifiers(`import { a } from '../testing/memory.js';\nexport * from "./x.js";\nconst m = await import('../y.js');`)).toEqual([
      '../testing/memory.js',
      './x.js',
      '../y.js',
    ]);
  });
});
