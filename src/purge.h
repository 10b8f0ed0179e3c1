/* Purge: giving the memory hakmem holds free back to the OS, by time in
 * the background and at once on demand.
 *
 * On demand, purge_reclaim is the one place that releases everything
 * kept free at once, for malloc_trim and for an allocation the system
 * refused.  The layers below (shared pool, BigCache, large blocks) never
 * reclaim for themselves: they fail with ENOMEM, and their caller (the
 * front door, the thread cache) calls purge_reclaim with no lock held and,
 * if it released anything, tries exactly once more.
 *
 * By time, the background thread gives the pages of memory hakmem holds
 * free back to the OS after purge_delay_ms, so that a program that stopped
 * calling malloc shrinks too (jemalloc's background_thread plays the same
 * part).  The layers below only raise their "purgeable" flag; their
 * callers kick the thread (purge_kick) once the call has returned.  The
 * thread cache, above, raises one too when a thread starts holding freed
 * blocks, and each pass first takes back those of threads gone idle
 * (tcache_reclaim_idle), so that the slabs they empty are purged with
 * the others.
 *
 * The thread exists once something was waiting to be purged: the
 * first free that leaves purgeable memory starts it (after every lock is
 * released), it wakes four times per purge period (purge_delay_ms held
 * between 10 ms and 1 s; at most every 10 ms), purges BigCache once per
 * period, and sleeps until the next kick when nothing purgeable is left
 * (it ends only when it is all that keeps the process alive: see
 * purge_main).  It is never started when
 * purge_delay_ms is -1 (modes minimal and fast).  After fork the child has
 * no purge thread; its first allocation to leave the thread cache or go
 * to the large layer starts one if memory waits (purge_start_deferred),
 * never a free: glibc frees the TLS of the stacks it caches holding the
 * lock that pthread_create takes, and the stacks of the threads the
 * child lacks are in that cache, their TLS in orphaned slabs whose every
 * free kicks. */
#ifndef HAKMEM_PURGE_H
#define HAKMEM_PURGE_H

#include "hakmem_internal.h"

/* Starts the purge thread if memory waits to be purged and none runs.
 * Called with no hakmem lock held. */
void purge_kick(void);
/* Gives back now every byte hakmem keeps free: the pool's EMPTY slabs and
 * collected orphans, fully free SuperSlabs (unmapped), the pages of free
 * slots (decommitted), BigCache's mappings and the profiler's stash
 * (unmapped).  Called with no hakmem lock held; errno is unchanged.  Returns true if anything was
 * released, and only then is a refused allocation worth one more try. */
bool purge_reclaim(void);
/* The heap grew: BigCache gives back as many of its resident bytes as
 * the pool mapped in SuperSlabs since the last call (the first call only
 * takes note).  The pages of a freed large block cannot serve slabs, so
 * they go back before their purge_delay_ms when the slabs need new
 * memory.  Run by every pass of the purge; returns the bytes given back. */
size_t purge_heap_growth(void);
/* Fork: the child has no purge thread, and starts none before
 * purge_start_now. */
void purge_postfork_child(void);
/* Set in a fork's child until its first allocation's slow path: kicks
 * only raise flags meanwhile. */
extern _Atomic bool purge_start_deferred;
/* Lifts purge_start_deferred and kicks; an allocation's slow path calls it
 * when the flag is set (never from a free). */
void purge_start_now(void);

static inline void purge_start_if_deferred(void)
{
  if (HAK_UNLIKELY(atomic_load_explicit(&purge_start_deferred, memory_order_relaxed)))
    purge_start_now();
}

#endif
