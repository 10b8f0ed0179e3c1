/* Lazy registration of the fork handlers (see locks.h). */
#include "locks.h"

#include <sched.h>

_Atomic bool locks_fork_handlers_on;

/* 0 not armed, 1 armed, 2 one thread is in pthread_atfork, 3 registered.
 * registering marks that thread, whose pthread_atfork may allocate and so
 * come back to lock_take. */
static _Atomic int fork_handlers_state;
static __thread bool registering;
static void (*fork_prepare)(void), (*fork_parent)(void), (*fork_child)(void);

void locks_arm_fork_handlers(void (*prepare)(void), void (*parent)(void), void (*child)(void),
                             bool now)
{
  fork_prepare = prepare;
  fork_parent = parent;
  fork_child = child;
  atomic_store_explicit(&fork_handlers_state, 1, memory_order_release);
  if (now || !LOCKS_SINGLE_THREADED())
    locks_register_fork_handlers();
}

void locks_register_fork_handlers(void)
{
  int expected = 1;
  if (atomic_compare_exchange_strong(&fork_handlers_state, &expected, 2)) {
    registering = true;
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    registering = false;
    atomic_store_explicit(&fork_handlers_state, 3, memory_order_relaxed);
    atomic_store_explicit(&locks_fork_handlers_on, true, memory_order_release);
    return;
  }
  /* Not armed yet: the initialisation runs, and registers them at its end
   * if a second thread exists by then; the threads that wait for it hold
   * no lock meanwhile. */
  if (expected == 0)
    return;
  /* Another thread registers them: take no lock before it is done. */
  while (!registering && !atomic_load_explicit(&locks_fork_handlers_on, memory_order_acquire))
    sched_yield();
}
