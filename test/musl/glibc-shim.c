// The few glibc-only symbols that Debian's libstdc++.so.6 and libgcc_s.so.1
// ask of libc, for musl: Bun's musl build needs a libstdc++ and Debian ships
// none built for musl, so the musl test borrows Debian's (glibc) one and loads
// this first (musl's loader ignores symbol versions). Enough to run Bun, not
// a compatibility layer: gcompat is Alpine's.
#include <locale.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <time.h>

char __libc_single_threaded = 0;

uint32_t arc4random (void) {
  uint32_t v = 0;
  getrandom(&v, sizeof v, 0);
  return v;
}

size_t __strftime_l (char *s, size_t max, const char *fmt, const struct tm *tm, locale_t loc) {
  return strftime_l(s, max, fmt, tm, loc);
}

// thread_local destructors are not run: the probe's threads live as long as it does.
int __cxa_thread_atexit_impl (void (*dtor)(void *), void *obj, void *dso) {
  (void)dtor; (void)obj; (void)dso;
  return 0;
}

// -1: libgcc's unwinder falls back to dl_iterate_phdr, which musl has.
int _dl_find_object (void *pc, void *result) {
  (void)pc; (void)result;
  return -1;
}

void __cpu_indicator_init (void) {}
struct { unsigned vendor, type, subtype; unsigned features[1]; } __cpu_model;

// arm64's libstdc++ asks for glibc's internal name of getauxval.
unsigned long __getauxval (unsigned long type) {
  return getauxval(type);
}
