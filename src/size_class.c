/* Size-class tables, generated from the rule in size_class.h and checked
 * against it by tests/test_size_class.c. */
#include "size_class.h"

const uint32_t size_class_block[HAK_NUM_CLASSES] = {
  16, 32, 48, 64, 80, 96, 112, 128,
  160, 192, 224, 256, 320, 384, 448, 512,
  640, 768, 896, 1024, 1280, 1536, 1792, 2048,
  2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
  10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
  40960, 49152, 57344, 65536, 81920, 98304, 131072,
  163840, 196608, 262144,
};

/* Slots per slab: a medium block of m * 8 KiB fills a run of slots
 * exactly; the run holds 4 blocks where that takes 3 to 8 slots (48, 64
 * and 80-128 KiB), else the nearest count that does: 8 blocks of 40 and
 * 56 KiB (5 and 7 slots), 2 of 160-256 KiB.  Fewer blocks per slab
 * keep a thread's partly used medium slabs, and what they touch, small
 * (bench/thread_stress: 4 blocks of 48 and 64 KiB rather than 8 took 5 %
 * off the faults and the peak); one block a slab would send every
 * allocation to the pool. */
const uint8_t size_class_slot_count[HAK_NUM_CLASSES] = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  1, 1, 1, 1, 1, 1, 1, 1,
  5, 3, 7, 4, 5, 6, 8, 5, 6, 8,
};

/* Index: (n + 15) / 16 for n <= 1 KiB. */
const uint8_t size_class_tiny[HAK_TINY_MAX / 16 + 1] = {
  0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 11,
  11, 12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15,
  15, 16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17,
  17, 18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19,
  19,
};

/* Index: (n + 127) / 128 for n <= 32 KiB.  Every class from 1 KiB to 32 KiB
 * is a multiple of 128 bytes, so this rounding never skips a class. */
const uint8_t size_class_small[HAK_SMALL_MAX / 128 + 1] = {
  0, 7, 11, 13, 15, 16, 17, 18, 19, 20, 20, 21, 21, 22, 22, 23,
  23, 24, 24, 24, 24, 25, 25, 25, 25, 26, 26, 26, 26, 27, 27, 27,
  27, 28, 28, 28, 28, 28, 28, 28, 28, 29, 29, 29, 29, 29, 29, 29,
  29, 30, 30, 30, 30, 30, 30, 30, 30, 31, 31, 31, 31, 31, 31, 31,
  31, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32,
  32, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33, 33,
  33, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34, 34,
  34, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35,
  35, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36,
  36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36, 36,
  36, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37,
  37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37, 37,
  37, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38,
  38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38, 38,
  38, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39,
  39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39, 39,
  39,
};

/* Index: (n + 8191) / 8192 for n <= 256 KiB; medium classes are multiples
 * of 8 KiB. */
const uint8_t size_class_medium[HAK_MEDIUM_MAX / 8192 + 1] = {
  0, 31, 35, 37, 39, 40, 41, 42, 43, 44, 44, 45, 45, 46, 46, 46,
  46, 47, 47, 47, 47, 48, 48, 48, 48, 49, 49, 49, 49, 49, 49, 49,
  49,
};

/* Medium classes serve aligned requests too: an interpreter's 64 KiB
 * heap pages (aligned_alloc(65536, 65536), as ruby's are) then share
 * SuperSlabs like any 64 KiB malloc, instead of costing a mapping, its
 * header page and two system calls each. */
int size_class_for_aligned(size_t n, size_t align)
{
  if (n > HAK_MEDIUM_MAX || align > HAK_SLAB_SIZE)
    return -1;
  for (unsigned c = size_class_of(n < align ? align : n); c < HAK_NUM_CLASSES; c++)
    if ((size_class_block[c] & (align - 1)) == 0)
      return (int)c;
  return -1;
}
