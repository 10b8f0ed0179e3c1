/* The OS layer at the kernel's limit on a process's mappings
 * (vm.max_map_count, 65530 entries by default).  Each mapping os.c places
 * is an entry of the process's map of its own, with its guard another,
 * so a program with tens of thousands of large blocks live reaches the
 * limit where glibc, whose mappings the kernel merges, does not.  There
 * the kernel refuses every new entry, and every munmap, mprotect or
 * mremap that would split one.  This file places mappings then: carved
 * from ranges whose unmap the kernel refused (kept), or right after
 * another one placed here, which the kernel merges it with; such a
 * mapping has no guard after it.
 *
 * Only os.c calls it: on its failure paths (a refused mapping, unmap or
 * move), and behind os_limit_seen(), one relaxed load, on the others.  A
 * process that never gets near the limit makes no system call here but a
 * read of /proc/self/maps each time hakmem's live mappings first pass
 * 16, 32, 64 and so on.  Once the limit is met (or the process's map is
 * three quarters full), a reserve of lone pages is mapped, each a map entry to give back when one
 * is needed for a placement here.  Placement here is one thread at a time
 * (a lock that a forked child takes over); everything else is lock-free.
 * No function allocates; none changes errno except as stated. */
#ifndef HAKMEM_OS_LIMIT_H
#define HAKMEM_OS_LIMIT_H

#include "hakmem_internal.h"

/* ---- shared with os.c ---- */

/* Same flags for every mapping: no MAP_NORESERVE, so that the kernel's
 * overcommit policy refuses what cannot be backed (malloc of 64 TiB fails
 * at once with ENOMEM, as with glibc). */
#define OS_MAP_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS)
/* The region mappings are placed in by hint (os.c's placement). */
#define OS_HINT_LO  ((uintptr_t)1 << 40)
#define OS_HINT_END ((uintptr_t)96 << 40)
/* The ownership map (os.c): a leaf per 4 GiB, a bit per unit in each of
 * its maps. */
#define OS_UNITS_LEAF_BITS (32 - HAK_UNIT_SHIFT)
#define OS_UNITS_LEAF_WORDS ((1u << OS_UNITS_LEAF_BITS) / 64)
#define OS_UNITS_LEAVES (1u << 16)
#define OS_UNITS_LEAF_MAP_SIZE (((size_t)6 * OS_UNITS_LEAF_WORDS * 8 + HAK_PAGE_SIZE - 1) & ~((size_t)HAK_PAGE_SIZE - 1))
/* A leaf's maps, in this order, each OS_UNITS_LEAF_WORDS words (os.c's
 * struct guard_leaf); os_limit.c uses the ones named here. */
enum os_units {
  OS_UNITS_OWNED = 0, /* the unit is a mapping's os.c handed out */
  OS_UNITS_PAD = 3,   /* holds the end of a mapping placed here, mapped to the unit's end */
  OS_UNITS_KEPT = 4,  /* its unmap was refused: mapped, decommitted, free for reuse */
  OS_UNITS_BARE = 5,  /* holds the last byte of a mapping with no guard after it */
};
/* os.c's table of leaves, one per 4 GiB (NULL: none yet); a leaf, once
 * set, stays. */
struct guard_leaf;
extern HAK_HIDDEN _Atomic(struct guard_leaf *) guard_l1[OS_UNITS_LEAVES];
/* os.c's hint cursor: where its next mapping goes (0: not used yet), and
 * the range [start, end) it must skip, taken by a mapping placed here. */
uintptr_t os_hint_peek(void);
void os_hint_skip(uintptr_t start, uintptr_t end);
/* The first address at or above a that is phase past a multiple of align. */
uintptr_t os_align_phase(uintptr_t a, size_t align, size_t phase);
/* os.c's usual placement (guarded, by hint or over-map); NULL if the
 * kernel refused. */
void *os_map_raw(size_t size, size_t align, size_t phase, size_t room);
/* munmap, counted; the result is not looked at. */
void os_munmap_raw(void *addr, size_t size);

/* ---- the limit ---- */

#define OS_LIMIT_SEEN 1u /* met once: the kept, pad and bare maps may be in use */
#define OS_LIMIT_NEAR 2u /* the reserve is wanted */
extern _Atomic unsigned os_limit_state;

/* Whether the limit was ever met: one relaxed load, for os.c's usual paths. */
static inline bool os_limit_seen(void)
{
  return HAK_UNLIKELY(atomic_load_explicit(&os_limit_state, memory_order_relaxed) & OS_LIMIT_SEEN);
}

/* The placement when the usual one failed (or was skipped: os_limit_map_room):
 * if the kernel refused for the mapping count, a mapping of size bytes at
 * phase past a multiple of align, without a guard; NULL if the failure
 * was for memory, or no place is found.  known: the limit was met by a
 * recent mapping, so that the probe is skipped. */
void *os_limit_map(size_t size, size_t align, size_t phase, bool known);
/* os.c's placement once the limit was met: one thread at a time (an
 * entry given back is for the placement that gave it, not for another
 * thread's mmap); the reserve filled first if an entry was freed; while
 * the limit was met within the last few dozen mappings, placed here
 * (os_limit_map), else the usual placement, and this one if that fails. */
void *os_limit_map_room(size_t size, size_t align, size_t phase, size_t room);
/* Whether the unit holding a is a mapping's or kept (os.c's tail-guard
 * bit for a mapping ending on a unit boundary is not that mapping's then). */
bool os_limit_unit_taken(uintptr_t a);
/* The mapping ending at end is unmapped, shrunk or moved: it is no
 * longer bare, and its pad is forgotten.  Returns where its pages stop
 * (os_limit_pad_end). */
uintptr_t os_limit_unmapping(uintptr_t end);
/* Whether a move is refused before it is tried (mremap refuses to move
 * pages near the limit, after it has unmapped the destination). */
bool os_limit_no_move(void);
extern _Atomic size_t os_limit_mappings, os_limit_watch;
void os_limit_granted_slow(size_t mappings);
void os_limit_released_slow(void);

/* A mapping was granted: counts hakmem's mappings, and now and then looks
 * whether the process is near the limit; near it, fills the reserve if it
 * is not whole.  One atomic add on the usual path. */
static inline void os_limit_granted(void)
{
  size_t n = atomic_fetch_add_explicit(&os_limit_mappings, 1, memory_order_relaxed) + 1;
  if (HAK_UNLIKELY(n >= atomic_load_explicit(&os_limit_watch, memory_order_relaxed)))
    os_limit_granted_slow(n);
}

/* A mapping went (unmapped or kept); near the limit the entry freed goes
 * to the reserve if it is not whole. */
static inline void os_limit_released(void)
{
  atomic_fetch_sub_explicit(&os_limit_mappings, 1, memory_order_relaxed);
  if (HAK_UNLIKELY(atomic_load_explicit(&os_limit_state, memory_order_relaxed) & OS_LIMIT_NEAR))
    os_limit_released_slow();
}
/* The kernel refused to unmap [start, end) (the unmap would split an
 * entry of the map): its pages are given back and its whole units kept
 * for a later mapping here. */
void os_limit_keep(uintptr_t start, uintptr_t end);
/* Makes the ownership map's leaf for address a after the kernel refused
 * a new one; false if that fails too.  errno unchanged. */
bool os_limit_make_leaf(uintptr_t a);
/* Where the pages of a mapping ending at end stop: the end of its last
 * unit if it was padded, end otherwise; clear: the pad is forgotten (the
 * caller unmaps or keeps it with the mapping). */
uintptr_t os_limit_pad_end(uintptr_t end, bool clear);
/* Records whether the mapping ending at end has no guard after it. */
void os_limit_bare(uintptr_t end, bool bare);
/* The PROT_NONE guard [end, guard_end) after a mapping was made part of
 * it and the kernel refused to make it a guard again (at the limit): the
 * mapping is bare, the rest of its last unit its pad, and whole units
 * after it are kept. */
void os_limit_guard_lost(uintptr_t end, uintptr_t guard_end);
/* After a move the kernel refused with ENOMEM: mremap unmaps the
 * destination [d, d+size) before it checks the count; what it unmapped
 * is mapped again (zero pages; it held nothing yet). */
void os_limit_restore_dest(char *d, size_t size);

#endif
