#pragma once

#include <napi.h>

namespace reuseport {

Napi::Value CreateListener(const Napi::CallbackInfo& info);
Napi::Value CloseFd(const Napi::CallbackInfo& info);
Napi::Value QueueInfo(const Napi::CallbackInfo& info);
Napi::Value AttachSteering(const Napi::CallbackInfo& info);
Napi::Value DetachSteering(const Napi::CallbackInfo& info);
Napi::Value ReapOrphans(const Napi::CallbackInfo& info);
Napi::Value DupFd(const Napi::CallbackInfo& info);
Napi::Value SetCloexec(const Napi::CallbackInfo& info);
Napi::Value Notify(const Napi::CallbackInfo& info);
Napi::Value SocketInfo(const Napi::CallbackInfo& info);
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info);
Napi::Value Execve(const Napi::CallbackInfo& info);
Napi::Value ClearCloexec(const Napi::CallbackInfo& info);
Napi::Value MemfdState(const Napi::CallbackInfo& info);
Napi::Value WaitPid(const Napi::CallbackInfo& info);
Napi::Value WatchReadable(const Napi::CallbackInfo& info);
Napi::Value UnwatchReadable(const Napi::CallbackInfo& info);

// Shared argument check: a non-negative integer file descriptor.
int FdArg(const Napi::CallbackInfo& info, size_t index);

}  // namespace reuseport
