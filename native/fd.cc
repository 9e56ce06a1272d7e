#ifdef __linux__

#include <fcntl.h>

#include "errors.h"
#include "ops.h"

namespace reuseport {

// dup(fd) -> a new close-on-exec fd for the same open socket. The supervisor
// serves an orphaned slot's queue through a duplicate, so that closing that
// server later leaves the slot's own fd, and its queue, open.
Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) throw ErrnoError(env, errno, "dup");
  return Napi::Number::New(env, copy);
}

// setCloexec(fd): a worker's inherited fds (slot listeners, control channel,
// IPC) arrive without FD_CLOEXEC, since dup2() in the spawning child clears
// it, and libuv closes nothing else on spawn: without this every process the
// app spawns would hold the slot's listening socket.
Napi::Value SetCloexec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) throw ErrnoError(env, errno, "fcntl");
  return env.Undefined();
}

}  // namespace reuseport

#endif  // __linux__
