/* Lazy registration of the fork handlers (see locks.h). */
#include "locks.h"
#include "diag.h"

#include <sched.h>
#include <unistd.h>

_Atomic bool locks_fork_handlers_on;

#ifdef __GLIBC__
/* pthread_atfork is a stub of libc_nonshared.a that passes the library's
 * __dso_handle on to __register_atfork; linked last, it lies at the end
 * of the text, among the rarely run code, and the first call of a
 * program's second thread would bring 64 KiB of that into memory
 * (doc/internals.md, "The library's own memory").  The same call, made
 * here. */
extern int __register_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void),
                             void *dso_handle);
extern void *__dso_handle __attribute__((visibility("hidden")));
#define locks_atfork(prepare, parent, child) __register_atfork(prepare, parent, child, __dso_handle)
#else
#define locks_atfork pthread_atfork
#endif

/* LOCKS_NOT_ARMED, LOCKS_ARMED, LOCKS_REGISTERED, or, while one thread is
 * in pthread_atfork, minus the pid of its process.  The pid matters
 * because a fork by another thread in that moment leaves the child with
 * this state and without the thread that would finish: the child takes
 * the registration over instead of waiting for it.  registering marks
 * the registering thread, whose pthread_atfork may allocate and so come
 * back to lock_take. */
_Atomic long locks_fork_state;
__thread bool locks_held_for_fork __attribute__((tls_model("initial-exec")));
static __thread bool registering;
static void (*fork_prepare)(void), (*fork_parent)(void), (*fork_child)(void);

static void mark_registered(void)
{
  atomic_store_explicit(&locks_fork_state, LOCKS_REGISTERED, memory_order_relaxed);
  atomic_store_explicit(&locks_fork_handlers_on, true, memory_order_release);
}

/* The handlers as registered: once they run, in the parent or the child,
 * they are registered there, whether or not the registering thread got
 * to say so before the fork. */
static void registered_parent(void)
{
  mark_registered();
  fork_parent();
}

static void registered_child(void)
{
  mark_registered();
  fork_child();
}

void locks_arm_fork_handlers(void (*prepare)(void), void (*parent)(void), void (*child)(void),
                             bool now)
{
  fork_prepare = prepare;
  fork_parent = parent;
  fork_child = child;
  atomic_store_explicit(&locks_fork_state, LOCKS_ARMED, memory_order_release);
  if (now || !LOCKS_SINGLE_THREADED())
    locks_register_fork_handlers();
}

void locks_register_fork_handlers(void)
{
  for (;;) {
    long state = atomic_load_explicit(&locks_fork_state, memory_order_acquire);
    /* Not armed yet: the initialisation runs, and registers them at its
     * end if a second thread exists by then; the threads that wait for
     * it hold no lock meanwhile. */
    if (state == LOCKS_NOT_ARMED || state == LOCKS_REGISTERED)
      return;
    if (state == LOCKS_ARMED) {
      long mine = -(long)getpid();
      if (!atomic_compare_exchange_strong(&locks_fork_state, &state, mine))
        continue;
      registering = true;
      locks_atfork(fork_prepare, registered_parent, registered_child);
      registering = false;
      mark_registered();
      return;
    }
    /* Another thread registers them: take no lock before it is done,
     * unless this is the child of a fork made meanwhile, where that
     * thread does not exist. */
    if (registering)
      return;
    if (-state != (long)getpid()) {
      atomic_compare_exchange_strong(&locks_fork_state, &state, LOCKS_ARMED);
      continue;
    }
    sched_yield();
  }
}

void locks_relock_fatal(const pthread_mutex_t *m)
{
  hak_fatal_pointer("malloc entered again by a thread inside it (from a signal handler, or after "
                    "a longjmp out of one): lock", m);
}
