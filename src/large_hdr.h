/* The large-block header: the format of the header at the start of every
 * large mapping, its seal, and the unmapping of a whole mapping.  Shared
 * by large.c, which makes and changes mappings, and bigcache.c, which
 * keeps freed ones: both stand on it, neither calls the other for it.
 *
 * A header is written by the thread that maps the block, or that takes
 * it from BigCache, and read by the thread that frees it; hand-over goes
 * through the program's own synchronisation, as for any block, or
 * through the BigCache lock while it is cached. */
#ifndef HAKMEM_LARGE_HDR_H
#define HAKMEM_LARGE_HDR_H

#include "hakmem_internal.h"
#include "diag.h"
#include "os.h"
#include "secret.h"
#include "superslab.h"

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

/* Registry units of a block at offset: the header's through the block
 * start's (the header is unit-aligned). */
HAK_INLINE size_t large_units(size_t offset) { return (offset >> HAK_UNIT_SHIFT) + 1; }

/* Unmaps a header's whole mapping and clears its registry entries. */
HAK_INLINE void large_unmap(struct large_hdr *h)
{
  size_t size = h->map_size;
  registry_clear((uintptr_t)h, large_units(h->offset) * HAK_UNIT_SIZE);
  h->magic = 0;
  os_unmap(h, size);
}

#endif
