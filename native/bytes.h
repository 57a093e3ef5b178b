// Byte primitives (copy + one's complement sum over caller-described ranges),
// exported as copySum and sumRanges; see bytes.cc.
#pragma once

#include "common.h"

namespace silkworm {

// The folded, uncomplemented one's complement sum of p[0, len) as big-endian
// 16-bit words (RFC 1071), counted from p[0].
uint16_t Sum16(const uint8_t* p, size_t len);

void InitBytes(Napi::Env env, Napi::Object exports);

}  // namespace silkworm
