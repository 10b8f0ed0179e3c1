/* Shared pool: hands slabs to threads and takes them back.
 *
 * A thread asks for a slab of a class; the pool answers in stages, each
 * counted: adopt a slab a dead thread left with live blocks; stage 1,
 * reuse an EMPTY slab of the same class (still formatted, pages warm);
 * stage 2, claim an UNUSED slot of a live SuperSlab, or re-format an EMPTY
 * slab of another class; stage 3, map a new SuperSlab.  A medium class
 * needs a run of free slots at stage 2 (UNUSED slots or EMPTY slabs of
 * other classes, given up) or 3.  A small class
 * keeps the slabs it gives back EMPTY, until the purge gives their pages
 * back by time or another class claims one, and so does a medium class
 * (lean mode keeps one: see SHARED_POOL_EMPTY_CAPPED).  A SuperSlab
 * whose every slab is free is kept or unmapped as superslab_release_policy
 * says.
 *
 * Everything here runs under one mutex, the pool lock.  It is taken at
 * most once per 64 KiB slab handed out or returned, never on the fast
 * path.  Lock order (fork handlers take them in this order): pool lock,
 * BigCache lock, registry lock. */
#ifndef HAKMEM_SHARED_POOL_H
#define HAKMEM_SHARED_POOL_H

#include "superslab.h"
#include "size_class.h"
#include "config.h"

/* EMPTY slabs a class keeps formatted before it returns further ones to
 * UNUSED in memory-lean mode.  Otherwise a class keeps every slab given
 * back formatted (a medium one too: with one kept, the slots of the
 * others went to whichever class claimed next, whose block boundaries,
 * and so the pages written, differ: twice the peak RSS of threads
 * churning 40-256 KiB blocks), its list of free blocks intact, for its next burst:
 * the purge gives their pages back by time (purge_delay_ms), like those
 * of UNUSED slots, and another class that finds no resident UNUSED slot
 * re-formats one (stage 2). */
#define SHARED_POOL_EMPTY_CAPPED 1

/* A slab of class cls now owned by owner, or NULL (errno ENOMEM) when a
 * new SuperSlab was needed and the system refused it: the caller may
 * reclaim (purge_reclaim) and ask once more.  An adopted slab may still
 * hold a remote-free stack: the caller drains it. */
struct slab *shared_pool_acquire(unsigned cls, uint64_t owner);
/* The owner gives back a slab none of whose blocks is in use. */
void shared_pool_release_empty(struct slab *s);
/* The owner is exiting: s keeps live blocks and becomes adoptable. */
void shared_pool_orphan(struct slab *s);

/* A block was pushed onto an orphan's remote stack: the purge collects
 * orphans whose blocks have all come back (the caller kicks it). */
void shared_pool_orphan_freed(void);

/* Returns every free slab's memory to the OS and unmaps free SuperSlabs.
 * Returns true if anything was released. */
bool shared_pool_trim(void);

struct shared_pool_usage {
  uint64_t allocs[HAK_NUM_CLASSES];  /* allocations served per class */
  uint64_t in_use_bytes;             /* blocks handed out (owner view) */
  uint64_t free_bytes;               /* carved or formatted but free */
  uint64_t in_use_class[HAK_NUM_CLASSES]; /* in_use_bytes per class */
  uint64_t free_class[HAK_NUM_CLASSES];   /* free_bytes per class */
  uint64_t superslabs_live;
  uint64_t superslabs_empty;
  uint64_t superslab_bytes;
  uint64_t free_committed_bytes;     /* free slots whose pages may be resident */
};
/* Sums counters over all slabs.  Other threads' fields are read without
 * synchronisation with them, so the figures are a momentary estimate. */
void shared_pool_usage(struct shared_pool_usage *u);

/* The purge, run by the background purge thread (purge.c) every tick:
 * decommits kept SuperSlabs whose purge delay has passed, free slots of
 * SuperSlabs in use that stayed free for a purge delay and, when the pool
 * saw no activity for a whole purge period (its activity count stayed
 * *activity_io), every free slot.  Sets *idle_io; returns true if
 * something purgeable remains for later. */
bool shared_pool_purge(uint64_t now_ms, bool *idle_io, uint64_t *activity_io);
/* Purge passes so far (any thread reads it, relaxed): a thread's cache of
 * freed medium blocks goes back to its slabs when it sees this change. */
extern HAK_HIDDEN _Atomic uint32_t shared_pool_purge_passes;
/* The purge period: purge_delay_ms, but at least 10 and at most 1000 ms.
 * A program that handed out or returned no slab for that long is idle. */
uint64_t shared_pool_purge_period_ms(void);
/* Whether memory became purgeable since the purge last looked; the take_
 * variant also clears the flag. */
bool shared_pool_purge_wanted(void);
bool shared_pool_take_purge_wanted(void);
/* Maps a SuperSlab and faults its pages in (prewarm = 1). */
void shared_pool_prewarm(void);

/* The slab half of hakmem_check_heap: walks every SuperSlab under the
 * pool lock, and the free lists of the slabs that thread me (the caller)
 * owns or nobody owns.  Returns 0, or -1 after one line on stderr. */
int shared_pool_check_heap(uint64_t me);

/* Fork: lock before fork, unlock in the parent, reset in the child.  The
 * child also turns slabs owned by threads that do not exist in it into
 * orphans, so their blocks can be reused. */
void shared_pool_prefork(void);
void shared_pool_postfork_parent(void);
void shared_pool_postfork_child(uint64_t survivor);

#endif
