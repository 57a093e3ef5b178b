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
  Napi::Value Steer(const Napi::CallbackInfo& info);

  uint32_t ReadBatch(int* err) override;
  // UDP_GRO mode: recvmmsg into scratch_, then split each message into slots.
  uint32_t ReadBatchGro();
  uint32_t PlacePending(uint32_t n);
  uint32_t TsoSegmentPayload(const uint8_t* p, uint32_t len) const;
  void WriteTsoSegment(const uint8_t* p, uint32_t n, uint32_t k, uint32_t off, uint32_t plen, bool last);
  void ScheduleFlush();
  static void OnFlush(uv_timer_t* t);
  void CloseFlush();
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

  // UDP_GRO (udp(7)): one message may carry many datagrams of gso_size bytes
  // (the last may be shorter). Each of the groBufs_ messages of one recvmmsg
  // gets a kGroBuf-byte scratch buffer and a cmsg buffer, allocated once.
  bool gro_ = false;
  uint32_t groBufs_ = 0;
  std::vector<uint8_t> scratch_;
  std::vector<struct mmsghdr> gmsgs_;
  std::vector<struct iovec> giov_;
  std::vector<struct sockaddr_in> gaddrs_;
  std::vector<uint8_t> gctrl_;
  std::vector<uint32_t> gseg_;  // gso_size per received message, 0 = plain datagram
  // IP_RECVTOS: the outer DS byte of each datagram (RFC 6040 decapsulation needs it), when asked for.
  uint8_t* tos_ = nullptr;
  std::vector<uint8_t> ctrl_;   // plain path: one kCtrlBuf control buffer per message
  std::vector<uint8_t> gtos_;   // GRO path: the DS byte per received message
  Napi::ObjectReference tosRef_;
  // Messages [pend_, pendGot_) of the last recvmmsg are not placed yet (the
  // batch filled); message pend_ from byte pendOff_. Served before the next
  // recvmmsg; flush_ makes sure that happens even if the socket goes quiet.
  uint32_t pend_ = 0, pendGot_ = 0, pendOff_ = 0;
  uv_timer_t* flush_ = nullptr;
  int groErrno_ = 0;  // why setsockopt(UDP_GRO) was refused, when it was
  double groMessages_ = 0, groSegments_ = 0, carried_ = 0;
  // UDP-tunnel super-packets cut into segments (0 = off: maxInnerIp_ not given).
  uint32_t maxInnerIp_ = 0;
  double tsoMessages_ = 0;
};

// Send side of UDP GSO (UDP_SEGMENT, Linux 4.18): a pool of UDP sockets bound
// to (srcIp, source port), opened lazily per outer source port, so that runs
// of same-flow VXLAN packets leave as one super-datagram per sendmmsg entry
// and the kernel (or the NIC) cuts it into the same datagrams on the wire.
class UdpGsoSender : public Napi::ObjectWrap<UdpGsoSender> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit UdpGsoSender(const Napi::CallbackInfo& info);
  ~UdpGsoSender() override;

  static constexpr uint32_t kMaxSegs = 64;       // UDP_MAX_SEGMENTS on older kernels
  static constexpr uint32_t kMaxGroupBytes = 65000;
  static constexpr uint32_t kMaxGroups = 64;

 private:
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void CloseAll();

  bool Eligible(const uint8_t* slab, size_t slabLen, const uint32_t* offs, const uint32_t* lens,
                const uint32_t* dsts, uint32_t k) const;
  uint32_t GroupLen(const uint8_t* slab, const uint32_t* offs, const uint32_t* lens, const uint32_t* dsts,
                    uint32_t count, size_t slabLen, uint32_t k) const;
  int SocketFor(uint16_t sport);
  int SendRaw(uint8_t* slab, size_t slabLen, const uint32_t* offs, const uint32_t* lens, const uint32_t* dsts,
              uint32_t from, uint32_t to);

  int rawFd_ = -1;
  uint32_t srcIp_ = 0, maxSockets_ = 0, open_ = 0;
  bool closed_ = false;
  // pool_[sport]: -1 not opened yet, -2 refused (bind failed or pool full: raw path), else the fd.
  std::vector<int> pool_;
  // Scratch for one call, sized once (no allocation per send).
  std::vector<struct mmsghdr> msgs_;
  std::vector<struct iovec> iov_;
  std::vector<struct sockaddr_in> addrs_;
  std::vector<uint8_t> ctrl_;
  std::vector<uint32_t> segs_;
  // The current Send()'s payload pieces outside the slab (none when ext_.buf is null).
  ExtPieces ext_;
  double gsoGroups_ = 0, gsoPackets_ = 0, rawPackets_ = 0, fallbacks_ = 0, sockets_ = 0, socketFailures_ = 0;
  int lastErrno_ = 0;
};

}  // namespace silkworm
