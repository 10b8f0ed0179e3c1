/* Event counters: process-wide counts of slow-path events (refills, pool
 * stages, large blocks, BigCache, lean mode, purge), bumped by the layers
 * that see them and read by the report and the live-stats block at the
 * top (stats.c).
 *
 * Counters are relaxed atomics bumped only on slow paths, so they cost
 * nothing on the fast path; any thread may bump any counter, readers see
 * each word whole but not a consistent snapshot of several.  Allocation
 * counts live in each slab (written by its owner) and the OS calls in
 * os.c's own counters.  This header includes only the layers' shared
 * definitions and the size classes. */
#ifndef HAKMEM_COUNTERS_H
#define HAKMEM_COUNTERS_H

#include "hakmem_internal.h"
#include "size_class.h"

struct hak_counters {
  _Atomic uint64_t refills[HAK_NUM_CLASSES];
  _Atomic uint64_t remote_frees;      /* blocks collected from remote stacks */
  _Atomic uint64_t remote_drains;
  _Atomic uint64_t slabs_emptied;
  _Atomic uint64_t pool_reuse_empty;
  _Atomic uint64_t pool_claim_unused;
  _Atomic uint64_t pool_new_superslab;
  _Atomic uint64_t pool_adopt;
  _Atomic uint64_t superslabs_unmapped;
  _Atomic uint64_t large_allocs;
  _Atomic uint64_t large_frees;
  _Atomic uint64_t bigcache_hits;
  _Atomic uint64_t bigcache_misses;
  _Atomic uint64_t lean_decommit;     /* lean mode: SuperSlabs/slots decommitted at once */
  _Atomic uint64_t lean_retire;       /* lean mode: SuperSlabs unmapped */
  _Atomic uint64_t purge_decommit;    /* purge passes that decommitted memory */
  _Atomic uint64_t prewarm_bytes;
  _Atomic uint64_t purge_threads;
  _Atomic uint64_t large_live_bytes;  /* mapping bytes of live large blocks */
};

extern HAK_HIDDEN struct hak_counters hak_counters;

HAK_INLINE void counters_add(_Atomic uint64_t *c, uint64_t n)
{
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

#endif
