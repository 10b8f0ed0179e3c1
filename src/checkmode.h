/* check = 1: exhaustive checks at a bounded cost, for debugging.
 *
 * Every small and medium block handed out is laid out as
 *   [ program's bytes | canary ... | trailer ]
 * where the canary bytes hold CHECK_FILL up to the trailer, the block's
 * last four bytes, which record the requested size XOR a secret.  A freed
 * block is filled with CHECK_FILL past its link and tag words.  So free
 * finds any write past the requested size (into the canary or the
 * trailer), and malloc finds any write into a block while it was free
 * (use after free) when it hands the block out again.  Each check costs
 * time linear in the block's size, never in the heap's.  Large blocks
 * keep their own checks (header check word, guard page).
 *
 * All entry points run on the slow paths only: with check = 1 the front
 * door sends every malloc and free there (alloc_fast_bound = 0, and the
 * thread's free key matches no slab). */
#ifndef HAKMEM_CHECKMODE_H
#define HAKMEM_CHECKMODE_H

#include "slab.h"

#define CHECK_FILL 0xdb
/* Bytes a checked block needs beyond the request: the trailer. */
#define CHECK_TRAILER 4

#include <string.h>

/* Whether [p, p+n) holds CHECK_FILL, for n > 64 (out of line: memcmp). */
bool check_is_filled_long(const unsigned char *p, size_t n);

/* 16 bytes, for the in-line comparison of short runs. */
typedef uint64_t check_vec __attribute__((vector_size(16)));
#define CHECK_FILL_WORD (UINT64_C(0x0101010101010101) * CHECK_FILL)

HAK_INLINE check_vec check_load_vec(const unsigned char *p)
{
  check_vec v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* Whether [p, p+n) holds CHECK_FILL throughout.  Runs of up to 64 bytes,
 * which the small classes check on every malloc and free, are compared in
 * line, 8 or 16 bytes at a time (the last load overlapping the others),
 * without a call; longer ones by memcmp with a page of the fill. */
HAK_INLINE bool check_is_filled(const unsigned char *p, size_t n)
{
  if (n < 16) {
    /* Two words that overlap, or bytes. */
    if (n >= 8) {
      uint64_t a, b;
      memcpy(&a, p, sizeof a);
      memcpy(&b, p + n - 8, sizeof b);
      return ((a ^ CHECK_FILL_WORD) | (b ^ CHECK_FILL_WORD)) == 0;
    }
    unsigned diff = 0;
    for (size_t i = 0; i < n; i++)
      diff |= p[i] ^ CHECK_FILL;
    return diff == 0;
  }
  if (n <= 64) {
    const check_vec fill = { CHECK_FILL_WORD, CHECK_FILL_WORD };
    check_vec diff = check_load_vec(p + n - 16) ^ fill;
    for (size_t i = 0; i + 16 < n; i += 16)
      diff |= check_load_vec(p + i) ^ fill;
    return (diff[0] | diff[1]) == 0;
  }
  return check_is_filled_long(p, n);
}

/* The class of a checked block of size bytes aligned to align
 * (<= HAK_MIN_ALIGN for none): room for the trailer.  The caller makes
 * sure size + CHECK_TRAILER fits a class. */
int check_class(size_t size, size_t align);
/* Makes p, a block of bs bytes just taken from a free list, a checked
 * block of size bytes: aborts if its fill was written to (a use after
 * free), then writes the canary and the trailer.  Returns p.  (The front
 * door takes the block from the thread cache: this layer is below it.) */
void *check_hand_out(unsigned char *p, size_t size, size_t bs);
/* Verifies block p of slab s (canary, trailer) and fills it for the free
 * list; aborts with a message on an overflow. */
void check_free_block(const struct slab *s, void *p);
/* The size requested for block p of slab s. */
size_t check_block_size(const struct slab *s, const void *p);
/* Fills the bodies of n blocks just carved at the head of s's list. */
void check_fill_carved(const struct slab *s, uint32_t n);

#endif
