// Hex input for `silkworm decode` and for tests: a `tcpdump -x/-xx/-X/-XX`
// dump pasted as-is, `od -Ax -tx1` (or -tx1 with octal or decimal offsets),
// `xxd`, or plain hex. Not on the hot path.
//
// tcpdump's dump lines look like
//   "\t0x0010:  004d 9a12 4000 4006 a395 0aff 6303 0aff  .M..@.@.....c..."
// — an offset, two spaces, up to eight groups of 4 (the last may be 2) hex
// digits separated by one space, then (with -X) two or more spaces and an
// ASCII column. The ASCII column can itself look like hex ("cafe"), so the
// groups are read left to right and reading stops at the first double space
// or after 16 bytes. Every other line (the summary lines above the dump,
// prompts, "listening on ...") is skipped.

const DUMP_LINE = /^\s*0x([0-9a-fA-F]{4,8}):\s{1,2}(.*)$/;

// od prints an offset (hex with -Ax, octal by default, decimal with -Ad),
// then the bytes; `*` stands for lines equal to the one before (unless -v);
// the last line is the offset after the last byte. With -tx2/-x it prints
// 16-bit words in the host's byte order, which cannot be told from bytes in
// file order: refused. `z` adds an ASCII column between > and <.
const OD_LINE = /^([0-9a-fA-F]{6,})((?:[ \t]+[0-9a-fA-F]{2})+)[ \t]*(?:>.*<)?[ \t]*$/;
const OD_WORDS = /^0{6,7}(?:[ \t]+(?:[0-9a-fA-F]{4}|[0-9a-fA-F]{8}|[0-9a-fA-F]{16}))+[ \t]*(?:>.*<)?[ \t]*$/;
const OD_END = /^([0-9a-fA-F]{6,})[ \t]*$/;
const OD_STAR = /^\*[ \t]*$/;
// xxd: "00000010: 004d 9a12 ...  .M.." — an 8-digit hex offset and a colon.
const XXD_LINE = /^([0-9a-fA-F]{8}): ((?:[0-9a-fA-F]{2})+(?: (?:[0-9a-fA-F]{2})+)*)(?:  .*)?$/;

/**
 * Parse a hex dump (tcpdump, od, xxd) or plain hex into bytes; throws an
 * Error naming the line or position on bad input — never reads a dump's
 * offsets or words as packet bytes.
 */
export function parseHexDump(text: string): Uint8Array {
  const lines = text.split(/\r?\n/);
  if (lines.some((l) => DUMP_LINE.test(l))) return parseDump(lines);
  const content = lines.map((l) => l.trim()).filter((l) => l.length > 0);
  const first = content[0] ?? '';
  if (OD_WORDS.test(first)) {
    throw new Error(
      'this looks like od output with 16-bit (or wider) words, which od prints in the host’s byte order; dump single bytes instead: od -Ax -tx1 -v',
    );
  }
  if (OD_LINE.test(first) && /^0{6,7}$/.test(OD_LINE.exec(first)![1]!)) return parseOd(content);
  if (XXD_LINE.test(first)) return parseXxd(lines);
  return parsePlain(text);
}

function parseOd(content: string[]): Uint8Array {
  const failures: string[] = [];
  for (const radix of [16, 8, 10]) {
    const r = readOd(content, radix);
    if (typeof r !== 'string') return r;
    failures.push(r);
  }
  throw new Error(
    `this looks like od output, but its offsets do not count its bytes in hex, octal or decimal (${failures[0]}); use od -Ax -tx1 -v`,
  );
}

/** The bytes of an od dump whose offsets are in `radix`, or why they are not. */
function readOd(content: string[], radix: number): Uint8Array | string {
  const out: number[] = [];
  let last: number[] | null = null;
  let star = false;
  let ended = false;
  for (let i = 0; i < content.length; i++) {
    const l = content[i]!;
    if (ended) return `line ${i + 1} follows the end offset`;
    if (OD_STAR.test(l)) {
      if (last === null || star) return `"*" on line ${i + 1} repeats nothing`;
      star = true;
      continue;
    }
    const m = OD_LINE.exec(l) ?? OD_END.exec(l);
    if (!m) return `line ${i + 1} is not an od line: "${l.slice(0, 20)}"`;
    if (!/^[0-9a-fA-F]+$/.test(m[1]!) || [...m[1]!].some((c) => parseInt(c, 16) >= radix)) return `offset ${m[1]} is not base ${radix}`;
    const offset = parseInt(m[1]!, radix);
    if (star) {
      // the line before repeats until this offset
      const gap = offset - out.length;
      if (last === null || last.length === 0 || gap < 0 || gap % last.length !== 0) return `the "*" before line ${i + 1} does not fill whole lines`;
      for (let k = 0; k < gap; k++) out.push(last[k % last.length]!);
      star = false;
    }
    if (offset !== out.length) return `line ${i + 1} has offset ${m[1]} but ${out.length} bytes came before it`;
    if (m[2] === undefined) {
      ended = true;
      continue;
    }
    const bytes = m[2]
      .trim()
      .split(/[ \t]+/)
      .map((h) => parseInt(h, 16));
    if (last !== null && last.length < 16 && !ended) return `line ${i + 1} follows a short line`;
    out.push(...bytes);
    last = bytes;
  }
  if (star) return 'the dump ends with "*"';
  if (out.length === 0) return 'no bytes';
  return Uint8Array.from(out);
}

function parseXxd(lines: string[]): Uint8Array {
  const out: number[] = [];
  for (let n = 0; n < lines.length; n++) {
    const l = lines[n]!;
    if (l.trim() === '') continue;
    const m = XXD_LINE.exec(l);
    if (!m) throw new Error(`line ${n + 1} is not an xxd line: "${l.slice(0, 30)}"`);
    const offset = parseInt(m[1]!, 16);
    if (offset !== out.length) {
      throw new Error(`line ${n + 1} has offset 0x${m[1]} but ${out.length} bytes came before it; lines are missing or out of order`);
    }
    const groups = m[2]!.split(' ');
    if (groups.some((g) => g.length > 4)) {
      throw new Error(
        `line ${n + 1} has groups of more than 2 bytes, which xxd -e prints in little-endian order; dump with plain xxd (or xxd -g1)`,
      );
    }
    for (const g of groups) for (let k = 0; k < g.length; k += 2) out.push(parseInt(g.slice(k, k + 2), 16));
  }
  if (out.length === 0) throw new Error('the dump has no hex bytes');
  return Uint8Array.from(out);
}

function parseDump(lines: string[]): Uint8Array {
  const out: number[] = [];
  let seenPartial = -1;
  for (let n = 0; n < lines.length; n++) {
    const m = DUMP_LINE.exec(lines[n]!);
    if (!m) continue;
    const lineNo = n + 1;
    const offset = parseInt(m[1]!, 16);
    if (offset === 0 && out.length > 0) {
      throw new Error(`line ${lineNo} starts a second packet (offset 0x0000 again); give one packet at a time`);
    }
    if (offset !== out.length) {
      throw new Error(
        `line ${lineNo} has offset 0x${m[1]} but ${out.length} bytes (0x${out.length.toString(16)}) came before it; lines are missing or out of order`,
      );
    }
    if (seenPartial >= 0) {
      throw new Error(`line ${lineNo} follows line ${seenPartial}, which had fewer than 16 bytes; only the last line may be short`);
    }
    const rest = m[2]!;
    let i = 0;
    let count = 0;
    while (count < 16 && i < rest.length) {
      const g = /^([0-9a-fA-F]{4}|[0-9a-fA-F]{2})(?= |$)/.exec(rest.slice(i));
      if (!g) {
        throw new Error(
          `line ${lineNo}, column ${i + 1 + (lines[n]!.length - rest.length)}: expected hex digits in groups of 4, found "${rest.slice(i, i + 6)}"`,
        );
      }
      const h = g[1]!;
      for (let k = 0; k < h.length; k += 2) out.push(parseInt(h.slice(k, k + 2), 16));
      count += h.length / 2;
      i += h.length;
      if (h.length === 2) break; // a 2-digit group ends the line's hex
      if (rest[i] === ' ' && rest[i + 1] === ' ') break; // two spaces: the ASCII column follows
      if (rest[i] === ' ') i++;
      if (i >= rest.length || rest[i] === '\t') break;
    }
    if (count > 16) throw new Error(`line ${lineNo} has more than 16 bytes`);
    if (count < 16) seenPartial = lineNo;
  }
  if (out.length === 0) throw new Error('the dump has no hex bytes');
  return Uint8Array.from(out);
}

function parsePlain(text: string): Uint8Array {
  const out: number[] = [];
  // Tokens separated by whitespace, colons, commas or dashes; each may carry a 0x prefix.
  const re = /[^\s:,\-]+/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    let tok = m[0];
    const pos = m.index;
    if (/^0[xX]/.test(tok)) tok = tok.slice(2);
    const bad = /[^0-9a-fA-F]/.exec(tok);
    if (bad) {
      const at = pos + (m[0].length - tok.length) + bad.index;
      throw new Error(`${describePos(text, at)}: "${bad[0]}" is not a hex digit`);
    }
    if (tok.length % 2 !== 0) {
      throw new Error(`${describePos(text, pos)}: "${m[0]}" has an odd number of hex digits; write each byte as two digits`);
    }
    for (let k = 0; k < tok.length; k += 2) out.push(parseInt(tok.slice(k, k + 2), 16));
  }
  if (out.length === 0) throw new Error('no hex bytes found in the input');
  return Uint8Array.from(out);
}

function describePos(text: string, at: number): string {
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  const col = at - before.lastIndexOf('\n');
  return text.includes('\n') ? `line ${line}, column ${col}` : `character ${at + 1}`;
}

/** Bytes as lowercase hex, optionally grouped (for messages and tests). */
export function toHex(bytes: Uint8Array, off = 0, len = bytes.length - off): string {
  let s = '';
  for (let i = off; i < off + len; i++) s += bytes[i]!.toString(16).padStart(2, '0');
  return s;
}
