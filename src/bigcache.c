/* BigCache: a request takes the best fit, or the largest smaller mapping
 * for large.c to grow (see bigcache.h). */
#include "bigcache.h"
#include "config.h"
#include "learn.h"
#include "os.h"
#include "locks.h"
#include "counters.h"
#include "diag.h"

#include <pthread.h>

#define BIGCACHE_BUCKETS 64

/* The byte bound is bigcache_max_mb (learned in learning mode; in lean
 * mode at most the lean target); the count bound grows with it. */
static size_t bigcache_max_bytes(void)
{
  size_t bytes = (size_t)learn_value(LEARN_BIGCACHE_MAX_MB, hak_config.bigcache_max_mb) << 20;
  size_t target = (size_t)hak_config.ss_mem_lean_target_mb << 20;
  return hak_config.ss_mem_lean && target < bytes ? target : bytes;
}

static unsigned bigcache_max_count(void)
{
  size_t quarter_mb = bigcache_max_bytes() >> 22;
  return quarter_mb > 64 ? (unsigned)quarter_mb : 64;
}

static _Atomic bool bigcache_wanted;

static pthread_mutex_t bigcache_lock = LOCK_INITIALIZER;
/* Apart: only a program with large blocks writes it. */
HAK_BSS_APART(bigcache_bucket) static struct large_hdr *bucket[BIGCACHE_BUCKETS];
/* Bumped by every take and put: a program that only churns large blocks
 * is not idle even if the shared pool sees nothing. */
static uint64_t cache_activity, cache_activity_seen;
static size_t cached_bytes;
static size_t committed_bytes;   /* of cached_bytes, not decommitted */
static unsigned cached_count;

/* Takes h out of bucket *pp (h == *pp). */
static void cache_unlink_locked(struct large_hdr **pp, struct large_hdr *h)
{
  *pp = h->cache_next;
  cached_bytes -= h->map_size;
  if (!h->decommitted)
    committed_bytes -= h->map_size;
  cached_count--;
}

/* After the bound shrank: unlinks the largest cached mappings until the
 * cache fits, onto *evicted (the caller unmaps them after unlocking). */
static void cache_shrink_locked(struct large_hdr **evicted)
{
  for (int b = BIGCACHE_BUCKETS - 1; b >= 0; b--)
    while (bucket[b] && (cached_bytes > bigcache_max_bytes() || cached_count > bigcache_max_count())) {
      struct large_hdr *h = bucket[b];
      cache_unlink_locked(&bucket[b], h);
      h->cache_next = *evicted;
      *evicted = h;
    }
}

/* Large malloc and free calls so far, for the learner of bigcache_max_mb:
 * counted by large.c for every block, whether BigCache serves or keeps
 * it or not. */
static uint64_t large_calls(void)
{
  return atomic_load_explicit(&hak_counters.large_allocs, memory_order_relaxed) +
         atomic_load_explicit(&hak_counters.large_frees, memory_order_relaxed);
}

/* A BigCache event for the learner; a changed bound applies at once. */
static void cache_event_locked(struct large_hdr **evicted)
{
  cache_activity++;
  if (learn_event(LEARN_BIGCACHE_MAX_MB, committed_bytes, large_calls))
    cache_shrink_locked(evicted);
}

static void unmap_list(struct large_hdr *h)
{
  while (h) {
    struct large_hdr *next = h->cache_next;
    large_unmap(h);
    h = next;
  }
}

/* Size classes in pages: 1..4 exactly, then four per doubling. */
size_t bigcache_round(size_t map_size)
{
  size_t pages = (map_size + HAK_PAGE_SIZE - 1) / HAK_PAGE_SIZE;
  if (pages > 4) {
    unsigned lg = 63u - (unsigned)__builtin_clzll(pages - 1); /* pages-1 >= 2^lg */
    size_t step = (size_t)1 << (lg - 2);
    pages = (pages + step - 1) & ~(step - 1);
  }
  return pages * HAK_PAGE_SIZE;
}

static int bucket_of(size_t map_size)
{
  size_t pages = map_size / HAK_PAGE_SIZE;
  if (pages <= 4)
    return (int)pages - 1;
  unsigned lg = 63u - (unsigned)__builtin_clzll(pages - 1);
  size_t step = (size_t)1 << (lg - 2);
  int b = (int)(4 * (lg - 1)) + (int)((pages - 1 - ((size_t)1 << lg)) / step);
  return b < BIGCACHE_BUCKETS ? b : -1;
}

/* Verifies a cached header before its size or link is used: a forged one
 * could hand out memory that is not its own. */
static struct large_hdr *cache_verified(struct large_hdr *h)
{
  if (h)
    large_verify(h, "malloc(): corrupted cached large block header", h);
  return h;
}

struct large_hdr *bigcache_take(size_t least, size_t want, size_t most)
{
  int b = bucket_of(want);
  if (b < 0 || !hak_config.bigcache)
    return NULL;
  int top = bucket_of(most);
  if (top < 0)
    top = BIGCACHE_BUCKETS - 1;
  /* Buckets hold ascending size ranges: the first fitting entry from
   * want's bucket up is the best fit. */
  lock_take(&bigcache_lock);
  struct large_hdr **found = NULL;
  for (int k = b; k <= top && !found; k++)
    for (struct large_hdr **pp = &bucket[k]; cache_verified(*pp); pp = &(*pp)->cache_next)
      if ((*pp)->map_size >= want && (*pp)->map_size <= most) {
        found = pp;
        break;
      }
  /* Otherwise the largest smaller one: the first bucket down from want's
   * holding one, and the largest entry in it. */
  int bottom = least ? bucket_of(least) : 0;
  for (int k = b; k >= bottom && k >= 0 && !found && least < want; k--)
    for (struct large_hdr **pp = &bucket[k]; cache_verified(*pp); pp = &(*pp)->cache_next)
      if ((*pp)->map_size >= least && (*pp)->map_size < want &&
          (!found || (*pp)->map_size > (*found)->map_size))
        found = pp;
  struct large_hdr *h = found ? *found : NULL;
  if (h)
    cache_unlink_locked(found, h);
  struct large_hdr *evicted = NULL;
  cache_event_locked(&evicted);
  lock_give(&bigcache_lock);
  unmap_list(evicted);
  counters_add(h ? &hak_counters.bigcache_hits : &hak_counters.bigcache_misses, 1);
  return h;
}

struct large_hdr *bigcache_take_adjacent(const struct large_hdr *h, bool after)
{
  const void *want = after ? os_split_next(h, h->map_size) : NULL;
  if ((after && !want) || (!after && !os_is_split_rest(h)))
    return NULL;
  /* A scan of every bucket (the cache holds a few dozen mappings): the
   * neighbour's size is not known, and reading it before it is found in
   * the cache could race with its owner's realloc. */
  struct large_hdr *h_found = NULL;
  lock_take(&bigcache_lock);
  for (int b = 0; b < BIGCACHE_BUCKETS && !h_found; b++)
    for (struct large_hdr **pp = &bucket[b]; cache_verified(*pp); pp = &(*pp)->cache_next) {
      struct large_hdr *c = *pp;
      if (after ? (const void *)c == want : os_split_next(c, c->map_size) == (const void *)h) {
        h_found = c;
        cache_unlink_locked(pp, c);
        break;
      }
    }
  lock_give(&bigcache_lock);
  return h_found;
}

/* Gives back the pages of a cached mapping except its header page. */
static void bigcache_decommit(struct large_hdr *h)
{
  /* A one-page mapping is its header alone: nothing to give back, and an
   * empty range would count as a refused OS call. */
  if (h->map_size <= HAK_PAGE_SIZE) {
    h->decommitted = true;
    committed_bytes -= h->map_size;
    return;
  }
  if (os_decommit((char *)h + HAK_PAGE_SIZE, h->map_size - HAK_PAGE_SIZE, true) == 0) {
    h->decommitted = true;
    committed_bytes -= h->map_size;
  }
}

/* back: h comes from the cache (whole or split off), and its decommitted
 * and cached_at_ms stand; otherwise h was live until now. */
static bool cache_put(struct large_hdr *h, bool back)
{
  int b = bucket_of(h->map_size);
  if (b < 0 || !hak_config.bigcache || h->map_size > BIGCACHE_MAX_BLOCK)
    return false;
  /* Without batching, every freed block gives its pages back at once. */
  bool decommit_now = !hak_config.batch_madvise && hak_config.purge_delay_ms >= 0;
  bool kept = false;
  lock_take(&bigcache_lock);
  if (cached_count < bigcache_max_count() && cached_bytes + h->map_size <= bigcache_max_bytes()) {
    h->state = LARGE_CACHED;
    large_seal(h);
    if (!back) {
      h->decommitted = false;
      h->cached_at_ms = hak_now_ms();
    }
    if (!h->decommitted)
      committed_bytes += h->map_size;
    if (decommit_now && !h->decommitted)
      bigcache_decommit(h);
    else if (hak_config.purge_delay_ms >= 0 && !h->decommitted)
      atomic_store_explicit(&bigcache_wanted, true, memory_order_relaxed);
    h->cache_next = bucket[b];
    bucket[b] = h;
    cached_bytes += h->map_size;
    cached_count++;
    kept = true;
  }
  struct large_hdr *evicted = NULL;
  cache_event_locked(&evicted);
  lock_give(&bigcache_lock);
  unmap_list(evicted);
  return kept;
}

bool bigcache_put(struct large_hdr *h) { return cache_put(h, false); }
bool bigcache_put_back(struct large_hdr *h) { return cache_put(h, true); }

HAK_COMMON_TEXT bool bigcache_purge_wanted(void)
{
  return atomic_load_explicit(&bigcache_wanted, memory_order_relaxed);
}

bool bigcache_take_purge_wanted(void)
{
  return atomic_exchange(&bigcache_wanted, false);
}

bool bigcache_purge(uint64_t now_ms, bool idle)
{
  bool pending = false;
  lock_take(&bigcache_lock);
  idle = idle && cache_activity == cache_activity_seen;
  cache_activity_seen = cache_activity;
  for (int b = 0; b < BIGCACHE_BUCKETS; b++)
    for (struct large_hdr *h = bucket[b]; h; h = h->cache_next) {
      if (h->decommitted)
        continue;
      if (idle || hak_ms_elapsed(h->cached_at_ms, now_ms) >= (uint64_t)hak_config.purge_delay_ms)
        bigcache_decommit(h);
      else
        pending = true;
    }
  learn_retained(LEARN_BIGCACHE_MAX_MB, committed_bytes);
  lock_give(&bigcache_lock);
  return pending;
}

size_t bigcache_decommit_oldest(size_t bytes)
{
  size_t given = 0;
  lock_take(&bigcache_lock);
  uint64_t now = hak_now_ms();
  while (given < bytes && committed_bytes > 0) {
    struct large_hdr *oldest = NULL;
    uint64_t oldest_age = 0;
    for (int b = 0; b < BIGCACHE_BUCKETS; b++)
      for (struct large_hdr *h = bucket[b]; h; h = h->cache_next) {
        uint64_t age = hak_ms_elapsed(h->cached_at_ms, now);
        if (!h->decommitted && (!oldest || age > oldest_age)) {
          oldest = h;
          oldest_age = age;
        }
      }
    if (!oldest)
      break;
    size_t before = committed_bytes;
    bigcache_decommit(oldest);
    if (committed_bytes == before)
      break;   /* refused by the OS: nothing more to gain now */
    given += before - committed_bytes;
  }
  learn_retained(LEARN_BIGCACHE_MAX_MB, committed_bytes);
  lock_give(&bigcache_lock);
  return given;
}

void bigcache_usage(struct bigcache_usage *u)
{
  lock_take(&bigcache_lock);
  u->bytes = cached_bytes;
  u->count = cached_count;
  lock_give(&bigcache_lock);
}

bool bigcache_flush(void)
{
  struct large_hdr *all = NULL;
  lock_take(&bigcache_lock);
  for (int b = 0; b < BIGCACHE_BUCKETS; b++) {
    while (bucket[b]) {
      struct large_hdr *h = bucket[b];
      bucket[b] = h->cache_next;
      h->cache_next = all;
      all = h;
    }
  }
  cached_bytes = 0;
  committed_bytes = 0;
  cached_count = 0;
  learn_retained(LEARN_BIGCACHE_MAX_MB, 0);
  lock_give(&bigcache_lock);
  bool any = all != NULL;
  unmap_list(all);
  return any;
}

const struct large_hdr *bigcache_check(void)
{
  const struct large_hdr *bad = NULL;
  size_t bytes = 0;
  unsigned count = 0;
  lock_take(&bigcache_lock);
  for (int b = 0; b < BIGCACHE_BUCKETS && !bad; b++)
    for (const struct large_hdr *h = bucket[b]; h && !bad; h = h->cache_next) {
      if (!large_header_ok(h) || h->magic != LARGE_MAGIC || h->state != LARGE_CACHED ||
          ++count > cached_count)
        bad = h;
      else
        bytes += h->map_size;
    }
  if (!bad && (count != cached_count || bytes != cached_bytes))
    bad = (const struct large_hdr *)&bucket[0];
  lock_give(&bigcache_lock);
  return bad;
}

void bigcache_prefork(void) { lock_hold(&bigcache_lock); }
void bigcache_postfork_parent(void) { pthread_mutex_unlock(&bigcache_lock); }
void bigcache_postfork_child(void) { lock_reset(&bigcache_lock); }
