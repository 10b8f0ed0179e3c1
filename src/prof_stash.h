/* The profiler's stash of sampled slots: freed mappings of sampled small
 * blocks, kept for the next sample (prof = 1 only).
 *
 * A sampled allocation of at most PROF_STASH_BLOCK bytes is served as a
 * large block in a mapping of one size, its block PROF_STASH_OFFSET bytes
 * in (room for its record, prof.h).  When such a block is freed, its
 * mapping goes into the stash instead of BigCache, and the next such
 * sample takes it back: a few loads and one atomic exchange each way,
 * with no lock, no system call and no walk of BigCache's buckets (about
 * 550 instructions and two lock round trips a sample otherwise).
 *
 * A stashed mapping keeps its registered, sealed header, in state
 * LARGE_CACHED: a second free of its block, or realloc or
 * malloc_usable_size of it, finds the header not live and aborts as for
 * any freed large block.  The stash holds at most PROF_STASH_SLOTS
 * mappings (64 KiB); a mapping that finds it full goes to BigCache.  It is
 * emptied (mappings unmapped) by purge_reclaim (malloc_trim, a refused
 * allocation) and by the purge thread once a whole purge period passed
 * without a sample taking from it or a freed one going into it.
 *
 * Concurrency: the slots are atomic pointers, filled by compare-and-swap
 * from NULL and emptied by exchange with NULL, so that one mapping is
 * never in two hands; the header is written before the release that
 * publishes it and read after the acquire that takes it.  Nothing here
 * blocks, so fork needs no handler: the child inherits the stash. */
#ifndef HAKMEM_PROF_STASH_H
#define HAKMEM_PROF_STASH_H

#include "large_hdr.h"

/* Where the block starts in a stashed mapping: PROF_TAGGED_ALIGN
 * (prof.h, a layer above; alloc.c checks that the two agree). */
#define PROF_STASH_OFFSET 128

/* The largest sampled request the stash serves, and the block size of
 * its mappings: two pages with the header and the record. */
#define PROF_STASH_BLOCK ((size_t)2 * HAK_PAGE_SIZE - PROF_STASH_OFFSET)
#define PROF_STASH_SLOTS 8

/* A stashed mapping made live again for a block of size bytes (at most
 * PROF_STASH_BLOCK), PROF_STASH_OFFSET bytes into it; NULL if the stash is
 * empty.  Aborts if the header was damaged while stashed. */
void *prof_stash_take(size_t size);
/* What prof_stash_put did with a mapping. */
enum prof_stash_put_result {
  PROF_STASH_REFUSED,     /* not kept: h unchanged, for large_free */
  PROF_STASH_KEPT,        /* kept; the purge thread knows of the stash */
  PROF_STASH_KEPT_KICK,   /* kept, and the stash's purge flag raised: kick the purge */
};
/* Keeps h, the verified header of a live sampled block at
 * PROF_STASH_OFFSET that is being freed, if it is of the stash's size and
 * a slot is free.  Only the put that raises the purge flag asks for a
 * kick (whoever raises it kicks), so the others skip purge_kick's fence. */
enum prof_stash_put_result prof_stash_put(struct large_hdr *h);
/* Unmaps every stashed mapping; true if there was one.  For
 * purge_reclaim. */
bool prof_stash_release(void);
/* Whether the purge thread has a pass to make for the stash. */
bool prof_stash_purge_wanted(void);
/* The purge thread's pass, once per purge period: releases the stash if
 * no sample took from it and none went into it since the last pass.  True while mappings stay
 * stashed (another pass is due). */
bool prof_stash_purge(void);

#endif
