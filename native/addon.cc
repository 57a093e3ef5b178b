// silkworm_native: the syscalls the user-space data plane needs and Node does
// not offer — TAP open/attach (TUNSETIFF, setns), batched TAP read/write driven
// by uv_poll, raw IPv4 sendmmsg, UDP recvmmsg, flock on a state directory. No protocol logic here.
#include <napi.h>

#include "tap.h"
#include "udp.h"

namespace silkworm {
void InitLock(Napi::Env env, Napi::Object exports);  // lock.cc
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  silkworm::InitTap(env, exports);
  silkworm::InitUdp(env, exports);
  silkworm::InitLock(env, exports);
  exports.Set("maxBatch", Napi::Number::New(env, silkworm::kMaxBatch));
  return exports;
}

NODE_API_MODULE(silkworm_native, Init)
