/* Slab operations off the fast path: formatting, carving, remote drain,
 * and the exact block checks. */
#include "slab.h"
#include "diag.h"

/* The end of every local free list (see slab.h): read by malloc's fast
 * path, never written. */
const uintptr_t slab_list_end_block[2] = { 0, 0 };

void slab_format(struct slab *s, unsigned cls, uint32_t block_size, size_t span_bytes)
{
  /* A slot never formatted has capacity 0 (a new SuperSlab's
   * descriptors are zero): its cls, 0, is no class it held. */
  if (s->capacity == 0)
    s->prev_cls = SLAB_NO_CLASS;
  else if (s->cls != cls)
    s->prev_cls = s->cls;
  s->forked_orphan = false;
  s->free = SLAB_LIST_END;
  s->used = 0;
  s->carved = 0;
  s->capacity = (uint16_t)(span_bytes / block_size);
  s->cls = (uint8_t)cls;
  unsigned shift = (unsigned)__builtin_ctz(block_size);
  uint32_t odd = block_size >> shift, inv = odd;
  /* Newton's iteration doubles the correct low bits each step: 3, 6, 12,
   * 24, 48. */
  for (int i = 0; i < 4; i++)
    inv *= 2 - odd * inv;
  s->block_mul = inv << (SLAB_INDEX_ROTATE - shift);
  atomic_store_explicit(&s->remote, NULL, memory_order_relaxed);
}

bool slab_is_block_below(const struct slab *s, const void *p, uint32_t below)
{
  uintptr_t off = (uintptr_t)p - (uintptr_t)slab_start(s);
  /* Both tests, without a branch between them (the index of an offset
   * out of range is harmless arithmetic): see slab_link_decode_far. */
  return (off < (uintptr_t)s->capacity * slab_block_size(s)) &
         (slab_block_index(s, (uint32_t)off) < below);
}

bool slab_is_block(const struct slab *s, const void *p)
{
  return slab_is_block_below(s, p, s->carved);
}

void *slab_link_decode_far(const struct slab *s, const void *p, uintptr_t delta)
{
  void *next = (void *)(delta ^ (uintptr_t)p);
  /* A medium slab spans several 64 KiB slots: its links may leave p's.
   * Its lists are a few blocks long, so whether one ends here follows
   * the program's pattern: both tests are computed and combined without
   * a branch (slab_is_block is arithmetic only, harmless on the end). */
  bool ok = slab_list_is_end(next) | (size_class_is_medium(s->cls) & slab_is_block(s, next));
  if (HAK_LIKELY(ok))
    return next;
  hak_fatal_pointer("malloc(): corrupted free list: bad link in free block", p);
}

uint32_t slab_drain_remote(struct slab *s)
{
  if (!atomic_load_explicit(&s->remote, memory_order_relaxed))
    return 0;
  void *list = atomic_exchange_explicit(&s->remote, NULL, memory_order_acquire);
  if (!list)
    return 0;
  uint32_t n = 0;
  void *tail = NULL;
  /* A small slab is its 64 KiB slot, and slab_link_next keeps each link
   * inside the slot of the block it leaves: an entry's offset in its slot
   * is its offset in the slab, and the block test is the fast path's. */
  bool small = !size_class_is_medium(s->cls);
  for (void *p = list; p; p = slab_link_next(s, p)) {
    /* The head was checked by the free that pushed it; every other entry
     * comes from a link that slab_link_next kept inside the slab. */
    bool block = small ? slab_block_index(s, (uint16_t)(uintptr_t)p) < s->carved : slab_is_block(s, p);
    if (hak_hardened && (!block || !slab_block_tagged(p)))
      hak_fatal_pointer("free(): corrupted remote-free list at", p);
    if (++n > s->used)
      hak_fatal_pointer("free(): double free (remote-free list holds a block twice) of", p);
    tail = p;
  }
  slab_block_set_free(tail, s->free);
  s->free = list;
  s->used = (uint16_t)(s->used - n);
  return n;
}

HAK_RARE_TEXT void slab_recount(struct slab *s)
{
  slab_drain_remote(s);
  uintptr_t start = (uintptr_t)slab_start(s);
  uint32_t listed = 0, end = s->carved;
  for (uintptr_t *p = s->free; !slab_list_is_end(p);) {
    /* Every listed block lies at a block's start within the capacity,
     * carved or not (slab_link_next would stop at carved); the bound
     * stops a cycle. */
    if (!slab_is_block_below(s, p, s->capacity) || ++listed > s->capacity)
      hak_fatal_pointer("malloc(): corrupted free list in slab", s);
    uint32_t i = slab_block_index(s, (uint32_t)((uintptr_t)p - start));
    if (i >= end)
      end = i + 1;
    if (hak_hardened)
      p[1] = slab_free_tag(p);
    p = (uintptr_t *)slab_link_raw(p);
  }
  s->carved = end;
  s->used = (uint16_t)(end - listed);
  s->forked_orphan = false;
}

uint32_t slab_carve(struct slab *s)
{
  uint32_t left = (uint32_t)s->capacity - s->carved;
  if (left == 0)
    return 0;
  size_t bs = slab_block_size(s);
  /* A page at a time keeps untouched pages out of the resident set; at
   * least SLAB_CARVE_MIN blocks, so that blocks of 1-4 KiB do not cost a
   * refill (a slow-path call and its locked counter update) every first
   * or second malloc.  Of those, a slab's first carve takes only the
   * blocks that start in its first page (one at least), so that a class
   * of 2-32 KiB that a program uses for a block or two touches one page,
   * not SLAB_CARVE_MIN blocks' worth (a carved block's link is written);
   * the next one makes up the rest of SLAB_CARVE_MIN, so that a class
   * used more ends up with what it carved before, never more. */
  uint32_t n = (uint32_t)(HAK_PAGE_SIZE / bs);
  if (n < SLAB_CARVE_MIN)
    n = s->carved ? SLAB_CARVE_MIN - s->carved % SLAB_CARVE_MIN : (uint32_t)((HAK_PAGE_SIZE + bs - 1) / bs);
  if (n > left)
    n = left;
  char *first = slab_start(s) + (size_t)s->carved * bs;
  char *p = first;
  for (uint32_t i = 1; i < n; i++, p += bs)
    slab_block_set_free(p, p + bs);
  slab_block_set_free(p, s->free);
  s->free = first;
  s->carved += n;
  return n;
}
