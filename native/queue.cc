#ifdef __linux__

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "errors.h"
#include "ops.h"

namespace reuseport {

// On a listener the kernel reuses two TCP_INFO fields: tcpi_unacked is the
// accept-queue length (sk_ack_backlog) and tcpi_sacked its limit
// (sk_max_ack_backlog), the Recv-Q and Send-Q columns of `ss -ltn`
// (net/ipv4/tcp.c, tcp_get_info).
Napi::Value QueueInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = FdArg(info, 0);
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) throw ErrnoError(env, errno, "getsockopt");
  Napi::Object result = Napi::Object::New(env);
  result.Set("listening", ti.tcpi_state == TCP_LISTEN);
  result.Set("queued", ti.tcpi_unacked);
  result.Set("backlog", ti.tcpi_sacked);
  return result;
}

}  // namespace reuseport

#endif  // __linux__
