#ifdef __linux__

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <string>

#include "errors.h"
#include "ops.h"

namespace reuseport {

// setParentDeathSignal(signal) -> the parent's pid, read after the signal is
// set. PR_SET_PDEATHSIG (prctl(2)) has the kernel send `signal` to this
// process when the thread that forked it exits; 0 clears it. A parent that
// died before the call sends nothing, so the caller compares the pid returned
// here with the parent it expects: read after prctl(), a death after the read
// is covered by the signal, one before shows as a different pid (1, or a
// subreaper). Node forks from its main thread (uv_spawn on the loop), so the
// parent thread lives as long as the parent process.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"signal\" argument must be of type number");
  }
  double value = info[0].As<Napi::Number>().DoubleValue();
  // Range first: casting an out-of-range double to int is undefined.
  if (!(value >= 0 && value <= SIGRTMAX) || value != static_cast<double>(static_cast<int>(value))) {
    throw ArgError(env, "ERR_OUT_OF_RANGE", "The value of \"signal\" is out of range. It must be an integer from 0 to " +
                                         std::to_string(SIGRTMAX) + ". Received " + info[0].ToString().Utf8Value());
  }
  if (prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(value), 0, 0, 0) != 0) {
    throw ErrnoError(env, errno, "prctl");
  }
  return Napi::Number::New(env, getppid());
}

}  // namespace reuseport

#endif  // __linux__
