// Hex input for `silkworm decode` and for tests: a `tcpdump -x/-xx/-X/-XX`
// dump pasted as-is, or plain hex. Not on the hot path.
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

/** Parse a tcpdump hex dump or plain hex into bytes; throws an Error naming the line or position on bad input. */
export function parseHexDump(text: string): Uint8Array {
  const lines = text.split(/\r?\n/);
  const isDump = lines.some((l) => DUMP_LINE.test(l));
  return isDump ? parseDump(lines) : parsePlain(text);
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
