// Big-endian field access for tests that build or check packets by hand.
export function u16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
export function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
export function put32(b: Uint8Array, o: number, v: number): void {
  put16(b, o, v >>> 16);
  put16(b, o + 2, v & 0xffff);
}
