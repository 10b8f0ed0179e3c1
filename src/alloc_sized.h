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

#include "hakmem_internal.h"

/* Usable size of the block hak_aligned_alloc(align, size) would return,
 * align <= HAK_MIN_ALIGN meaning a plain hak_malloc; 0 when the request
 * would fail for its size or alignment (align a power of two). */
size_t alloc_good_size(size_t size, size_t align);

/* Frees p, a block of size bytes aligned to align (<= HAK_MIN_ALIGN: a
 * plain block), after checking that the size fits the block.  fn names
 * the caller in a misuse report ("free_sized()").  NULL is a no-op. */
void alloc_free_sized(void *p, size_t size, size_t align, const char *fn);

#endif
