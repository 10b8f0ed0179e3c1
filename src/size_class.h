/* Size classes: size -> class and class -> block size, from one table.
 * Classes run from 16 B to 32 KiB: steps of 16 B up to 128 B, then four
 * classes per doubling, so a block wastes at most 25 % of itself for any
 * request of 48 B or more and under 20 % above 64 B (below 48 B the 16-byte
 * minimum alignment decides).  Every power of two is a class, so a block of a
 * power-of-two class is naturally aligned to its size (slabs are 64 KiB
 * aligned).  The tables are constant; no locking. */
#ifndef HAKMEM_SIZE_CLASS_H
#define HAKMEM_SIZE_CLASS_H

#include "hakmem_internal.h"

#define HAK_NUM_CLASSES 40
#define HAK_SMALL_MAX   32768u   /* largest small block; above it, large.c */
#define HAK_TINY_MAX    1024u    /* sizes served by the 16-byte-step table */

extern const uint32_t size_class_block[HAK_NUM_CLASSES];
extern const uint8_t size_class_tiny[HAK_TINY_MAX / 16 + 1];
extern const uint8_t size_class_small[HAK_SMALL_MAX / 128 + 1];

/* Class of a request of n <= HAK_TINY_MAX bytes: one table load. */
HAK_INLINE unsigned size_class_of_tiny(size_t n)
{
  return size_class_tiny[(n + 15) >> 4];
}

/* Class of a request of n <= HAK_SMALL_MAX bytes. */
HAK_INLINE unsigned size_class_of(size_t n)
{
  if (n <= HAK_TINY_MAX)
    return size_class_tiny[(n + 15) >> 4];
  return size_class_small[(n + 127) >> 7];
}

HAK_INLINE size_t size_class_size(unsigned cls)
{
  return size_class_block[cls];
}

/* Smallest class whose blocks hold n bytes and are aligned to align
 * (a power of two <= HAK_SMALL_MAX); -1 when none does. */
int size_class_for_aligned(size_t n, size_t align);

#endif
