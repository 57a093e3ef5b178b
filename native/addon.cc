// silkworm_native: the syscalls the user-space data plane needs and Node does
// not offer — TAP open/attach (TUNSETIFF, TUNSETOFFLOAD, setns, multi-queue),
// batched TAP read/write driven by uv_poll, raw IPv4 sendmmsg, UDP recvmmsg
// (UDP_GRO, SO_REUSEPORT) and UDP GSO sendmmsg, flock on a state directory,
// the two inner-flow steering programs of steer.cc (TUNSETSTEERINGEBPF,
// SO_ATTACH_REUSEPORT_CBPF) — and the byte work around
// them (bytes.cc: copies and checksums over ranges TypeScript describes, once
// per batch). No forwarding or policy decisions; the few header fields read
// here are listed in common.h.
#include <napi.h>

#include "bytes.h"
#include "steer.h"
#include "tap.h"
#include "udp.h"

namespace silkworm {
void InitLock(Napi::Env env, Napi::Object exports);  // lock.cc
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  silkworm::InitTap(env, exports);
  silkworm::InitUdp(env, exports);
  silkworm::InitLock(env, exports);
  silkworm::InitBytes(env, exports);
  silkworm::InitSteer(env, exports);
  silkworm::InitBusyPoll(env, exports);
  exports.Set("maxBatch", Napi::Number::New(env, silkworm::kMaxBatch));
  return exports;
}

NODE_API_MODULE(silkworm_native, Init)
