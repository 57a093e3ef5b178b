// TAP devices: open/attach (TUNSETIFF), batched reads driven by uv_poll, and
// batched writes. One write()/read() per frame is all a TAP offers without
// IFF_VNET_HDR; the batching here is about crossing into JS once per batch.
#include "tap.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
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

// open /dev/net/tun and attach it to TAP `name` in the calling thread's
// network namespace. Returns fd or -errno; *stage names the failing call.
static int AttachTap(const std::string& name, std::string* realName, const char** stage) {
  *stage = "open /dev/net/tun";
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  // IFF_NO_PI: frames without the 4-byte packet-information prefix, so slot
  // offsets line up with the Ethernet header. No IFF_VNET_HDR: MTU-sized
  // frames (DESIGN.md, the offloads-off comparison).
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  memcpy(ifr.ifr_name, name.data(), name.size());
  *stage = "TUNSETIFF";
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  realName->assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  return fd;
}

static Napi::Value TapResult(Napi::Env env, int fd, const std::string& name) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, fd));
  o.Set("name", Napi::String::New(env, name));
  return o;
}

// openTap(name, { persist?, multiQueue? }) -> { fd, name }
static Napi::Value OpenTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  if (!GetIfName(env, info[0], true, &name)) return env.Undefined();
  bool persist = false;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsObject()) {
      Napi::TypeError::New(env, "flags must be an object").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object flags = info[1].As<Napi::Object>();
    persist = flags.Get("persist").ToBoolean().Value();
    if (flags.Get("multiQueue").ToBoolean().Value()) {
      Napi::Error::New(env, "multi-queue TAPs are not supported").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  std::string real;
  const char* stage = "";
  int fd = AttachTap(name, &real, &stage);
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
  return TapResult(env, fd, real);
}

// openTapInNetns(netnsPath, name) -> { fd, name }
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

  int fd = -1;
  int err = 0;
  const char* stage = "";
  std::string real;
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
    int r = AttachTap(name, &real, &stage);
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
  return TapResult(env, fd, real);
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

// ---------------------------------------------------------------------------
// TapReader

Napi::Function TapReader::Define(Napi::Env env) {
  return DefineClass(env, "TapReader",
                     {InstanceMethod<&TapReader::Start>("start"), InstanceMethod<&TapReader::Stop>("stop"),
                      InstanceMethod<&TapReader::Close>("close"),
                      InstanceMethod<&TapReader::Counters>("counters")});
}

// new TapReader(fd, slab, slotSize, headroom, maxFrames, lengths, onBatch, onError)
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
  if (headroom >= slot || maxFrames == 0 || maxFrames > kMaxBatch ||
      static_cast<uint64_t>(maxFrames) * slot > slabLen || lengthsLen < maxFrames) {
    Napi::RangeError::New(env, "TapReader: need headroom < slotSize, 1 <= maxFrames <= 1024, a slab of maxFrames * slotSize bytes and maxFrames lengths")
        .ThrowAsJavaScriptException();
    return;
  }
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

uint32_t TapReader::ReadBatch(int* err) {
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
    iov[0].iov_base = slab_ + static_cast<size_t>(n) * slot_ + headroom_;
    iov[0].iov_len = cap;
    ssize_t r = readv(fd_, iov, 2);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *err = errno;
      break;
    }
    // Longer than the slot: drop (counted) and reuse the slot. r == 0 cannot
    // be a frame either.
    if (static_cast<size_t>(r) > cap) {
      oversize_++;
      continue;
    }
    if (r == 0) break;
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
  exports.Set("TapReader", TapReader::Define(env));
}

}  // namespace silkworm
