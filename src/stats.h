/* Statistics: process-wide event counters, the report, and the live-stats
 * block through which hakmemctl reads them from outside.
 *
 * Counters are relaxed atomics bumped only on slow paths (refills, pool
 * stages, OS calls), so they cost nothing on the fast path; allocation
 * counts live in each slab (written by its owner) and are summed by the
 * shared pool when a report is made.  The live-stats block
 * (hakmem_live_stats, format in live_stats.h) is constant after
 * initialisation and points at these counters; readers in other processes
 * read them without any help from this one.  Reports are rendered by
 * report.c into one buffer (reports from several threads take turns) and
 * written whole. */
#ifndef HAKMEM_STATS_H
#define HAKMEM_STATS_H

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

/* Monotonic milliseconds from a cheap clock. */
uint64_t hak_now_ms(void);
extern HAK_HIDDEN struct hak_counters hak_counters;

HAK_INLINE void stats_add(_Atomic uint64_t *c, uint64_t n)
{
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* Writes the full report, in the stats_format form, to fd; errno is kept. */
void stats_report(int fd);
/* The report at exit, as the stats options ask (and only in the programs
 * stats_program and stats_scope let report), to stats_file (if it is a
 * regular file) or to stderr as it was at start-up; dropped if the
 * program has closed stderr and reused its descriptor numbers. */
void stats_report_at_exit(void);
/* At start-up (init, before other threads allocate; tests may call it
 * again): records which file stderr is, so that the report and the lines
 * written at exit never go to a descriptor the program reused, keeps a
 * close-on-exec copy of stderr when a report is due at exit, and records
 * where the mode came from for the reports and the live block. */
void stats_prepare_exit_report(void);

#endif
