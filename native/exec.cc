#ifdef __linux__

// What the supervisor needs to replace its own program in place (SIGUSR2,
// lib/supervisor/upgrade.ts), which Node 20 cannot do itself: it has no
// process.execve (added in Node 23.11), no way to clear FD_CLOEXEC, to make
// a memfd, or to wait for a child libuv did not spawn. (process.execve came
// in 23.11 and 22.15, nodejs/node#56496, and aborted on a failed execve(2)
// until nodejs/node#62878: a failed upgrade must leave us serving.)

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "errors.h"
#include "ops.h"

namespace reuseport {

namespace {

std::vector<std::string> StringArray(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Env env = info.Env();
  const std::string message = std::string("The \"") + name + "\" argument must be an array of strings";
  if (info.Length() <= index || !info[index].IsArray()) throw ArgError(env, "ERR_INVALID_ARG_TYPE", message);
  Napi::Array array = info[index].As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value v = array.Get(i);
    if (!v.IsString()) throw ArgError(env, "ERR_INVALID_ARG_TYPE", message);
    std::string s = v.As<Napi::String>().Utf8Value();
    // execve(2) takes C strings: an embedded NUL would cut the argument short.
    if (s.find('\0') != std::string::npos) throw ArgError(env, "ERR_INVALID_ARG_VALUE", std::string("The \"") + name + "\" argument must not contain null bytes");
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(&s[0]);
  out.push_back(nullptr);
  return out;
}

}  // namespace

// execve(path, argv, envPairs): replaces this program, same pid. Does not
// return on success; throws a Node-style error (code, errno, syscall).
Napi::Value Execve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"path\" argument must be of type string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (path.empty() || path.find('\0') != std::string::npos) throw ArgError(env, "ERR_INVALID_ARG_VALUE", "The \"path\" argument must be a non-empty string without null bytes");
  std::vector<std::string> argv = StringArray(info, 1, "argv");
  std::vector<std::string> envp = StringArray(info, 2, "envPairs");
  if (argv.empty()) throw ArgError(env, "ERR_INVALID_ARG_VALUE", "The \"argv\" argument must not be empty");
  for (const auto& pair : envp) {
    if (pair.find('=') == std::string::npos) throw ArgError(env, "ERR_INVALID_ARG_VALUE", "The \"envPairs\" argument must hold NAME=value strings");
  }
  std::vector<char*> cargv = CStrings(argv);
  std::vector<char*> cenvp = CStrings(envp);
  // No signal is blocked across it: Node's startup sets the whole mask
  // (pthread_sigmask(SIG_SETMASK, {SIGUSR1}) in PlatformInit, src/node.cc),
  // so a signal held pending here would reach the new program before any
  // handler of its own and kill it. See docs/upgrade.md, "Signals".
  execve(path.c_str(), cargv.data(), cenvp.data());
  throw ErrnoError(env, errno, "execve", path);
}

// clearCloexec(fd): the fd survives execve (slot listeners, the metrics
// listener, each worker's control channel and log pipes).
Napi::Value ClearCloexec(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) throw ErrnoError(env, errno, "fcntl");
  return env.Undefined();
}

// memfdState(buffer) -> fd: an anonymous file holding buffer, offset 0,
// without close-on-exec, so that the next program reads it. Secrets in the
// state never touch env, argv or a file system (memfd_create(2)).
Napi::Value MemfdState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"buffer\" argument must be a Buffer");
  Napi::Buffer<uint8_t> buffer = info[0].As<Napi::Buffer<uint8_t>>();
  int fd = static_cast<int>(syscall(SYS_memfd_create, "fastify-reuseport-state", 0));
  if (fd < 0) throw ErrnoError(env, errno, "memfd_create");
  size_t done = 0;
  while (done < buffer.Length()) {
    ssize_t n = write(fd, buffer.Data() + done, buffer.Length() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      throw ErrnoError(env, err, "write");
    }
    done += static_cast<size_t>(n);
  }
  if (lseek(fd, 0, SEEK_SET) < 0) {
    const int err = errno;
    close(fd);
    throw ErrnoError(env, err, "lseek");
  }
  return Napi::Number::New(env, fd);
}

// waitpid(pid) -> null while it runs, else { code, signal }: for workers
// adopted across execve, which libuv did not spawn and so never waits for
// (it waits per pid of its own process handles, src/unix/process.c).
Napi::Value WaitPid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"pid\" argument must be of type number");
  const double value = info[0].As<Napi::Number>().DoubleValue();
  if (value != static_cast<double>(static_cast<int32_t>(value)) || value < 1) throw ArgError(env, "ERR_OUT_OF_RANGE", "The \"pid\" argument must be an integer >= 1");
  int status = 0;
  pid_t r;
  do r = waitpid(static_cast<pid_t>(value), &status, WNOHANG); while (r < 0 && errno == EINTR);
  if (r < 0) throw ErrnoError(env, errno, "waitpid");
  if (r == 0) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  if (WIFEXITED(status)) {
    out.Set("code", WEXITSTATUS(status));
    out.Set("signal", env.Null());
  } else {
    out.Set("code", env.Null());
    out.Set("signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  }
  return out;
}

}  // namespace reuseport

#endif  // __linux__
