/* The profiler's stash of sampled slots; see prof_stash.h. */
#include "prof_stash.h"
#include "counters.h"

#include <stdalign.h>

/* The mapping size of a stashed slot: what large_alloc maps for a block
 * of PROF_STASH_BLOCK bytes at PROF_STASH_OFFSET. */
#define PROF_STASH_MAP ((size_t)2 * HAK_PAGE_SIZE)
_Static_assert(PROF_STASH_BLOCK + PROF_STASH_OFFSET == PROF_STASH_MAP, "stash geometry");

/* One cache line of slots. */
static alignas(64) _Atomic(struct large_hdr *) stash[PROF_STASH_SLOTS];
/* Set when a sample takes from the stash or a freed one goes into it,
 * cleared by the purge's pass: a stash that a program sampling steadily
 * uses stays, however long each mapping sat in it. */
static _Atomic bool stash_used;
static _Atomic bool stash_purge_wanted;

/* Empties slot i: its mapping, or NULL.  The plain load first keeps an
 * empty slot's line shared. */
static struct large_hdr *stash_grab(unsigned i)
{
  if (!atomic_load_explicit(&stash[i], memory_order_relaxed))
    return NULL;
  return atomic_exchange_explicit(&stash[i], NULL, memory_order_acquire);
}

/* Sets a flag the purge clears, writing its line only when it changes;
 * true if it did. */
static bool flag_raise(_Atomic bool *flag)
{
  if (atomic_load_explicit(flag, memory_order_relaxed))
    return false;
  atomic_store_explicit(flag, true, memory_order_relaxed);
  return true;
}

void *prof_stash_take(size_t size)
{
  for (unsigned i = 0; i < PROF_STASH_SLOTS; i++) {
    struct large_hdr *h = stash_grab(i);
    if (!h)
      continue;
    void *p = (char *)h + PROF_STASH_OFFSET;
    large_verify(h, "malloc(): corrupted large block header", p);
    h->state = LARGE_LIVE;
    h->live_size = size;
    large_seal(h);
    counters_add(&hak_counters.large_allocs, 1);
    counters_add(&hak_counters.large_live_bytes, PROF_STASH_MAP);
    flag_raise(&stash_used);
    return p;
  }
  return NULL;
}

enum prof_stash_put_result prof_stash_put(struct large_hdr *h)
{
  if (h->map_size != PROF_STASH_MAP || h->offset != PROF_STASH_OFFSET || h->seam != 0)
    return PROF_STASH_REFUSED;
  for (unsigned i = 0; i < PROF_STASH_SLOTS; i++) {
    if (atomic_load_explicit(&stash[i], memory_order_relaxed))
      continue;
    /* Not live from here on: a free racing with this one (a double free)
     * finds it so, and the taker finds it sealed. */
    h->state = LARGE_CACHED;
    h->cache_next = NULL;
    large_seal(h);
    struct large_hdr *expected = NULL;
    if (atomic_compare_exchange_strong_explicit(&stash[i], &expected, h, memory_order_release,
                                                memory_order_relaxed)) {
      flag_raise(&stash_used);
      counters_add(&hak_counters.large_frees, 1);
      atomic_fetch_sub_explicit(&hak_counters.large_live_bytes, PROF_STASH_MAP, memory_order_relaxed);
      return flag_raise(&stash_purge_wanted) ? PROF_STASH_KEPT_KICK : PROF_STASH_KEPT;
    }
    h->state = LARGE_LIVE;
    large_seal(h);
  }
  return PROF_STASH_REFUSED;
}

bool prof_stash_release(void)
{
  bool released = false;
  for (unsigned i = 0; i < PROF_STASH_SLOTS; i++) {
    struct large_hdr *h = stash_grab(i);
    if (!h)
      continue;
    large_verify(h, "malloc_trim(): corrupted large block header", (char *)h + PROF_STASH_OFFSET);
    large_unmap(h);
    released = true;
  }
  return released;
}

HAK_COMMON_TEXT bool prof_stash_purge_wanted(void)
{
  return atomic_load_explicit(&stash_purge_wanted, memory_order_relaxed);
}

static bool stash_holds_any(void)
{
  for (unsigned i = 0; i < PROF_STASH_SLOTS; i++)
    if (atomic_load_explicit(&stash[i], memory_order_relaxed))
      return true;
  return false;
}

/* Run by the purge thread of every program: an empty stash (the profiler
 * off) costs it a look at the slots, not the release loop. */
HAK_COMMON_TEXT bool prof_stash_purge(void)
{
  atomic_store_explicit(&stash_purge_wanted, false, memory_order_relaxed);
  bool used = atomic_exchange_explicit(&stash_used, false, memory_order_relaxed);
  if (!stash_holds_any())
    return false;
  if (!used)
    prof_stash_release();
  return stash_holds_any();
}
