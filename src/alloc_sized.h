/* Front door, sized and query extensions (alloc_sized.c): what a request
 * would get without allocating, and the frees that are told the block's
 * size (C23 free_sized and free_aligned_sized, C++ sized delete).
 *
 * A block's slab and class come from its address in O(1) (the registry),
 * so the size saves hakmem no lookup and hakmem never needs it: a sized
 * free is free.  A wrong size therefore cannot corrupt the heap, and a
 * program that passes one (a C++ object deleted through a base class
 * without a virtual destructor) runs as it does on glibc.  With check = 1
 * the size is checked, exactly, and a mismatch is fatal misuse.  Same
 * thread rules as free: any thread may free any block. */
#ifndef HAKMEM_ALLOC_SIZED_H
#define HAKMEM_ALLOC_SIZED_H

#include "alloc.h"
#include "config.h"

/* Usable size of the block hak_aligned_alloc(align, size) would return,
 * align <= HAK_MIN_ALIGN meaning a plain hak_malloc; 0 when the request
 * would fail for its size or alignment (align a power of two). */
size_t alloc_good_size(size_t size, size_t align);

/* check = 1: checks size (and align) against the block p, aborting on a
 * mismatch, then frees it.  NULL is a no-op. */
void alloc_free_sized_slow(void *p, size_t size, size_t align, const char *fn);

/* Every sized free alloc_free_sized does not finish itself (e is p's
 * registry entry): with check = 1 alloc_free_sized_slow, else free's own
 * slow paths. */
void alloc_free_sized_other(void *p, size_t size, uintptr_t e, size_t align, const char *fn);

/* Frees p, a block of size bytes aligned to align (<= HAK_MIN_ALIGN: a
 * plain block); fn names the caller in a misuse report ("free_sized()").
 * The size is not read on free's fast path, which is this one's: with
 * check = 1 that path never takes a block (alloc_free_try_local), so the
 * test of check, which every C++ delete of a complete type would pay,
 * waits in alloc_free_sized_other. */
HAK_INLINE void alloc_free_sized(void *p, size_t size, size_t align, const char *fn)
{
  uintptr_t e = registry_lookup((uintptr_t)p);
  struct slab *s;
  if (HAK_LIKELY(alloc_slab_of(e, p, &s)) && HAK_LIKELY(alloc_free_try_local(s, p)))
    return;
  alloc_free_sized_other(p, size, e, align, fn);
}

#endif
