/* Size classes: size -> class and class -> block size, from one table.
 *
 * Small classes run from 16 B to 32 KiB: steps of 16 B up to 128 B, then
 * four classes per doubling, so a block wastes at most 25 % of itself for
 * any request of 48 B or more and under 20 % from 64 B to 64 KiB (below
 * 48 B the 16-byte minimum alignment decides).  Every power of two is a class, and
 * small slabs are 64 KiB aligned, so a block of a power-of-two class is
 * naturally aligned to its size.  Medium classes continue the same
 * progression from 40 KiB to 64 KiB, then three per doubling (80, 96,
 * 128, 160, 192, 256 KiB), which keeps the waste within 25 %: each
 * medium class keeps the blocks it needed at its busiest written, so a
 * program whose blocks pass through the classes (vectors grown by
 * realloc) holds fewer of them (bench/realloc: 5 % less peak RSS than
 * with 112 and 224 KiB classes).  A medium slab spans a run of three to
 * eight 64 KiB slots that its blocks fill exactly (size_class_slots): 8
 * blocks of 40 and 56 KiB, 4 of 48, 64 and 80-128 KiB, 2 of 160-256 KiB.
 * The tables are constant; no locking. */
#ifndef HAKMEM_SIZE_CLASS_H
#define HAKMEM_SIZE_CLASS_H

#include "hakmem_internal.h"

#define HAK_NUM_CLASSES       50
#define HAK_NUM_SMALL_CLASSES 40
#define HAK_TINY_MAX    1024u     /* sizes served by the 16-byte-step table */
#define HAK_SMALL_MAX   32768u    /* largest block of a 64 KiB slab */
#define HAK_MEDIUM_MAX  262144u   /* largest slab block; above it, large.c */

extern HAK_HIDDEN const uint32_t size_class_block[HAK_NUM_CLASSES];
extern HAK_HIDDEN const uint8_t size_class_tiny[HAK_TINY_MAX / 16 + 1];
extern HAK_HIDDEN const uint8_t size_class_small[HAK_SMALL_MAX / 128 + 1];
extern HAK_HIDDEN const uint8_t size_class_medium[HAK_MEDIUM_MAX / 8192 + 1];
extern HAK_HIDDEN const uint8_t size_class_slot_count[HAK_NUM_CLASSES];

/* Class of a request of n <= HAK_TINY_MAX bytes: one table load. */
HAK_INLINE unsigned size_class_of_tiny(size_t n)
{
  return size_class_tiny[(n + 15) >> 4];
}

/* Class of a request of HAK_TINY_MAX < n <= HAK_SMALL_MAX bytes: one
 * table load.  (Below, it answers a class that fits, not the smallest.) */
HAK_INLINE unsigned size_class_of_small(size_t n)
{
  return size_class_small[(n + 127) >> 7];
}

/* Class of a request of n <= HAK_MEDIUM_MAX bytes. */
HAK_INLINE unsigned size_class_of(size_t n)
{
  if (n <= HAK_TINY_MAX)
    return size_class_tiny[(n + 15) >> 4];
  if (n <= HAK_SMALL_MAX)
    return size_class_small[(n + 127) >> 7];
  return size_class_medium[(n + 8191) >> 13];
}

HAK_INLINE size_t size_class_size(unsigned cls)
{
  return size_class_block[cls];
}

HAK_INLINE bool size_class_is_medium(unsigned cls)
{
  return cls >= HAK_NUM_SMALL_CLASSES;
}

/* The 64 KiB slots a slab of class cls spans: 1 for a small class; for a
 * medium one the run its blocks fill exactly, at most
 * HAK_MEDIUM_SLOTS_MAX.  A SuperSlab too small for the run cuts it
 * (superslab_span_slots). */
#define HAK_MEDIUM_SLOTS_MAX 8
HAK_INLINE unsigned size_class_slots(unsigned cls)
{
  return size_class_slot_count[cls];
}

/* Smallest class whose blocks hold n bytes and are aligned to align (a
 * power of two): one whose block size is a multiple of align, for align
 * up to HAK_SLAB_SIZE, since every slab starts on a 64 KiB slot boundary.
 * -1 when none does: n above HAK_MEDIUM_MAX or align above HAK_SLAB_SIZE. */
int size_class_for_aligned(size_t n, size_t align);

#endif
