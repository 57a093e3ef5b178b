#pragma once

#include "common.h"

namespace silkworm {

void InitTap(Napi::Env env, Napi::Object exports);
bool CheckBatchArgs(Napi::Env env, const Napi::CallbackInfo& info, size_t countArg, size_t offsLen,
                    size_t lensLen, uint32_t* count, uint32_t* start);

class TapReader : public Napi::ObjectWrap<TapReader>, public PollReader {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit TapReader(const Napi::CallbackInfo& info);
  ~TapReader() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);

  uint32_t ReadBatch(int* err) override;
  uint32_t ReadRaw(int* err);
  void OnFatal(Napi::Env env, int err) override;
  bool FatalOnPollError() const override { return true; }
  Napi::Object Self() override { return Value(); }
  void Retain() override { Ref(); }
  void Release() override { Unref(); }

  int fd_ = -1;
  uint8_t* slab_ = nullptr;
  uint32_t* lengths_ = nullptr;
  uint32_t slot_ = 0, headroom_ = 0, vnetHdrLen_ = 0;
  // A virtio_net_hdr plus the largest GSO frame the TAP hands out (64 KiB IP
  // packet + Ethernet + VLAN), rounded up.
  static constexpr size_t kRawReserve = 65600;
  uint8_t* raw_ = nullptr;  // raw mode (TSO) when set
  size_t rawLen_ = 0;
  uint32_t* rawMeta_ = nullptr;
  double superFrames_ = 0;  // raw mode: packets read with a GSO type
  double badVnet_ = 0;  // frames dropped for an unexpected virtio_net_hdr
  uint32_t badVnetIdx_ = UINT32_MAX;  // where such a drop is also counted in drops_
  uint8_t sink_ = 0;  // catches the first byte past a slot: see ReadBatch
  Napi::ObjectReference slabRef_, lengthsRef_, rawRef_, rawMetaRef_;
  Napi::FunctionReference onError_;
};

}  // namespace silkworm
