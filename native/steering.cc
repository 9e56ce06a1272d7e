#ifdef __linux__

#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <vector>

#include "errors.h"
#include "ops.h"

namespace reuseport {

// attachSteering(fd, program): program is a Uint32Array of 4 words per
// instruction (code, jt, jf, k). SO_ATTACH_REUSEPORT_CBPF applies it to the
// whole reuseport group of fd and replaces any program already attached;
// no capability is needed (socket(7)).
Napi::Value AttachSteering(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(info, 0);
  if (info.Length() < 2 || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"program\" argument must be an instance of Uint32Array");
  }
  Napi::Uint32Array words = info[1].As<Napi::Uint32Array>();
  const size_t length = words.ElementLength();
  if (length == 0 || length % 4 != 0 || length / 4 > BPF_MAXINSNS) {
    throw ArgError(env, "ERR_OUT_OF_RANGE",
                   "The \"program\" argument must hold 1 to 4096 instructions of 4 words each. Received " +
                       std::to_string(length) + " words");
  }
  std::vector<sock_filter> insns(length / 4);
  for (size_t i = 0; i < insns.size(); i++) {
    const uint32_t code = words[i * 4], jt = words[i * 4 + 1], jf = words[i * 4 + 2];
    if (code > 0xffff || jt > 0xff || jf > 0xff) {
      throw ArgError(env, "ERR_OUT_OF_RANGE",
                     "The \"program\" argument has an invalid instruction at index " + std::to_string(i));
    }
    insns[i] = sock_filter{static_cast<uint16_t>(code), static_cast<uint8_t>(jt), static_cast<uint8_t>(jf),
                           words[i * 4 + 3]};
  }
  sock_fprog prog{static_cast<unsigned short>(insns.size()), insns.data()};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0) {
    throw ErrnoError(env, errno, "setsockopt");
  }
  return env.Undefined();
}

Napi::Value DetachSteering(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(info, 0);
  int unused = 0;
  // ENOENT only means no program was attached: the group already hashes.
  if (setsockopt(fd, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused, sizeof(unused)) != 0 && errno != ENOENT) {
    throw ErrnoError(env, errno, "setsockopt");
  }
  return env.Undefined();
}

}  // namespace reuseport

#endif  // __linux__
