/* The locks the fork handlers take (init.c): the shared pool's, BigCache's,
 * the SuperSlab registry's, the profiler's and the thread caches' list's.
 * Each is taken through lock_take, never by pthread_mutex_lock directly,
 * so that the fork handlers are registered before a second thread can
 * hold one of them, and released through lock_give (see
 * locks_held_for_fork); the fork handlers take them by lock_hold.
 *
 * A process that never starts a second thread never registers them: a
 * fork by the only thread cannot find one of these locks held by another,
 * nor a slab owned by another thread.  That spares a small program
 * pthread_atfork, which costs it 64 KiB of resident memory: glibc's
 * __register_atfork reads a constant on a page of libc's read-only data
 * that nothing else touches, and fault-around maps the 16 pages around it.
 *
 * lock_take reads two flags that change once each: locks_fork_handlers_on
 * (false until registered) and glibc's __libc_single_threaded, which
 * pthread_create clears in the creating thread before the new thread
 * starts.  Where the C library is not glibc 2.36 or later (see below)
 * the handlers are registered at start. */
#ifndef HAKMEM_LOCKS_H
#define HAKMEM_LOCKS_H

#include "hakmem_internal.h"

#include <pthread.h>
/* Registering late means that pthread_atfork may run inside another
 * library's fork handler (its malloc taking the first lock); glibc holds
 * its fork-handler lock while running the handlers before 2.36, where
 * pthread_atfork would then wait for itself.  So late registration needs
 * glibc 2.36 or later; elsewhere the handlers are registered at start. */
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 36)
#include <sys/single_threaded.h>
#define LOCKS_LAZY_FORK_HANDLERS 1
#define LOCKS_SINGLE_THREADED() (__libc_single_threaded != 0)
#endif
#endif
#ifndef LOCKS_SINGLE_THREADED
#define LOCKS_LAZY_FORK_HANDLERS 0
#define LOCKS_SINGLE_THREADED() false
#endif

extern HAK_HIDDEN _Atomic bool locks_fork_handlers_on;
/* Where the registration stands (locks.c); read by the tests. */
enum { LOCKS_NOT_ARMED = 0, LOCKS_ARMED = 1, LOCKS_REGISTERED = 2 };
extern HAK_HIDDEN _Atomic long locks_fork_state;

/* Called once by the initialisation, when malloc works (pthread_atfork
 * may allocate): hands over the fork handlers, and registers them at once
 * if now is true or the process already has a second thread. */
void locks_arm_fork_handlers(void (*prepare)(void), void (*parent)(void), void (*child)(void),
                             bool now);
/* Registers the armed handlers once, from whichever thread comes first;
 * the others wait for it.  Before they are armed it does nothing. */
void locks_register_fork_handlers(void);

/* True in the forking thread from the end of hakmem's fork preparation
 * (which took every lock above) to the start of its parent or child
 * handler.  glibc runs the prepare handlers registered before hakmem's
 * after it, and their parent and child handlers before hakmem's: a
 * program that registered its own, allocating ones while it had one
 * thread (hakmem registers at the second) would otherwise wait for the
 * locks its own thread holds.  No other thread can take them meanwhile,
 * so the forking thread's lock_take and lock_give pass. */
extern HAK_HIDDEN __thread bool locks_held_for_fork __attribute__((tls_model("initial-exec")));

/* Every lock above is error-checking (LOCK_INITIALIZER, lock_reset): a
 * thread that asks again for one it holds, which a signal handler that
 * allocates while malloc holds it does, or the next malloc after a
 * longjmp out of such a handler, is refused (EDEADLK) instead of waiting
 * for itself forever.  lock_take then reports it and aborts, as glibc
 * aborts on the arena it finds half changed. */
#ifdef PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP
#define LOCK_INITIALIZER PTHREAD_ERRORCHECK_MUTEX_INITIALIZER_NP
#else
#define LOCK_INITIALIZER PTHREAD_MUTEX_INITIALIZER
#endif

/* Makes m a new, free lock: in the child of fork. */
HAK_INLINE void lock_reset(pthread_mutex_t *m)
{
  *m = (pthread_mutex_t)LOCK_INITIALIZER;
}

/* One line on stderr, then abort: the calling thread asked for lock m,
 * which it holds. */
void locks_relock_fatal(const pthread_mutex_t *m) __attribute__((noreturn, cold));

/* Takes m for the fork handlers: as lock_take, without its checks. */
HAK_INLINE void lock_hold(pthread_mutex_t *m)
{
  if (HAK_UNLIKELY(pthread_mutex_lock(m) != 0))
    locks_relock_fatal(m);
}

/* Takes m, one of the locks above.  Two loads and two branches more than
 * pthread_mutex_lock once the handlers are registered or while the
 * process has a single thread, and the test of its result. */
HAK_INLINE void lock_take(pthread_mutex_t *m)
{
  if (HAK_UNLIKELY(locks_held_for_fork))
    return;
  if (HAK_UNLIKELY(!atomic_load_explicit(&locks_fork_handlers_on, memory_order_acquire)) &&
      !LOCKS_SINGLE_THREADED())
    locks_register_fork_handlers();
  lock_hold(m);
}

/* Releases m, taken by lock_take. */
HAK_INLINE void lock_give(pthread_mutex_t *m)
{
  if (HAK_UNLIKELY(locks_held_for_fork))
    return;
  pthread_mutex_unlock(m);
}

#endif
