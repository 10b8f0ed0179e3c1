/* SuperSlab: a 2^superslab_lg-byte region aligned to its size, cut into
 * 64 KiB slots.  Slot 0 holds this header (the rest of slot 0 is never
 * touched, so costs address space only) and slots 1..n-1 hold slabs: a
 * small slab is one slot, a medium slab a run of slots
 * (superslab_span_slots) whose first holds its descriptor and whose others
 * are SLAB_SPAN_TAIL, so that one SuperSlab holds slabs of several
 * classes, small and medium.
 *
 * The registry maps any address to the hakmem object covering it, in O(1):
 * a two-level table indexed by address >> 32 and then by 512 KiB unit.  An
 * entry is a SuperSlab pointer with the low bit set, a large-block header
 * pointer (low bit clear), or 0 for memory hakmem does not own; free tells
 * its common case, a SuperSlab block, by that one bit.  Lookups are lock-free loads; updates are made under the
 * registry lock by the thread that maps or unmaps the range, before the
 * range is handed out and after it is withdrawn.
 *
 * SuperSlab fields other than the slab array belong to the shared pool
 * and are read and written under its lock. */
#ifndef HAKMEM_SUPERSLAB_H
#define HAKMEM_SUPERSLAB_H

#include <pthread.h>
#include <stddef.h>
#include "slab.h"

#define SUPERSLAB_MAGIC 0x48414b4d53534c42ull /* "HAKMSSLB" */

/* The header is the slot-0 descriptors' page and no more: the
 * SuperSlab's own fields take the place of slabs[0], the header slot's
 * descriptor, which no slab uses.  Where a stray pointer into slot 0 makes
 * free read that descriptor, the fields hold what it held: cls,
 * head_offset and index 0, state SLAB_HEADER, and magic where owner was
 * (no thread's id nor free key, so free leaves it to the slow path, which
 * rejects it by the state).  A second page for a hundred bytes of fields
 * would cost every SuperSlab 4 KiB of resident memory. */
struct superslab {
  union {
    /* First, so that a slab's descriptor is at base + index * 128. */
    struct slab slabs[HAK_SS_MAX_SLABS];
    struct {
      uint32_t lg;                 /* log2 of the size */
      uint32_t nslabs;             /* including the header slot */
      uint32_t ninuse;             /* slabs ACTIVE or ORPHAN */
      uint32_t nunused;            /* slabs UNUSED */
      /* Slots whose pages are not resident (bit i = slot i): never
       * touched since the mapping, or given back.  A slot handed out
       * clears its bit. */
      uint32_t decommitted;
      uint8_t header_cls;          /* slabs[0].cls: 0 */
      uint8_t header_state;        /* slabs[0].state: SLAB_HEADER */
      uint8_t header_index;        /* slabs[0].index: 0 */
      uint8_t header_head_offset;  /* slabs[0].head_offset: 0 */
      uint64_t magic;              /* over slabs[0].owner */
      size_t kept_bytes;           /* kept: its committed bytes, as the pool counts them */
      struct superslab *all_next, *all_prev;       /* every live SuperSlab */
      /* Free slots (UNUSED, EMPTY, or the span of an EMPTY medium slab)
       * with their bit in decommitted clear: their count, which the pool
       * sums into its free committed bytes, and those the purge found
       * free at its last pass that marked them (at purge_marked_ms) and
       * that stayed free since: it gives them back once purge_delay_ms
       * has passed since. */
      uint32_t free_committed;
      uint32_t purge_marked;
      uint64_t purge_marked_ms;
      uint64_t empty_since_ms;     /* when it became fully free (monotonic ms) */
      struct superslab *unused_next, *unused_prev; /* those with UNUSED slots */
      bool on_unused_list;
      bool empty_kept;             /* fully free and kept by the release policy */
      bool huge_advised;           /* MADV_HUGEPAGE applied */
    };
  };
};
_Static_assert(sizeof(struct superslab) == HAK_SS_MAX_SLABS * sizeof(struct slab),
               "the SuperSlab's fields fit the header slot's descriptor");
_Static_assert(offsetof(struct superslab, huge_advised) < sizeof(struct slab),
               "the SuperSlab's fields fit the header slot's descriptor");
_Static_assert(offsetof(struct superslab, header_cls) == offsetof(struct slab, cls) &&
               offsetof(struct superslab, header_state) == offsetof(struct slab, state) &&
               offsetof(struct superslab, header_index) == offsetof(struct slab, index) &&
               offsetof(struct superslab, header_head_offset) == offsetof(struct slab, head_offset) &&
               offsetof(struct superslab, magic) == offsetof(struct slab, owner),
               "the header slot's descriptor reads as SLAB_HEADER, owned by no thread");

/* ---- registry ---- */

#define REGISTRY_L1_BITS 16   /* 48-bit user address space, 4 GiB per leaf */
#define REGISTRY_L2_BITS (32 - HAK_UNIT_SHIFT)
#define REGISTRY_TAG_SUPERSLAB ((uintptr_t)1)

struct registry_leaf {
  _Atomic uintptr_t entry[1u << REGISTRY_L2_BITS];
};
/* Level 1 is never empty: each slot names a leaf, as its distance in bytes
 * from registry_empty_leaf, a static leaf of zeros that nothing writes
 * (const, and apart in .lbss: in the read-only data it would be 64 KiB of
 * the file, resident whenever a neighbouring page is read).  A zero slot
 * (the initial state, in .bss) thus names the empty leaf, and a lookup
 * needs no NULL test; a distance rather than a pointer keeps the table out
 * of the dynamic relocations (65536 of them, 512 KiB written at load). */
extern HAK_HIDDEN _Atomic uintptr_t registry_l1[1u << REGISTRY_L1_BITS];
extern HAK_HIDDEN const struct registry_leaf registry_empty_leaf;

/* The registry entry covering address a, or 0 if hakmem does not own it.
 * One range test on the level-1 index covers every address above 2^48. */
HAK_INLINE uintptr_t registry_lookup(uintptr_t a)
{
  uintptr_t i = a >> 32;
  if (HAK_UNLIKELY(i >= (1u << REGISTRY_L1_BITS)))
    return 0;
  /* The leaf's distance plus the entry's offset, then one load from the
   * empty leaf's address: with both tables hidden that address is a
   * PC-relative lea, not a load from the GOT, and the sum keeps the
   * instruction count of a single indexed load (the empty asm keeps GCC
   * from adding the lea's result first, one more add). */
  uintptr_t off = atomic_load_explicit(&registry_l1[i], memory_order_acquire) +
                  ((a >> HAK_UNIT_SHIFT) & ((1u << REGISTRY_L2_BITS) - 1)) * sizeof(uintptr_t);
  __asm__("" : "+r"(off));
  return atomic_load_explicit((const _Atomic uintptr_t *)((uintptr_t)&registry_empty_leaf + off),
                              memory_order_relaxed);
}

/* Records entry for every unit of [base, base+size) (base unit-aligned).
 * Returns true on error (no memory for a registry leaf; nothing recorded). */
bool registry_set(uintptr_t base, size_t size, uintptr_t entry);
/* Clears the entries of [base, base+size). */
void registry_clear(uintptr_t base, size_t size);

HAK_INLINE bool registry_is_superslab(uintptr_t entry)
{
  return entry & REGISTRY_TAG_SUPERSLAB;
}

/* Slab of a block at a, given the registry entry of a SuperSlab. */
HAK_INLINE struct slab *superslab_slab_of(uintptr_t entry, uintptr_t a)
{
  /* a + 1 - entry is a's offset from the base (the entry is base + 1):
   * the add of 1 is a lea that also copies a, which free keeps, and the
   * tag comes off in the lea that adds the base back: five instructions
   * where untagging first takes six (a separate copy and a subtract);
   * the empty asm keeps GCC from folding the two 1s. */
  uintptr_t off = a + REGISTRY_TAG_SUPERSLAB;
  __asm__("" : "+r"(off));
  off -= entry;
  return (struct slab *)((char *)(entry - REGISTRY_TAG_SUPERSLAB) +
                         (off >> HAK_SLAB_SHIFT) * sizeof(struct slab));
}

/* The slots a slab of class cls spans in a SuperSlab of nslabs slots:
 * size_class_slots, cut to the nslabs - 1 beside the header
 * (superslab_lg = 19) and then to the slots its whole blocks reach. */
HAK_INLINE unsigned superslab_span_slots(unsigned cls, unsigned nslabs)
{
  unsigned k = size_class_slots(cls);
  if (HAK_LIKELY(k < nslabs))
    return k;
  size_t bs = size_class_size(cls);
  size_t bytes = (((size_t)(nslabs - 1) << HAK_SLAB_SHIFT) / bs) * bs;
  return (unsigned)((bytes + HAK_SLAB_SIZE - 1) >> HAK_SLAB_SHIFT);
}

/* The slots of ss that slab s (a head, any class) spans, as a mask. */
HAK_INLINE uint32_t superslab_span_mask(unsigned nslabs, const struct slab *s)
{
  unsigned k = superslab_span_slots(s->cls, nslabs);
  return (uint32_t)((((uint64_t)1 << k) - 1) << s->index);
}

/* Maps and registers a new SuperSlab of 2^lg bytes with every slot UNUSED.
 * Returns NULL (errno ENOMEM) on failure.  Caller holds the pool lock. */
struct superslab *superslab_create(unsigned lg);
/* Unregisters and unmaps a SuperSlab no slab of which is in use. */
void superslab_destroy(struct superslab *ss);

enum superslab_release {
  SUPERSLAB_KEEP,      /* keep it mapped and committed for reuse */
  SUPERSLAB_DECOMMIT,  /* keep it mapped, give its pages back now */
  SUPERSLAB_UNMAP,     /* give it back to the OS */
};
/* ---- release policy: every decision on keeping, decommitting or
 * unmapping free SuperSlab memory is one of these functions; the shared
 * pool applies them. ---- */

/* The release policy: what to do with a SuperSlab that has just become
 * fully free, given how many fully free ones are kept already and how many
 * bytes of free memory the pool holds committed (this one's included).
 * Every path that empties a SuperSlab asks this function and nothing
 * else; the answer follows the configuration (superslab_keep, ss_mem_lean,
 * ss_mem_lean_target_mb, ss_mem_lean_decommit). */
enum superslab_release superslab_release_policy(const struct superslab *ss,
                                                unsigned kept_empty,
                                                size_t free_committed_bytes);
/* The most fully free SuperSlabs kept mapped (superslab_keep, or its
 * learned value); the pool unmaps kept ones beyond it when it shrinks. */
unsigned superslab_keep_limit(void);
/* Memory-lean mode, on every release: whether the pool, holding
 * free_committed_bytes of free resident memory, decommits free slots now
 * to come back under ss_mem_lean_target_mb (false outside lean mode, with
 * ss_mem_lean_decommit = OFF, or once decommit has failed). */
bool superslab_lean_must_decommit(size_t free_committed_bytes);
/* How the policy decommits at once (SUPERSLAB_DECOMMIT, lean target):
 * MADV_DONTNEED (true) or MADV_FREE (ss_mem_lean_decommit).  The purge,
 * by time, always uses MADV_DONTNEED. */
bool superslab_decommit_dontneed(void);
/* Whether a SuperSlab kept empty since since_ms, or free slots marked
 * then, are due for decommit at now_ms (the delayed half of the policy,
 * applied by the purge): after purge_delay_ms, in memory-lean mode after
 * a SUPERSLAB_LEAN_DELAY_DIVISOR-th of it. */
#define SUPERSLAB_LEAN_DELAY_DIVISOR 4
bool superslab_purge_due(uint64_t since_ms, uint64_t now_ms);
/* Whether it is due to be unmapped: free for SUPERSLAB_UNMAP_DELAYS
 * purge delays (at least SUPERSLAB_UNMAP_MIN_MS).  A program whose heap
 * swings by a few SuperSlabs reuses them decommitted at worst, never
 * paying munmap, mmap and a TLB shootdown per swing; one that shrank for
 * good gives the address space back.  Never with purge_delay_ms = -1. */
#define SUPERSLAB_UNMAP_DELAYS 10
#define SUPERSLAB_UNMAP_MIN_MS 1000
bool superslab_unmap_due(uint64_t since_ms, uint64_t now_ms);

/* The number of slots in a mask of slots (decommitted and the like).
 * Without -mpopcnt, __builtin_popcount is a call to libgcc's
 * __popcountdi2, linked at the end of the text among the rarely run code:
 * the shared pool's first acquire would bring 64 KiB of it into memory
 * (doc/internals.md, "The library's own memory").  Inline, a few shifts
 * and one multiply. */
HAK_INLINE unsigned superslab_slot_count(uint32_t mask)
{
  mask = mask - ((mask >> 1) & 0x55555555u);
  mask = (mask & 0x33333333u) + ((mask >> 2) & 0x33333333u);
  mask = (mask + (mask >> 4)) & 0x0f0f0f0fu;
  return (mask * 0x01010101u) >> 24;
}

/* Decommits slots [first, last) of ss (not the header slot) and records
 * them as decommitted; dontneed chooses MADV_DONTNEED (the pages are gone
 * from the resident set at once) over MADV_FREE (reclaimed lazily).
 * Returns 0 or an errno value; on failure nothing is recorded. */
int superslab_decommit_slots(struct superslab *ss, unsigned first, unsigned last, bool dontneed);

/* Fork support: the registry lock, taken last in the documented order. */
void superslab_registry_lock(void);
void superslab_registry_unlock(void);
void superslab_registry_reinit(void);

#endif
