// Inner-flow steering for several workers per cell (see native/steer.cc).
#pragma once

#include <linux/filter.h>

#include <vector>

#include "common.h"

namespace silkworm {

// Workers a steering program can be built for.
constexpr uint32_t kSteerMinWorkers = 2;
constexpr uint32_t kSteerMaxWorkers = 64;

// Reads argument `v` as a worker count in [kSteerMinWorkers, kSteerMaxWorkers]; throws a RangeError
// (and returns false) otherwise. `what` names the caller in the message.
bool GetSteerWorkers(Napi::Env env, const Napi::Value& v, const char* what, uint32_t* n);

// The classic BPF program for SO_ATTACH_REUSEPORT_CBPF on the UDP/4789 group: it sees the VXLAN
// header at offset 0 and returns the worker (socket index) of the inner flow, always < n.
std::vector<struct sock_filter> ReuseportSteeringProgram(uint32_t n);

void InitSteer(Napi::Env env, Napi::Object exports);

}  // namespace silkworm
