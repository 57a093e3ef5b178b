// lockFile(path) -> fd: open (creating, mode 0644) and take flock(LOCK_EX |
// LOCK_NB) on the file, for one cell per state directory. The lock lives as
// long as the fd: the kernel drops it when the process exits, however it
// exits (kill -9 included), so a stale lock file never blocks a restart.
// Throws an errno Error: EWOULDBLOCK (code "EAGAIN") means another process
// holds it.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "common.h"

namespace silkworm {

static Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    Napi::TypeError::New(env, "path must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    ErrnoError(env, "lockFile " + path + ": open", errno).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    close(fd);
    ErrnoError(env, "lockFile " + path + ": flock", err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

void InitLock(Napi::Env env, Napi::Object exports) {
  exports.Set("lockFile", Napi::Function::New<LockFile>(env, "lockFile"));
}

}  // namespace silkworm
