// C11 threads for librdkafka under ThreadSanitizer, compiled into every TSan binary that links the
// Kafka client (an INTERFACE source of datashare_sidecar_kafka).
//
// Debian's librdkafka uses C11 threads (thrd_create, thrd_join: `nm -D librdkafka.so.1`), and
// glibc's thrd_create starts the thread through its internal pthread_create, which TSan does not
// intercept: the thread never gets TSan's per-thread state, and its first malloc inside TSan's
// allocator crashes (SIGSEGV in SizeClassAllocator64LocalCache::Allocate, cache 0x8, seen in an
// rdk:broker thread's getaddrinfo, 2026-12-04). So a sidecar under TSan died at its first Kafka
// client. These definitions take the place of glibc's (the executable's symbols come first) and
// go through the intercepted pthread_create and pthread_join; the C11 result travels as the
// thread's void* result, as glibc's own thrd_join reads it. Its mutexes and condition variables
// likewise go through the intercepted pthread calls (glibc's mtx_t and cnd_t are a
// pthread_mutex_t and a pthread_cond_t), or TSan sees none of librdkafka's synchronisation and
// reports its own frees against its allocations.
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <threads.h>

#include <new>

namespace {

struct c11_start {
  thrd_start_t func;
  void* arg;
};

void* run_c11_thread(void* p) {
  c11_start s = *static_cast<c11_start*>(p);
  delete static_cast<c11_start*>(p);
  return reinterpret_cast<void*>(static_cast<intptr_t>(s.func(s.arg)));
}

}  // namespace

extern "C" int thrd_create(thrd_t* thr, thrd_start_t func, void* arg) {
  auto* s = new (std::nothrow) c11_start{func, arg};
  if (s == nullptr) return thrd_nomem;
  pthread_t t;
  const int rc = pthread_create(&t, nullptr, run_c11_thread, s);
  if (rc != 0) {
    delete s;
    return rc == EAGAIN ? thrd_nomem : thrd_error;
  }
  *thr = t;
  return thrd_success;
}

extern "C" int thrd_join(thrd_t thr, int* res) {
  void* result = nullptr;
  if (pthread_join(thr, &result) != 0) return thrd_error;
  if (res != nullptr) *res = static_cast<int>(reinterpret_cast<intptr_t>(result));
  return thrd_success;
}

extern "C" int thrd_detach(thrd_t thr) {
  return pthread_detach(thr) == 0 ? thrd_success : thrd_error;
}

extern "C" int mtx_init(mtx_t* m, int type) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  if ((type & mtx_recursive) != 0) pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  const int rc = pthread_mutex_init(reinterpret_cast<pthread_mutex_t*>(m), &a);
  pthread_mutexattr_destroy(&a);
  return rc == 0 ? thrd_success : thrd_error;
}

extern "C" int mtx_lock(mtx_t* m) {
  return pthread_mutex_lock(reinterpret_cast<pthread_mutex_t*>(m)) == 0 ? thrd_success : thrd_error;
}

extern "C" int mtx_trylock(mtx_t* m) {
  const int rc = pthread_mutex_trylock(reinterpret_cast<pthread_mutex_t*>(m));
  return rc == 0 ? thrd_success : rc == EBUSY ? thrd_busy : thrd_error;
}

extern "C" int mtx_timedlock(mtx_t* m, const struct timespec* until) {
  const int rc = pthread_mutex_timedlock(reinterpret_cast<pthread_mutex_t*>(m), until);
  return rc == 0 ? thrd_success : rc == ETIMEDOUT ? thrd_timedout : thrd_error;
}

extern "C" int mtx_unlock(mtx_t* m) {
  return pthread_mutex_unlock(reinterpret_cast<pthread_mutex_t*>(m)) == 0 ? thrd_success : thrd_error;
}

extern "C" void mtx_destroy(mtx_t* m) {
  pthread_mutex_destroy(reinterpret_cast<pthread_mutex_t*>(m));
}

extern "C" int cnd_init(cnd_t* c) {
  const int rc = pthread_cond_init(reinterpret_cast<pthread_cond_t*>(c), nullptr);
  return rc == 0 ? thrd_success : rc == ENOMEM ? thrd_nomem : thrd_error;
}

extern "C" int cnd_signal(cnd_t* c) {
  return pthread_cond_signal(reinterpret_cast<pthread_cond_t*>(c)) == 0 ? thrd_success : thrd_error;
}

extern "C" int cnd_broadcast(cnd_t* c) {
  return pthread_cond_broadcast(reinterpret_cast<pthread_cond_t*>(c)) == 0 ? thrd_success : thrd_error;
}

extern "C" int cnd_wait(cnd_t* c, mtx_t* m) {
  return pthread_cond_wait(reinterpret_cast<pthread_cond_t*>(c), reinterpret_cast<pthread_mutex_t*>(m)) == 0
             ? thrd_success
             : thrd_error;
}

// C11's clock is TIME_UTC, CLOCK_REALTIME: the default clock of a pthread condition variable.
extern "C" int cnd_timedwait(cnd_t* c, mtx_t* m, const struct timespec* until) {
  const int rc =
      pthread_cond_timedwait(reinterpret_cast<pthread_cond_t*>(c), reinterpret_cast<pthread_mutex_t*>(m), until);
  return rc == 0 ? thrd_success : rc == ETIMEDOUT ? thrd_timedout : thrd_error;
}

extern "C" void cnd_destroy(cnd_t* c) {
  pthread_cond_destroy(reinterpret_cast<pthread_cond_t*>(c));
}
