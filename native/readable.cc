#ifdef __linux__

// watchReadable(fds, callback): calls callback once, on the main thread, when
// any of fds is readable; for a listening socket, when a connection waits in
// its accept queue. An idle supervisor needs to know that only once (then it
// ticks fast and reads the queues itself), and polling the queues on a timer
// woke it ten times a second for nothing (issue 21).
//
// A thread blocked in epoll_wait, not a uv_poll_t on Node's loop: the
// prebuilt binaries are built against node-api-headers, which has no uv.h,
// and N-API's thread-safe function is all the thread needs. The epoll set
// holds its own references to the sockets (a watch outlives nothing: the
// supervisor stops it before it closes a slot), and an eventfd wakes the
// thread to stop it. Both are close-on-exec: a worker spawned, or a
// supervisor exec'd, while a watch is armed inherits neither.

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>
#include <system_error>
#include <thread>
#include <vector>

#include "errors.h"
#include "ops.h"

namespace reuseport {

namespace {

struct Watch {
  int epfd = -1;
  int stopfd = -1;
  std::thread thread;
  Napi::ThreadSafeFunction tsfn;
  // Read and written on the main thread only, and shared with a call the
  // thread queued just before a stop: that call must not reach JavaScript,
  // and may run after the External (and this Watch) is gone.
  std::shared_ptr<bool> stopped = std::make_shared<bool>(false);

  // Wakes the thread if it still waits, joins it, closes both fds. Idempotent.
  void Stop() {
    if (*stopped) return;
    *stopped = true;
    const uint64_t one = 1;
    // An eventfd write of 1 cannot fail short of overflow, which 1 write per watch cannot reach.
    ssize_t written = write(stopfd, &one, sizeof(one));
    (void)written;
    if (thread.joinable()) thread.join();
    close(epfd);
    close(stopfd);
  }
};

void Wait(Watch* w) {
  // Named, so that /proc/<pid>/task/*/comm shows an idle supervisor watching (test/load/idle.test.js).
  pthread_setname_np(pthread_self(), "reuseport-idle");
  epoll_event events[8];
  int n;
  do {
    n = epoll_wait(w->epfd, events, 8, -1);
  } while (n < 0 && errno == EINTR);
  bool readable = false;
  for (int i = 0; i < n; i++) {
    if (events[i].data.fd != w->stopfd) readable = true;
  }
  if (readable) {
    std::shared_ptr<bool> stopped = w->stopped;
    w->tsfn.NonBlockingCall([stopped](Napi::Env, Napi::Function callback) {
      if (!*stopped) callback.Call({});
    });
  }
  w->tsfn.Release();
}

// What UnwatchReadable() checks before it reads an External as a Watch.
const napi_type_tag kWatchTag = {0x6a1c0f5e2b7d4c31ULL, 0x9e84d2a7c65b1f03ULL};

void Cleanup(int epfd, int stopfd) {
  if (epfd >= 0) close(epfd);
  if (stopfd >= 0) close(stopfd);
}

}  // namespace

Napi::Value WatchReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"fds\" argument must be an array of file descriptors");
  }
  if (!info[1].IsFunction()) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"callback\" argument must be of type function");
  }
  Napi::Array array = info[0].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value v = array.Get(i);
    if (!v.IsNumber()) throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"fds\" argument must be an array of file descriptors");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d > INT32_MAX || d != static_cast<double>(static_cast<int>(d))) {
      throw ArgError(env, "ERR_OUT_OF_RANGE", "The value of \"fds[" + std::to_string(i) + "]\" is out of range. It must be a non-negative integer.");
    }
    fds.push_back(static_cast<int>(d));
  }

  const int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) throw ErrnoError(env, errno, "epoll_create1");
  const int stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stopfd < 0) {
    const int err = errno;
    Cleanup(epfd, -1);
    throw ErrnoError(env, err, "eventfd");
  }
  fds.push_back(stopfd);
  for (int fd : fds) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      const int err = errno;
      Cleanup(epfd, stopfd);
      throw ErrnoError(env, err, "epoll_ctl");
    }
  }

  Watch* w = new Watch();
  w->epfd = epfd;
  w->stopfd = stopfd;
  w->tsfn = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "fastify-reuseport:watchReadable", 0, 1);
  // The watch must not keep the process alive: the workers' channels and the sockets do.
  w->tsfn.Unref(env);
  try {
    w->thread = std::thread(Wait, w);
  } catch (const std::system_error& e) {
    w->tsfn.Release();
    Cleanup(epfd, stopfd);
    delete w;
    throw ErrnoError(env, e.code().value(), "pthread_create");
  }
  Napi::External<Watch> handle = Napi::External<Watch>::New(env, w, [](Napi::Env, Watch* watch) {
    watch->Stop();
    delete watch;
  });
  handle.TypeTag(&kWatchTag);
  return handle;
}

Napi::Value UnwatchReadable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsExternal() || !info[0].As<Napi::External<Watch>>().CheckTypeTag(&kWatchTag)) {
    throw ArgError(env, "ERR_INVALID_ARG_TYPE", "The \"watch\" argument must be what watchReadable() returned");
  }
  info[0].As<Napi::External<Watch>>().Data()->Stop();
  return env.Undefined();
}

}  // namespace reuseport

#endif  // __linux__
