#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <vector>

#include "common.h"

namespace silkworm {

void InitUdp(Napi::Env env, Napi::Object exports);

class UdpReceiver : public Napi::ObjectWrap<UdpReceiver>, public PollReader {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit UdpReceiver(const Napi::CallbackInfo& info);
  ~UdpReceiver() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Port(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);

  uint32_t ReadBatch(int* err) override;
  bool FatalOnPollError() const override { return false; }
  Napi::Object Self() override { return Value(); }
  void Retain() override { Ref(); }
  void Release() override { Unref(); }

  int fd_ = -1;
  uint8_t* slab_ = nullptr;
  uint32_t* lengths_ = nullptr;
  uint32_t* srcIps_ = nullptr;
  uint16_t* srcPorts_ = nullptr;
  uint32_t slot_ = 0, headroom_ = 0;
  // Preallocated for maxFrames; iov i points at slot i for the object's life.
  std::vector<struct mmsghdr> msgs_;
  std::vector<struct iovec> iov_;
  std::vector<struct sockaddr_in> addrs_;
  Napi::ObjectReference slabRef_, lengthsRef_, ipsRef_, portsRef_;
};

}  // namespace silkworm
