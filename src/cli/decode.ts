// `silkworm decode`: a capture file (pcap, pcapng) or hex (a tcpdump -x/-XX
// dump, od -Ax -tx1, xxd, or plain hex) → every layer, VXLAN-GBP included —
// what tcpdump 4.99 cannot show (it prints `flags [I] (0x88)` and no Group
// Policy ID) without reaching for tshark.
//
// The decoding is src/wire/dissect.ts (layers as data) and src/wire/pcap.ts
// (the file formats); this file reads the input and formats. On a malformed
// header the layers before it are printed, then the error with its byte
// offset, and the command exits non-zero.
import fs from 'node:fs';
import { Command, Option } from 'commander';
import { CliError, fail } from './util.js';
import { dissect, startForLinkType, type DecodeStart, type Dissection, type Layer, type LayerName } from '../wire/dissect.js';
import { captureFormat, LINK_TYPE_NAMES, readCapture, type CaptureFrame } from '../wire/pcap.js';
import { parseHexDump } from '../wire/hex.js';

export { detectStart, tcpdumpFlags, tcpOptions } from '../wire/dissect.js';
export type { DecodeStart, Layer, LayerName } from '../wire/dissect.js';

/** A decode that went wrong: the message names the layer, the problem and the byte offset; `layers` is what decoded before. */
export class DecodeError extends CliError {
  constructor(
    message: string,
    readonly layers: Layer[],
  ) {
    super(message);
  }
}

/** Decode every layer of `bytes`. Throws a DecodeError (one sentence: layer, problem, byte offset) on malformed input. */
export function decodeFrame(bytes: Uint8Array, from: DecodeStart = 'auto'): Layer[] {
  const d = dissect(bytes, { from });
  if (d.errors.length > 0) throw new DecodeError(d.errors[0]!.message, d.layers);
  return d.layers;
}

const TITLES: Record<LayerName, string> = {
  ethernet: 'Ethernet',
  vlan: '802.1Q',
  arp: 'ARP',
  ipv4: 'IPv4',
  udp: 'UDP',
  tcp: 'TCP',
  icmp: 'ICMP',
  vxlan: 'VXLAN',
  payload: 'Payload',
};

const line = (depth: number, title: string, offset: number, text: string) =>
  `${'  '.repeat(depth)}${title.padEnd(9)}@${String(offset).padEnd(5)}${text}`;

/** The text form: one line per layer, indented per tunnel level, with its byte offset. */
export function formatLayers(layers: Layer[]): string {
  return layers.map((l) => line(l.depth, TITLES[l.layer], l.offset, l.summary)).join('\n');
}

/** Layers, then one `Error @offset` line per error (indented as the layer it is in). */
export function formatDissection(d: Dissection): string {
  const depthAt = (offset: number) => {
    let depth = 0;
    for (const l of d.layers) if (l.offset <= offset) depth = l.depth;
    return depth;
  };
  const lines = d.layers.map((l) => line(l.depth, TITLES[l.layer], l.offset, l.summary));
  for (const e of d.errors) lines.push(line(depthAt(e.offset), 'Error', e.offset, e.message));
  return lines.join('\n');
}

/** One frame of a capture file, decoded (the --json form of `decode -r`). */
export interface DecodedFrame {
  number: number;
  time: string;
  linkType: number;
  capturedLength: number;
  originalLength: number;
  truncated: boolean;
  layers: Layer[];
  errors: { layer: string; offset: number; message: string }[];
}

/** Decode every frame of a pcap/pcapng file; file-level damage is a last error with the file offset. */
export function decodeCapture(file: Uint8Array, from: DecodeStart = 'auto'): { frames: DecodedFrame[]; fileError: string | null } {
  const cap = readCapture(file);
  const frames = cap.frames.map((f) => decodeCaptureFrame(f, from));
  return { frames, fileError: cap.error ? `${cap.error.message} (file byte ${cap.error.offset})` : null };
}

function decodeCaptureFrame(f: CaptureFrame, from: DecodeStart): DecodedFrame {
  const base = { number: f.number, time: f.time, linkType: f.linkType, capturedLength: f.capturedLength, originalLength: f.originalLength };
  const start = from !== 'auto' ? from : startForLinkType(f.linkType, f.data[0]);
  if (start === null) {
    const name = LINK_TYPE_NAMES[f.linkType];
    const why =
      f.linkType === 101
        ? 'is an IPv6 packet (raw IP link type 101), not decoded'
        : `has link type ${f.linkType}${name ? ` (${name})` : ''}, not decoded: decode reads Ethernet (1) and raw IPv4 (228, 101)` +
          (f.linkType === 113 || f.linkType === 276 ? '; capture on one interface (tcpdump -i eth0), not -i any' : '');
    return { ...base, truncated: f.originalLength > f.capturedLength, layers: [], errors: [{ layer: 'frame', offset: 0, message: `frame ${f.number} ${why}` }] };
  }
  const d = dissect(f.data, { from: start, originalLength: f.originalLength });
  return { ...base, truncated: d.truncated, layers: d.layers, errors: d.errors };
}

function formatFrame(f: DecodedFrame): string {
  const head =
    `Frame ${f.number}: ${f.originalLength} bytes on wire, ${f.capturedLength} captured` +
    (f.truncated ? ' (truncated by the capture’s snaplen)' : '') +
    `, time ${f.time}`;
  const body = formatDissection({
    layers: f.layers,
    errors: f.errors as Dissection['errors'],
    truncated: f.truncated,
    capturedLength: f.capturedLength,
    originalLength: f.originalLength,
    start: 'ethernet',
  });
  return body ? `${head}\n${body}` : head;
}

export interface DecodeIo {
  /** The whole of stdin: bytes (a capture file is recognised by its magic) or text. */
  readStdin(): Promise<string | Uint8Array>;
  write(text: string): void;
  readFile?(path: string): Uint8Array;
}

let pipeWatched = false;
/** `decode -r big.pcap | head`: the reader went away; stop quietly, as other Unix tools do, not with a stack trace. */
function watchClosedPipe(): void {
  if (pipeWatched) return;
  pipeWatched = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

const defaultIo: DecodeIo = {
  async readStdin() {
    if (process.stdin.isTTY) {
      fail('give the hex as arguments, a capture file with -r, or pipe it in, e.g. tcpdump -XX -c1 ... | silkworm decode');
    }
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  },
  write(text) {
    watchClosedPipe();
    process.stdout.write(text);
  },
};

function readFileOrFail(io: DecodeIo, path: string): Uint8Array {
  try {
    return io.readFile ? io.readFile(path) : fs.readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    fail(`cannot read ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  }
}

const EXAMPLES = `
Examples:
  # every frame of a capture file (pcap or pcapng), numbered as tshark numbers them
  tcpdump -i eth0 -w x.pcap udp port 4789 ; silkworm decode -r x.pcap
  # a capture on stdin is recognised by its magic
  tcpdump -i eth0 -c 5 -w - udp port 4789 | silkworm decode
  # a frame captured on any interface, pasted or piped as tcpdump printed it
  tcpdump -XX -v -c 1 -i eth0 udp port 4789 | silkworm decode
  # plain hex: an outer IPv4 packet (auto-detected), or a UDP payload from --from vxlan
  silkworm decode --from vxlan 8800 0001 0000 0100 eeee 0aff 8400 eeee 0aff 6300 0800 4500 ...
  # machine-readable: a list of layers (a list of frames with -r), each field
  # with its byte offset, length and value under Wireshark's field names
  silkworm decode --json < frame.txt

Hex starts at Ethernet, IPv4 (valid header checksum), ARP or VXLAN, whichever
the bytes clearly are; when they are none of these, decode says so: --from
says where. Hex may be a tcpdump -x/-xx/-X/-XX dump, od -Ax -tx1 (or -tx1
with octal or decimal offsets), xxd, or plain hex. VXLAN (UDP port 4789, either
side) shows the GBP flags and the Group Policy ID — the source app's tag — in
decimal and %04X, and says when the kernel would drop the packet.
A malformed header: the layers before it, then the error and its byte offset;
the exit status is 1.`;

/** Add `silkworm decode` to the program. `io` is for tests. */
export function register(program: Command, io: DecodeIo = defaultIo): void {
  program
    .command('decode')
    .description('decode packets from a capture file (pcap, pcapng) or hex (tcpdump -x/-XX dump, od, plain hex): every layer, VXLAN-GBP included')
    .argument('[hex...]', 'hex bytes or a tcpdump dump; read from stdin when absent')
    .option('-r, --read <file>', 'read a pcap or pcapng capture file (every frame in it)')
    .addOption(new Option('--from <layer>', 'where the bytes start').choices(['auto', 'ethernet', 'ip', 'vxlan', 'arp']).default('auto'))
    .option('--json', 'print the layers as a JSON array (with -r or a capture: one entry per frame)')
    .addHelpText('after', EXAMPLES)
    .action(async (hex: string[], opts: { from: DecodeStart; json?: boolean; read?: string }) => {
      let input: string | Uint8Array;
      if (opts.read !== undefined) {
        if (hex.length > 0) fail('give either a capture file with -r or hex arguments, not both');
        input = readFileOrFail(io, opts.read);
        if (captureFormat(input) === null) {
          const magic = Array.from(input.subarray(0, 4), (x) => x.toString(16).padStart(2, '0')).join(' ');
          fail(
            `${opts.read} is not a pcap or pcapng file (it starts ${magic || 'empty'}); ` +
              `for a hex dump, give it on stdin: silkworm decode < ${opts.read}`,
          );
        }
      } else input = hex.length > 0 ? hex.join('\n') : await io.readStdin();

      if (typeof input !== 'string' && captureFormat(input) !== null) return decodeCaptureCommand(io, input, opts);

      const text = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('utf8');
      let bytes: Uint8Array;
      try {
        bytes = parseHexDump(text);
      } catch (e) {
        fail(`cannot read the hex input: ${(e as Error).message}`);
      }
      const d = dissect(bytes, { from: opts.from });
      if (opts.json) io.write(JSON.stringify(d.layers, null, 2) + '\n');
      else if (d.layers.length > 0) {
        // the errors go to stderr through main(); stdout gets the layers with the errors in place
        io.write((d.errors.length > 0 ? formatDissection(d) : formatLayers(d.layers)) + '\n');
      }
      if (d.errors.length > 0) throw new DecodeError(d.errors.map((e) => e.message).join('; '), d.layers);
    });
}

function decodeCaptureCommand(io: DecodeIo, file: Uint8Array, opts: { from: DecodeStart; json?: boolean }): void {
  const { frames, fileError } = decodeCapture(file, opts.from);
  if (opts.json) io.write(JSON.stringify(frames, null, 2) + '\n');
  else {
    const parts = frames.map(formatFrame);
    if (fileError) parts.push(`Error: ${fileError}`);
    if (parts.length > 0) io.write(parts.join('\n\n') + '\n');
  }
  const bad = frames.filter((f) => f.errors.length > 0);
  const problems: string[] = [];
  if (bad.length > 0) {
    const first = bad[0]!;
    problems.push(
      `${bad.length} of ${frames.length} frames did not decode cleanly (frame ${first.number}: ${first.errors[0]!.message}` +
        (bad.length > 1 ? '; the others are printed above' : '') +
        ')',
    );
  }
  if (fileError) problems.push(`the capture file is damaged after ${frames.length} frames: ${fileError}`);
  if (frames.length === 0 && !fileError) problems.push('the capture file holds no frames');
  if (problems.length > 0) fail(problems.join('; '));
}
