#ifdef __linux__

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <string>

#include "errors.h"
#include "ops.h"

namespace reuseport {

namespace {

// Owns an fd until release(), so that every early return closes it.
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

int IntArg(const Napi::CallbackInfo& info, size_t index, const char* name, int min, int max) {
  Napi::Env env = info.Env();
  if (info.Length() <= index || !info[index].IsNumber()) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", std::string("The \"") + name + "\" argument must be of type number");
  }
  double value = info[index].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(value) || std::floor(value) != value || value < min || value > max) {
    throw ArgError(env, "ERR_OUT_OF_RANGE",
                   std::string("The \"") + name + "\" argument must be an integer >= " + std::to_string(min) +
                       " and <= " + std::to_string(max) + ". Received " + info[index].ToString().Utf8Value());
  }
  return static_cast<int>(value);
}

int SetInt(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value));
}

}  // namespace

int FdArg(const Napi::CallbackInfo& info, size_t index) {
  return IntArg(info, index, "fd", 0, 0x7fffffff);
}

// createListener(address, port, backlog, ipv6Only) -> { fd, port }
// address must be a numeric IPv4 or IPv6 address (names are resolved in JS,
// with dns.lookup, exactly as net.Server does).
Napi::Value CreateListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"address\" argument must be of type string");
  }
  const std::string address = info[0].As<Napi::String>().Utf8Value();
  const int port = IntArg(info, 1, "port", 0, 65535);
  const int backlog = IntArg(info, 2, "backlog", 0, 0x7fffffff);
  if (info.Length() < 4 || !info[3].IsBoolean()) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"ipv6Only\" argument must be of type boolean");
  }
  const bool ipv6Only = info[3].As<Napi::Boolean>().Value();

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (getaddrinfo(address.c_str(), service.c_str(), &hints, &res) != 0 || res == nullptr) {
    throw ArgError(env, "ERR_INVALID_ARG_VALUE",
                   "The \"address\" argument must be a numeric IP address. Received '" + address + "'");
  }
  sockaddr_storage addr{};
  const socklen_t addrlen = res->ai_addrlen;
  const int family = res->ai_family;
  std::memcpy(&addr, res->ai_addr, addrlen);
  freeaddrinfo(res);

  // CLOEXEC: a listener inherited by an unrelated child keeps getting its
  // share of connections that nobody accepts. Children that should serve it
  // get it explicitly through their stdio array (dup2 clears the flag).
  UniqueFd fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw ErrnoError(env, errno, "socket", address, port);

  if (SetInt(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1) != 0 ||
      SetInt(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1) != 0 ||
      (family == AF_INET6 && SetInt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, ipv6Only ? 1 : 0) != 0)) {
    throw ErrnoError(env, errno, "setsockopt", address, port);
  }

  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), addrlen) != 0) {
    const int err = errno;
    // libuv defers EADDRINUSE from bind() to uv_listen(), so Node reports it
    // as "listen EADDRINUSE"; keep that wording so users see the error they
    // know (libuv src/unix/tcp.c, uv__tcp_bind).
    throw ErrnoError(env, err, err == EADDRINUSE ? "listen" : "bind", address, port);
  }

  sockaddr_storage bound{};
  socklen_t boundlen = sizeof(bound);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &boundlen) != 0) {
    throw ErrnoError(env, errno, "getsockname", address, port);
  }
  const int boundPort = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  if (listen(fd.get(), backlog) != 0) throw ErrnoError(env, errno, "listen", address, boundPort);

  Napi::Object result = Napi::Object::New(env);
  result.Set("port", boundPort);
  result.Set("fd", fd.release());
  return result;
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  const int fd = FdArg(info, 0);
  if (::close(fd) != 0) throw ErrnoError(info.Env(), errno, "close");
  return info.Env().Undefined();
}

}  // namespace reuseport

#endif  // __linux__
