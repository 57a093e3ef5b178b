// The underlay: a raw IPv4 socket for sending (outer headers built in JS, one
// sendmmsg per batch) and a UDP socket on port 4789 for receiving (recvmmsg
// straight into the slab's slots).
#include "udp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tap.h"

namespace silkworm {

// 4 MiB: a 64-frame batch of 1500-byte packets is ~100 KiB of payload but the
// kernel charges each skb's truesize (~2.3 KiB), and bursts from several
// cells arrive between two wakeups. SO_*BUFFORCE needs CAP_NET_ADMIN and
// ignores net.core.[rw]mem_max; fall back to the capped option without it.
constexpr int kSocketBuffer = 4 << 20;

static void SetBuffer(int fd, int force, int plain) {
  int size = kSocketBuffer;
  if (setsockopt(fd, SOL_SOCKET, force, &size, sizeof size) < 0) {
    setsockopt(fd, SOL_SOCKET, plain, &size, sizeof size);
  }
}

// Per-env scratch for sendBatch: sized once for the largest batch, so a send
// allocates nothing (wireguard-go keeps the same arrays per bind).
struct SendScratch {
  struct mmsghdr msgs[kMaxBatch];
  struct iovec iov[kMaxBatch];
  struct sockaddr_in addrs[kMaxBatch];
};

static SendScratch* Scratch(Napi::Env env) {
  SendScratch* s = env.GetInstanceData<SendScratch>();
  if (s == nullptr) {
    s = new SendScratch;
    memset(s, 0, sizeof *s);
    for (uint32_t i = 0; i < kMaxBatch; i++) {
      s->addrs[i].sin_family = AF_INET;
      s->msgs[i].msg_hdr.msg_name = &s->addrs[i];
      s->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
      s->msgs[i].msg_hdr.msg_iov = &s->iov[i];
      s->msgs[i].msg_hdr.msg_iovlen = 1;
    }
    env.SetInstanceData<SendScratch>(s);
  }
  return s;
}

// openRawSocket() -> fd
// IPPROTO_RAW implies IP_HDRINCL (raw(7)): we send the whole IPv4 packet. The
// kernel still fills in the IPv4 checksum and total length, and the source
// and ID when they are 0. Such a socket never receives.
static Napi::Value OpenRawSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
  if (fd < 0) {
    ErrnoError(env, "openRawSocket: socket(AF_INET, SOCK_RAW, IPPROTO_RAW)", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
  return Napi::Number::New(env, fd);
}

// sendBatch(fd, slab, offs, lens, dsts, count, start = 0) -> n
// ONE sendmmsg() for packets start..min(count, start+1024)-1; dsts are
// host-order u32 next hops. Returns how many the kernel took (fewer on EAGAIN:
// the send buffer is full), or -errno when packet `start` itself was refused
// (EMSGSIZE, EINVAL for a bad header or bytes outside the slab, ENETUNREACH…)
// so the caller can count it and go on with start+1.
static Napi::Value SendBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* slab;
  size_t slabLen, offsLen, lensLen, dstsLen;
  uint32_t *offs, *lens, *dsts, count, start;
  if (!GetFd(env, info[0], &fd) || !GetBytes(env, info[1], "slab", &slab, &slabLen) ||
      !GetU32s(env, info[2], "offs", &offs, &offsLen) || !GetU32s(env, info[3], "lens", &lens, &lensLen) ||
      !GetU32s(env, info[4], "dsts", &dsts, &dstsLen) ||
      !CheckBatchArgs(env, info, 5, offsLen, lensLen, &count, &start))
    return env.Undefined();
  if (count > dstsLen) {
    Napi::RangeError::New(env, "count is larger than the dsts array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  SendScratch* s = Scratch(env);
  uint32_t n = 0;
  for (uint32_t k = start; k < count && n < kMaxBatch; k++, n++) {
    uint64_t end = static_cast<uint64_t>(offs[k]) + lens[k];
    if (end > slabLen) break;  // stop before the bad one; it fails alone next call
    s->iov[n].iov_base = slab + offs[k];
    s->iov[n].iov_len = lens[k];
    s->addrs[n].sin_addr.s_addr = htonl(dsts[k]);
    s->msgs[n].msg_len = 0;
  }
  if (n == 0) return Napi::Number::New(env, start < count ? -EINVAL : 0);
  int r;
  do {
    r = sendmmsg(fd, s->msgs, n, MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
    return Napi::Number::New(env, -errno);
  }
  return Napi::Number::New(env, r);
}

// ---------------------------------------------------------------------------
// UdpReceiver

Napi::Function UdpReceiver::Define(Napi::Env env) {
  return DefineClass(env, "UdpReceiver",
                     {InstanceMethod<&UdpReceiver::Start>("start"), InstanceMethod<&UdpReceiver::Stop>("stop"),
                      InstanceMethod<&UdpReceiver::Close>("close"), InstanceMethod<&UdpReceiver::Port>("port"),
                      InstanceMethod<&UdpReceiver::Counters>("counters")});
}

// new UdpReceiver(bindIp, port, slab, slotSize, headroom, maxFrames, lengths, srcIps, srcPorts, onBatch)
UdpReceiver::UdpReceiver(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpReceiver>(info) {
  Napi::Env env = info.Env();
  uint32_t bindIp, port, slot, headroom, maxFrames;
  size_t slabLen, lengthsLen, ipsLen, portsLen;
  if (!GetIndex(env, info[0], "bindIp", &bindIp) || !GetIndex(env, info[1], "port", &port) ||
      !GetBytes(env, info[2], "slab", &slab_, &slabLen) || !GetIndex(env, info[3], "slotSize", &slot) ||
      !GetIndex(env, info[4], "headroom", &headroom) || !GetIndex(env, info[5], "maxFrames", &maxFrames) ||
      !GetU32s(env, info[6], "lengths", &lengths_, &lengthsLen) ||
      !GetU32s(env, info[7], "srcIps", &srcIps_, &ipsLen) || !GetU16s(env, info[8], "srcPorts", &srcPorts_, &portsLen))
    return;
  if (!info[9].IsFunction()) {
    Napi::TypeError::New(env, "onBatch must be a function").ThrowAsJavaScriptException();
    return;
  }
  if (port > 65535 || headroom >= slot || maxFrames == 0 || maxFrames > kMaxBatch ||
      static_cast<uint64_t>(maxFrames) * slot > slabLen || lengthsLen < maxFrames || ipsLen < maxFrames ||
      portsLen < maxFrames) {
    Napi::RangeError::New(env, "UdpReceiver: need port <= 65535, headroom < slotSize, 1 <= maxFrames <= 1024, a slab of maxFrames * slotSize bytes and maxFrames entries in lengths/srcIps/srcPorts")
        .ThrowAsJavaScriptException();
    return;
  }
  slot_ = slot;
  headroom_ = headroom;
  maxFrames_ = maxFrames;

  fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    ErrnoError(env, "UdpReceiver: socket", errno).ThrowAsJavaScriptException();
    return;
  }
  int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  SetBuffer(fd_, SO_RCVBUFFORCE, SO_RCVBUF);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  sa.sin_addr.s_addr = htonl(bindIp);
  if (bind(fd_, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
    int err = errno;
    close(fd_);
    fd_ = -1;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    ErrnoError(env, std::string("UdpReceiver: bind ") + ip + ":" + std::to_string(port), err)
        .ThrowAsJavaScriptException();
    return;
  }

  msgs_.resize(maxFrames);
  iov_.resize(maxFrames);
  addrs_.resize(maxFrames);
  for (uint32_t i = 0; i < maxFrames; i++) {
    iov_[i].iov_base = slab_ + static_cast<size_t>(i) * slot_ + headroom_;
    iov_[i].iov_len = slot_ - headroom_;
    memset(&msgs_[i], 0, sizeof msgs_[i]);
    msgs_[i].msg_hdr.msg_name = &addrs_[i];
    msgs_[i].msg_hdr.msg_iov = &iov_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
  }
  slabRef_ = Napi::Persistent(info[2].As<Napi::Object>());
  lengthsRef_ = Napi::Persistent(info[6].As<Napi::Object>());
  ipsRef_ = Napi::Persistent(info[7].As<Napi::Object>());
  portsRef_ = Napi::Persistent(info[8].As<Napi::Object>());
  onBatch_ = Napi::Persistent(info[9].As<Napi::Function>());
  if (!InitPoll(env, fd_, "silkworm:UdpReceiver")) {
    close(fd_);
    fd_ = -1;
  }
}

UdpReceiver::~UdpReceiver() {
  active_ = false;
  ClosePoll();
  if (fd_ >= 0) close(fd_);
}

Napi::Value UdpReceiver::Start(const Napi::CallbackInfo& info) {
  StartPoll(info.Env());
  return info.Env().Undefined();
}
Napi::Value UdpReceiver::Stop(const Napi::CallbackInfo& info) {
  StopPoll();
  return info.Env().Undefined();
}
// Stops polling, then closes the socket (in that order: see TapReader::Close).
Napi::Value UdpReceiver::Close(const Napi::CallbackInfo& info) {
  ClosePoll();
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return info.Env().Undefined();
}
Napi::Value UdpReceiver::Port(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  if (fd_ < 0 || getsockname(fd_, reinterpret_cast<struct sockaddr*>(&sa), &len) < 0) {
    Napi::Error::New(env, "the receiver is closed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, ntohs(sa.sin_port));
}
Napi::Value UdpReceiver::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("wakeups", wakeups_);
  o.Set("batches", batches_);
  o.Set("frames", frames_);
  o.Set("oversize", oversize_);
  o.Set("errors", errors_);
  o.Set("lastErrno", lastErrno_);
  return o;
}

uint32_t UdpReceiver::ReadBatch(int* /*err*/) {
  if (fd_ < 0) return 0;
  for (uint32_t i = 0; i < maxFrames_; i++) {
    msgs_[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);  // value-result
    msgs_[i].msg_hdr.msg_flags = 0;
  }
  int r;
  do {
    r = recvmmsg(fd_, msgs_.data(), maxFrames_, MSG_DONTWAIT, nullptr);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    // A UDP socket's errors (a queued ICMP error, ENOMEM) are per-datagram or
    // transient and cleared by reporting them: count, keep the socket.
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      errors_++;
      lastErrno_ = errno;
    }
    return 0;
  }
  const uint32_t got = static_cast<uint32_t>(r);
  uint32_t n = 0;
  for (uint32_t i = 0; i < got; i++) {
    // MSG_TRUNC: the datagram was longer than the slot. Drop it (counted) and
    // close the gap; rare enough that the copy does not matter.
    if (msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) {
      oversize_++;
      continue;
    }
    const uint32_t len = msgs_[i].msg_len;
    if (n != i) {
      memmove(static_cast<uint8_t*>(iov_[n].iov_base), iov_[i].iov_base, len);
    }
    lengths_[n] = len;
    srcIps_[n] = ntohl(addrs_[i].sin_addr.s_addr);
    srcPorts_[n] = ntohs(addrs_[i].sin_port);
    n++;
  }
  // If truncation shrank a full batch, the drain loop stops early; epoll is
  // level-triggered, so what is left wakes us again at once.
  return n;
}

void InitUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("openRawSocket", Napi::Function::New<OpenRawSocket>(env, "openRawSocket"));
  exports.Set("sendBatch", Napi::Function::New<SendBatch>(env, "sendBatch"));
  exports.Set("UdpReceiver", UdpReceiver::Define(env));
}

}  // namespace silkworm
