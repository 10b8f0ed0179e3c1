/* Front door: the allocation entry points behind hak_malloc and malloc.
 *
 * The two fast paths are inline here so that both the hak_ names
 * (alloc.c) and the standard names (override.c) compile to the same
 * straight-line code: malloc of at most 1 KiB is a table lookup and a pop
 * from the thread's active slab; free finds the slab from the address,
 * confirms it with a registry lookup, and pushes onto the slab's list
 * when the thread owns it.  Everything else is out of
 * line in alloc.c.  With hardening, free also checks in O(1) that the
 * pointer is a block's start and that the block is not already free. */
#ifndef HAKMEM_ALLOC_H
#define HAKMEM_ALLOC_H

#include "size_class.h"
#include "superslab.h"
#include "tcache.h"
#include "init.h"
#include "prof.h"

void *alloc_malloc_generic(size_t size);
/* free of p (registry entry entry) that alloc_free's test did not pass:
 * NULL, a large block, a block of a SuperSlab whose size is not
 * superslab_lg's, a pointer hakmem does not own (fatal). */
void alloc_free_generic(void *p, uintptr_t entry);
/* A free of a block in slab s that the fast path did not finish: another
 * thread's slab, a medium block beyond the slab's first slot, a pointer
 * that is not a carved block's start, a block carrying the free tag, or
 * check = 1.  Checks exactly and aborts with a message on misuse. */
void alloc_free_slab_slow(struct slab *s, void *p);

/* Requests below this take the inline fast path: HAK_TINY_MAX + 1 once
 * initialised, 0 before and with check = 1, so that every malloc reaches
 * the slow path, at the cost of no instruction on the fast one (a compare
 * with memory instead of a constant). */
extern HAK_HIDDEN size_t alloc_fast_bound;
/* The class of each request size up to HAK_TINY_MAX, one byte per size:
 * size_class_of_tiny without its rounding (an add and a shift on every
 * malloc); filled at initialisation, before alloc_fast_bound opens the
 * inline paths that read it.  1 KiB, of which a program touches the
 * lines of the sizes it asks for. */
extern HAK_HIDDEN uint8_t alloc_tiny_class[HAK_TINY_MAX + 1];

/* Sets alloc_fast_bound from the configuration (at initialisation). */
void alloc_configure(void);

/* Requests below this that the inline fast path leaves take the
 * profiled fast path: HAK_TINY_MAX + 1 once initialised, 0 before and
 * with check = 1.  With prof = 0 no such request leaves the inline path
 * (alloc_fast_bound is the same), so this test also tells prof = 1 apart. */
extern HAK_HIDDEN size_t alloc_profiled_bound;
/* prof = 1: the countdown crossed zero on a request below
 * alloc_profiled_bound; samples it or serves it. */
void *alloc_malloc_small_counted(size_t size);
/* The refill of the tiny class of size bytes, when its pop cannot serve
 * it: the slow path of alloc_malloc, given the size, which is still in
 * the argument register, rather than the class. */
void *alloc_malloc_tiny_slow(size_t size);

/* The inline fast path, then, out of its way, the profiled one (prof = 1
 * sends every malloc past the first test): the thread's byte countdown,
 * one subtraction from memory and its branch, and the same pop, so that
 * only a sampled allocation (one in about prof_sample_kb KiB) leaves.
 * Every way out is a tail call to one of the three functions given: the
 * refill of the tiny class (alloc_malloc_tiny_slow's job), a sampled
 * tiny request (alloc_malloc_small_counted's) and everything else
 * (alloc_malloc_generic's).  operator new passes its own, which turn NULL
 * into the C++ runtime's answer, so that its fast path, like malloc's,
 * needs no test of the block and no stack frame. */
HAK_INLINE void *alloc_malloc_via(size_t size, void *(*refill)(size_t),
                                  void *(*counted)(size_t), void *(*generic)(size_t))
{
  if (HAK_LIKELY(size < alloc_fast_bound))
    return tcache_alloc_else(alloc_tiny_class[size], refill, size);
  if (size < alloc_profiled_bound) {
    if (HAK_UNLIKELY(prof_countdown_crossed(&tcache_self.prof_countdown, size)))
      return counted(size);
    void *p = tcache_alloc_else(alloc_tiny_class[size], refill, size);
    /* Keeps GCC from merging this pop into the one above with a jump
     * back (cross-jumping), one more instruction here. */
    __asm__("" : "+r"(p));
    return p;
  }
  return generic(size);
}

HAK_INLINE void *alloc_malloc(size_t size)
{
  return alloc_malloc_via(size, alloc_malloc_tiny_slow, alloc_malloc_small_counted,
                          alloc_malloc_generic);
}

/* Whether the owner of slab s may push p straight onto s's list: s's
 * owner is key, and, with hardening, p is the start of a carved block
 * (p's offset in its 64 KiB slot, which is the slab's first) that does not
 * carry the free tag's low half (slab_block_maybe_tagged: a block that
 * does goes to the slow path, which tests the whole tag). */
HAK_INLINE bool alloc_free_is_local(const struct slab *s, const void *p, uint64_t key)
{
  return atomic_load_explicit(&s->owner, memory_order_relaxed) == key &&
         (!hak_hardened ||
          (slab_block_index(s, (uint16_t)(uintptr_t)p) < s->carved && !slab_block_maybe_tagged(p)));
}

/* The owner's free of p, a block of slab s, when the fast path may take
 * it (alloc_free_is_local); false, having done nothing, otherwise.  With
 * check = 1 it never may: the thread's free_key is a value no slab's
 * owner has. */
HAK_INLINE bool alloc_free_try_local(struct slab *s, void *p)
{
  if (!alloc_free_is_local(s, p, tcache_self.free_key))
    return false;
  tcache_free_local(s, p);
  return true;
}

/* The base of the SuperSlab that would hold an address: the address
 * masked by -2^superslab_lg, the size every SuperSlab has (0 until
 * initialisation, which makes the base of any address 0, a SuperSlab
 * no registry entry names).  Set once, at initialisation. */
extern HAK_HIDDEN uintptr_t alloc_superslab_mask;
/* The bits of an address shifted right by ALLOC_SLAB_DESC_SHIFT that give
 * its slot's descriptor offset in its SuperSlab's header: the slot index
 * bits (below superslab_lg, from HAK_SLAB_SHIFT up) moved to where the
 * index times sizeof(struct slab) lies (0 until initialisation).  Set
 * once, at initialisation. */
extern HAK_HIDDEN uintptr_t alloc_slab_desc_mask;
#define ALLOC_SLAB_DESC_SHIFT (HAK_SLAB_SHIFT - 7)
_Static_assert(sizeof(struct slab) == (size_t)1 << 7, "a descriptor offset is the slot index shifted by 7");

/* Sets *s to the slab descriptor of p's 64 KiB slot in the SuperSlab
 * that p's address gives (alloc_superslab_mask) and returns whether p's
 * registry entry e names that SuperSlab: a mask and a shift from p, and
 * the registry only confirms.  The stores of free's push then have their
 * addresses a few cycles after p is known, not after the registry's two
 * dependent loads: a malloc that follows, whose load of its class's list
 * head the processor issues before those addresses are known, is no
 * longer replayed when they turn out to be the same (bench/tiny_hot,
 * three classes in random order: 0.73 of the CPU time).  When false,
 * *s means nothing: a NULL, a large block, a foreign pointer, a
 * SuperSlab of another size. */
HAK_INLINE bool alloc_slab_of(uintptr_t e, const void *p, struct slab **s)
{
  uintptr_t base = (uintptr_t)p & alloc_superslab_mask;
  /* One shift and one mask give the descriptor's offset: a subtract of
   * the base and two shifts take two instructions more (a copy of p
   * among them). */
  *s = (struct slab *)(base + (((uintptr_t)p >> ALLOC_SLAB_DESC_SHIFT) & alloc_slab_desc_mask));
  return e == base + REGISTRY_TAG_SUPERSLAB;
}

/* The free of p, a block of slab s (or a pointer into s's slot that
 * claims to be one): the owner's push when alloc_free_try_local may take
 * it, alloc_free_slab_slow otherwise.  Shared by free's fast path and by
 * alloc_free_generic's SuperSlabs of another size, so that both take the
 * same tests. */
HAK_INLINE void alloc_free_in_slab(struct slab *s, void *p)
{
  if (HAK_LIKELY(alloc_free_try_local(s, p)))
    return;
  alloc_free_slab_slow(s, p);
}

/* free: the slab from the address (alloc_slab_of), then the free in that
 * slab (alloc_free_in_slab); every other case out of line. */
HAK_INLINE void alloc_free(void *p)
{
  uintptr_t e = registry_lookup((uintptr_t)p);
  struct slab *s;
  if (HAK_LIKELY(alloc_slab_of(e, p, &s))) {
    alloc_free_in_slab(s, p);
    return;
  }
  alloc_free_generic(p, e);
}

/* Whether a request of size bytes is refused (ENOMEM) for its size alone. */
bool alloc_request_too_large(size_t size);

#endif
