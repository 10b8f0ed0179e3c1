/* Initialisation: lazy, on the first slow-path call of any thread (or the
 * library constructor, whichever comes first).  It reads the configuration
 * without allocating, then registers the thread-exit hook; the fork
 * handlers wait for a second thread (locks.h).  Fork lock order: the
 * profiler's lock (prof = 1), pool lock, large (BigCache) lock, registry
 * lock; released in reverse in the parent, re-created in the child. */
#ifndef HAKMEM_INIT_H
#define HAKMEM_INIT_H

#include "hakmem_internal.h"

extern HAK_HIDDEN _Atomic int hak_init_state;  /* 0 none, 1 running, 2 done */
void hak_init_slow(void);

HAK_INLINE void hak_init(void)
{
  if (HAK_LIKELY(atomic_load_explicit(&hak_init_state, memory_order_acquire) == 2))
    return;
  hak_init_slow();
}

/* Arms the thread-exit hook for the calling thread's cache.  Returns
 * whether it is armed (false only if the library has no thread-specific
 * key: the thread's exit will not flush its cache). */
bool init_thread_started(void *tcache);

#endif
