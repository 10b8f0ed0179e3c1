/* Slab: a run of same-size blocks inside a SuperSlab: one 64 KiB slot for
 * small classes; for medium classes every slot after the header, with the
 * descriptor in slot 1 and the other slots marked SLAB_SPAN_TAIL.
 *
 * Concurrency contract:
 *  - free, used, carved and allocs belong to the owning thread (owner ==
 *    that thread's id); nobody else reads or writes them while it owns the
 *    slab.  The shared pool touches them only for slabs no thread owns,
 *    under its lock.
 *  - remote is the cross-thread free stack: any thread pushes with one
 *    CAS; only the owner (or the adopting thread) takes the whole stack
 *    with one exchange.
 *  - owner changes only by the owner itself (giving the slab up) or by
 *    the shared pool under its lock (handing an unowned slab out), so a
 *    thread that reads owner == its own id may use the local fields.
 *  - next/prev link the slab into its owner's ring or, when unowned, into
 *    a shared-pool list (pool lock).
 */
#ifndef HAKMEM_SLAB_H
#define HAKMEM_SLAB_H

#include "hakmem_internal.h"

enum slab_state {
  SLAB_UNUSED = 0,  /* not formatted; slot free for any class */
  SLAB_HEADER,      /* holds the SuperSlab header; never carved */
  SLAB_ACTIVE,      /* owned by a thread */
  SLAB_ORPHAN,      /* its thread exited with blocks live; adoptable */
  SLAB_EMPTY,       /* every block free; kept formatted for its class */
  SLAB_SPAN_TAIL,   /* part of the medium slab head_offset slots before */
};

/* One cache line: free finds its slab by address arithmetic and touches
 * only this line. */
struct slab {
  void *free;                 /* owner: local free list */
  uint32_t used;              /* owner: blocks handed out and not yet returned */
  uint16_t carved;            /* owner: blocks cut from the bump area so far */
  uint16_t capacity;          /* blocks in the slab (at most 4096) */
  uint32_t block_size;
  uint8_t cls;
  uint8_t state;              /* enum slab_state; pool lock or owner */
  uint8_t index;              /* position in the SuperSlab */
  uint8_t head_offset;        /* SLAB_SPAN_TAIL: distance to the head slot */
  _Atomic uint64_t owner;     /* owning thread id or HAK_NO_OWNER */
  uint64_t allocs;            /* owner: allocations served; others read it racily for reports */
  _Atomic(void *) remote;     /* cross-thread free stack */
  struct slab *next, *prev;   /* owner ring or pool list */
};
_Static_assert(sizeof(struct slab) == 64, "slab descriptor is one cache line");

/* First byte of the slab's blocks.  The slab descriptor lives in the
 * SuperSlab header, within the first registry unit of the SuperSlab, so
 * masking its address gives the SuperSlab base. */
HAK_INLINE char *slab_start(const struct slab *s)
{
  uintptr_t base = (uintptr_t)s & ~((uintptr_t)HAK_UNIT_SIZE - 1);
  return (char *)(base + ((uintptr_t)s->index << HAK_SLAB_SHIFT));
}

/* Formats s for blocks of block_size bytes in span_bytes of memory; no
 * block is carved yet. */
void slab_format(struct slab *s, unsigned cls, uint32_t block_size, size_t span_bytes);

/* Owner: takes the remote-free stack and appends it to the local list.
 * Returns the number of blocks collected. */
uint32_t slab_drain_remote(struct slab *s);

/* Owner: cuts up to a page's worth of never-used blocks (four blocks when
 * they are page-sized or more) into the local list.  Returns the number carved (0 when the slab is fully carved). */
uint32_t slab_carve(struct slab *s);

/* Any thread: one CAS push of p onto the slab's remote stack. */
HAK_INLINE void slab_free_remote(struct slab *s, void *p)
{
  void *head = atomic_load_explicit(&s->remote, memory_order_relaxed);
  do {
    *(void **)p = head;
  } while (!atomic_compare_exchange_weak_explicit(&s->remote, &head, p,
                                                  memory_order_release,
                                                  memory_order_relaxed));
}

/* Owner: true when the slab has a block to hand out without refilling. */
HAK_INLINE bool slab_has_room(const struct slab *s)
{
  return s->free || s->carved < s->capacity ||
         atomic_load_explicit(&s->remote, memory_order_relaxed);
}


#endif
