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

/* A checked block of size bytes aligned to align (<= HAK_MIN_ALIGN for
 * none) from the small or medium classes; NULL with errno ENOMEM.  The
 * caller makes sure size + CHECK_TRAILER fits a class. */
void *check_malloc(size_t size, size_t align);
/* Verifies block p of slab s (canary, trailer) and fills it for the free
 * list; aborts with a message on an overflow. */
void check_free_block(const struct slab *s, void *p);
/* The size requested for block p of slab s. */
size_t check_block_size(const struct slab *s, const void *p);
/* Fills the bodies of n blocks just carved at the head of s's list. */
void check_fill_carved(const struct slab *s, uint32_t n);

#endif
