#include <napi.h>

#include "ops.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#ifdef __linux__
  exports.Set("supported", true);
  exports.Set("createListener", Napi::Function::New(env, reuseport::CreateListener, "createListener"));
  exports.Set("close", Napi::Function::New(env, reuseport::CloseFd, "close"));
  exports.Set("queueInfo", Napi::Function::New(env, reuseport::QueueInfo, "queueInfo"));
  exports.Set("attachSteering", Napi::Function::New(env, reuseport::AttachSteering, "attachSteering"));
  exports.Set("detachSteering", Napi::Function::New(env, reuseport::DetachSteering, "detachSteering"));
  exports.Set("reapOrphans", Napi::Function::New(env, reuseport::ReapOrphans, "reapOrphans"));
  exports.Set("dup", Napi::Function::New(env, reuseport::DupFd, "dup"));
  exports.Set("setCloexec", Napi::Function::New(env, reuseport::SetCloexec, "setCloexec"));
  exports.Set("notify", Napi::Function::New(env, reuseport::Notify, "notify"));
  exports.Set("socketInfo", Napi::Function::New(env, reuseport::SocketInfo, "socketInfo"));
  exports.Set("setParentDeathSignal", Napi::Function::New(env, reuseport::SetParentDeathSignal, "setParentDeathSignal"));
  exports.Set("execve", Napi::Function::New(env, reuseport::Execve, "execve"));
  exports.Set("clearCloexec", Napi::Function::New(env, reuseport::ClearCloexec, "clearCloexec"));
  exports.Set("memfdState", Napi::Function::New(env, reuseport::MemfdState, "memfdState"));
  exports.Set("waitpid", Napi::Function::New(env, reuseport::WaitPid, "waitpid"));
  exports.Set("watchReadable", Napi::Function::New(env, reuseport::WatchReadable, "watchReadable"));
  exports.Set("unwatchReadable", Napi::Function::New(env, reuseport::UnwatchReadable, "unwatchReadable"));
#else
  // Only Linux balances new connections across SO_REUSEPORT listeners.
  exports.Set("supported", false);
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(reuseport, Init)
