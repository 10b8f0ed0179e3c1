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
 * The thread is started only by an allocation's slow path (a refill of
 * the thread cache, a large block: purge_start_if_wanted), never by a
 * free: glibc frees the TLS of the stacks it caches holding the lock
 * that pthread_create takes.  It starts once memory waits to be purged
 * or the heap has grown past a few SuperSlabs (so that a program that
 * frees its memory and then only sleeps finds it running), wakes four
 * times per purge period (purge_delay_ms held between 10 ms and 1 s; at
 * most every 10 ms), purges BigCache once per period, and sleeps until
 * the next kick when nothing purgeable is left (it ends only when it is
 * all that keeps the process alive: see purge_main).  It is never
 * started when purge_delay_ms is -1 (modes minimal and fast).  A fork's
 * child has none until its own slow path starts one.  purge_stop ends it
 * for a system call that the kernel grants only to a single-threaded
 * process (unshare, setns: override.c); the next slow path starts it
 * again. */
#ifndef HAKMEM_PURGE_H
#define HAKMEM_PURGE_H

#include "hakmem_internal.h"

/* Memory waits to be purged: wakes the purge thread, if it runs; if not,
 * the flags stay raised for the next allocation's slow path to start it.
 * Called with no hakmem lock held, from frees too. */
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
/* Fork: the child has no purge thread until its first allocation's slow
 * path. */
void purge_postfork_child(void);
/* Set while no purge thread runs: an allocation's slow path then calls
 * purge_start_now. */
extern _Atomic bool purge_start_wanted;
/* Starts the thread if none runs and memory waits to be purged or the
 * heap is big enough for a purge to matter; called only where no glibc
 * lock can be held (an allocation's slow path), with no hakmem lock. */
void purge_start_now(void);

static inline void purge_start_if_wanted(void)
{
  if (HAK_UNLIKELY(atomic_load_explicit(&purge_start_wanted, memory_order_relaxed)))
    purge_start_now();
}

/* Ends the purge thread and waits until the kernel has released it, so
 * that a program with one thread of its own is single-threaded for a
 * system call, until purge_stop_end; no start is made in between.
 * Async-signal-safe; errno is unchanged.  Waits at most 2 s (a pass
 * that cannot finish: a signal handler that interrupted hakmem). */
void purge_stop(void);
void purge_stop_end(void);

#endif
