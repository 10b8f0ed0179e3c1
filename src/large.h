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
 * BigCache), and grown in place by mremap for a larger one, so that only
 * the difference is faulted in.
 *
 * A header is written by the thread that maps the block and read by the
 * thread that frees it; hand-over goes through the program's own
 * synchronisation, as for any block.  BigCache state is under its own lock
 * (the large lock in the fork order). */
#ifndef HAKMEM_LARGE_H
#define HAKMEM_LARGE_H

#include "hakmem_internal.h"
#include "diag.h"

#include "secret.h"

#define LARGE_MAGIC 0x48414b4d4c415247ull /* "HAKMLARG" */
#define LARGE_HEADER_SIZE 64

enum large_state { LARGE_LIVE = 1, LARGE_CACHED = 2 };

/* Invariants, checked by large_check_invariants:
 *  - the mapping is exactly [hdr, hdr + map_size): map_size bytes are
 *    mapped from the header, made of one VMA, or of two split at seam;
 *  - the registry names hdr for the units from the header's through the
 *    block start's (hdr + offset), and for no other unit of the mapping:
 *    an interior pointer beyond them is not hakmem's, and the cost of a
 *    mapping does not grow with its size;
 *  - check == large_check_word(hdr): the fields a forged header could
 *    turn into overlapping blocks are sealed with a per-process secret. */
struct large_hdr {
  uint64_t magic;
  size_t map_size;            /* bytes mapped, starting at the header */
  size_t offset;              /* block = (char *)hdr + offset */
  uint32_t state;             /* enum large_state */
  bool huge_advised;          /* MADV_HUGEPAGE applied */
  bool decommitted;           /* cached, and its pages given back */
  union {
    uint64_t cached_at_ms;    /* cached: when it entered BigCache */
    size_t live_size;         /* live: the size last asked for (realloc
                               * tells growth from shrinking by it; not
                               * sealed, as it bounds nothing) */
  };
  struct large_hdr *cache_next;
  /* 0, or where the second of the mapping's two VMAs starts: a block
   * moved over the head of a cached mapping keeps that mapping's tail,
   * and mremap acts on one VMA at a time. */
  size_t seam;
  uint64_t check;             /* large_check_word, sealed by large_seal */
};
_Static_assert(sizeof(struct large_hdr) == LARGE_HEADER_SIZE, "large header size");

/* A mix of the sealed fields and the header's own address (a header
 * copied elsewhere does not verify), keyed by the secret. */
HAK_INLINE uint64_t large_check_word(const struct large_hdr *h)
{
  uint64_t x = secret_mix((uint64_t)(uintptr_t)h ^ h->magic);
  x = secret_mix(x ^ h->map_size);
  x = secret_mix(x ^ h->offset);
  x = secret_mix(x ^ h->seam ^ ((uint64_t)h->state << 56));
  return x ^ hak_secret_large;
}
HAK_INLINE void large_seal(struct large_hdr *h) { h->check = large_check_word(h); }
HAK_INLINE bool large_header_ok(const struct large_hdr *h) { return h->check == large_check_word(h); }
/* Aborts with "hakmem: <what> 0x<ptr>" unless the header verifies. */
HAK_INLINE void large_verify(const struct large_hdr *h, const char *what, const void *ptr)
{
  if (HAK_UNLIKELY(!large_header_ok(h)))
    hak_fatal_pointer(what, ptr);
}

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
 * on failure. */
void *large_alloc(size_t size, size_t align, bool *fresh);
/* Usable size of a fresh block for large_alloc(size, align), 0 if the
 * request is too large (a mapping reused from BigCache may be larger). */
size_t large_good_size(size_t size, size_t align);
/* Frees the block of h; p is the pointer the program passed, checked
 * against the header (fatal error if it is not the block's start, if the
 * block is not live, or if the header does not verify). */
void large_free(struct large_hdr *h, void *p);
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

/* Unmaps a header's whole mapping and clears its registry entries. */
void large_unmap(struct large_hdr *h);
/* Registry entries for a block of the mapping at base moving from offset
 * old_off to new_off.  Returns false (nothing changed) if a registry leaf
 * could not be mapped. */
bool large_registry_move(uintptr_t base, size_t old_off, size_t new_off);
/* Debugging and tests: 0 if h, its mapping (probed with /proc/self/maps,
 * read without stdio) and the registry agree with the invariants above;
 * otherwise a number saying which failed (see large.c). */
int large_check_invariants(const struct large_hdr *h);

/* ---- BigCache (bigcache.c) ---- */

/* Rounds a mapping size up to its BigCache size class. */
size_t bigcache_round(size_t map_size);
/* The smallest cached mapping of want..most bytes (the most recently
 * cached of that size: its pages are the likeliest to be resident);
 * failing that, the largest of least..want bytes (least == want: none),
 * for the caller to grow; or NULL.  Every cached header visited is
 * verified (a mismatch is a fatal error). */
struct large_hdr *bigcache_take(size_t least, size_t want, size_t most);
/* Offers a freed mapping to the cache (resealing its header); false if it
 * was not kept. */
bool bigcache_put(struct large_hdr *h);
/* Offers a mapping taken from the cache and not used, or the part split
 * off one: like bigcache_put, but it keeps the age and decommitted state
 * (cached_at_ms, decommitted) of the mapping it was, or was part of. */
bool bigcache_put_back(struct large_hdr *h);
/* Unmaps every cached mapping; returns true if there was any. */
bool bigcache_flush(void);
/* The purge's part for BigCache: decommits cached mappings older than
 * purge_delay_ms (all of them when idle: the pool saw no activity and
 * BigCache no take or put since the last pass), in one pass: with batch_madvise
 * = 1 freed blocks wait for it, with 0 each is decommitted as it is freed.
 * Returns true if some wait for later. */
bool bigcache_purge(uint64_t now_ms, bool idle);
bool bigcache_purge_wanted(void);
bool bigcache_take_purge_wanted(void);

/* For hakmem_check_heap: every cached header sealed, cached and counted.
 * Returns NULL, or the first bad header (the bucket table itself when
 * the totals disagree). */
const struct large_hdr *bigcache_check(void);

struct bigcache_usage { uint64_t bytes, count; };
void bigcache_usage(struct bigcache_usage *u);

void bigcache_prefork(void);
void bigcache_postfork_parent(void);
void bigcache_postfork_child(void);

#endif
