// Errors shaped like Node's own system errors (lib/internal/errors.js
// UVExceptionWithHostPort): code, errno (negative, as libuv reports it),
// syscall, address, port, and a message such as
// "listen EADDRINUSE: address already in use 127.0.0.1:3000".
#pragma once

#include <napi.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <string>

namespace reuseport {

inline std::string ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char* name = strerrorname_np(err);
  if (name != nullptr) return name;
#endif
  switch (err) {
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EMFILE: return "EMFILE";
    case ENOMEM: return "ENOMEM";
    case EPERM: return "EPERM";
    // The prebuilt binaries target glibc 2.17, which has no strerrorname_np.
    case ENOENT: return "ENOENT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EAGAIN: return "EAGAIN";
    case ENOTCONN: return "ENOTCONN";
    case EPROTOTYPE: return "EPROTOTYPE";
    case ENOBUFS: return "ENOBUFS";
    case EMSGSIZE: return "EMSGSIZE";
    case ETOOMANYREFS: return "ETOOMANYREFS";
    case ECHILD: return "ECHILD";
    case ESRCH: return "ESRCH";
    case ENOSYS: return "ENOSYS";
    case E2BIG: return "E2BIG";
    case ENOEXEC: return "ENOEXEC";
    default: return "E" + std::to_string(err);
  }
}

// libuv's messages are strerror() with a lower-case first letter.
inline std::string ErrnoMessage(int err) {
  std::string msg = std::strerror(err);
  if (!msg.empty()) msg[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(msg[0])));
  return msg;
}

inline Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall,
                              const std::string& address = "", int port = -1) {
  const std::string code = ErrnoName(err);
  std::string message = std::string(syscall) + " " + code + ": " + ErrnoMessage(err);
  if (!address.empty()) {
    message += " " + address;
    if (port >= 0) message += ":" + std::to_string(port);
  }
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  obj.Set("code", code);
  obj.Set("errno", -err);
  obj.Set("syscall", syscall);
  if (!address.empty()) obj.Set("address", address);
  if (port >= 0) obj.Set("port", port);
  return error;
}

// Argument errors mirror Node's ERR_INVALID_ARG_TYPE / ERR_OUT_OF_RANGE.
inline Napi::TypeError ArgError(Napi::Env env, const char* code, const std::string& message) {
  Napi::TypeError error = Napi::TypeError::New(env, message);
  error.Value().Set("code", code);
  return error;
}

}  // namespace reuseport
