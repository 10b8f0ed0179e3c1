/* Front door: the allocation entry points behind hak_malloc and malloc.
 *
 * The two fast paths are inline here so that both the hak_ names
 * (alloc.c) and the standard names (override.c) compile to the same
 * straight-line code: malloc of at most 1 KiB is a table lookup and a pop
 * from the thread's active slab; free is a registry lookup and a push onto
 * the slab's list when the thread owns it.  Everything else is out of
 * line in alloc.c. */
#ifndef HAKMEM_ALLOC_H
#define HAKMEM_ALLOC_H

#include "config.h"
#include "size_class.h"
#include "superslab.h"
#include "tcache.h"

void *alloc_malloc_generic(size_t size);
void alloc_free_generic(void *p, uintptr_t entry);
void alloc_free_remote(struct slab *s, void *p);

HAK_INLINE void *alloc_malloc(size_t size)
{
  if (HAK_LIKELY(size <= HAK_TINY_MAX))
    return tcache_alloc(size_class_of_tiny(size));
  return alloc_malloc_generic(size);
}

HAK_INLINE void alloc_free(void *p)
{
  uintptr_t e = registry_lookup((uintptr_t)p);
  if (HAK_LIKELY(e != 0 && (e & REGISTRY_TAG_LARGE) == 0 && !hak_config.check)) {
    struct slab *s = superslab_slab_of((struct superslab *)e, (uintptr_t)p);
    if (HAK_LIKELY(atomic_load_explicit(&s->owner, memory_order_relaxed) == tcache_self.id)) {
      /* The cheap double-free check: the block is already the list head. */
      if (HAK_UNLIKELY(p == s->free))
        hak_fatal_pointer("free(): double free", p);
      *(void **)p = s->free;
      s->free = p;
      if (HAK_UNLIKELY(--s->used == 0) && s != tcache_self.active[s->cls])
        tcache_slab_emptied(s);
      return;
    }
    alloc_free_remote(s, p);
    return;
  }
  alloc_free_generic(p, e);
}

#endif
