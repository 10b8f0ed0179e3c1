/* BigCache: recently freed large mappings kept for reuse, so that a
 * program that frees and re-requests big buffers does not pay mmap,
 * munmap and page faults each time.  Bounded by count and by bytes
 * (bigcache_max_mb, learned in learning mode; in memory-lean mode at most
 * ss_mem_lean_target_mb); a mapping that does not fit is unmapped at
 * once.  Cached mappings older than purge_delay_ms give their pages back
 * (bigcache_purge, run by the purge thread).
 *
 * It knows mappings only by their header (large_hdr.h) and gives them
 * back to the OS itself (large_unmap): it never calls into large.c.
 * Everything is under the BigCache lock, second in the lock order (pool
 * lock, BigCache lock, registry lock); the lock is never held while the
 * OS is asked to unmap. */
#ifndef HAKMEM_BIGCACHE_H
#define HAKMEM_BIGCACHE_H

#include "large_hdr.h"

/* Rounds a mapping size up to its BigCache size class. */
size_t bigcache_round(size_t map_size);
/* The smallest cached mapping of want..most bytes (the most recently
 * cached of that size: its pages are the likeliest to be resident);
 * failing that, the largest of least..want bytes (least == want: none),
 * for the caller to grow; or NULL.  Every cached header visited is
 * verified (a mismatch is a fatal error). */
struct large_hdr *bigcache_take(size_t least, size_t want, size_t most);
/* The largest mapping the cache keeps. */
#define BIGCACHE_MAX_BLOCK ((size_t)32 << 20)
/* Takes out the cached mapping next to freed mapping h, for large.c to
 * join with it: after: the rest os_split cut off h; otherwise: the one h
 * was cut off (os_split_next of it is h).  NULL if that one is not cached
 * (or h has none).  Every cached header visited is verified. */
struct large_hdr *bigcache_take_adjacent(const struct large_hdr *h, bool after);
/* Offers a freed mapping to the cache (resealing its header); false if it
 * was not kept. */
bool bigcache_put(struct large_hdr *h);
/* Offers a mapping taken from the cache and not used, or the part split
 * off one: like bigcache_put, but it keeps the age and decommitted state
 * (cached_at_ms, decommitted) of the mapping it was, or was part of. */
bool bigcache_put_back(struct large_hdr *h);
/* Unmaps every cached mapping; returns true if there was any. */
bool bigcache_flush(void);
/* The purge's part for BigCache: decommits cached mappings older than
 * purge_delay_ms (all of them when idle: the pool saw no activity and
 * BigCache no take or put since the last pass), in one pass: with batch_madvise
 * = 1 freed blocks wait for it, with 0 each is decommitted as it is freed.
 * Returns true if some wait for later. */
bool bigcache_purge(uint64_t now_ms, bool idle);
/* Decommits whole cached mappings, the longest cached first, until at
 * least bytes have been given back or none is left resident; returns the
 * bytes given back.  For the purge, after the pool mapped SuperSlabs
 * (purge_heap_growth). */
size_t bigcache_decommit_oldest(size_t bytes);
bool bigcache_purge_wanted(void);
bool bigcache_take_purge_wanted(void);

/* For hakmem_check_heap: every cached header sealed, cached and counted.
 * Returns NULL, or the first bad header (the bucket table itself when
 * the totals disagree). */
const struct large_hdr *bigcache_check(void);

struct bigcache_usage { uint64_t bytes, count; };
void bigcache_usage(struct bigcache_usage *u);

void bigcache_prefork(void);
void bigcache_postfork_parent(void);
void bigcache_postfork_child(void);

#endif
