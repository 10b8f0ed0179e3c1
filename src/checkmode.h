/* check = 1: exhaustive checks at a bounded cost, for debugging.
 *
 * Every small and medium block handed out is laid out as
 *   [ program's bytes | canary ... | trailer ]
 * where the canary bytes hold CHECK_FILL up to the trailer, the block's
 * last four bytes, which record the requested size XOR a secret.  A freed
 * block is filled with CHECK_FILL past its link and tag words.  So free
 * finds any write past the requested size (into the canary or the
 * trailer), and malloc finds any write into a block while it was free
 * (use after free) when it hands the block out again.  The fill and its
 * comparison stop at check_fill_bytes from the block's start (0: the
 * whole block), where use after free writes mostly land (links, headers,
 * vtable pointers); the canary and the trailer are checked whole at
 * every free whatever the bound, and a bounded block gets its canary
 * stored at malloc.  Each check costs time linear in the block's size
 * (with a bound: in its canary's), never in the heap's.  Large blocks
 * keep their own checks (header check word, guard page).
 *
 * The bytes are filled and compared with the widest vectors the CPU has
 * (SSE2, AVX2 or AVX-512), chosen once by check_configure, in loops whose
 * only data-dependent branch is their exit (checkmode.c says how); the
 * blocks of more than 128 bytes take whole bodies compiled for the
 * width, those loops in line.  The choice is one variable written at
 * initialisation, before any checked block exists, and only read
 * afterwards.
 *
 * All entry points run on the slow paths only: with check = 1 the front
 * door sends every malloc and free there (alloc_fast_bound = 0, and the
 * thread's free key matches no slab). */
#ifndef HAKMEM_CHECKMODE_H
#define HAKMEM_CHECKMODE_H

#include "slab.h"
#include "size_class.h"

#define CHECK_FILL 0xdb
/* Bytes a checked block needs beyond the request: the trailer. */
#define CHECK_TRAILER 4

#include <string.h>

/* The vector widths the byte loops can use, in bytes. */
enum check_vectors {
  CHECK_VECTORS_SSE2 = 16,    /* x86-64's baseline (elsewhere: the compiler's) */
  CHECK_VECTORS_AVX2 = 32,
  CHECK_VECTORS_AVX512 = 64,
};

/* Chooses the widest vectors the CPU and the kernel support (cpuid, once,
 * at initialisation: no ifunc resolver runs before relocation), and the
 * bound of the free-block fill from check_fill_bytes. */
void check_configure(void);
/* The smallest bound of the fill: the link and tag words and one piece. */
#define CHECK_FILL_MIN 32
/* Fills and compares only the first bytes of each freed block (rounded up
 * to a multiple of 16, at least CHECK_FILL_MIN), or the whole block for
 * 0.  For check_configure, and the tests, between checked blocks. */
void check_bound_fill(size_t bytes);
/* Uses vectors of the given width from now on; false (and no change) if
 * the CPU cannot.  For the tests, which try every width the CPU has. */
bool check_use_vectors(enum check_vectors width);

/* 16 bytes of the fill. */
typedef uint64_t check_vec __attribute__((vector_size(16)));
#define CHECK_FILL_WORD (UINT64_C(0x0101010101010101) * CHECK_FILL)

/* Whether [p, p+n) holds CHECK_FILL throughout.  It may read the bytes
 * around the run up to the vector-aligned addresses on either side (never
 * another page), and ignores them. */
bool check_is_filled(const unsigned char *p, size_t n);
/* Fills [p, p+n) with CHECK_FILL; n is a multiple of 16.  Stores only
 * inside the run. */
void check_fill(unsigned char *p, size_t n);
/* Whether [p, p+n), n a multiple of 16, holds CHECK_FILL, read with the
 * very vectors check_fill stores (how malloc compares a freed block).
 * Reads only inside the run. */
bool check_run_is_filled(const unsigned char *p, size_t n);

/* The class of a checked block of size bytes aligned to align
 * (<= HAK_MIN_ALIGN for none): room for the trailer.  The caller makes
 * sure size + CHECK_TRAILER fits a class.  In line: malloc's table
 * lookup, without a call. */
HAK_INLINE int check_class(size_t size, size_t align)
{
  size_t need = size + CHECK_TRAILER;
  return align <= HAK_MIN_ALIGN ? (int)size_class_of(need) : size_class_for_aligned(need, align);
}
/* Makes p, a block of bs bytes just taken from a free list, a checked
 * block of size bytes: aborts if its fill was written to (a use after
 * free), then writes the canary and the trailer.  Returns p.  (The front
 * door takes the block from the thread cache: this layer is below it.) */
void *check_hand_out(unsigned char *p, size_t size, size_t bs);
/* Verifies block p of slab s (canary, trailer) and fills it for the free
 * list; aborts with a message on an overflow.  Returns the size the block
 * was requested with, as its trailer recorded it. */
size_t check_free_block(const struct slab *s, void *p);
/* The size requested for block p of slab s. */
size_t check_block_size(const struct slab *s, const void *p);
/* Fills the bodies of n blocks just carved at the head of s's list. */
void check_fill_carved(const struct slab *s, uint32_t n);

#endif
