/* Large allocations: requests above the largest size class (256 KiB) get a
 * mapping of their own.  The mapping starts with a header; the block
 * follows at an offset that satisfies the requested alignment.  Mappings
 * are aligned to the registry unit (512 KiB) so that each registry entry
 * of the mapping names its header, and sizes are rounded to the BigCache
 * granularity (four steps per doubling) so that a cached mapping fits the
 * next request of the same size class exactly.
 *
 * A freed mapping is reused with its pages wherever it can serve: whole
 * for a request of at least about half its size, split in two for a
 * smaller one (the rest, behind a PROT_NONE guard page, goes back to
 * BigCache), and grown by mremap for a larger one (in place, or moved to
 * a new mapping of the size when the addresses after it are taken), so
 * that only the difference is faulted in; the difference itself comes,
 * where it can, from another cached mapping whose pages are moved after
 * the first's (the block is then two VMAs).  Before a cached mapping is
 * grown, it is joined with the cached pieces of the mapping it was split
 * from (os_join), so that pieces freed one by one serve a larger request
 * again with their pages.
 *
 * A header is written by the thread that maps the block and read by the
 * thread that frees it; hand-over goes through the program's own
 * synchronisation, as for any block.  The header's format and seal are
 * in large_hdr.h; BigCache (bigcache.h) keeps freed mappings. */
#ifndef HAKMEM_LARGE_H
#define HAKMEM_LARGE_H

#include "large_hdr.h"

HAK_INLINE void *large_block(struct large_hdr *h) { return (char *)h + h->offset; }
/* Usable bytes of a live block; a header that does not verify is a fatal
 * error (abort), as its map_size cannot be trusted. */
HAK_INLINE size_t large_usable(const struct large_hdr *h)
{
  large_verify(h, "corrupted large block header", (const char *)h + h->offset);
  return h->map_size - h->offset;
}

/* A block of size bytes aligned to align (a power of two).  *fresh is set
 * when the memory is known to be zero (a new mapping).  NULL, errno ENOMEM
 * on failure: this layer reclaims nothing itself; the caller may
 * (purge_reclaim) and try once more. */
void *large_alloc(size_t size, size_t align, bool *fresh);
/* Usable size of a fresh block for large_alloc(size, align), 0 if the
 * request is too large (a mapping reused from BigCache may be larger). */
size_t large_good_size(size_t size, size_t align);
/* Frees the block of h; p is the pointer the program passed, checked
 * against the header (fatal error if it is not the block's start, if the
 * block is not live, or if the header does not verify).  Returns true if
 * BigCache kept the mapping: the caller then kicks the purge (purge.h),
 * which sits above this layer. */
bool large_free(struct large_hdr *h, void *p);
/* For realloc of a slab block into a large one: a block that grew this
 * far is likely to grow on, so a cached mapping up to LARGE_GROW_ROOM
 * times larger serves it whole (no split); it then grows inside it. */
void *large_alloc_to_grow(size_t size);
#define LARGE_GROW_ROOM 8
/* Resizes the block of h to size bytes, moving pages rather than copying
 * when it must move.  Returns the new block, or NULL with errno ENOMEM
 * (old block intact); errno is unchanged on success.  A header that does
 * not verify is a fatal error. */
void *large_realloc(struct large_hdr *h, size_t size);
/* The header a (non-SuperSlab, non-zero) registry entry points to, if p
 * is inside its block; NULL otherwise.  A header that does not verify is
 * returned as is (its fields cannot place p): the caller's check of it
 * reports the corruption. */
struct large_hdr *large_from_entry(uintptr_t entry, const void *p);

/* Registry entries for a block of the mapping at base moving from offset
 * old_off to new_off.  Returns false (nothing changed) if a registry leaf
 * could not be mapped. */
bool large_registry_move(uintptr_t base, size_t old_off, size_t new_off);
/* Debugging and tests: 0 if h, its mapping (probed with /proc/self/maps,
 * read without stdio) and the registry agree with the invariants above;
 * otherwise a number saying which failed (see large.c). */
int large_check_invariants(const struct large_hdr *h);

#endif
