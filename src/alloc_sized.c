/* Front door, sized and query extensions: hak_good_size (jemalloc's and
 * tcmalloc's nallocx) and the sized frees behind hak_free_sized, C23's
 * free_sized and free_aligned_sized, and C++'s sized operator delete.
 * See alloc_sized.h for why the size is read only with check = 1. */
#include "alloc_sized.h"
#include "diag.h"
#include "alloc.h"
#include "checkmode.h"
#include "config.h"
#include "hakmem.h"
#include "large.h"

size_t alloc_good_size(size_t size, size_t align)
{
  if (alloc_request_too_large(size) || alloc_request_too_large(align))
    return 0;
  hak_init();
  bool check = hak_config.check;
  if (align <= HAK_MIN_ALIGN) {
    /* As alloc_malloc_generic: with check = 1 a block holds exactly the
     * request (its canary and trailer are not usable). */
    if (check) {
      if (size <= HAK_MEDIUM_MAX - CHECK_TRAILER)
        return size;
    } else if (size <= HAK_MEDIUM_MAX) {
      return size_class_size(size_class_of(size));
    }
    return large_good_size(size, HAK_MIN_ALIGN);
  }
  /* As alloc_aligned. */
  if (size == 0)
    size = 1;
  if (check) {
    if (size_class_for_aligned(size + CHECK_TRAILER, align) >= 0)
      return size;
  } else {
    int cls = size_class_for_aligned(size, align);
    if (cls >= 0)
      return size_class_size((unsigned)cls);
  }
  return large_good_size(size, align);
}

HAK_EXPORT size_t hak_good_size(size_t size)
{
  return alloc_good_size(size, 0);
}

HAK_EXPORT size_t hak_good_size_aligned(size_t align, size_t size)
{
  return hak_is_pow2(align) ? alloc_good_size(size, align) : 0;
}

/* Whether a request of size bytes aligned to align goes to a slab (and
 * not to a mapping of its own), as alloc_malloc_generic and alloc_aligned
 * decide. */
static bool request_fits_slab(size_t size, size_t align)
{
  size_t trailer = hak_config.check ? CHECK_TRAILER : 0;
  if (align <= HAK_MIN_ALIGN)
    return size <= HAK_MEDIUM_MAX - trailer;
  return size_class_for_aligned((size ? size : 1) + trailer, align) >= 0;
}

static HAK_COLD __attribute__((noreturn)) void size_mismatch(void *p, const char *fn)
{
  char what[96];
  hak_fatal_pointer(hak_concat(what, sizeof what, fn, ": size (or alignment) does not match the block"), p);
}

/* check = 1: checks size against the live block p (registry entry e),
 * which records the size requested, and aborts on a mismatch.  A pointer that is not a live block is left to free, which
 * names that misuse itself. */
static HAK_COLD void free_sized_check(void *p, uintptr_t e, size_t size, size_t align,
                                      const char *fn)
{
  bool bad = align > HAK_MIN_ALIGN && ((uintptr_t)p & (align - 1));
  if (registry_is_superslab(e)) {
    struct slab *s = superslab_slab_of(e, (uintptr_t)p);
    if (s->state == SLAB_SPAN_TAIL)
      s -= s->head_offset;
    if ((s->state != SLAB_ACTIVE && s->state != SLAB_ORPHAN) || !slab_is_block(s, p) ||
        slab_block_tagged(p))
      return;
    /* With check = 1 the block records the size requested. */
    bad |= check_block_size(s, p) != size;
  } else {
    struct large_hdr *h = large_from_entry(e, p);
    if (!h || !large_header_ok(h) || h->magic != LARGE_MAGIC || h->state != LARGE_LIVE ||
        p != large_block(h))
      return;
    bad |= size > large_usable(h) || request_fits_slab(size, align);
  }
  if (bad)
    size_mismatch(p, fn);
}

void alloc_free_sized_slow(void *p, size_t size, size_t align, const char *fn)
{
  if (!p)
    return;
  uintptr_t e = registry_lookup((uintptr_t)p);
  /* The common case, the owner's free of a live block of its slab (the
   * tests of free's own path, with the thread's real id), is checked and
   * freed here at once: its trailer gives the size to compare, and the
   * registry is read once.  Anything else takes free_sized_check, then
   * free. */
  bool aligned = align <= HAK_MIN_ALIGN || ((uintptr_t)p & (align - 1)) == 0;
  if (HAK_LIKELY(registry_is_superslab(e) && aligned && tcache_self.id != 0)) {
    struct slab *s = superslab_slab_of(e, (uintptr_t)p);
    if (HAK_LIKELY(alloc_free_is_local(s, p, tcache_self.id))) {
      if (HAK_UNLIKELY(check_free_block(s, p) != size))
        size_mismatch(p, fn);
      tcache_free_local(s, p);
      return;
    }
  }
  if (e)
    free_sized_check(p, e, size, align, fn);
  alloc_free(p);
}

void alloc_free_sized_other(void *p, size_t size, uintptr_t e, size_t align, const char *fn)
{
  if (HAK_UNLIKELY(hak_config.check)) {
    alloc_free_sized_slow(p, size, align, fn);
    return;
  }
  if (registry_is_superslab(e)) {
    alloc_free_slab_slow(superslab_slab_of(e, (uintptr_t)p), p);
    return;
  }
  alloc_free_generic(p, e);
}

HAK_EXPORT void hak_free_sized(void *p, size_t size)
{
  alloc_free_sized(p, size, 0, "hak_free_sized()");
}

HAK_EXPORT void hak_free_aligned_sized(void *p, size_t align, size_t size)
{
  /* No block has such an alignment: aligned_alloc refuses it. */
  if (HAK_UNLIKELY(hak_config.check && p && !hak_is_pow2(align)))
    hak_fatal_pointer("hak_free_aligned_sized(): alignment not a power of two, for", p);
  alloc_free_sized(p, size, align, "hak_free_aligned_sized()");
}
