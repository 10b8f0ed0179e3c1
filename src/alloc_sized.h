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

/* Frees p, a block of size bytes aligned to align (<= HAK_MIN_ALIGN: a
 * plain block); fn names the caller in a misuse report ("free_sized()").
 * Without check = 1 the size is not read: free's fast path. */
HAK_INLINE void alloc_free_sized(void *p, size_t size, size_t align, const char *fn)
{
  if (HAK_LIKELY(!hak_config.check)) {
    alloc_free(p);
    return;
  }
  alloc_free_sized_slow(p, size, align, fn);
}

#endif
