// Shared plumbing for the silkworm addon: argument checks, errno errors, and
// the libuv-driven reader skeleton used by TapReader and UdpReceiver.
//
// What the addon does: syscalls (TAP open/ioctl, batched read/readv/writev,
// raw-socket sendmmsg, UDP recvmmsg, UDP GSO sendmmsg, getsockopt probes) and
// byte primitives (copies into slab slots, splitting a UDP_GRO message into
// datagrams at the kernel's gso_size, counting drops at indexes it is given,
// and bytes.cc's copySum/sumRanges: copies and one's complement sums over
// ranges TypeScript describes, called once per batch).
// Forwarding, policy and encapsulation decisions are all made in TypeScript.
//
// The header fields it does read, and why:
//   - tap.cc TapReader: the virtio_net_hdr's flags and gso_type bytes, to drop
//     (and count) a frame with a header the TAP was not asked to produce, and
//     to count super-frames in TSO mode. It never reads the Ethernet frame.
//   - udp.cc UdpGsoSender: the outer IPv4 and UDP headers the TypeScript
//     pipeline built (src/dataplane/encap.ts), to decide which packets can
//     leave through a UDP socket byte-identical (Eligible: IHL 5, TOS 0, no
//     fragment, TTL 64, protocol UDP, our source address, consistent lengths),
//     to group consecutive same-flow datagrams of one size (GroupLen), and to
//     take the destination address/port and source port a UDP socket needs.
//     Anything it does not recognise keeps its exact bytes on the raw path.
//   - udp.cc UdpReceiver: no header fields; UDP_GRO's cmsg gives the split size.
//   - steer.cc: none itself. It builds two kernel programs (the TAP's eBPF
//     steering program, the UDP group's classic BPF program) that read the
//     inner Ethernet type, IPv4 addresses, fragment field and protocol, TCP
//     ports and ICMP error type and quoted header, to pick a worker's queue or
//     socket; the hash is the one in src/dataplane/steer.ts.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace silkworm {

// wireguard-go settles on 128 per call, as the cell does (BATCH_SIZE). The raw
// sender's scratch arrays bound one sendmmsg() call; callers loop for more.
constexpr uint32_t kMaxBatch = 1024;

// Frames per wakeup = kMaxRounds * maxFrames at most, then we yield to the
// loop so a flood on one TAP cannot starve timers, the other TAPs and the
// control socket.
constexpr int kMaxRounds = 8;

// A JS Error for a failed syscall: message "<what>: <strerror>", plus `code`
// ("ENODEV") and `errno` (positive) the way Node's own errors carry them.
Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err);

// Throws and returns false when `v` is not the expected typed array.
bool GetBytes(Napi::Env env, const Napi::Value& v, const char* name, uint8_t** data, size_t* len);
// Payload pieces kept outside the slab (zero-copy TSO segments): packet k's
// bytes are slab[offs[k], +lens[k]-xlens[k]) followed by buf[xoffs[k],
// +xlens[k]); xlens[k] == 0 (or no buf) means the packet is whole in the slab.
struct ExtPieces {
  uint8_t* buf = nullptr;
  size_t len = 0;
  uint32_t* offs = nullptr;
  uint32_t* lens = nullptr;
  size_t n = 0;
  // Length of packet k's piece outside the slab (0 when none).
  uint32_t At(uint32_t k) const { return buf != nullptr && k < n ? lens[k] : 0; }
};
// Optional arguments i, i+1, i+2 = (buf, xoffs, xlens); absent or undefined: no pieces.
// Returns false (with a JS exception) when present but malformed.
bool GetExt(Napi::Env env, const Napi::CallbackInfo& info, size_t i, ExtPieces* ext);

bool GetU32s(Napi::Env env, const Napi::Value& v, const char* name, uint32_t** data, size_t* len);
bool GetU16s(Napi::Env env, const Napi::Value& v, const char* name, uint16_t** data, size_t* len);
bool GetF64s(Napi::Env env, const Napi::Value& v, const char* name, double** data, size_t* len);
// Non-negative integer argument (throws a TypeError otherwise).
bool GetIndex(Napi::Env env, const Napi::Value& v, const char* name, uint32_t* out);
bool GetFd(Napi::Env env, const Napi::Value& v, int* out);

// Adaptive busy polling (one event loop per process: the cell's). After a
// reader drained traffic the loop keeps polling without sleeping for a window
// (a uv_idle handle is active: libuv then polls with timeout 0), so the next
// packet — a reply, the next request — is picked up without a wake-up; once a
// window passes with no traffic the handle stops and the loop sleeps in
// epoll_wait again. Nothing spins while idle; each spin iteration calls
// sched_yield() so a runnable peer (the container, the other cell) on a busy
// machine gets the core first. windowUs 0 turns it off (the cell's default:
// on a loaded 2-core machine it made latency worse, see the README).
void SetBusyPoll(uint32_t windowUs);
void BusyPollKick();
void InitBusyPoll(Napi::Env env, Napi::Object exports);

// The readers share one shape: a uv_poll_t on a non-blocking fd; on readable,
// drain up to kMaxRounds batches into the caller's slab and make ONE call into
// JS per batch. Subclasses implement ReadBatch().
class PollReader {
 public:
  virtual ~PollReader();

 protected:
  // Returns frames placed in the slab (0..maxFrames). Sets *err to an errno
  // that means "this fd is finished" (the reader then stops and reports it),
  // or leaves it 0.
  virtual uint32_t ReadBatch(int* err) = 0;
  // Called once with a fatal errno, after polling stopped (default: nothing).
  virtual void OnFatal(Napi::Env env, int err);
  // libuv stops a poll handle on POLLERR. For a TAP that means the device is
  // gone; a UDP socket merely had a pending error (read and cleared by the next
  // recvmmsg), so it resumes polling.
  virtual bool FatalOnPollError() const = 0;
  // The JS object that receives callbacks (the ObjectWrap's value).
  virtual Napi::Object Self() = 0;
  virtual void Retain() = 0;   // keep the JS object alive while polling
  virtual void Release() = 0;

  bool InitPoll(Napi::Env env, int fd, const char* resourceName);
  bool StartPoll(Napi::Env env);
  void StopPoll();
  void ClosePoll();
  // Calls fn(args...) with an async context so process.nextTick and promise
  // jobs queued by the callback run right after it, as for any I/O callback.
  // A throw is reported as an uncaught exception (the callback must not throw).
  void CallJs(Napi::Env env, Napi::FunctionReference& fn, napi_value arg);
  // The counters every reader keeps, as a new JS object; subclasses add theirs.
  Napi::Object BaseCounters(Napi::Env env) const;
  // Optional shared drop counters: a JS Float64Array (the cell's drop-reason
  // table) and, per event this reader drops a frame for, the index to add 1
  // at. Which reason an index stands for is decided in TypeScript; the reader
  // only counts. Reads args[first], [first+1]... as (table, index...).
  bool InitDrops(Napi::Env env, const Napi::CallbackInfo& info, size_t first, uint32_t* idx, size_t nidx);
  void CountDrop(uint32_t idx) {
    if (idx < dropsLen_) drops_[idx] += 1;
  }

  napi_env env_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  Napi::AsyncContext* asyncCtx_ = nullptr;
  Napi::FunctionReference onBatch_;
  uint32_t maxFrames_ = 0;
  bool active_ = false;
  bool closed_ = false;
  // Counters (read with counters() from JS; never per-packet JS work).
  double wakeups_ = 0, batches_ = 0, frames_ = 0, oversize_ = 0, errors_ = 0;
  int lastErrno_ = 0;
  double* drops_ = nullptr;
  size_t dropsLen_ = 0;
  Napi::ObjectReference dropsRef_;
  // Index into drops_ for a frame longer than a slot (out of range: not counted there).
  uint32_t oversizeIdx_ = UINT32_MAX;

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events);
  void Drain(int status);
};

}  // namespace silkworm
