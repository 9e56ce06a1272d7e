#ifdef __linux__

#include <sys/wait.h>

#include <cerrno>
#include <unordered_set>

#include "errors.h"
#include "ops.h"

namespace reuseport {

// reapOrphans(keep) -> count. As PID 1 in a container the supervisor inherits
// every orphaned process, and nobody else will wait() for them. Reap exited
// children that are not in `keep` (our workers, which libuv reaps itself and
// must still see exit). WNOWAIT peeks without reaping, so a worker's status
// is never stolen from libuv; a worker first in line stops the loop until
// libuv has reaped it.
Napi::Value ReapOrphans(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"keep\" argument must be an array of pids");
  }
  Napi::Array array = info[0].As<Napi::Array>();
  std::unordered_set<pid_t> keep;
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value v = array.Get(i);
    if (!v.IsNumber()) throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"keep\" argument must be an array of pids");
    keep.insert(static_cast<pid_t>(v.As<Napi::Number>().Int32Value()));
  }
  int reaped = 0;
  for (;;) {
    siginfo_t si{};
    if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == ECHILD) break;
      throw ErrnoError(env, errno, "waitid");
    }
    if (si.si_pid == 0 || keep.count(si.si_pid) > 0) break;
    if (waitpid(si.si_pid, nullptr, WNOHANG) == si.si_pid) reaped++;
  }
  return Napi::Number::New(env, reaped);
}

}  // namespace reuseport

#endif  // __linux__
