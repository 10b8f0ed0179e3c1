/* OS layer: the only code in libhakmem that calls mmap, munmap, madvise,
 * mremap and mprotect.  Every call is counted.  Functions are thread-safe
 * and never allocate.  Mappings are private, anonymous, read-write, and
 * accounted by the kernel (no MAP_NORESERVE): what the overcommit policy
 * cannot back is refused.  Each is followed by a guard of at least one
 * page where nothing of hakmem's is placed (see os.c), and starts at a
 * random address; except at the kernel's mapping-count limit, where a
 * mapping is placed, without a guard, so that the kernel merges it with
 * others (os_has_guard), and a range whose unmap the kernel refuses is
 * kept, decommitted, for a later mapping (os_limit.h).  No function
 * changes errno except as stated. */
#ifndef HAKMEM_OS_H
#define HAKMEM_OS_H

#include "hakmem_internal.h"
#include "config.h"

struct os_counters {
  _Atomic uint64_t mmap_calls;
  _Atomic uint64_t munmap_calls;
  _Atomic uint64_t madvise_calls;
  _Atomic uint64_t mremap_calls;
  _Atomic uint64_t mapped_bytes;   /* currently mapped */
  _Atomic uint64_t refused;        /* calls refused: range not hakmem's */
  _Atomic uint64_t unguarded;      /* mappings placed without a guard at the map-count limit */
  _Atomic uint64_t kept;           /* units kept mapped, their unmap refused, for reuse */
  _Atomic uint64_t hint_misses;    /* placement hints already taken by a mapping not ours */
};
extern struct os_counters os_counters;

/* Maps size bytes (a multiple of the page size) aligned to align (a power
 * of two >= page size; at least the 512 KiB unit is used).  Returns NULL
 * with errno = ENOMEM on failure (the kernel refused, or no memory for the
 * ownership map). */
void *os_map_aligned(size_t size, size_t align);
/* Like os_map_aligned, but the mapping starts phase bytes (a multiple of
 * the unit, less than align) past a multiple of align, and the placement
 * leaves room bytes (at most 64 MiB) of free addresses after the
 * mapping's guard, which later mappings placed by hint skip: the mapping
 * can likely grow in place (os_resize_in_place) up to that much.  Only
 * addresses are set aside.  The phase lets pages moved to the mapping
 * (os_move) keep their offset in a 2 MiB page table. */
void *os_map_aligned_room(size_t size, size_t align, size_t phase, size_t room);
/* Unmaps a whole mapping obtained from os_map_aligned (as resized since),
 * with its guard.  Refuses (a warning) a range not hakmem's. */
void os_unmap(void *addr, size_t size);
/* Gives the pages back to the OS; the range stays mapped.  dontneed:
 * MADV_DONTNEED (pages leave the resident set now and read as zero);
 * otherwise MADV_FREE (the kernel reclaims them when it needs memory; until
 * then they keep their contents).  Returns 0 or an errno value.  The first
 * ENOMEM turns decommit off for good (one warning): callers then unmap. */
int os_decommit(void *addr, size_t size, bool dontneed);
/* False once decommit has failed with ENOMEM. */
bool os_decommit_enabled(void);
/* Transparent huge page advice for a mapping: huge true -> MADV_HUGEPAGE,
 * false -> MADV_NOHUGEPAGE.  Returns 0 or an errno value (EPERM for a
 * mapping placed at the mapping-count limit, which takes no advice). */
int os_advise_huge(void *addr, size_t size, bool huge);
/* The advice a new mapping takes before its first write, by the thp
 * option: off -> MADV_NOHUGEPAGE, on -> MADV_HUGEPAGE, auto -> none (the
 * owner advises once the mapping is worth a huge page).  Before the first
 * write: where the system's THP setting is "always", a write into a
 * mapping not yet advised faults in a whole huge page, which later advice
 * does not split (2 MiB resident for a 4 KiB header).  Returns whether
 * MADV_HUGEPAGE now applies. */
bool os_advise_new_mapping(void *addr, size_t size, enum hak_thp thp);

/* Advises the library's own code from from's page to the end of its
 * segment as rarely run (MADV_RANDOM), which makes it a mapping (VMA) of
 * its own: fault-around, which maps up to 64 KiB of a file around a
 * faulting page, stops at the edge of a mapping, so code linked just
 * before from (the large blocks' paths) no longer brings the rare code
 * after it into the resident set.  from must be code of the library.
 * The one call on memory hakmem did not map; counted, its failure
 * ignored.  errno unchanged. */
void os_advise_rare_text(const void *from);

/* Whether the mapping [addr, addr+size) has a guard after it: false for
 * one placed at the mapping-count limit, and for one such a mapping was
 * placed right after. */
bool os_has_guard(const void *addr, size_t size);
/* Whether [addr, addr+size) lies in memory os_map_aligned handed out (at
 * the granularity of the 512 KiB registry unit); unmap, decommit and
 * advice refuse any other range. */
bool os_owns_range(const void *addr, size_t size);
/* Grows or shrinks the mapping ending at old + old_size in place to end at
 * old + new_size (old may be the start of the mapping's last VMA: a
 * shrink works across VMAs, a growth extends the last one).  Returns 0 on
 * success; an errno value with nothing changed: ENOMEM if growth would
 * come within a guard of the next hakmem mapping or the range after it is
 * taken, EINVAL if old is not hakmem's. */
int os_resize_in_place(void *old, size_t old_size, size_t new_size);
/* Splits the mapping [addr, addr+size), one VMA, after its first head
 * bytes (a multiple of the page size): from addr + head up to the next
 * unit boundary at least a page further becomes a PROT_NONE guard, as
 * after a mapping the kernel placed, and the rest a mapping of its own
 * (unit-aligned, still hakmem's), which is returned.  NULL with nothing
 * changed if no rest remains or the kernel refuses; errno unchanged. */
void *os_split(void *addr, size_t size, size_t head);
/* Like os_split, for a mapping of two VMAs cut where the second starts
 * (head: the first's size), so that each piece is one VMA: the guard,
 * up to a unit of the second VMA's pages, gives its pages back
 * (MADV_DONTNEED once it is PROT_NONE), and the pieces are never joined
 * (they would stay two VMAs).  NULL with nothing changed as os_split. */
void *os_cut(void *addr, size_t size, size_t head);
/* The start of the rest os_split cut off the mapping [addr, addr+size),
 * if the two still stand as os_split left them (the head's guard ends
 * there, and the rest was neither unmapped nor moved); NULL otherwise. */
void *os_split_next(const void *addr, size_t size);
/* Whether the mapping at addr is such a rest: os_split_next of the
 * mapping before it would name it. */
bool os_is_split_rest(const void *addr);
/* Undoes os_split: joins the mapping [addr, addr+size) and next, the rest
 * os_split cut off it (next == os_split_next(addr, size)), by giving
 * their guard back (read-write again, its pages as they were): the result
 * is one mapping, and one VMA, of next - addr + next_size bytes.  huge:
 * either part was advised for huge pages since the split (the whole then
 * is, so that its flags agree); false: neither was.  Returns 0, or an
 * errno value with nothing changed (EINVAL: not such a pair). */
int os_join(void *addr, size_t size, void *next, size_t next_size, bool huge);
/* Moves the pages of [old, old+old_size) to dest, which must be a mapping of
 * at least new_size bytes obtained from os_map_aligned; no data is copied.
 * seam, if not 0, is where the second of the two VMAs the range may be
 * made of starts (mremap moves one VMA at a time); the moved range has the
 * same seam.  Returns 0, or an errno value with nothing changed (ENOMEM
 * at the mapping-count limit, where mremap refuses). */
int os_move(void *old, size_t old_size, size_t seam, void *dest, size_t new_size);

#endif
