// `show conntrack` as a stream: the table is walked in slices with
// ConnTrack.list and written to the HTTP response as it goes — text lines as
// `conntrack -L` prints them, or NDJSON (one conntrackJson object per line)
// — yielding to the event loop between slices, so forwarding never waits more
// than one slice (sliceMs, default 5 ms) and the whole table never exists as
// objects or as one string. Filters are `conntrack -L`'s: --src, --dst
// (address or prefix), --proto, --sport, --dport, --state, --mark; --limit
// caps how many entries are written. The response honours backpressure: a
// slow reader pauses the walk (on 'drain') instead of buffering the table.
//
// Query string (all optional): src, dst, proto (tcp|udp|icmp or a number),
// sport, dport, state (a TCP state name), mark, limit, format (text|json).
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { HttpError } from '../net/http.js';
import {
  CT_LIST_DONE,
  TCP_STATE_NAMES,
  conntrackJson,
  formatConntrack,
  type ConnTrack,
  type CtEntryInfo,
  type CtFilter,
} from '../policy/conntrack.js';
import { ipToU32 } from '../util/ip.js';

export interface ConntrackQuery {
  filter: CtFilter;
  /** At most this many entries (undefined = all). */
  limit: number | undefined;
  json: boolean;
}

export interface ConntrackStreamOptions {
  /** The table's clock, seconds (the cell's `performance.now() / 1000`). */
  now?: () => number;
  /** Work per slice before yielding, milliseconds. Default 5. */
  sliceMs?: number;
  /** Stop early (the request went away). */
  signal?: AbortSignal;
  /** Called after each slice is written, with the entries written so far. */
  onSlice?: (entries: number, sliceMs: number) => void;
  /** Tables to stream after this one (a cell's other workers'). */
  more?: ConntrackSource[];
  /** The headers' size and capacity when there are more tables (default: this table's). */
  size?: number;
  capacity?: number;
}

export interface ConntrackStreamResult {
  /** Entries written. */
  entries: number;
  /** Slices (event-loop turns) the walk took. */
  slices: number;
  /** Longest slice, milliseconds: how long forwarding waited at most. */
  maxSliceMs: number;
  /** True if the reader went away before the end. */
  aborted: boolean;
}

const PARAMS = ['src', 'dst', 'proto', 'sport', 'dport', 'state', 'mark', 'limit', 'format'] as const;
const PROTOS: Record<string, number> = { icmp: 1, tcp: 6, udp: 17 };

function bad(msg: string): never {
  throw new HttpError(400, msg);
}

function intParam(name: string, v: string, lo: number, hi: number): number {
  if (!/^\d{1,10}$/.test(v)) bad(`${name} must be an integer in ${lo}..${hi}, got "${v}"`);
  const n = Number(v);
  if (n < lo || n > hi) bad(`${name} must be an integer in ${lo}..${hi}, got ${n}`);
  return n;
}

/** "10.255.1.2" or "10.255.1.0/24" → address and prefix length. */
function addrParam(name: string, v: string): { addr: number; len: number } {
  const slash = v.indexOf('/');
  const ipText = slash < 0 ? v : v.slice(0, slash);
  let addr: number;
  try {
    addr = ipToU32(ipText);
  } catch {
    bad(`${name} must be an IPv4 address or prefix like 10.255.1.0/24, got "${v}"`);
  }
  const len = slash < 0 ? 32 : intParam(`${name} prefix length`, v.slice(slash + 1), 0, 32);
  return { addr, len };
}

/**
 * The query string of GET /conntrack as a filter; a bad or unknown parameter
 * is an HttpError(400) with one sentence naming it.
 */
export function parseConntrackQuery(q: URLSearchParams): ConntrackQuery {
  const filter: CtFilter = {};
  let limit: number | undefined;
  let json = false;
  const seen = new Set<string>();
  for (const [k, v] of q) {
    if (!(PARAMS as readonly string[]).includes(k)) bad(`unknown conntrack filter "${k}"; use ${PARAMS.join(', ')}`);
    if (seen.has(k)) bad(`conntrack filter "${k}" given twice`);
    seen.add(k);
    switch (k) {
      case 'src':
      case 'dst': {
        const a = addrParam(k, v);
        if (k === 'src') [filter.src, filter.srcPrefixLen] = [a.addr, a.len];
        else [filter.dst, filter.dstPrefixLen] = [a.addr, a.len];
        break;
      }
      case 'proto': {
        const p = PROTOS[v.toLowerCase()];
        filter.proto = p ?? (/^\d+$/.test(v) ? intParam('proto', v, 0, 255) : bad(`proto must be tcp, udp, icmp or a protocol number, got "${v}"`));
        break;
      }
      case 'sport':
      case 'dport':
        filter[k] = intParam(k, v, 0, 65535);
        break;
      case 'state': {
        const i = (TCP_STATE_NAMES as readonly string[]).indexOf(v.toUpperCase());
        if (i < 0) bad(`state must be one of ${TCP_STATE_NAMES.join(', ')}, got "${v}"`);
        filter.tcpState = i;
        break;
      }
      case 'mark':
        filter.mark = intParam('mark', v, 0, 0xffffffff);
        break;
      case 'limit':
        limit = intParam('limit', v, 1, 0xffffffff);
        break;
      case 'format':
        if (v !== 'json' && v !== 'text') bad(`format must be text or json, got "${v}"`);
        json = v === 'json';
        break;
    }
  }
  return { filter, limit, json };
}

// Entries per ConnTrack.list call and slots examined per call: small enough
// that the time check between calls keeps a slice near sliceMs, whatever
// the filter matches.
const LIST_BATCH = 64;
const SCAN_BATCH = 4096;
// Text per slice at most (UTF-16 code units, ASCII here): one socket write
// stays small, and the reader's pace shows up as backpressure early.
const SLICE_CHARS = 64 * 1024;

/** One slice of a walk: where it stopped, the text it made and how many entries that is. */
export interface ConntrackSlice {
  cursor: number;
  text: string;
  entries: number;
}

/**
 * Walk `ct` from `cursor` for at most `sliceMs` (or SLICE_CHARS of text, or
 * `left` entries) and render what it found. A walk is done when the cursor
 * comes back as CT_LIST_DONE. The table's own clock gives `now`.
 */
export function conntrackSlice(ct: ConnTrack, cursor: number, now: number, q: ConntrackQuery, left: number, sliceMs: number): ConntrackSlice {
  const t0 = performance.now();
  const batch: CtEntryInfo[] = [];
  let text = '';
  let entries = 0;
  do {
    cursor = ct.list(cursor, Math.min(LIST_BATCH, left), now, q.filter, batch, SCAN_BATCH);
    for (const e of batch) text += (q.json ? JSON.stringify(conntrackJson(e, now)) : formatConntrack(e, now)) + '\n';
    left -= batch.length;
    entries += batch.length;
    batch.length = 0;
  } while (cursor !== CT_LIST_DONE && left > 0 && text.length < SLICE_CHARS && performance.now() - t0 < sliceMs);
  return { cursor, text, entries };
}

/** Another table walked elsewhere (a worker thread's): the next slice from `cursor`. */
export interface ConntrackSource {
  slice(cursor: number, left: number): Promise<ConntrackSlice>;
}

/**
 * Write the table (filtered) to `res` as a chunked 200 response and end it —
 * then each of `opts.more`'s tables (a cell's other workers) the same way.
 * Headers carry the tables' size and capacity at the start
 * (x-conntrack-size, x-conntrack-capacity). Resolves when the response is
 * ended or the reader went away; never rejects for a closed connection.
 */
export async function streamConntrack(
  ct: ConnTrack,
  res: ServerResponse,
  q: ConntrackQuery,
  opts: ConntrackStreamOptions = {},
): Promise<ConntrackStreamResult> {
  const clock = opts.now ?? (() => performance.now() / 1000);
  const sliceMs = opts.sliceMs ?? 5;
  const result: ConntrackStreamResult = { entries: 0, slices: 0, maxSliceMs: 0, aborted: false };
  let gone = false;
  const onGone = () => {
    if (!res.writableFinished) gone = true;
  };
  res.on('close', onGone);
  res.on('error', onGone);
  opts.signal?.addEventListener('abort', onGone, { once: true });
  const local: ConntrackSource = { slice: async (cursor, left) => conntrackSlice(ct, cursor, clock(), q, left, sliceMs) };
  try {
    res.writeHead(200, {
      'content-type': q.json ? 'application/x-ndjson' : 'text/plain; charset=utf-8',
      'cache-control': 'no-store',
      'x-conntrack-size': String(opts.size ?? ct.size),
      'x-conntrack-capacity': String(opts.capacity ?? ct.capacity),
    });
    let left = q.limit ?? Infinity;
    for (const source of [local, ...(opts.more ?? [])]) {
      let cursor = 0;
      while (cursor !== CT_LIST_DONE && left > 0) {
        if (gone || res.destroyed || opts.signal?.aborted) {
          result.aborted = true;
          return result;
        }
        const t0 = performance.now();
        const s = await source.slice(cursor, left);
        cursor = s.cursor;
        left -= s.entries;
        result.entries += s.entries;
        const ok = s.text.length === 0 || res.write(s.text);
        const ms = performance.now() - t0;
        result.slices++;
        if (ms > result.maxSliceMs) result.maxSliceMs = ms;
        opts.onSlice?.(result.entries, ms);
        if (cursor === CT_LIST_DONE || left <= 0) break;
        // Wait for the reader if its buffer is full; then let the data plane
        // run. Both, always: 'drain' may come in a nextTick of this very turn
        // (a write the socket took at once), which alone would chain the next
        // slice without the event loop ever turning.
        if (!ok) await drainOrGone(res);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    if (gone || res.destroyed) {
      result.aborted = true;
      return result;
    }
    res.end();
    return result;
  } finally {
    res.off('close', onGone);
    res.off('error', onGone);
    opts.signal?.removeEventListener('abort', onGone);
  }
}

function drainOrGone(res: ServerResponse): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
