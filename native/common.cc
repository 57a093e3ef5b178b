#include "common.h"

#include <sched.h>
#include <string.h>

namespace silkworm {

Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err) {
  const char* name = strerrorname_np(err);  // glibc >= 2.32
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

static bool GetTyped(Napi::Env env, const Napi::Value& v, const char* name, napi_typedarray_type want,
                     const char* typeName, void** data, size_t* len) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != want) {
    Napi::TypeError::New(env, std::string(name) + " must be a " + typeName).ThrowAsJavaScriptException();
    return false;
  }
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, data, &ab, &off) != napi_ok) {
    Napi::TypeError::New(env, std::string(name) + " could not be read").ThrowAsJavaScriptException();
    return false;
  }
  // A detached buffer has no data; treat it as empty so bounds checks fail.
  if (*data == nullptr) *len = 0;
  return true;
}

bool GetBytes(Napi::Env env, const Napi::Value& v, const char* name, uint8_t** data, size_t* len) {
  return GetTyped(env, v, name, napi_uint8_array, "Uint8Array", reinterpret_cast<void**>(data), len);
}
bool GetU32s(Napi::Env env, const Napi::Value& v, const char* name, uint32_t** data, size_t* len) {
  return GetTyped(env, v, name, napi_uint32_array, "Uint32Array", reinterpret_cast<void**>(data), len);
}

bool GetExt(Napi::Env env, const Napi::CallbackInfo& info, size_t i, ExtPieces* ext) {
  *ext = ExtPieces();
  if (info.Length() <= i || info[i].IsUndefined() || info[i].IsNull()) return true;
  size_t no = 0, nl = 0;
  if (!GetBytes(env, info[i], "ext", &ext->buf, &ext->len) || !GetU32s(env, info[i + 1], "extOffs", &ext->offs, &no) ||
      !GetU32s(env, info[i + 2], "extLens", &ext->lens, &nl))
    return false;
  ext->n = no < nl ? no : nl;
  return true;
}
bool GetU16s(Napi::Env env, const Napi::Value& v, const char* name, uint16_t** data, size_t* len) {
  return GetTyped(env, v, name, napi_uint16_array, "Uint16Array", reinterpret_cast<void**>(data), len);
}

bool GetF64s(Napi::Env env, const Napi::Value& v, const char* name, double** data, size_t* len) {
  return GetTyped(env, v, name, napi_float64_array, "Float64Array", reinterpret_cast<void**>(data), len);
}

bool GetIndex(Napi::Env env, const Napi::Value& v, const char* name, uint32_t* out) {
  if (!v.IsNumber()) {
    Napi::TypeError::New(env, std::string(name) + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    Napi::TypeError::New(env, std::string(name) + " must be an integer from 0 to 2^32-1")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

bool GetFd(Napi::Env env, const Napi::Value& v, int* out) {
  uint32_t fd;
  if (!GetIndex(env, v, "fd", &fd)) return false;
  if (fd > 0x7fffffff) {
    Napi::TypeError::New(env, "fd is out of range").ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int>(fd);
  return true;
}

// ---------------------------------------------------------------------------
// PollReader

PollReader::~PollReader() {
  // Normally close() ran already. If the object is collected without it, stop
  // the handle here; libuv frees it in the close callback.
  ClosePoll();
  delete asyncCtx_;
  asyncCtx_ = nullptr;
}

void PollReader::OnFatal(Napi::Env, int) {}

Napi::Object PollReader::BaseCounters(Napi::Env env) const {
  Napi::Object o = Napi::Object::New(env);
  o.Set("wakeups", wakeups_);
  o.Set("batches", batches_);
  o.Set("frames", frames_);
  o.Set("oversize", oversize_);
  o.Set("errors", errors_);
  o.Set("lastErrno", lastErrno_);
  return o;
}

bool PollReader::InitDrops(Napi::Env env, const Napi::CallbackInfo& info, size_t first, uint32_t* idx, size_t nidx) {
  if (info.Length() <= first || info[first].IsUndefined()) return true;
  if (!GetF64s(env, info[first], "drops", &drops_, &dropsLen_)) return false;
  for (size_t k = 0; k < nidx; k++) {
    idx[k] = UINT32_MAX;
    if (info.Length() > first + 1 + k && !info[first + 1 + k].IsUndefined() &&
        !GetIndex(env, info[first + 1 + k], "drop index", &idx[k]))
      return false;
  }
  dropsRef_ = Napi::Persistent(info[first].As<Napi::Object>());
  return true;
}

bool PollReader::InitPoll(Napi::Env env, int fd, const char* resourceName) {
  env_ = env;
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Napi::Error::New(env, "could not get the event loop").ThrowAsJavaScriptException();
    return false;
  }
  poll_ = new uv_poll_t;
  int r = uv_poll_init(loop, poll_, fd);
  if (r != 0) {
    delete poll_;
    poll_ = nullptr;
    ErrnoError(env, std::string(resourceName) + ": uv_poll_init", -r).ThrowAsJavaScriptException();
    return false;
  }
  poll_->data = this;
  asyncCtx_ = new Napi::AsyncContext(env, resourceName);
  return true;
}

bool PollReader::StartPoll(Napi::Env env) {
  if (closed_) {
    Napi::Error::New(env, "the reader is closed").ThrowAsJavaScriptException();
    return false;
  }
  if (active_) return true;
  int r = uv_poll_start(poll_, UV_READABLE, OnPoll);
  if (r != 0) {
    ErrnoError(env, "uv_poll_start", -r).ThrowAsJavaScriptException();
    return false;
  }
  active_ = true;
  Retain();
  return true;
}

void PollReader::StopPoll() {
  if (!active_) return;
  active_ = false;
  if (poll_ != nullptr) uv_poll_stop(poll_);
  Release();
}

void PollReader::ClosePoll() {
  if (closed_) return;
  StopPoll();
  closed_ = true;
  if (poll_ != nullptr) {
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }
}

void PollReader::CallJs(Napi::Env env, Napi::FunctionReference& fn, napi_value arg) {
  napi_value recv = Self();
  napi_value result;
  napi_status s = napi_make_callback(env, *asyncCtx_, recv, fn.Value(), 1, &arg, &result);
  if (s != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
}

void PollReader::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<PollReader*>(handle->data);
  if (self == nullptr) return;
  self->Drain(status);
}

// ---------------------------------------------------------------------------
// Adaptive busy polling (see common.h)

namespace {
struct BusyPoll {
  uv_loop_t* loop = nullptr;  // the loop the handle lives on (the first reader's)
  uv_idle_t* idle = nullptr;
  uint64_t windowNs = 0;
  uint64_t last = 0;  // uv_hrtime() of the last traffic
  double kicks = 0, spins = 0, windows = 0;
};
BusyPoll g_busy;

void OnBusyIdle(uv_idle_t* h) {
  g_busy.spins++;
  if (uv_hrtime() - g_busy.last > g_busy.windowNs) {
    uv_idle_stop(h);
    return;
  }
  // Spin politely: on a machine with fewer cores than busy threads, the peer that will answer (the
  // container, the other cell) needs this core more than the spin does.
  sched_yield();
}
}  // namespace

void SetBusyPoll(uint32_t windowUs) {
  g_busy.windowNs = static_cast<uint64_t>(windowUs) * 1000;
  if (g_busy.windowNs == 0 && g_busy.idle != nullptr) uv_idle_stop(g_busy.idle);
}

void BusyPollKick() {
  if (g_busy.windowNs == 0 || g_busy.loop == nullptr) return;
  g_busy.kicks++;
  g_busy.last = uv_hrtime();
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(g_busy.idle))) {
    g_busy.windows++;
    uv_idle_start(g_busy.idle, OnBusyIdle);
  }
}

// setBusyPoll(windowUs) -> undefined; busyPollCounters() -> { windowUs, kicks, spins, windows }
static Napi::Value SetBusyPollJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t us;
  if (!GetIndex(env, info[0], "windowUs", &us)) return env.Undefined();
  if (g_busy.loop == nullptr) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    g_busy.loop = loop;
    g_busy.idle = new uv_idle_t;
    uv_idle_init(loop, g_busy.idle);
    // Never keeps the process alive; an active idle handle still makes the loop poll without sleeping.
    uv_unref(reinterpret_cast<uv_handle_t*>(g_busy.idle));
  }
  SetBusyPoll(us);
  return env.Undefined();
}

static Napi::Value BusyPollCountersJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("windowUs", static_cast<double>(g_busy.windowNs / 1000));
  o.Set("kicks", g_busy.kicks);
  o.Set("spins", g_busy.spins);
  o.Set("windows", g_busy.windows);
  return o;
}

void InitBusyPoll(Napi::Env env, Napi::Object exports) {
  exports.Set("setBusyPoll", Napi::Function::New<SetBusyPollJs>(env, "setBusyPoll"));
  exports.Set("busyPollCounters", Napi::Function::New<BusyPollCountersJs>(env, "busyPollCounters"));
}

void PollReader::Drain(int status) {
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  wakeups_++;
  // While polling, Retain() holds a strong reference to our JS object, so
  // neither it nor this C++ object can be collected during the callbacks.
  if (status < 0) {
    // libuv stops the handle itself on POLLERR (uv__poll_io). Read once: a
    // TAP whose device is gone then tells us why (EBADFD).
    bool wasActive = active_;
    if (poll_ != nullptr) uv_poll_stop(poll_);
    int err = 0;
    uint32_t n = ReadBatch(&err);
    if (n > 0) {
      batches_++;
      frames_ += n;
      CallJs(env, onBatch_, Napi::Number::New(env, n));
      if (closed_ || !active_) return;
    }
    if (err == 0 && FatalOnPollError()) err = -status;
    if (err != 0) {
      lastErrno_ = err;
      errors_++;
      if (wasActive) {
        active_ = false;
        OnFatal(env, err);
        Release();
      }
      return;
    }
    errors_++;
    if (uv_poll_start(poll_, UV_READABLE, OnPoll) != 0 && active_) {
      active_ = false;
      Release();
    }
    return;
  }
  for (int round = 0; round < kMaxRounds; round++) {
    int err = 0;
    uint32_t n = ReadBatch(&err);
    if (n > 0) {
      batches_++;
      frames_ += n;
      BusyPollKick();
      CallJs(env, onBatch_, Napi::Number::New(env, n));
      // The callback may have stopped or closed us.
      if (closed_ || !active_) return;
    }
    if (err != 0) {
      lastErrno_ = err;
      errors_++;
      active_ = false;
      if (poll_ != nullptr) uv_poll_stop(poll_);
      OnFatal(env, err);
      Release();
      return;
    }
    if (n < maxFrames_) return;  // drained: wait for the next wakeup
  }
}

}  // namespace silkworm
