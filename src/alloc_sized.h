/* Front door, sized and query extensions (alloc_sized.c): what a request
 * would get without allocating, and the frees that are told the block's
 * size (C23 free_sized and free_aligned_sized, C++ sized delete).
 *
 * A block's slab and class come from its address in O(1) (the registry),
 * so the size saves hakmem no lookup; it is checked instead, and a size
 * that could not have produced the block is fatal misuse, like a double
 * free.  Same thread rules as free: any thread may free any block. */
#ifndef HAKMEM_ALLOC_SIZED_H
#define HAKMEM_ALLOC_SIZED_H

#include "alloc.h"

/* Usable size of the block hak_aligned_alloc(align, size) would return,
 * align <= HAK_MIN_ALIGN meaning a plain hak_malloc; 0 when the request
 * would fail for its size or alignment (align a power of two). */
size_t alloc_good_size(size_t size, size_t align);

/* The sized free of anything alloc_free_sized does not finish inline: a
 * size above 1 KiB, another thread's block, check = 1, a mismatch (fatal),
 * NULL (nothing). */
void alloc_free_sized_slow(void *p, size_t size, size_t align, const char *fn);

/* Frees p, a block of size bytes aligned to align (<= HAK_MIN_ALIGN: a
 * plain block), after checking that the size fits the block.  fn names
 * the caller in a misuse report ("free_sized()").  NULL is a no-op.
 * Inline, the free fast path (alloc_free) with one more test: the size's
 * class is the slab's.  Anything else, including a plausible size of
 * another class (a block realloc shrank in place), goes to the exact
 * check of the slow path. */
HAK_INLINE void alloc_free_sized(void *p, size_t size, size_t align, const char *fn)
{
  uintptr_t e = registry_lookup((uintptr_t)p);
  if (HAK_LIKELY(registry_is_superslab(e) && size <= HAK_TINY_MAX && align <= HAK_MIN_ALIGN)) {
    struct slab *s = superslab_slab_of(e, (uintptr_t)p);
    if (HAK_LIKELY(s->cls == size_class_of_tiny(size) &&
                   atomic_load_explicit(&s->owner, memory_order_relaxed) == tcache_self.free_key &&
                   (!hak_hardened ||
                    (slab_block_index(s, (uint16_t)(uintptr_t)p) < s->carved &&
                     !slab_block_tagged(p))))) {
      tcache_free_local(s, p);
      return;
    }
  }
  alloc_free_sized_slow(p, size, align, fn);
}

#endif
