/* Slab: a run of same-size blocks inside a SuperSlab: one 64 KiB slot for
 * small classes; for medium classes a run of slots (superslab_span_slots),
 * with the descriptor in the first and the others marked SLAB_SPAN_TAIL.
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
#include "secret.h"
#include "size_class.h"

#include <string.h>

enum slab_state {
  SLAB_UNUSED = 0,  /* not formatted; slot free for any class */
  SLAB_HEADER,      /* holds the SuperSlab header; never carved */
  SLAB_ACTIVE,      /* owned by a thread */
  SLAB_ORPHAN,      /* its thread exited with blocks live; adoptable */
  SLAB_EMPTY,       /* every block free; kept formatted for its class */
  SLAB_SPAN_TAIL,   /* part of the medium slab head_offset slots before */
};

/* The cache line size the descriptor's layout is planned for. */
#define SLAB_LINE 64

/* Two cache lines.  The first holds everything but the remote stack:
 * malloc and the owner's free touch only it.  The second holds the remote
 * stack alone, which other threads' frees write and the owner touches
 * only when it drains: a remote free reads the first line (owner, the
 * block test) but takes only the second for its CAS, so the line the
 * owner writes on every operation stays in the owner's cache
 * (bench/larson).  A field that other threads write goes on the second
 * line, never on the first.  carved is 32 bits wide, although it never
 * exceeds 4096, so that free's block test compares with it straight from
 * memory. */
struct slab {
  _Alignas(2 * SLAB_LINE) void *free; /* owner: local free list (links encoded, see below) */
  uint16_t used;              /* owner: blocks handed out and not yet returned */
  uint16_t capacity;          /* blocks in the slab (at most 4096) */
  uint32_t carved;            /* owner: blocks cut from the bump area so far */
  /* The block size as 2^k * odd gives block_mul = (the inverse of odd
   * modulo 2^32) << (SLAB_INDEX_ROTATE - k): an offset times block_mul,
   * rotated right by SLAB_INDEX_ROTATE, is the block's index if the
   * offset is a multiple of the block size and a number above any
   * capacity otherwise (see slab_block_index). */
  uint32_t block_mul;
  uint8_t cls;
  uint8_t state;              /* enum slab_state; pool lock or owner */
  uint8_t index;              /* position in the SuperSlab */
  uint8_t head_offset;        /* SLAB_SPAN_TAIL: distance to the head slot */
  _Atomic uint64_t owner;     /* owning thread id (| SLAB_OWNER_MEDIUM) or HAK_NO_OWNER */
  uint64_t allocs;            /* owner: allocations served; others read it racily for reports */
  struct slab *next, *prev;   /* owner ring or pool list */
  /* The class the slot was formatted for before cls, or SLAB_NO_CLASS
   * (pool lock, or slab_format's caller): the pool re-formats another
   * class's EMPTY slab for a class that held it before, whose block
   * boundaries the program touched then (see pool_claim_slot_locked). */
  uint8_t prev_cls;
  /* Orphaned in a fork child (shared_pool_postfork_child): its owner,
   * which the child lacks, may have stopped between a list change and
   * its count, so used may be off by a block; slab_format clears it.
   * A block the dead thread held is only lost to the child (a slab that
   * never empties, or one that empties with that block unreachable), but
   * hakmem_check_heap does not compare such a slab's count with its list. */
  bool forked_orphan;

  _Alignas(SLAB_LINE) _Atomic(void *) remote; /* cross-thread free stack (links encoded) */
};
_Static_assert(sizeof(struct slab) == 2 * SLAB_LINE, "slab descriptor is two cache lines");

/* prev_cls of a slot that held no other class: no class's number. */
#define SLAB_NO_CLASS UINT8_MAX
_Static_assert(HAK_NUM_CLASSES <= SLAB_NO_CLASS, "SLAB_NO_CLASS is no class");

/* ---- free blocks ----
 * A free block holds two words: its link to the next free block, and the
 * free tag.  With hardening the link is stored as next ^ block ^
 * hak_secret_list, so that a write into a freed block (use after free, an
 * overflow of the neighbour) decodes to a random address instead of one
 * the writer chose, and every decoded link is checked to stay inside the
 * slab before it is followed.  The tag, hak_secret_free_tag ^ block,
 * marks the block as free: free finds it in a block it is given only if
 * the block is already free (a double free), or if the program wrote
 * exactly that secret value there.  A block being handed out gets its tag
 * cleared, but a freed block's tag stays in bytes a later, bigger block
 * over it leaves unwritten; keyed by its own block's address, such a
 * stale tag, copied by the program into another block's second word,
 * does not match there (one copied to the same address would, but that
 * block's own hand-out cleared it).
 *
 * A remote stack ends with a link to NULL.  A slab's local list ends with
 * a link to SLAB_LIST_END (and an empty list is that pointer): with
 * hardening it is slab_list_end_block, a read-only block whose link word
 * decodes, as any end of a list does, to a delta outside the 64 KiB slot
 * (hak_secret_list has its top bit set), so that malloc's fast path needs
 * no empty-list test besides the link check; without hardening it is
 * NULL. */

extern HAK_HIDDEN const uintptr_t slab_list_end_block[2];

/* The end of a local free list; see above.  A constant address. */
#define SLAB_LIST_END (HAK_HARDENING ? (void *)(uintptr_t)slab_list_end_block : NULL)

/* Whether p, reached by following a local list or a remote stack (or
 * read as a list's head), ends it. */
HAK_INLINE bool slab_list_is_end(const void *p)
{
  return p == NULL || p == SLAB_LIST_END;
}

HAK_INLINE uintptr_t *slab_block_words(void *p) { return (uintptr_t *)p; }

/* The stored form of a link from block p to next. */
HAK_INLINE uintptr_t slab_link_encode(const void *p, const void *next)
{
  return hak_hardened ? (uintptr_t)next ^ (uintptr_t)p ^ hak_secret_list : (uintptr_t)next;
}

/* The link of free block p decoded, unchecked: for the walks that check
 * each block themselves (the heap check, slab_recount). */
HAK_INLINE uintptr_t slab_link_raw(const void *p)
{
  uintptr_t w = *(const uintptr_t *)p;
  return hak_hardened ? w ^ hak_secret_list ^ (uintptr_t)p : w;
}

/* The free tag of block p: the secret keyed by p's address. */
HAK_INLINE uintptr_t slab_free_tag(const void *p)
{
  return hak_secret_free_tag ^ (uintptr_t)p;
}

/* Marks p free and links it to next. */
HAK_INLINE void slab_block_set_free(void *p, const void *next)
{
  uintptr_t *w = slab_block_words(p);
  uintptr_t tag = slab_free_tag(p), link = slab_link_encode(p, next);
  w[0] = link;
  if (hak_hardened)
    w[1] = tag;
}

/* Whether p carries its free tag (it is free, or the program wrote the
 * secret keyed by p there). */
HAK_INLINE bool slab_block_tagged(const void *p)
{
  return hak_hardened && ((const uintptr_t *)p)[1] == slab_free_tag(p);
}

/* Whether p may carry the free tag: the tag's low half only, read with a
 * 4-byte load of the tag word's first half (bytes 8-11 of the block).
 * free's fast path tests this, and the slow paths confirm a match with
 * slab_block_tagged, so a double free is caught as before.  Why half: a
 * program that has just written a block's last bytes with narrow stores
 * (the NUL of a string in a 16-byte block, bytes 12-15) leaves a load of
 * the whole word nothing to forward from; that load then waits until
 * those stores reach the cache, and the free behind it (about 8 cycles a
 * free on bench/tiny_hot's 16-byte blocks). */
HAK_INLINE bool slab_block_maybe_tagged(const void *p)
{
  uint32_t low;
  memcpy(&low, (const char *)p + sizeof(uintptr_t), sizeof low);
  return hak_hardened && low == (uint32_t)slab_free_tag(p);
}

/* The decoded link of a free block whose link does not point into its own
 * 64 KiB slot: the end of the list (NULL or SLAB_LIST_END), a medium
 * slab's block in another slot, or a corrupted link (fatal error).  Out
 * of line. */
void *slab_link_decode_far(const struct slab *s, const void *p, uintptr_t delta);

/* What a list's owner does with a link that leaves its block's 64 KiB
 * slot (delta = next ^ p): returns next if the list may go there, never
 * returns otherwise. */
typedef void *slab_link_far_fn(const struct slab *s, const void *p, uintptr_t delta);

/* The next free block after p on list s, checked.  The common case (next
 * in the same 64 KiB slot) costs an XOR and a compare; far, a constant at
 * every call site so that it inlines to a direct call, decides the
 * rest. */
HAK_INLINE void *slab_link_follow(const struct slab *s, const void *p, slab_link_far_fn *far)
{
  uintptr_t w = *(const uintptr_t *)p;
  if (!hak_hardened)
    return (void *)w;
  uintptr_t delta = w ^ hak_secret_list;  /* next ^ p */
  if (HAK_LIKELY(delta < HAK_SLAB_SIZE))
    return (void *)(delta ^ (uintptr_t)p);
  return far(s, p, delta);
}

/* The next free block after p, checked: it lies in p's slab. */
HAK_INLINE void *slab_link_next(const struct slab *s, const void *p)
{
  return slab_link_follow(s, p, slab_link_decode_far);
}

/* The rotation of slab_block_index: the largest power of two dividing
 * any block size (HAK_MEDIUM_MAX is the largest block size and a power of
 * two), so that one constant serves every class. */
#define SLAB_INDEX_ROTATE 18
_Static_assert(HAK_MEDIUM_MAX == 1u << SLAB_INDEX_ROTATE, "no block size has a power-of-two factor above 2^SLAB_INDEX_ROTATE");

/* Index of the block at byte offset off of the slab, or a number above
 * the slab's capacity when off is not a block boundary: one
 * multiplication and a rotation by a constant.  With the block size
 * 2^k * odd and off = 2^a * m (m odd), off * block_mul is 2^r times the
 * index when the block size divides off (r = SLAB_INDEX_ROTATE); when
 * a < k it has a bit set below bit r, which the rotation moves to bit
 * 32 - (k - a) or above; when odd does not divide off >> k, the rotation
 * leaves (off >> k) * inverse(odd) modulo 2^(32 - r), which is then above
 * (2^(32 - r) - 1) / odd (the divisibility test of Granlund and
 * Montgomery), again above any capacity.  Exact for offsets below
 * 2^(32 - r + k); tests/test_slab.c checks every offset of every class. */
HAK_INLINE uint32_t slab_block_index(const struct slab *s, uint32_t off)
{
  uint32_t x = off * s->block_mul;
  return (x >> SLAB_INDEX_ROTATE) | (x << (32 - SLAB_INDEX_ROTATE));
}

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
 * Returns the number of blocks collected.  Every link is checked, and a
 * stack longer than the blocks in use (a cycle: the same block freed twice
 * at once by two threads) is a fatal error, never an endless walk. */
uint32_t slab_drain_remote(struct slab *s);

/* Under the pool lock, for a slab orphaned by a fork (forked_orphan),
 * before it is adopted or its count lets it go back to the pool: drains the remote stack, then makes carved and used what the
 * local list says (carved covers every block on it, used is the carved
 * blocks not on it) and tags every listed block free, so that a list
 * change its dead owner left without its count neither stops an
 * allocation nor rejects a free.  A block the dead owner held counts as
 * used for ever: a leak in the child, never a block handed out twice. */
void slab_recount(struct slab *s);

/* Owner: cuts up to a page's worth of never-used blocks, but at least
 * SLAB_CARVE_MIN (a slab's first carve: only those that start in its
 * first page, the second then makes up SLAB_CARVE_MIN), into the local
 * list.  Returns the number carved (0 when the slab is fully carved). */
#define SLAB_CARVE_MIN 4
uint32_t slab_carve(struct slab *s);

/* Any thread: one CAS push of the chain first .. last (linked and tagged
 * free, last's link aside) onto the slab's remote stack; last gets the
 * free tag too, so a second free of any of them from any thread is seen. */
HAK_INLINE void slab_free_remote_chain(struct slab *s, void *first, void *last)
{
  void *head = atomic_load_explicit(&s->remote, memory_order_relaxed);
  do {
    slab_block_set_free(last, head);
  } while (!atomic_compare_exchange_weak_explicit(&s->remote, &head, first,
                                                  memory_order_release,
                                                  memory_order_relaxed));
}

/* Any thread: one CAS push of p onto the slab's remote stack. */
HAK_INLINE void slab_free_remote(struct slab *s, void *p)
{
  slab_free_remote_chain(s, p, p);
}

/* The block size of s. */
HAK_INLINE size_t slab_block_size(const struct slab *s)
{
  return size_class_size(s->cls);
}

/* Whether p is the start of a block of s that has been carved (it was
 * handed out at least once or is on a free list).  Exact, for any slab
 * (a medium one spans several slots); the slow paths use it. */
bool slab_is_block(const struct slab *s, const void *p);

/* Whether p is the start of one of the first below blocks of s, carved
 * or not (below at most the capacity): slab_is_block with below =
 * carved; the walks of a slab orphaned by a fork, whose carved may be
 * behind its list, pass the capacity. */
bool slab_is_block_below(const struct slab *s, const void *p, uint32_t below);

/* Set in the owner of a medium slab, beside its thread's id: no thread's
 * free_key has it, so free's fast path leaves every medium block to the
 * slow path, which frees it with tcache_free_local_medium (a block in the
 * head slot too, which the fast path would push without making its slab
 * the active one).  Ids are counted from 1 and never reach it. */
#define SLAB_OWNER_MEDIUM (UINT64_C(1) << 62)

/* The owner field a slab of class cls handed to thread id carries. */
HAK_INLINE uint64_t slab_owner_for(unsigned cls, uint64_t id)
{
  return size_class_is_medium(cls) ? id | SLAB_OWNER_MEDIUM : id;
}

/* Whether thread id owns s, a slab of any class: its owner field without
 * SLAB_OWNER_MEDIUM is id (HAK_NO_OWNER without it is no thread's id). */
HAK_INLINE bool slab_owned_by(const struct slab *s, uint64_t id)
{
  return (atomic_load_explicit(&s->owner, memory_order_relaxed) & ~SLAB_OWNER_MEDIUM) == id;
}

/* Owner: true when the slab has a block to hand out without refilling. */
HAK_INLINE bool slab_has_room(const struct slab *s)
{
  return !slab_list_is_end(s->free) || s->carved < s->capacity ||
         atomic_load_explicit(&s->remote, memory_order_relaxed);
}


#endif
