// TAP devices: open/attach (TUNSETIFF), batched reads driven by uv_poll, and
// batched writes. One write()/read() per frame is all a TAP offers; the
// batching here is about crossing into JS once per batch. With IFF_VNET_HDR
// every frame carries a 10-byte struct virtio_net_hdr in front, which lets a
// write hand the kernel one TCP super-frame (gso_type TCPV4) built by
// src/offload/gro.ts: the container's stack then sees one skb instead of ~45.
// With tso too (TUNSETOFFLOAD CSUM|TSO4) the reader works the other way round:
// it reads whole packets, super-frames of up to 64 KiB included, into a
// scratch buffer (ReadRaw) and src/offload/gso.ts cuts them into MTU-sized frames.
// With multiQueue (IFF_MULTI_QUEUE) each open of the same name attaches one
// more queue (its index = the order of attach), one per worker of a cell;
// steer.cc's steerTap picks the queue for each frame the container sends.
// When TUNSETIFF refuses an existing device (EINVAL), a RTM_GETLINK query of
// the device's tun attributes says why (the other queue mode, not a TAP).
#include "tap.h"

#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <thread>

namespace silkworm {

static bool GetIfName(Napi::Env env, const Napi::Value& v, bool allowEmpty, std::string* out) {
  if (!v.IsString()) {
    Napi::TypeError::New(env, "the interface name must be a string").ThrowAsJavaScriptException();
    return false;
  }
  std::string name = v.As<Napi::String>().Utf8Value();
  // IFNAMSIZ includes the NUL; the kernel's dev_valid_name() also refuses
  // '/', ':' and whitespace, but say so before the ioctl gives a bare EINVAL.
  if (name.size() >= IFNAMSIZ || (!allowEmpty && name.empty()) || name == "." || name == ".." ||
      name.find_first_of("/: \t\n") != std::string::npos || name.find('\0') != std::string::npos) {
    Napi::TypeError::New(env, "\"" + name + "\" is not a valid interface name (1-15 characters, no '/', ':' or spaces)")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = name;
  return true;
}

// What rtnetlink says about an existing device `name` in the calling thread's
// namespace: *kind "tun" for a TUN/TAP, *tap for a TAP, *multi for
// IFF_MULTI_QUEUE. Returns false when it could not be asked or found.
static bool QueryTun(const std::string& name, std::string* kind, bool* tap, bool* multi) {
  *kind = "";
  *tap = *multi = false;
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) return false;
  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s < 0) return false;
  struct {
    struct nlmsghdr nh;
    struct ifinfomsg ifi;
  } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = RTM_GETLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.nh.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = static_cast<int>(idx);
  std::vector<char> buf(65536);
  ssize_t n = -1;
  if (send(s, &req, sizeof req, 0) == static_cast<ssize_t>(sizeof req)) n = recv(s, buf.data(), buf.size(), 0);
  close(s);
  if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(struct ifinfomsg)))) return false;
  auto* nh = reinterpret_cast<struct nlmsghdr*>(buf.data());
  if (!NLMSG_OK(nh, static_cast<uint32_t>(n)) || nh->nlmsg_type != RTM_NEWLINK) return false;
  auto* ifi = static_cast<struct ifinfomsg*>(NLMSG_DATA(nh));
  int len = static_cast<int>(IFLA_PAYLOAD(nh));
  for (struct rtattr* a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if ((a->rta_type & NLA_TYPE_MASK) != IFLA_LINKINFO) continue;
    int l2 = static_cast<int>(RTA_PAYLOAD(a));
    for (struct rtattr* b = static_cast<struct rtattr*>(RTA_DATA(a)); RTA_OK(b, l2); b = RTA_NEXT(b, l2)) {
      const int t = b->rta_type & NLA_TYPE_MASK;
      if (t == IFLA_INFO_KIND) {
        kind->assign(static_cast<const char*>(RTA_DATA(b)), strnlen(static_cast<const char*>(RTA_DATA(b)), RTA_PAYLOAD(b)));
      } else if (t == IFLA_INFO_DATA) {
        int l3 = static_cast<int>(RTA_PAYLOAD(b));
        for (struct rtattr* c = static_cast<struct rtattr*>(RTA_DATA(b)); RTA_OK(c, l3); c = RTA_NEXT(c, l3)) {
          const int u = c->rta_type & NLA_TYPE_MASK;
          if (RTA_PAYLOAD(c) < 1) continue;
          const uint8_t v = *static_cast<const uint8_t*>(RTA_DATA(c));
          if (u == IFLA_TUN_TYPE) *tap = v == IFF_TAP;
          if (u == IFLA_TUN_MULTI_QUEUE) *multi = v != 0;
        }
      }
    }
  }
  return true;
}

// The reason TUNSETIFF said EINVAL for `name`, when the device exists and
// rtnetlink can tell: it has the other queue mode, or it is not a TAP.
static std::string RefusalDetail(const std::string& name, bool multiQueue) {
  std::string kind;
  bool tap, multi;
  if (name.empty() || name.find('%') != std::string::npos || !QueryTun(name, &kind, &tap, &multi)) return "";
  if (kind != "tun" || !tap) return name + " exists and is not a TAP";
  if (multi != multiQueue) return "TAP " + name + (multi ? " exists with multi-queue" : " exists without multi-queue");
  return "";
}

// open /dev/net/tun and attach it to TAP `name` in the calling thread's
// network namespace. Returns fd or -errno; *stage names the failing call
// (and, for a refused existing device, why: see RefusalDetail).
static int AttachTap(const std::string& name, bool vnetHdr, bool multiQueue, bool* tso, int* tsoErrno,
                     std::string* realName, std::string* stage) {
  *stage = "open /dev/net/tun";
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  // IFF_NO_PI: frames without the 4-byte packet-information prefix, so slot
  // offsets line up with the Ethernet header. No IFF_VNET_HDR: MTU-sized
  // frames (the cell's --offload none).
  // IFF_VNET_HDR (opt-in): a 10-byte virtio_net_hdr precedes each frame in
  // both directions. Without tso, TUNSETOFFLOAD is set to 0, so the kernel
  // hands us MTU-sized frames with finished checksums on read and the header
  // only buys GSO on write; with tso, see below.
  // IFF_MULTI_QUEUE (opt-in): this fd is one more queue of the device; the
  // kernel refuses (EINVAL) to mix it with a device made without it, and vice versa.
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (vnetHdr ? IFF_VNET_HDR : 0) | (multiQueue ? IFF_MULTI_QUEUE : 0);
  memcpy(ifr.ifr_name, name.data(), name.size());
  *stage = "TUNSETIFF";
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    if (err == EINVAL) {
      std::string why = RefusalDetail(name, multiQueue);
      if (!why.empty()) *stage = "TUNSETIFF: " + why;
    }
    return -err;
  }
  // TSO (opt-in, needs IFF_VNET_HDR): TUN_F_CSUM | TUN_F_TSO4 lets the
  // container's stack hand us up to 64 KiB TCP super-frames with a partial
  // checksum; src/offload/gso.ts segments them. TUN_F_TSO_ECN stays off, so the
  // kernel segments CWR-marked super-frames itself. With vnetHdr but no TSO the
  // offloads are reset to 0: a persistent TAP keeps them across re-attaches.
  // As wireguard-go does: when the kernel refuses the TSO offloads, fall back
  // to none and report why (*tso false, *tsoErrno).
  *tsoErrno = 0;
  if (vnetHdr) {
    *stage = "TUNSETOFFLOAD";
    if (*tso && ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) < 0) {
      *tsoErrno = errno;
      *tso = false;
    }
    if (!*tso && ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
      int err = errno;
      close(fd);
      return -err;
    }
  }
  realName->assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  return fd;
}

// tso: TUNSETOFFLOAD(CSUM | TSO4) is on. Reported back so src/io/tap.ts only
// segments when the addon it loaded really turned TSO on (an older build
// ignores the flag and would hand over plain frames).
static Napi::Value TapResult(Napi::Env env, int fd, const std::string& name, bool tso, int tsoErrno) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, fd));
  o.Set("name", Napi::String::New(env, name));
  o.Set("tso", Napi::Boolean::New(env, tso));
  o.Set("tsoErrno", Napi::Number::New(env, tsoErrno));
  return o;
}

// openTap(name, { persist?, multiQueue?, vnetHdr?, tso? }) -> { fd, name }
static Napi::Value OpenTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetIfName(env, info[0], true, &name)) return env.Undefined();
  bool persist = false;
  bool vnetHdr = false;
  bool tso = false;
  bool multiQueue = false;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsObject()) {
      Napi::TypeError::New(env, "flags must be an object").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object flags = info[1].As<Napi::Object>();
    persist = flags.Get("persist").ToBoolean().Value();
    vnetHdr = flags.Get("vnetHdr").ToBoolean().Value();
    tso = flags.Get("tso").ToBoolean().Value();
    multiQueue = flags.Get("multiQueue").ToBoolean().Value();
  }
  std::string real;
  std::string stage;
  if (tso && !vnetHdr) {
    Napi::TypeError::New(env, "tso needs vnetHdr").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int tsoErrno = 0;
  int fd = AttachTap(name, vnetHdr, multiQueue, &tso, &tsoErrno, &real, &stage);
  if (fd < 0) {
    ErrnoError(env, std::string("openTap ") + (name.empty() ? "(any name)" : name) + ": " + stage, -fd)
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (persist && ioctl(fd, TUNSETPERSIST, 1) < 0) {
    int err = errno;
    close(fd);
    ErrnoError(env, "openTap " + real + ": TUNSETPERSIST", err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return TapResult(env, fd, real, tso, tsoErrno);
}

// openTapInNetns(netnsPath, name, { vnetHdr?, tso?, multiQueue? }) -> { fd, name }
//
// A persistent TAP that lives in a container's namespace can only be found by
// name from inside that namespace: /dev/net/tun binds to the opener's netns at
// open(). setns() changes only the calling thread, so it runs on a throwaway
// std::thread and the event loop thread never leaves its namespace.
static Napi::Value OpenTapInNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    Napi::TypeError::New(env, "netnsPath must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name;
  if (!GetIfName(env, info[1], false, &name)) return env.Undefined();
  bool vnetHdr = false;
  bool tso = false;
  bool multiQueue = false;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsObject()) {
      Napi::TypeError::New(env, "flags must be an object").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    vnetHdr = info[2].As<Napi::Object>().Get("vnetHdr").ToBoolean().Value();
    tso = info[2].As<Napi::Object>().Get("tso").ToBoolean().Value();
    multiQueue = info[2].As<Napi::Object>().Get("multiQueue").ToBoolean().Value();
  }
  if (tso && !vnetHdr) {
    Napi::TypeError::New(env, "tso needs vnetHdr").ThrowAsJavaScriptException();
    return env.Undefined();
  }

  int fd = -1;
  int err = 0;
  std::string stage;
  std::string real;
  int tsoErrno = 0;
  std::thread worker([&]() {
    stage = "open namespace";
    int nsfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
      err = errno;
      return;
    }
    stage = "setns";
    if (setns(nsfd, CLONE_NEWNET) < 0) {
      err = errno;
      close(nsfd);
      return;
    }
    close(nsfd);
    // Without this check TUNSETIFF would quietly create a new TAP inside the
    // container instead of re-attaching the one that is supposed to be there.
    stage = "find device";
    if (if_nametoindex(name.c_str()) == 0) {
      err = ENODEV;
      return;
    }
    int r = AttachTap(name, vnetHdr, multiQueue, &tso, &tsoErrno, &real, &stage);
    if (r < 0) {
      err = -r;
      return;
    }
    fd = r;
    // The thread exits now; its namespace dies with it. No setns back needed.
  });
  worker.join();
  if (fd < 0) {
    ErrnoError(env, "openTapInNetns " + path + " " + name + ": " + stage, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return TapResult(env, fd, real, tso, tsoErrno);
}

// setPersist(fd, on)
static Napi::Value SetPersist(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(env, info[0], &fd)) return env.Undefined();
  bool on = info[1].ToBoolean().Value();
  if (ioctl(fd, TUNSETPERSIST, on ? 1 : 0) < 0) {
    ErrnoError(env, "setPersist: TUNSETPERSIST", errno).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// closeFd(fd)
static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!GetFd(env, info[0], &fd)) return env.Undefined();
  // Linux releases the fd even when close() reports EINTR; never retry.
  if (close(fd) < 0 && errno != EINTR) ErrnoError(env, "close", errno).ThrowAsJavaScriptException();
  return env.Undefined();
}

// ifNameToIndex(name) -> ifindex, or 0 when there is no such interface here.
static Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetIfName(env, info[0], false, &name)) return env.Undefined();
  return Napi::Number::New(env, if_nametoindex(name.c_str()));
}

// Checks shared by writeFrames/sendBatch: count and start within every array.
bool CheckBatchArgs(Napi::Env env, const Napi::CallbackInfo& info, size_t countArg, size_t offsLen,
                    size_t lensLen, uint32_t* count, uint32_t* start) {
  if (!GetIndex(env, info[countArg], "count", count)) return false;
  *start = 0;
  if (info.Length() > countArg + 1 && !info[countArg + 1].IsUndefined() &&
      !GetIndex(env, info[countArg + 1], "start", start))
    return false;
  if (*count > offsLen || *count > lensLen) {
    Napi::RangeError::New(env, "count is larger than the offsets/lengths arrays").ThrowAsJavaScriptException();
    return false;
  }
  if (*start > *count) {
    Napi::RangeError::New(env, "start is past count").ThrowAsJavaScriptException();
    return false;
  }
  return true;
}

// writeFrames(fd, slab, offs, lens, count, start = 0) -> n
// Writes frames start..count-1 with one write() each. Returns how many went
// (fewer when the TAP's queue is full: EAGAIN). If frame `start` itself fails
// with another error, returns -errno so the caller can skip that frame (EINVAL:
// shorter than an Ethernet header, bytes outside the slab) or retire the
// device (EBADFD/ENODEV/EIO: its namespace was deleted).
static Napi::Value WriteFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t* slab;
  size_t slabLen, offsLen, lensLen;
  uint32_t *offs, *lens, count, start;
  if (!GetFd(env, info[0], &fd) || !GetBytes(env, info[1], "slab", &slab, &slabLen) ||
      !GetU32s(env, info[2], "offs", &offs, &offsLen) || !GetU32s(env, info[3], "lens", &lens, &lensLen) ||
      !CheckBatchArgs(env, info, 4, offsLen, lensLen, &count, &start))
    return env.Undefined();
  uint32_t k = start;
  int err = 0;
  while (k < count) {
    uint64_t end = static_cast<uint64_t>(offs[k]) + lens[k];
    if (end > slabLen) {
      err = EINVAL;
      break;
    }
    ssize_t r = write(fd, slab + offs[k], lens[k]);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    k++;
  }
  if (err != 0 && k == start) return Napi::Number::New(env, -err);
  return Napi::Number::New(env, k - start);
}

// One write holds at most this many pieces: the header piece plus one per
// coalesced segment. gro.ts caps a super-frame at 64 segments (Vnet.MAX_SEGS,
// whatever the batch); the limit is far below the kernel's UIO_MAXIOV (1024).
constexpr uint32_t kMaxIov = 128;

// writeVnet(fd, slab, hdrs, pkts, iovs, npkts, start = 0) -> n
//
// For a TAP opened with vnetHdr. Packet p is described by pkts[4p..4p+3] =
// [hdrOff, hdrLen, iovFirst, iovCount]: one writev() of hdrs[hdrOff, +hdrLen)
// (the virtio_net_hdr, and for a super-frame the rewritten Ethernet/IP/TCP
// headers too) followed by slab pieces iovs[2k] (offset), iovs[2k+1] (length)
// for k in iovFirst..iovFirst+iovCount-1. Gathering from the slab means the
// payloads are never copied in user space; the kernel copies them once into
// the skb, as it does for any write. Returns packets written (stops at EAGAIN)
// or -errno when packet `start` itself failed, like writeFrames.
static Napi::Value WriteVnet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  uint8_t *slab, *hdrs;
  size_t slabLen, hdrsLen, pktsLen, iovsLen;
  uint32_t *pkts, *iovs, npkts, start = 0;
  if (!GetFd(env, info[0], &fd) || !GetBytes(env, info[1], "slab", &slab, &slabLen) ||
      !GetBytes(env, info[2], "hdrs", &hdrs, &hdrsLen) || !GetU32s(env, info[3], "pkts", &pkts, &pktsLen) ||
      !GetU32s(env, info[4], "iovs", &iovs, &iovsLen) || !GetIndex(env, info[5], "npkts", &npkts))
    return env.Undefined();
  if (info.Length() > 6 && !info[6].IsUndefined() && !GetIndex(env, info[6], "start", &start)) return env.Undefined();
  if (static_cast<uint64_t>(npkts) * 4 > pktsLen) {
    Napi::RangeError::New(env, "npkts is larger than the pkts array (4 words per packet)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (start > npkts) {
    Napi::RangeError::New(env, "start is past npkts").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct iovec iov[kMaxIov + 1];
  uint32_t p = start;
  int err = 0;
  while (p < npkts) {
    const uint32_t* d = pkts + static_cast<size_t>(p) * 4;
    const uint32_t hdrOff = d[0], hdrLen = d[1], first = d[2], n = d[3];
    // Every piece is checked against its buffer: a bad plan is EINVAL for
    // that packet (counted by the caller), never a read outside the arrays.
    bool ok = static_cast<uint64_t>(hdrOff) + hdrLen <= hdrsLen && n <= kMaxIov &&
              (static_cast<uint64_t>(first) + n) * 2 <= iovsLen;
    if (ok) {
      iov[0].iov_base = hdrs + hdrOff;
      iov[0].iov_len = hdrLen;
      for (uint32_t k = 0; k < n; k++) {
        const uint32_t off = iovs[(first + k) * 2], len = iovs[(first + k) * 2 + 1];
        if (static_cast<uint64_t>(off) + len > slabLen) {
          ok = false;
          break;
        }
        iov[k + 1].iov_base = slab + off;
        iov[k + 1].iov_len = len;
      }
    }
    if (!ok) {
      err = EINVAL;
      break;
    }
    ssize_t r = writev(fd, iov, static_cast<int>(n + 1));
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    p++;
  }
  if (err != 0 && p == start) return Napi::Number::New(env, -err);
  return Napi::Number::New(env, p - start);
}

// ---------------------------------------------------------------------------
// TapReader

Napi::Function TapReader::Define(Napi::Env env) {
  return DefineClass(env, "TapReader",
                     {InstanceMethod<&TapReader::Start>("start"), InstanceMethod<&TapReader::Stop>("stop"),
                      InstanceMethod<&TapReader::Close>("close"),
                      InstanceMethod<&TapReader::Counters>("counters")});
}

// new TapReader(fd, slab, slotSize, headroom, maxFrames, lengths, onBatch, onError, vnetHdrLen = 0,
//               rawBuf?, rawMeta?, drops?, oversizeIdx?, badVnetIdx?)
//
// vnetHdrLen (0, 10 or 12) is the virtio_net_hdr the TAP puts in front of
// each frame (IFF_VNET_HDR). It is read into the last bytes of the headroom,
// so the Ethernet frame still starts at `headroom` and lengths[] exclude it.
TapReader::TapReader(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TapReader>(info) {
  Napi::Env env = info.Env();
  size_t slabLen, lengthsLen;
  uint32_t slot, headroom, maxFrames;
  if (!GetFd(env, info[0], &fd_) || !GetBytes(env, info[1], "slab", &slab_, &slabLen) ||
      !GetIndex(env, info[2], "slotSize", &slot) || !GetIndex(env, info[3], "headroom", &headroom) ||
      !GetIndex(env, info[4], "maxFrames", &maxFrames) || !GetU32s(env, info[5], "lengths", &lengths_, &lengthsLen))
    return;
  if (!info[6].IsFunction() || !info[7].IsFunction()) {
    Napi::TypeError::New(env, "onBatch and onError must be functions").ThrowAsJavaScriptException();
    return;
  }
  uint32_t vnet = 0;
  if (info.Length() > 8 && !info[8].IsUndefined() && !GetIndex(env, info[8], "vnetHdrLen", &vnet)) return;
  if ((vnet != 0 && vnet != 10 && vnet != 12) || vnet > headroom) {
    Napi::RangeError::New(env, "TapReader: vnetHdrLen must be 0, 10 or 12 and fit in the headroom")
        .ThrowAsJavaScriptException();
    return;
  }
  vnetHdrLen_ = vnet;
  // Raw mode (TSO): raw packets (virtio_net_hdr + frame, up to 64 KiB) go
  // into rawBuf back to back; rawMeta[2k], [2k+1] = offset of packet k's
  // virtio_net_hdr, bytes read (header included). JS segments them into the
  // slab (src/offload/gso.ts), so the slab arguments are only checked here.
  if (info.Length() > 10 && !info[9].IsUndefined()) {
    size_t metaLen;
    if (!GetBytes(env, info[9], "rawBuf", &raw_, &rawLen_) || !GetU32s(env, info[10], "rawMeta", &rawMeta_, &metaLen))
      return;
    if (vnet == 0 || rawLen_ < kRawReserve || metaLen < static_cast<size_t>(maxFrames) * 2) {
      Napi::RangeError::New(env, "TapReader: raw mode needs vnetHdrLen, a rawBuf of at least 65600 bytes and 2 * maxFrames rawMeta words")
          .ThrowAsJavaScriptException();
      return;
    }
    rawRef_ = Napi::Persistent(info[9].As<Napi::Object>());
    rawMetaRef_ = Napi::Persistent(info[10].As<Napi::Object>());
  }
  if (headroom >= slot || maxFrames == 0 || maxFrames > kMaxBatch ||
      static_cast<uint64_t>(maxFrames) * slot > slabLen || lengthsLen < maxFrames) {
    Napi::RangeError::New(env, "TapReader: need headroom < slotSize, 1 <= maxFrames <= 1024, a slab of maxFrames * slotSize bytes and maxFrames lengths")
        .ThrowAsJavaScriptException();
    return;
  }
  // Drop counters: (drops, oversizeIdx, badVnetIdx) after rawMeta.
  uint32_t idx[2];
  if (!InitDrops(env, info, 11, idx, 2)) return;
  oversizeIdx_ = idx[0];
  badVnetIdx_ = idx[1];
  slot_ = slot;
  headroom_ = headroom;
  maxFrames_ = maxFrames;
  slabRef_ = Napi::Persistent(info[1].As<Napi::Object>());
  lengthsRef_ = Napi::Persistent(info[5].As<Napi::Object>());
  onBatch_ = Napi::Persistent(info[6].As<Napi::Function>());
  onError_ = Napi::Persistent(info[7].As<Napi::Function>());
  InitPoll(env, fd_, "silkworm:TapReader");
}

TapReader::~TapReader() {
  active_ = false;  // no virtual Release() from a destructor
  ClosePoll();
}

Napi::Value TapReader::Start(const Napi::CallbackInfo& info) {
  StartPoll(info.Env());
  return info.Env().Undefined();
}
Napi::Value TapReader::Stop(const Napi::CallbackInfo& info) {
  StopPoll();
  return info.Env().Undefined();
}
// Must run before the fd is closed: libuv unregisters the fd from epoll on
// stop, and doing that after the number was reused would unregister someone
// else's descriptor.
Napi::Value TapReader::Close(const Napi::CallbackInfo& info) {
  ClosePoll();
  return info.Env().Undefined();
}
Napi::Value TapReader::Counters(const Napi::CallbackInfo& info) {
  Napi::Object o = BaseCounters(info.Env());
  o.Set("badVnet", badVnet_);
  o.Set("superFrames", superFrames_);
  return o;
}

// Raw mode: each read() gets a whole packet, up to kRawReserve bytes, at the
// next position in rawBuf where the frame (after the virtio_net_hdr) starts at
// the same offset mod 8 as a slot's frame, so gso.ts can copy and checksum
// payload with aligned 32-bit words. Stops when rawBuf cannot take another
// 64 KiB packet or maxFrames packets were read.
uint32_t TapReader::ReadRaw(int* err) {
  struct iovec iov[2];
  iov[1].iov_base = &sink_;
  iov[1].iov_len = 1;
  const size_t skew = (headroom_ - vnetHdrLen_) & 7;
  size_t pos = 0;
  uint32_t n = 0;
  while (n < maxFrames_) {
    size_t off = ((pos + 7) & ~static_cast<size_t>(7)) + skew;
    if (off + kRawReserve > rawLen_) break;
    iov[0].iov_base = raw_ + off;
    iov[0].iov_len = kRawReserve;
    ssize_t r = readv(fd_, iov, 2);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *err = errno;
      break;
    }
    if (static_cast<size_t>(r) > kRawReserve) {
      oversize_++;
      CountDrop(oversizeIdx_);
      continue;
    }
    if (r == 0) break;
    if (static_cast<size_t>(r) <= vnetHdrLen_) {
      badVnet_++;
      CountDrop(badVnetIdx_);
      continue;
    }
    if (raw_[off + 1] != 0) superFrames_++;
    rawMeta_[2 * n] = static_cast<uint32_t>(off);
    rawMeta_[2 * n + 1] = static_cast<uint32_t>(r);
    n++;
    pos = off + static_cast<size_t>(r);
  }
  return n;
}

uint32_t TapReader::ReadBatch(int* err) {
  if (raw_ != nullptr) return ReadRaw(err);
  const size_t cap = slot_ - headroom_;
  // tun_put_user() copies what fits and returns the bytes copied, so a plain
  // read() cannot tell a frame that filled the slot exactly from one that was
  // cut short (measured: a 142-byte frame read into 64 bytes returns 64).
  // A second, one-byte iovec past the slot makes the difference visible.
  struct iovec iov[2];
  iov[1].iov_base = &sink_;
  iov[1].iov_len = 1;
  uint32_t n = 0;
  while (n < maxFrames_) {
    iov[0].iov_base = slab_ + static_cast<size_t>(n) * slot_ + headroom_ - vnetHdrLen_;
    iov[0].iov_len = cap + vnetHdrLen_;
    ssize_t r = readv(fd_, iov, 2);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *err = errno;
      break;
    }
    // Longer than the slot: drop (counted) and reuse the slot. r == 0 cannot
    // be a frame either.
    if (static_cast<size_t>(r) > cap + vnetHdrLen_) {
      oversize_++;
      CountDrop(oversizeIdx_);
      continue;
    }
    if (r == 0) break;
    if (vnetHdrLen_ != 0) {
      // Without TUNSETOFFLOAD the kernel never sends GSO or checksum-partial
      // frames (tun_net_fix_features masks them off), so anything but flags
      // 0 or DATA_VALID (2) with gso_type NONE is unexpected: drop, count.
      const uint8_t* h = slab_ + static_cast<size_t>(n) * slot_ + headroom_ - vnetHdrLen_;
      if (static_cast<size_t>(r) <= vnetHdrLen_ || (h[0] & ~2u) != 0 || h[1] != 0) {
        badVnet_++;
        CountDrop(badVnetIdx_);
        continue;
      }
      r -= vnetHdrLen_;
    }
    lengths_[n++] = static_cast<uint32_t>(r);
  }
  return n;
}

void TapReader::OnFatal(Napi::Env env, int err) { CallJs(env, onError_, Napi::Number::New(env, err)); }

}  // namespace silkworm

namespace silkworm {

void InitTap(Napi::Env env, Napi::Object exports) {
  exports.Set("openTap", Napi::Function::New<OpenTap>(env, "openTap"));
  exports.Set("openTapInNetns", Napi::Function::New<OpenTapInNetns>(env, "openTapInNetns"));
  exports.Set("setPersist", Napi::Function::New<SetPersist>(env, "setPersist"));
  exports.Set("closeFd", Napi::Function::New<CloseFd>(env, "closeFd"));
  exports.Set("ifNameToIndex", Napi::Function::New<IfNameToIndex>(env, "ifNameToIndex"));
  exports.Set("writeFrames", Napi::Function::New<WriteFrames>(env, "writeFrames"));
  exports.Set("writeVnet", Napi::Function::New<WriteVnet>(env, "writeVnet"));
  exports.Set("TapReader", TapReader::Define(env));
}

}  // namespace silkworm
