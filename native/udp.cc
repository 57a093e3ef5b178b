// The underlay: a raw IPv4 socket for sending (outer headers built in JS, one
// sendmmsg per batch), a UDP socket on port 4789 for receiving (recvmmsg
// straight into the slab's slots, or with UDP_GRO into scratch buffers split
// into slots), and the UDP GSO sender, which reads the outer IPv4/UDP headers
// JS built to group datagrams (see common.h for exactly which fields).
// With several workers per cell each worker's receiver is one socket of a
// SO_REUSEPORT group (reusePort), and steer(n) attaches the classic BPF
// program of steer.cc to the group so each inner flow reaches one worker.
#include "udp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "bytes.h"
#include "steer.h"
#include "tap.h"

namespace silkworm {

// 4 MiB: a 128-frame batch of 1500-byte packets is ~200 KiB of payload but the
// kernel charges each skb's truesize (~2.3 KiB), and bursts from several
// cells arrive between two wakeups. SO_*BUFFORCE needs CAP_NET_ADMIN and
// ignores net.core.[rw]mem_max; fall back to the capped option without it.
constexpr int kSocketBuffer = 4 << 20;

// A GRO'd UDP message is at most 64 KiB (the IPv4 total length bounds the
// super-datagram: udp_gro_receive_segment stops before 64 KiB), so one such
// buffer per message can never truncate one.
constexpr size_t kGroBuf = 65536;
// Room for the UDP_GRO cmsg (an int) with slack for any other cmsg.
constexpr size_t kCtrlBuf = 64;

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
  struct iovec iov[2 * kMaxBatch];  // two per message: the slab piece and an ExtPieces piece
  struct sockaddr_in addrs[kMaxBatch];
};

// iov[0..] = packet k's bytes from byte `skip` on: its piece in the slab, then
// its piece outside it (ext), if any. Returns the iovecs used (1 or 2), or 0
// when a piece lies outside its buffer or the slab piece is shorter than skip.
static uint32_t PacketIov(uint8_t* slab, size_t slabLen, const uint32_t* offs, const uint32_t* lens,
                          const ExtPieces& ext, uint32_t k, uint32_t skip, struct iovec* iov) {
  const uint32_t xl = ext.At(k);
  if (xl > lens[k] || lens[k] - xl < skip) return 0;
  const uint32_t head = lens[k] - xl;
  if (static_cast<uint64_t>(offs[k]) + head > slabLen) return 0;
  iov[0].iov_base = slab + offs[k] + skip;
  iov[0].iov_len = head - skip;
  if (xl == 0) return 1;
  if (static_cast<uint64_t>(ext.offs[k]) + xl > ext.len) return 0;
  iov[1].iov_base = ext.buf + ext.offs[k];
  iov[1].iov_len = xl;
  return 2;
}

static SendScratch* Scratch(Napi::Env env) {
  SendScratch* s = env.GetInstanceData<SendScratch>();
  if (s == nullptr) {
    s = new SendScratch;
    memset(s, 0, sizeof *s);
    for (uint32_t i = 0; i < kMaxBatch; i++) {
      s->addrs[i].sin_family = AF_INET;
      s->msgs[i].msg_hdr.msg_name = &s->addrs[i];
      s->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
      s->msgs[i].msg_hdr.msg_iov = &s->iov[2 * i];
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

// sendBatch(fd, slab, offs, lens, dsts, count, start = 0, ext?, extOffs?, extLens?) -> n
// ONE sendmmsg() for packets start..min(count, start+1024)-1; dsts are
// host-order u32 next hops. Returns how many the kernel took (fewer on EAGAIN:
// the send buffer is full), or -errno when packet `start` itself was refused
// (EMSGSIZE, EINVAL for a bad header or bytes outside the slab, ENETUNREACH…)
// so the caller can count it and go on with start+1. With ext, packet k's last
// extLens[k] bytes are ext[extOffs[k], +extLens[k]) (see ExtPieces), gathered
// by the kernel: zero-copy TSO segments.
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
  ExtPieces ext;
  if (!GetExt(env, info, 7, &ext)) return env.Undefined();
  if (count > dstsLen) {
    Napi::RangeError::New(env, "count is larger than the dsts array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  SendScratch* s = Scratch(env);
  uint32_t n = 0;
  for (uint32_t k = start; k < count && n < kMaxBatch; k++, n++) {
    const uint32_t niov = PacketIov(slab, slabLen, offs, lens, ext, k, 0, &s->iov[2 * n]);
    if (niov == 0) break;  // stop before the bad one; it fails alone next call
    s->msgs[n].msg_hdr.msg_iovlen = niov;
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
                      InstanceMethod<&UdpReceiver::Counters>("counters"),
                      InstanceMethod<&UdpReceiver::Steer>("steer")});
}

// new UdpReceiver(bindIp, port, slab, slotSize, headroom, maxFrames, lengths, srcIps, srcPorts, onBatch, gro = false,
//                 drops?, oversizeIdx?, tos?, maxInnerIp?, reusePort = false)
// tos: a Uint8Array of maxFrames entries; when given, IP_RECVTOS is set and
// each datagram's outer DS byte is written there (0 when the kernel gives none).
// reusePort: SO_REUSEPORT before bind, so the N workers of one cell can each
// bind a socket of the same group (the kernel's socket index = bind order).
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
  // No SO_REUSEADDR, and SO_REUSEPORT only when asked for (the workers of
  // one cell): with it a second process could bind the same address and port
  // and take the live cell's inbound VXLAN. UDP has no TIME_WAIT, so a
  // restarted cell binds at once without it. (SO_REUSEPORT only lets in
  // sockets of the same effective uid, and every extra socket in the group
  // shifts the indices the steering program picks.)
  if (info.Length() > 15 && info[15].ToBoolean().Value()) {
    int on = 1;
    if (setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0) {
      int err = errno;
      close(fd_);
      fd_ = -1;
      ErrnoError(env, "UdpReceiver: SO_REUSEPORT", err).ThrowAsJavaScriptException();
      return;
    }
  }
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

  if (info.Length() > 10 && info[10].ToBoolean().Value()) {
    // A kernel without UDP_GRO (< 5.0) refuses the option: stay on the plain
    // path and keep the errno, so the caller can say it was refused.
    int on = 1;
    gro_ = setsockopt(fd_, SOL_UDP, UDP_GRO, &on, sizeof on) == 0;
    if (!gro_) groErrno_ = errno;
  }
  if (!InitDrops(env, info, 11, &oversizeIdx_, 1)) {
    close(fd_);
    fd_ = -1;
    return;
  }
  if (info.Length() > 13 && info[13].IsTypedArray()) {
    size_t tosLen = 0;
    if (!GetBytes(env, info[13], "tos", &tos_, &tosLen)) {
      close(fd_);
      fd_ = -1;
      return;
    }
    if (tosLen < maxFrames) {
      Napi::RangeError::New(env, "UdpReceiver: tos needs maxFrames entries").ThrowAsJavaScriptException();
      close(fd_);
      fd_ = -1;
      return;
    }
    int on = 1;
    setsockopt(fd_, IPPROTO_IP, IP_RECVTOS, &on, sizeof on);
    tosRef_ = Napi::Persistent(info[13].As<Napi::Object>());
  }
  // Largest inner IPv4 packet (the containers' MTU): with it, UDP-tunnel
  // super-packets are cut into segments instead of dropped as oversize.
  if (info.Length() > 14 && info[14].IsNumber()) maxInnerIp_ = info[14].As<Napi::Number>().Uint32Value();
  if (gro_) {
    // 64 messages per recvmmsg at most (4 MiB of scratch); bigger batches loop.
    groBufs_ = std::min<uint32_t>(maxFrames, 64);
    scratch_.resize(static_cast<size_t>(groBufs_) * kGroBuf);
    gmsgs_.resize(groBufs_);
    giov_.resize(groBufs_);
    gaddrs_.resize(groBufs_);
    gctrl_.resize(static_cast<size_t>(groBufs_) * kCtrlBuf);
    gseg_.resize(groBufs_);
    gtos_.resize(groBufs_);
    for (uint32_t i = 0; i < groBufs_; i++) {
      giov_[i].iov_base = scratch_.data() + static_cast<size_t>(i) * kGroBuf;
      giov_[i].iov_len = kGroBuf;
      memset(&gmsgs_[i], 0, sizeof gmsgs_[i]);
      gmsgs_[i].msg_hdr.msg_name = &gaddrs_[i];
      gmsgs_[i].msg_hdr.msg_iov = &giov_[i];
      gmsgs_[i].msg_hdr.msg_iovlen = 1;
      gmsgs_[i].msg_hdr.msg_control = gctrl_.data() + static_cast<size_t>(i) * kCtrlBuf;
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    flush_ = new uv_timer_t;
    uv_timer_init(loop, flush_);
    flush_->data = this;
  }

  msgs_.resize(maxFrames);
  iov_.resize(maxFrames);
  addrs_.resize(maxFrames);
  if (tos_ != nullptr) ctrl_.resize(static_cast<size_t>(maxFrames) * kCtrlBuf);
  for (uint32_t i = 0; i < maxFrames; i++) {
    iov_[i].iov_base = slab_ + static_cast<size_t>(i) * slot_ + headroom_;
    iov_[i].iov_len = slot_ - headroom_;
    memset(&msgs_[i], 0, sizeof msgs_[i]);
    msgs_[i].msg_hdr.msg_name = &addrs_[i];
    msgs_[i].msg_hdr.msg_iov = &iov_[i];
    msgs_[i].msg_hdr.msg_iovlen = 1;
    if (tos_ != nullptr) msgs_[i].msg_hdr.msg_control = ctrl_.data() + static_cast<size_t>(i) * kCtrlBuf;
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
  CloseFlush();
  ClosePoll();
  if (fd_ >= 0) close(fd_);
}

Napi::Value UdpReceiver::Start(const Napi::CallbackInfo& info) {
  if (StartPoll(info.Env()) && pend_ < pendGot_) ScheduleFlush();
  return info.Env().Undefined();
}
Napi::Value UdpReceiver::Stop(const Napi::CallbackInfo& info) {
  StopPoll();
  return info.Env().Undefined();
}
// Stops polling, then closes the socket (in that order: see TapReader::Close).
Napi::Value UdpReceiver::Close(const Napi::CallbackInfo& info) {
  CloseFlush();
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
// steer(n): attach the reuseport steering program for n workers to this
// socket's SO_REUSEPORT group (it belongs to the group: one call covers every
// socket, and it lives as long as one of them). Call it once all n are bound.
Napi::Value UdpReceiver::Steer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t n;
  if (!GetSteerWorkers(env, info[0], "UdpReceiver.steer", &n)) return env.Undefined();
  if (fd_ < 0) {
    Napi::Error::New(env, "the receiver is closed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<struct sock_filter> prog = ReuseportSteeringProgram(n);
  struct sock_fprog fprog;
  fprog.len = static_cast<unsigned short>(prog.size());
  fprog.filter = prog.data();
  if (setsockopt(fd_, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &fprog, sizeof fprog) < 0) {
    int err = errno;
    // The kernel says EINVAL for a socket bound without SO_REUSEPORT.
    ErrnoError(env, err == EINVAL ? "UdpReceiver.steer: SO_ATTACH_REUSEPORT_CBPF (was the socket opened with reusePort?)"
                                  : "UdpReceiver.steer: SO_ATTACH_REUSEPORT_CBPF",
               err)
        .ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

Napi::Value UdpReceiver::Counters(const Napi::CallbackInfo& info) {
  Napi::Object o = BaseCounters(info.Env());
  o.Set("gro", gro_);
  o.Set("groErrno", groErrno_);
  o.Set("groMessages", groMessages_);
  o.Set("groSegments", groSegments_);
  o.Set("carried", carried_);
  o.Set("tsoMessages", tsoMessages_);
  return o;
}

// The IP_TOS control message IP_RECVTOS asks for: the datagram's DS byte.
static uint8_t TosOf(struct msghdr* h) {
  for (struct cmsghdr* c = CMSG_FIRSTHDR(h); c != nullptr; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TOS) return *CMSG_DATA(c);
  }
  return 0;
}

uint32_t UdpReceiver::ReadBatch(int* /*err*/) {
  if (fd_ < 0) return 0;
  if (gro_) return ReadBatchGro();
  for (uint32_t i = 0; i < maxFrames_; i++) {
    msgs_[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);  // value-result
    msgs_[i].msg_hdr.msg_flags = 0;
    if (tos_ != nullptr) msgs_[i].msg_hdr.msg_controllen = kCtrlBuf;
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
      CountDrop(oversizeIdx_);
      continue;
    }
    const uint32_t len = msgs_[i].msg_len;
    if (n != i) {
      memmove(static_cast<uint8_t*>(iov_[n].iov_base), iov_[i].iov_base, len);
    }
    lengths_[n] = len;
    srcIps_[n] = ntohl(addrs_[i].sin_addr.s_addr);
    srcPorts_[n] = ntohs(addrs_[i].sin_port);
    if (tos_ != nullptr) tos_[n] = TosOf(&msgs_[i].msg_hdr);
    n++;
  }
  // If truncation shrank a full batch, the drain loop stops early; epoll is
  // level-triggered, so what is left wakes us again at once.
  return n;
}


// ---------------------------------------------------------------------------
// UdpReceiver, UDP_GRO mode

static inline uint32_t Rd16(const uint8_t* p) { return static_cast<uint32_t>(p[0] << 8 | p[1]); }
static inline void Wr16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// A kernel VXLAN device on this host with its default offloads hands a whole
// UDP-tunnel super-packet (inner TCP with TSO, up to 64 KiB) across veths;
// a plain UDP socket receives it as one datagram, with no UDP_GRO segment
// size (it is not UDP_L4 GSO). Such a message is VXLAN header + Ethernet +
// IPv4 (total length = the whole rest) + TCP + payload. Returns the TCP
// payload bytes per segment to cut it into (inner IPv4 packets of at most
// maxInnerIp_ bytes, each fitting a slot), or 0 when it is not one.
uint32_t UdpReceiver::TsoSegmentPayload(const uint8_t* p, uint32_t len) const {
  const uint32_t room = slot_ - headroom_;
  if (maxInnerIp_ == 0 || len < 8 + 14 + 20 + 20) return 0;
  const uint8_t* e = p + 8;
  if (e[12] != 0x08 || e[13] != 0x00) return 0;
  const uint8_t* ip = e + 14;
  const uint32_t ihl = (ip[0] & 0x0fu) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 6) return 0;
  const uint32_t tot = Rd16(ip + 2);
  if (tot != len - 22 || (Rd16(ip + 6) & 0x3fffu) != 0 || ihl + 20 > tot) return 0;
  const uint32_t thl = (ip[ihl + 12] >> 4) * 4u;
  if (thl < 20 || ihl + thl >= tot || maxInnerIp_ <= ihl + thl) return 0;
  const uint32_t mss = maxInnerIp_ - ihl - thl;
  if (22 + ihl + thl + mss > room || tot - ihl - thl <= mss) return 0;
  return mss;
}

// Writes segment k (TCP payload bytes [off, off + plen)) of super-packet p
// into slot n, as tcp_gso_segment/inet_gso_segment would cut it: IPv4 total
// length, ID + k, header checksum; TCP seq + off, FIN and PSH only on the
// last segment, CWR only on the first, and a full TCP checksum.
void UdpReceiver::WriteTsoSegment(const uint8_t* p, uint32_t n, uint32_t k, uint32_t off, uint32_t plen, bool last) {
  const uint8_t* sip = p + 22;
  const uint32_t ihl = (sip[0] & 0x0fu) * 4;
  const uint32_t thl = (sip[ihl + 12] >> 4) * 4u;
  const uint32_t hdrs = 22 + ihl + thl;
  uint8_t* d = slab_ + static_cast<size_t>(n) * slot_ + headroom_;
  memcpy(d, p, hdrs);
  memcpy(d + hdrs, p + hdrs + off, plen);
  uint8_t* ip = d + 22;
  uint8_t* tcp = ip + ihl;
  Wr16(ip + 2, ihl + thl + plen);
  Wr16(ip + 4, (Rd16(sip + 4) + k) & 0xffffu);
  Wr16(ip + 10, 0);
  Wr16(ip + 10, ~Sum16(ip, ihl) & 0xffffu);
  const uint32_t seq = (Rd16(tcp + 4) << 16 | Rd16(tcp + 6)) + off;
  Wr16(tcp + 4, seq >> 16);
  Wr16(tcp + 6, seq & 0xffffu);
  uint8_t flags = tcp[13];
  if (!last) flags &= static_cast<uint8_t>(~0x09);  // FIN, PSH
  if (k > 0) flags &= static_cast<uint8_t>(~0x80);  // CWR
  tcp[13] = flags;
  Wr16(tcp + 16, 0);
  uint32_t sum = Sum16(tcp, thl + plen);
  sum += Rd16(ip + 12) + Rd16(ip + 14) + Rd16(ip + 16) + Rd16(ip + 18) + 6 + thl + plen;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  Wr16(tcp + 16, ~sum & 0xffffu);
  lengths_[n] = hdrs + plen;
}

// Copies datagrams of messages [pend_, pendGot_) into slots n.. until the
// batch is full; a message only partly placed stays pending at pendOff_.
uint32_t UdpReceiver::PlacePending(uint32_t n) {
  const uint32_t room = slot_ - headroom_;
  while (pend_ < pendGot_ && n < maxFrames_) {
    struct msghdr& h = gmsgs_[pend_].msg_hdr;
    const uint8_t* base = static_cast<const uint8_t*>(giov_[pend_].iov_base);
    uint32_t len = gmsgs_[pend_].msg_len;
    const uint32_t seg = gseg_[pend_] != 0 ? gseg_[pend_] : len;
    if ((h.msg_flags & MSG_TRUNC) && pendOff_ == 0) {
      // Cannot happen with kGroBuf-byte buffers; if it does, keep only whole datagrams.
      oversize_++;
      CountDrop(oversizeIdx_);
      len = gseg_[pend_] != 0 ? len - len % seg : 0;
    }
    const uint32_t ip = ntohl(gaddrs_[pend_].sin_addr.s_addr);
    const uint16_t port = ntohs(gaddrs_[pend_].sin_port);
    if (gmsgs_[pend_].msg_len == 0 && !(h.msg_flags & MSG_TRUNC)) {
      // A zero-length datagram still takes a slot, as on the plain path, so
      // the pipeline counts it under a reason (it is no VXLAN packet).
      lengths_[n] = 0;
      srcIps_[n] = ip;
      srcPorts_[n] = port;
      n++;
      pend_++;
      pendOff_ = 0;
      continue;
    }
    const uint32_t mss = seg == len && len > room && !(h.msg_flags & MSG_TRUNC) ? TsoSegmentPayload(base, len) : 0;
    if (mss != 0) {
      // pendOff_ counts TCP payload bytes already placed.
      const uint32_t ihl = (base[22] & 0x0fu) * 4;
      const uint32_t plen = len - 22 - ihl - (base[22 + ihl + 12] >> 4) * 4u;
      while (pendOff_ < plen && n < maxFrames_) {
        const uint32_t piece = std::min(mss, plen - pendOff_);
        WriteTsoSegment(base, n, pendOff_ / mss, pendOff_, piece, pendOff_ + piece >= plen);
        srcIps_[n] = ip;
        srcPorts_[n] = port;
        if (tos_ != nullptr) tos_[n] = gtos_[pend_];
        n++;
        pendOff_ += piece;
      }
      if (pendOff_ >= plen) {
        tsoMessages_++;
        pend_++;
        pendOff_ = 0;
      }
      continue;
    }
    while (pendOff_ < len && n < maxFrames_) {
      const uint32_t piece = std::min(seg, len - pendOff_);
      if (piece > room) {
        oversize_++;  // longer than a slot: dropped and counted, as on the plain path
        CountDrop(oversizeIdx_);
      } else {
        memcpy(slab_ + static_cast<size_t>(n) * slot_ + headroom_, base + pendOff_, piece);
        lengths_[n] = piece;
        srcIps_[n] = ip;
        srcPorts_[n] = port;
        if (tos_ != nullptr) tos_[n] = gtos_[pend_];
        n++;
      }
      pendOff_ += piece;
    }
    if (pendOff_ >= len) {
      pend_++;
      pendOff_ = 0;
    }
  }
  return n;
}

uint32_t UdpReceiver::ReadBatchGro() {
  uint32_t n = PlacePending(0);
  while (n < maxFrames_ && pend_ >= pendGot_) {
    // Never ask for more messages than free slots: a plain datagram always fits.
    const uint32_t ask = std::min(maxFrames_ - n, groBufs_);
    for (uint32_t i = 0; i < ask; i++) {
      gmsgs_[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);  // value-result
      gmsgs_[i].msg_hdr.msg_controllen = kCtrlBuf;
      gmsgs_[i].msg_hdr.msg_flags = 0;
    }
    int r;
    do {
      r = recvmmsg(fd_, gmsgs_.data(), ask, MSG_DONTWAIT, nullptr);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        errors_++;
        lastErrno_ = errno;
      }
      break;
    }
    const uint32_t got = static_cast<uint32_t>(r);
    for (uint32_t i = 0; i < got; i++) {
      gseg_[i] = 0;
      struct msghdr* h = &gmsgs_[i].msg_hdr;
      // UDP GRO merges only datagrams with one TOS (inet_gro_receive flushes on a change).
      gtos_[i] = tos_ != nullptr ? TosOf(h) : 0;
      for (struct cmsghdr* c = CMSG_FIRSTHDR(h); c != nullptr; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
          int gs;
          memcpy(&gs, CMSG_DATA(c), sizeof gs);
          if (gs > 0 && static_cast<uint32_t>(gs) < gmsgs_[i].msg_len) {
            gseg_[i] = static_cast<uint32_t>(gs);
            groMessages_++;
            groSegments_ += (gmsgs_[i].msg_len + gs - 1) / gs;
          }
        }
      }
    }
    pend_ = 0;
    pendGot_ = got;
    pendOff_ = 0;
    n = PlacePending(n);
    if (got < ask) break;  // drained
  }
  if (pend_ < pendGot_) {
    // The batch filled in the middle of a GRO'd message. Drain() calls again
    // while it has rounds left; if it yields, the flush timer finishes the job
    // on the next loop turn, since the socket may not become readable again.
    carried_++;
    ScheduleFlush();
  }
  return n;
}

void UdpReceiver::ScheduleFlush() {
  if (flush_ != nullptr && active_ && !uv_is_active(reinterpret_cast<uv_handle_t*>(flush_))) {
    uv_timer_start(flush_, OnFlush, 0, 0);
  }
}

// Same steps as PollReader::Drain, but only while datagrams are pending.
void UdpReceiver::OnFlush(uv_timer_t* t) {
  auto* self = static_cast<UdpReceiver*>(t->data);
  if (self == nullptr || !self->active_ || self->closed_ || self->pend_ >= self->pendGot_) return;
  Napi::Env env(self->env_);
  Napi::HandleScope scope(env);
  for (int round = 0; round < kMaxRounds && self->pend_ < self->pendGot_; round++) {
    uint32_t n = self->ReadBatch(nullptr);
    if (n == 0) return;
    self->batches_++;
    self->frames_ += n;
    self->CallJs(env, self->onBatch_, Napi::Number::New(env, n));
    if (self->closed_ || !self->active_) return;
    if (n < self->maxFrames_) return;
  }
}

void UdpReceiver::CloseFlush() {
  if (flush_ == nullptr) return;
  flush_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(flush_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
  flush_ = nullptr;
}

// ---------------------------------------------------------------------------
// UdpGsoSender

Napi::Function UdpGsoSender::Define(Napi::Env env) {
  return DefineClass(env, "UdpGsoSender",
                     {InstanceMethod<&UdpGsoSender::Send>("send"), InstanceMethod<&UdpGsoSender::Counters>("counters"),
                      InstanceMethod<&UdpGsoSender::Close>("close")});
}

// new UdpGsoSender(srcIp, rawFd, maxSockets)
// srcIp: the host-order underlay address the pool binds to; only packets whose
// outer source is exactly this go the GSO way. rawFd: the caller's raw socket
// (still owned and closed by the caller) for everything else.
UdpGsoSender::UdpGsoSender(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpGsoSender>(info) {
  Napi::Env env = info.Env();
  uint32_t srcIp, maxSockets;
  if (!GetIndex(env, info[0], "srcIp", &srcIp) || !GetFd(env, info[1], &rawFd_) ||
      !GetIndex(env, info[2], "maxSockets", &maxSockets))
    return;
  if (srcIp == 0 || maxSockets > 65536) {
    Napi::RangeError::New(env, "UdpGsoSender: need a non-zero srcIp and maxSockets <= 65536")
        .ThrowAsJavaScriptException();
    return;
  }
  srcIp_ = srcIp;
  maxSockets_ = maxSockets;
  pool_.assign(65536, -1);
  msgs_.resize(kMaxBatch);
  iov_.resize(2 * kMaxBatch);  // two per packet at most (PacketIov)
  addrs_.resize(kMaxBatch);
  ctrl_.assign(static_cast<size_t>(kMaxGroups) * CMSG_SPACE(sizeof(uint16_t)), 0);
  segs_.resize(kMaxBatch);
  for (uint32_t i = 0; i < kMaxBatch; i++) {
    memset(&msgs_[i], 0, sizeof msgs_[i]);
    addrs_[i].sin_family = AF_INET;
    msgs_[i].msg_hdr.msg_name = &addrs_[i];
    msgs_[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
  }
}

UdpGsoSender::~UdpGsoSender() { CloseAll(); }

void UdpGsoSender::CloseAll() {
  closed_ = true;
  for (size_t p = 0; p < pool_.size(); p++) {
    if (pool_[p] >= 0) close(pool_[p]);
    pool_[p] = -2;
  }
  open_ = 0;
}

Napi::Value UdpGsoSender::Close(const Napi::CallbackInfo& info) {
  CloseAll();
  return info.Env().Undefined();
}

Napi::Value UdpGsoSender::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("gsoGroups", gsoGroups_);
  o.Set("gsoPackets", gsoPackets_);
  o.Set("rawPackets", rawPackets_);
  o.Set("fallbacks", fallbacks_);
  o.Set("sockets", static_cast<double>(open_));
  o.Set("socketFailures", socketFailures_);
  o.Set("lastErrno", lastErrno_);
  return o;
}

static inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
static inline uint32_t Be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}

// Can packet k leave through a UDP socket and come out byte-identical? Plain
// IPv4 (IHL 5, TOS 0, not a fragment, DF clear, TTL 64: what the socket
// writes), UDP, our source address, consistent lengths, and the next hop is
// the header's destination (a UDP socket cannot route via another one).
// Anything else keeps its exact bytes on the raw path.
bool UdpGsoSender::Eligible(const uint8_t* slab, size_t slabLen, const uint32_t* offs, const uint32_t* lens,
                            const uint32_t* dsts, uint32_t k) const {
  const uint32_t len = lens[k];
  // The outer headers must be in the slab; a piece outside it (ext_) only after them, and inside its buffer.
  const uint32_t xl = ext_.At(k);
  if (len <= 28 || xl > len - 28 || static_cast<uint64_t>(offs[k]) + (len - xl) > slabLen) return false;
  if (xl != 0 && static_cast<uint64_t>(ext_.offs[k]) + xl > ext_.len) return false;
  const uint8_t* p = slab + offs[k];
  return p[0] == 0x45 && p[1] == 0 && Be16(p + 2) == len && p[6] == 0 && p[7] == 0 && p[8] == 64 && p[9] == 17 &&
         Be32(p + 12) == srcIp_ && Be32(p + 16) == dsts[k] && Be16(p + 22) != 0 && Be16(p + 24) == len - 20;
}

// Packets in the group that starts at eligible packet k: same destination,
// source and destination port, payloads of one size except a shorter last.
uint32_t UdpGsoSender::GroupLen(const uint8_t* slab, const uint32_t* offs, const uint32_t* lens, const uint32_t* dsts,
                                uint32_t count, size_t slabLen, uint32_t k) const {
  const uint8_t* p = slab + offs[k];
  const uint32_t seg = lens[k] - 28;
  uint32_t total = seg, n = 1;
  for (uint32_t j = k + 1; j < count && n < kMaxSegs; j++) {
    if (!Eligible(slab, slabLen, offs, lens, dsts, j)) break;
    const uint8_t* q = slab + offs[j];
    const uint32_t pl = lens[j] - 28;
    if (memcmp(p + 16, q + 16, 8) != 0 || pl > seg || total + pl > kMaxGroupBytes) break;
    total += pl;
    n++;
    if (pl < seg) break;  // a shorter datagram can only be the last segment
  }
  return n;
}

// The pool socket for a source port, opened on first use. -1: use the raw path.
int UdpGsoSender::SocketFor(uint16_t sport) {
  int fd = pool_[sport];
  if (fd >= 0) return fd;
  if (fd == -2 || closed_) return -1;
  if (open_ >= maxSockets_) {
    pool_[sport] = -2;  // pool full: this flow keeps the raw path
    return -1;
  }
  fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    socketFailures_++;
    lastErrno_ = errno;
    return -1;  // maybe EMFILE for now: try again later
  }
  // DF clear like the kernel's VXLAN device (the captures in
  // test/vectors/seed002.ts show the outer IPv4 "flags [none]"), TTL 64
  // like the raw path. No SO_NO_CHECK: udp_send_skb refuses GSO with it
  // (EINVAL), so these datagrams carry a real UDP checksum, which RFC 7348
  // section 5 permits (computed by the NIC, or for free on a veth).
  int pmtu = IP_PMTUDISC_DONT, ttl = 64, small = 1;
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
  setsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
  SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF);
  // Never read: anything sent to this port by mistake costs one small skb.
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(sport);
  sa.sin_addr.s_addr = htonl(srcIp_);
  // No SO_REUSEADDR: sharing the receive port (or anyone's) would split its traffic.
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) < 0) {
    socketFailures_++;
    lastErrno_ = errno;
    close(fd);
    pool_[sport] = -2;
    return -1;
  }
  pool_[sport] = fd;
  open_++;
  return fd;
}

// One raw sendmmsg of whole packets from..to-1 (the unchanged old path).
int UdpGsoSender::SendRaw(uint8_t* slab, size_t slabLen, const uint32_t* offs, const uint32_t* lens,
                          const uint32_t* dsts, uint32_t from, uint32_t to) {
  uint32_t n = 0, nio = 0;
  for (uint32_t k = from; k < to && n < kMaxBatch; k++, n++) {
    const uint32_t niov = PacketIov(slab, slabLen, offs, lens, ext_, k, 0, &iov_[nio]);
    if (niov == 0) break;
    struct msghdr& h = msgs_[n].msg_hdr;
    h.msg_iov = &iov_[nio];
    h.msg_iovlen = niov;
    nio += niov;
    h.msg_control = nullptr;
    h.msg_controllen = 0;
    addrs_[n].sin_port = 0;
    addrs_[n].sin_addr.s_addr = htonl(dsts[k]);
  }
  if (n == 0) return -EINVAL;
  int r;
  do {
    r = sendmmsg(rawFd_, msgs_.data(), n, MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
  rawPackets_ += r;
  return r;
}

// send(slab, offs, lens, dsts, count, start = 0) -> n
// ONE syscall per call, for the run of packets starting at `start`: either
// consecutive packets that gain nothing from GSO (raw sendmmsg, as sendBatch)
// or consecutive groups for one source port (sendmmsg of up to 64 groups on
// its pool socket, one UDP_SEGMENT message per group). Returns packets sent
// (> 0), 0 on EAGAIN, or -errno when packet `start` was refused; same contract
// as sendBatch, so the caller's loop is unchanged. Arguments 6-8 (ext, extOffs,
// extLens) as sendBatch's: payload pieces gathered from outside the slab.
Napi::Value UdpGsoSender::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint8_t* slab;
  size_t slabLen, offsLen, lensLen, dstsLen;
  uint32_t *offs, *lens, *dsts, count, start;
  if (!GetBytes(env, info[0], "slab", &slab, &slabLen) || !GetU32s(env, info[1], "offs", &offs, &offsLen) ||
      !GetU32s(env, info[2], "lens", &lens, &lensLen) || !GetU32s(env, info[3], "dsts", &dsts, &dstsLen) ||
      !CheckBatchArgs(env, info, 4, offsLen, lensLen, &count, &start))
    return env.Undefined();
  if (!GetExt(env, info, 6, &ext_)) return env.Undefined();
  if (count > dstsLen) {
    Napi::RangeError::New(env, "count is larger than the dsts array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (start >= count) return Napi::Number::New(env, 0);

  // Where is the next packet that starts a GSO group (>= 2 packets) with a socket?
  auto gsoStart = [&](uint32_t k, uint32_t* glen, int* fd) -> bool {
    if (!Eligible(slab, slabLen, offs, lens, dsts, k)) return false;
    *glen = GroupLen(slab, offs, lens, dsts, count, slabLen, k);
    if (*glen < 2) return false;
    *fd = SocketFor(Be16(slab + offs[k] + 20));
    return *fd >= 0;
  };

  uint32_t glen = 0;
  int fd = -1;
  if (closed_ || !gsoStart(start, &glen, &fd)) {
    uint32_t end = start + 1;
    uint32_t gl;
    int f;
    while (end < count && end - start < kMaxBatch && !closed_ && !gsoStart(end, &gl, &f)) end++;
    return Napi::Number::New(env, SendRaw(slab, slabLen, offs, lens, dsts, start, end));
  }

  // A run of groups on one pool socket.
  const uint16_t sport = Be16(slab + offs[start] + 20);
  uint32_t g = 0, nio = 0, k = start;
  while (k < count && g < kMaxGroups) {
    if (g > 0) {
      if (!Eligible(slab, slabLen, offs, lens, dsts, k) || Be16(slab + offs[k] + 20) != sport) break;
      glen = GroupLen(slab, offs, lens, dsts, count, slabLen, k);
    }
    if (nio + 2 * glen > iov_.size()) break;
    const uint8_t* p = slab + offs[k];
    uint32_t giov = 0;
    for (uint32_t j = 0; j < glen; j++) {
      // Eligible() checked both pieces' bounds: this cannot return 0.
      giov += PacketIov(slab, slabLen, offs, lens, ext_, k + j, 28, &iov_[nio + giov]);
    }
    struct msghdr& h = msgs_[g].msg_hdr;
    h.msg_iov = &iov_[nio];
    h.msg_iovlen = giov;
    addrs_[g].sin_addr.s_addr = htonl(Be32(p + 16));
    addrs_[g].sin_port = htons(Be16(p + 22));
    if (glen > 1) {
      uint8_t* cbuf = ctrl_.data() + static_cast<size_t>(g) * CMSG_SPACE(sizeof(uint16_t));
      h.msg_control = cbuf;
      h.msg_controllen = CMSG_SPACE(sizeof(uint16_t));
      struct cmsghdr* c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      const uint16_t gs = static_cast<uint16_t>(lens[k] - 28);
      memcpy(CMSG_DATA(c), &gs, sizeof gs);
    } else {
      h.msg_control = nullptr;
      h.msg_controllen = 0;
    }
    segs_[g] = glen;
    nio += giov;
    k += glen;
    g++;
  }
  int r;
  do {
    r = sendmmsg(fd, msgs_.data(), g, MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r > 0) {
    uint32_t sent = 0;
    for (int i = 0; i < r; i++) sent += segs_[i];
    gsoGroups_ += r;
    gsoPackets_ += sent;
    return Napi::Number::New(env, sent);
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
  // The first group was refused: EINVAL/EIO when this path cannot do GSO
  // (no checksum offload on a tunnel route, xfrm), EMSGSIZE for a segment
  // over the MTU, or a routing error. Retry it as separate datagrams on the
  // raw path, which reports per-packet errors exactly as before.
  fallbacks_++;
  lastErrno_ = errno;
  return Napi::Number::New(env, SendRaw(slab, slabLen, offs, lens, dsts, start, start + segs_[0]));
}

// probeUdpSegment() -> 0 or errno
// Whether this kernel has UDP GSO, asked the way wireguard-go asks:
// getsockopt(UDP_SEGMENT) on a UDP socket
// (ENOPROTOOPT before Linux 4.18).
static Napi::Value ProbeUdpSegment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, errno);
  int v = 0;
  socklen_t len = sizeof v;
  int err = getsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0 ? 0 : errno;
  close(fd);
  return Napi::Number::New(env, err);
}

void InitUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("probeUdpSegment", Napi::Function::New<ProbeUdpSegment>(env, "probeUdpSegment"));
  exports.Set("openRawSocket", Napi::Function::New<OpenRawSocket>(env, "openRawSocket"));
  exports.Set("sendBatch", Napi::Function::New<SendBatch>(env, "sendBatch"));
  exports.Set("UdpReceiver", UdpReceiver::Define(env));
  exports.Set("UdpGsoSender", UdpGsoSender::Define(env));
}

}  // namespace silkworm
