#ifdef __linux__

#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "ops.h"

namespace reuseport {

// notify(path, message, fds): one datagram to systemd's $NOTIFY_SOCKET,
// with fds attached as SCM_RIGHTS (the fd store: FDSTORE=1, FDNAME=...), as
// sd_pid_notify_with_fds() sends it (sd_notify(3)). A path starting with '@'
// is in the abstract namespace. No npm package sends fds with names.
Napi::Value Notify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsArray()) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", "notify(path: string, message: string, fds: number[])");
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string message = info[1].As<Napi::String>().Utf8Value();
  Napi::Array list = info[2].As<Napi::Array>();
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path) || (path[0] != '/' && path[0] != '@')) {
    throw ArgError(env, "ERR_INVALID_ARG_VALUE", "The \"path\" argument must be an absolute path or start with @, shorter than 108 bytes. Received '" + path + "'");
  }
  // SCM_MAX_FD is 253 (include/net/scm.h).
  if (list.Length() > 253) throw ArgError(env, "ERR_OUT_OF_RANGE", "The \"fds\" argument must hold at most 253 fds");
  std::vector<int> fds;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    if (!v.IsNumber() || v.As<Napi::Number>().Int64Value() < 0 || v.As<Napi::Number>().DoubleValue() != static_cast<double>(v.As<Napi::Number>().Int32Value())) {
      throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"fds\" argument must be an array of fds (integers >= 0)");
    }
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t addrlen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());

  int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) throw ErrnoError(env, errno, "socket");
  iovec iov{};
  iov.iov_base = const_cast<char*>(message.data());
  iov.iov_len = message.size();
  msghdr msg{};
  msg.msg_name = &addr;
  msg.msg_namelen = addrlen;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
  int err = errno;
  ::close(sock);
  if (sent < 0) throw ErrnoError(env, err, "sendmsg", path);
  return env.Undefined();
}

// socketInfo(fd): what an inherited socket is (systemd's LISTEN_FDS), so that
// it is adopted as a slot only when it is a listening TCP socket with
// SO_REUSEPORT: { address, family, port, listening, reusePort }.
Napi::Value SocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = FdArg(info, 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) throw ErrnoError(env, errno, "getsockname");
  int type = 0;
  int listening = 0;
  int reuse = 0;
  socklen_t optlen = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen) < 0) throw ErrnoError(env, errno, "getsockopt");
  optlen = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) < 0) throw ErrnoError(env, errno, "getsockopt");
  optlen = sizeof(int);
  if (getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &reuse, &optlen) < 0) throw ErrnoError(env, errno, "getsockopt");
  Napi::Object out = Napi::Object::New(env);
  char host[INET6_ADDRSTRLEN] = "";
  int port = -1;
  int family = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
    family = 4;
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
    family = 6;
  }
  out.Set("address", host);
  out.Set("family", family);
  out.Set("port", port);
  out.Set("stream", type == SOCK_STREAM);
  out.Set("listening", listening != 0);
  out.Set("reusePort", reuse != 0);
  return out;
}

}  // namespace reuseport

#endif  // __linux__
