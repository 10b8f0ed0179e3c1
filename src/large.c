/* Large allocations by direct mapping. */
#include "large.h"
#include "os.h"
#include "stats.h"
#include "superslab.h"
#include "shared_pool.h"
#include "config.h"
#include "purge.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

static size_t large_offset(size_t align)
{
  return align > LARGE_HEADER_SIZE ? align : LARGE_HEADER_SIZE;
}

/* Mapping size for a block of size bytes at offset, or 0 on overflow. */
static size_t large_map_size(size_t size, size_t offset)
{
  if (size > (size_t)PTRDIFF_MAX - offset - HAK_UNIT_SIZE)
    return 0;
  return bigcache_round(hak_align_up(offset + size, HAK_PAGE_SIZE));
}

static struct large_hdr *large_map(size_t map_size, size_t align)
{
  struct large_hdr *h = os_map_aligned(map_size, align > HAK_UNIT_SIZE ? align : HAK_UNIT_SIZE);
  if (!h)
    return NULL;
  h->magic = LARGE_MAGIC;
  h->map_size = map_size;
  if (hak_config.thp != HAK_THP_AUTO)
    h->huge_advised = os_advise_huge(h, map_size, hak_config.thp == HAK_THP_ON) == 0 &&
                      hak_config.thp == HAK_THP_ON;
  if (registry_set((uintptr_t)h, map_size, (uintptr_t)h)) {
    os_unmap(h, map_size);
    errno = ENOMEM;
    return NULL;
  }
  return h;
}

void large_unmap(struct large_hdr *h)
{
  size_t size = h->map_size;
  registry_clear((uintptr_t)h, size);
  h->magic = 0;
  os_unmap(h, size);
}

void *large_alloc(size_t size, size_t align, bool *fresh)
{
  size_t offset = large_offset(align);
  size_t map_size = large_map_size(size, offset);
  if (map_size == 0) {
    errno = ENOMEM;
    return NULL;
  }
  struct large_hdr *h = NULL;
  if (align <= HAK_UNIT_SIZE)
    h = bigcache_take(map_size);
  *fresh = h == NULL;
  if (h && hak_config.thp == HAK_THP_AUTO && !h->huge_advised && map_size >= ((size_t)2 << 20)) {
    /* Reused from BigCache: a hot block, worth huge pages. */
    h->huge_advised = os_advise_huge(h, map_size, true) == 0;
  }
  if (!h && !(h = large_map(map_size, align))) {
    /* Out of memory: what hakmem keeps cached goes back, then one retry. */
    bool released = bigcache_flush();
    released |= shared_pool_trim();
    if (!released || !(h = large_map(map_size, align))) {
      errno = ENOMEM;
      return NULL;
    }
  }
  h->offset = offset;
  h->state = LARGE_LIVE;
  h->cache_next = NULL;
  stats_add(&hak_counters.large_allocs, 1);
  stats_add(&hak_counters.large_live_bytes, h->map_size);
  return large_block(h);
}

struct large_hdr *large_from_entry(uintptr_t entry, const void *p)
{
  struct large_hdr *h = (struct large_hdr *)entry;
  if ((const char *)p < (const char *)h + LARGE_HEADER_SIZE ||
      (const char *)p >= (const char *)h + h->map_size)
    return NULL;
  return h;
}

void large_free(struct large_hdr *h, void *p)
{
  if (h->magic != LARGE_MAGIC || p != large_block(h))
    hak_fatal_pointer("free(): invalid pointer", p);
  if (h->state != LARGE_LIVE)
    hak_fatal_pointer("free(): double free", p);
  stats_add(&hak_counters.large_frees, 1);
  atomic_fetch_sub_explicit(&hak_counters.large_live_bytes, h->map_size, memory_order_relaxed);
  if (bigcache_put(h))
    purge_kick();
  else
    large_unmap(h);
}

/* Moves the pages of live block h over the head of cached mapping c (at
 * least as large), which becomes the block's mapping.  Returns the block,
 * or NULL with h and c untouched. */
static void *large_move_into(struct large_hdr *h, struct large_hdr *c)
{
  size_t old_size = h->map_size, c_size = c->map_size;
  uintptr_t old_base = (uintptr_t)h;
  /* c's registry entries already name c; h's are withdrawn before its
   * pages move (and restored if they cannot: the leaf exists). */
  registry_clear(old_base, old_size);
  if (os_move(h, old_size, c, old_size) != 0) {
    registry_set(old_base, old_size, old_base);
    return NULL;
  }
  struct large_hdr *n = c; /* now holds h's header page */
  n->map_size = c_size;
  n->huge_advised = false;
  n->decommitted = false;
  n->cache_next = NULL;
  stats_add(&hak_counters.large_live_bytes, c_size - old_size);
  return large_block(n);
}

void *large_realloc(struct large_hdr *h, size_t size)
{
  size_t map_size = large_map_size(size, h->offset);
  if (map_size == 0) {
    errno = ENOMEM;
    return NULL;
  }
  /* Room enough and not too much: stay (a block that grows by small steps
   * inside a larger mapping costs nothing). */
  if (map_size <= h->map_size && map_size >= h->map_size / 4)
    return large_block(h);
  if (map_size < h->map_size) {
    /* Shrink in place: give back the tail, keep the registry exact. */
    if (os_resize_in_place(h, h->map_size, map_size) == 0) {
      size_t keep_units = hak_align_up(map_size, HAK_UNIT_SIZE);
      size_t old_units = hak_align_up(h->map_size, HAK_UNIT_SIZE);
      if (old_units > keep_units)
        registry_clear((uintptr_t)h + keep_units, old_units - keep_units);
      atomic_fetch_sub_explicit(&hak_counters.large_live_bytes, h->map_size - map_size,
                                memory_order_relaxed);
      h->map_size = map_size;
    }
    return large_block(h);
  }
  /* Grow in place if the following address range is free. */
  size_t old_units = hak_align_up(h->map_size, HAK_UNIT_SIZE);
  if (os_resize_in_place(h, h->map_size, map_size) == 0) {
    if (registry_set((uintptr_t)h + old_units, hak_align_up(map_size, HAK_UNIT_SIZE) - old_units,
                     (uintptr_t)h) == false) {
      stats_add(&hak_counters.large_live_bytes, map_size - h->map_size);
      h->map_size = map_size;
      return large_block(h);
    }
    os_resize_in_place(h, map_size, h->map_size);
    errno = ENOMEM;
    return NULL;
  }
  size_t align = h->offset > LARGE_HEADER_SIZE ? h->offset : 0;
  /* A cached mapping big enough has its pages faulted in already: move
   * the block's pages over its head and keep its tail, so the growth
   * costs neither a copy nor page faults. */
  if (align <= HAK_UNIT_SIZE) {
    struct large_hdr *c = bigcache_take(map_size);
    if (c) {
      void *p = large_move_into(h, c);
      if (p)
        return p;
      if (!bigcache_put(c))
        large_unmap(c);
    }
  }
  /* Otherwise move the pages to a new aligned mapping: no copy. */
  struct large_hdr *n = os_map_aligned(map_size, align > HAK_UNIT_SIZE ? align : HAK_UNIT_SIZE);
  if (!n)
    return NULL;
  size_t old_size = h->map_size;
  uintptr_t old_base = (uintptr_t)h;
  /* Register the new range first (the only step that can fail for want
   * of memory), then withdraw the old one before its pages move. */
  if (registry_set((uintptr_t)n, map_size, (uintptr_t)n)) {
    os_unmap(n, map_size);
    errno = ENOMEM;
    return NULL;
  }
  registry_clear(old_base, old_size);
  if (os_move(h, old_size, n, map_size) != 0) {
    registry_clear((uintptr_t)n, map_size);
    registry_set(old_base, old_size, old_base);
    os_unmap(n, map_size);
    errno = ENOMEM;
    return NULL;
  }
  stats_add(&hak_counters.large_live_bytes, map_size - old_size);
  n->map_size = map_size;
  return large_block(n);
}
