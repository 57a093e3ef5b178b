// Byte primitives called once per batch from TypeScript: copies and RFC 1071
// one's complement sums over ranges the caller describes. The addon reads no
// header here and decides nothing: which ranges to copy or sum, and what a sum
// means (a TCP checksum, a payload's share of one), is src/offload/gso.ts's and
// src/offload/gro.ts's business.
//
// The sum: little-endian 16-bit words added in wide lanes (the compiler
// vectorizes the loop), folded to 16 bits and byte-swapped at the end — RFC
// 1071 §2(B): summing byte-swapped words gives the byte-swapped sum, and
// §2(C): wider words can be added and folded later. An odd final byte counts
// as the high byte of a zero-padded big-endian word (RFC 1071 §4.1). The result
// is the folded, uncomplemented 16-bit sum of the range as big-endian words,
// counted from the range's first byte.
#pragma GCC optimize("O3")

#include "bytes.h"

#include <cstring>

namespace silkworm {

static inline uint16_t FoldSwap(uint64_t s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(((s & 0xff) << 8) | (s >> 8));
}

// 16-bit words into 32-bit lanes, 32768 words at a time (32768 * 0xffff < 2^32,
// so no lane overflows), each block's total then added into 64 bits: the form
// gcc vectorizes best (widening adds, no carries to chase).
static inline __attribute__((always_inline)) uint16_t SumBody(const uint8_t* p, size_t len) {
  uint64_t s = 0;
  size_t i = 0;
  while (i + 2 <= len) {
    size_t n = (len - i) / 2;
    if (n > 32768) n = 32768;
    uint32_t acc = 0;
    for (size_t k = 0; k < n; k++) {
      uint16_t h;
      memcpy(&h, p + i + 2 * k, 2);
      acc += h;
    }
    s += acc;
    i += 2 * n;
  }
  if (i < len) s += p[i];  // the low byte of a little-endian word = the high byte once swapped
  return FoldSwap(s);
}

static uint16_t SumGeneric(const uint8_t* p, size_t len) { return SumBody(p, len); }

#if defined(__x86_64__)
// The same loop with 256-bit registers (measured on an EPYC VM, 1448-byte
// ranges: about 2.5 times the SSE2 build). Chosen once, at load, by CPUID.
__attribute__((target("avx2"))) static uint16_t SumAvx2(const uint8_t* p, size_t len) { return SumBody(p, len); }
static uint16_t (*PickSum())(const uint8_t*, size_t) {
  __builtin_cpu_init();  // this may run before libgcc's own constructor has
  return __builtin_cpu_supports("avx2") ? SumAvx2 : SumGeneric;
}
static uint16_t (*const SumImpl)(const uint8_t*, size_t) = PickSum();
#else
static uint16_t (*const SumImpl)(const uint8_t*, size_t) = SumGeneric;
#endif

uint16_t Sum16(const uint8_t* p, size_t len) { return SumImpl(p, len); }

// copySum(src, dst, desc, n, sums) -> undefined
// For k < n with desc[3k..3k+2] = [srcOff, dstOff, len]: copy src[srcOff, +len)
// to dst[dstOff, +len) and store the sum of those bytes (see above) in sums[k].
// Ranges outside their buffers throw a RangeError before anything is copied.
// src and dst may be the same buffer; ranges must not overlap (memcpy).
static Napi::Value CopySum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t *src, *dst;
  uint32_t *desc, *sums, n;
  size_t srcLen, dstLen, descLen, sumsLen;
  if (!GetBytes(env, info[0], "src", &src, &srcLen) || !GetBytes(env, info[1], "dst", &dst, &dstLen) ||
      !GetU32s(env, info[2], "desc", &desc, &descLen) || !GetIndex(env, info[3], "n", &n) ||
      !GetU32s(env, info[4], "sums", &sums, &sumsLen))
    return env.Undefined();
  if (static_cast<uint64_t>(n) * 3 > descLen || n > sumsLen) {
    Napi::RangeError::New(env, "copySum: n is larger than desc (3 words each) or sums").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (uint32_t k = 0; k < n; k++) {
    const uint32_t* d = desc + static_cast<size_t>(k) * 3;
    if (static_cast<uint64_t>(d[0]) + d[2] > srcLen || static_cast<uint64_t>(d[1]) + d[2] > dstLen) {
      Napi::RangeError::New(env, "copySum: a range is outside its buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  for (uint32_t k = 0; k < n; k++) {
    const uint32_t* d = desc + static_cast<size_t>(k) * 3;
    uint8_t* out = dst + d[1];
    memcpy(out, src + d[0], d[2]);
    sums[k] = Sum16(out, d[2]);
  }
  return env.Undefined();
}

// sumRanges(buf, desc, n, sums) -> undefined
// For k < n with desc[2k..2k+1] = [off, len]: sums[k] = the sum of buf[off, +len).
static Napi::Value SumRanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* buf;
  uint32_t *desc, *sums, n;
  size_t bufLen, descLen, sumsLen;
  if (!GetBytes(env, info[0], "buf", &buf, &bufLen) || !GetU32s(env, info[1], "desc", &desc, &descLen) ||
      !GetIndex(env, info[2], "n", &n) || !GetU32s(env, info[3], "sums", &sums, &sumsLen))
    return env.Undefined();
  if (static_cast<uint64_t>(n) * 2 > descLen || n > sumsLen) {
    Napi::RangeError::New(env, "sumRanges: n is larger than desc (2 words each) or sums").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (uint32_t k = 0; k < n; k++) {
    const uint32_t* d = desc + static_cast<size_t>(k) * 2;
    if (static_cast<uint64_t>(d[0]) + d[1] > bufLen) {
      Napi::RangeError::New(env, "sumRanges: a range is outside the buffer").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  for (uint32_t k = 0; k < n; k++) {
    const uint32_t* d = desc + static_cast<size_t>(k) * 2;
    sums[k] = Sum16(buf + d[0], d[1]);
  }
  return env.Undefined();
}

void InitBytes(Napi::Env env, Napi::Object exports) {
  exports.Set("copySum", Napi::Function::New<CopySum>(env, "copySum"));
  exports.Set("sumRanges", Napi::Function::New<SumRanges>(env, "sumRanges"));
}

}  // namespace silkworm
