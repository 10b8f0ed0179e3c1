/* Thread cache: each thread's slabs, per class.
 *
 * A thread owns a ring of slabs per class and allocates from one of them,
 * the active slab, by popping its local free list.  Frees of blocks in a
 * slab the thread owns push onto that slab's list; frees from other
 * threads go to the slab's remote stack.  When the active slab runs dry
 * the thread refills in one batch: collect the slab's remote stack, carve
 * a page of fresh blocks, move to another slab of the ring with room, or
 * take a slab from the shared pool.  A non-active slab whose last block
 * comes back goes to the shared pool as EMPTY; the active one stays, so a
 * one-block malloc/free loop never leaves the fast path; every 64 refills
 * the thread hands back the active slabs of other classes left empty.
 *
 * All state is thread-local (initial-exec TLS) and touched only by its
 * thread; at thread exit the cache is flushed: empty slabs go back to the
 * pool and slabs with live blocks become orphans other threads adopt. */
#ifndef HAKMEM_TCACHE_H
#define HAKMEM_TCACHE_H

#include "slab.h"
#include "size_class.h"

struct tcache {
  /* Never NULL: a class without a slab points at tcache_no_slab, whose
   * list is empty (SLAB_LIST_END), so the fast path has a single test. */
  struct slab *active[HAK_NUM_CLASSES];
  uint64_t id;            /* 0 until the thread's first refill */
  /* What free compares a slab's owner with: id, or with check = 1 a value
   * no slab has, which sends every free through the validating path. */
  uint64_t free_key;
  uint32_t refills_since_sweep; /* see tcache_sweep */
  /* prof = 1: bytes until the heap profiler's next sample (prof.h), kept
   * here so that the profiled fast path reaches it through the same
   * thread pointer as active[]; unused otherwise. */
  int64_t prof_countdown;
};

extern HAK_HIDDEN struct slab tcache_no_slab;

extern HAK_HIDDEN __thread struct tcache tcache_self __attribute__((tls_model("initial-exec")));

/* Slow path of tcache_alloc: refills class cls and returns a block, or
 * NULL with errno ENOMEM. */
void *tcache_alloc_slow(unsigned cls);
/* Slow path of a local free that left slab s with no block in use. */
void tcache_slab_emptied(struct slab *s);

/* Owner: pops the head of s's list, which is not empty: decodes and
 * checks its link, clears its free tag. */
HAK_INLINE void *tcache_pop(struct slab *s)
{
  void *p = s->free;
  s->free = slab_link_next(s, p);
  if (hak_hardened)
    slab_block_words(p)[1] = 0;
  s->used++;
  s->allocs++;
  return p;
}

/* Fast path: the thread's active slab of the class pops one block.  With
 * hardening the only branch is the link check (the next block lies in the
 * same 64 KiB slot), which an empty list fails too, as its head is
 * SLAB_LIST_END; without, the only branch is the empty-list test.  The
 * slow path takes everything else: it ends lists, follows a medium slab's
 * links across slots, and refills. */
HAK_INLINE void *tcache_alloc(unsigned cls)
{
  struct slab *s = tcache_self.active[cls];
  uintptr_t *p = s->free;
  if (!hak_hardened) {
    if (HAK_UNLIKELY(p == NULL))
      return tcache_alloc_slow(cls);
    s->free = (void *)p[0];
  } else {
    uintptr_t delta = p[0] ^ hak_secret_list;  /* next ^ p */
    if (HAK_UNLIKELY(delta >= HAK_SLAB_SIZE))
      return tcache_alloc_slow(cls);
    s->free = (void *)(delta ^ (uintptr_t)p);
    p[1] = 0;
  }
  s->used++;
  s->allocs++;
  return p;
}

/* Owner's free of p into s: push; a non-active slab left with no block in
 * use goes back to the pool. */
HAK_INLINE void tcache_free_local(struct slab *s, void *p)
{
  void *head = s->free;
  slab_block_set_free(p, head);
  s->free = p;
  if (HAK_UNLIKELY(--s->used == 0) && s != tcache_self.active[s->cls])
    tcache_slab_emptied(s);
}

/* Owner: collects s's remote-free stack into its list, counting it. */
uint32_t tcache_drain(struct slab *s);

/* Flushes the calling thread's cache (thread exit). */
void tcache_flush(void);
/* Returns the calling thread's EMPTY-able slabs to the pool (malloc_trim). */
void tcache_collect(void);

#endif
