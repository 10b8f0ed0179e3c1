/* Large allocations by direct mapping. */
#include "large.h"
#include "bigcache.h"
#include "os.h"
#include "counters.h"
#include "diag.h"
#include "superslab.h"
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* The first alignment large_alloc refuses. */
#define LARGE_ALIGN_LIMIT ((size_t)1 << 44)

static size_t large_offset(size_t align)
{
  return align > LARGE_HEADER_SIZE ? align : LARGE_HEADER_SIZE;
}

/* Mapping size for a block of size bytes at offset, or 0 on overflow. */
static size_t large_map_size(size_t size, size_t offset)
{
  if (size > (size_t)PTRDIFF_MAX - offset - HAK_UNIT_SIZE)
    return 0;
  return bigcache_round(hak_align_up(offset + size, HAK_PAGE_SIZE));
}

bool large_registry_move(uintptr_t base, size_t old_off, size_t new_off)
{
  size_t old_units = large_units(old_off), new_units = large_units(new_off);
  if (new_units > old_units &&
      registry_set(base + old_units * HAK_UNIT_SIZE, (new_units - old_units) * HAK_UNIT_SIZE, base))
    return false;
  if (old_units > new_units)
    registry_clear(base + new_units * HAK_UNIT_SIZE, (old_units - new_units) * HAK_UNIT_SIZE);
  return true;
}

static bool large_register(uintptr_t base, size_t offset)
{
  return !registry_set(base, large_units(offset) * HAK_UNIT_SIZE, base);
}

static void large_unregister(uintptr_t base, size_t offset)
{
  registry_clear(base, large_units(offset) * HAK_UNIT_SIZE);
}

/* Free addresses left after a new large mapping, so that it can grow in
 * place: by realloc, or, once cached, for a larger request (a larger
 * growth moves it).  Three times its size: most growth is by up to
 * LARGE_GROW_FROM times. */
static size_t large_room(size_t map_size) { return map_size > SIZE_MAX / 3 ? SIZE_MAX : 3 * map_size; }

/* A new mapping for a block at offset, registered and sealed (state 0:
 * the caller sets it); NULL with errno ENOMEM on failure. */
static struct large_hdr *large_map(size_t map_size, size_t align, size_t offset)
{
  struct large_hdr *h = os_map_aligned_room(map_size, align > HAK_UNIT_SIZE ? align : HAK_UNIT_SIZE, 0,
                                            large_room(map_size));
  if (!h)
    return NULL;
  bool huge_advised = os_advise_new_mapping(h, map_size, hak_config.thp);
  h->magic = LARGE_MAGIC;
  h->map_size = map_size;
  h->offset = offset;
  h->huge_advised = huge_advised;
  if (!large_register((uintptr_t)h, offset)) {
    os_unmap(h, map_size);
    errno = ENOMEM;
    return NULL;
  }
  large_seal(h);
  return h;
}

/* A cached mapping is split for a request (unless the block is expected
 * to grow) when the rest would be at least this large and at least as
 * large as the request: the rest goes back to BigCache with its pages
 * instead of sitting unused in a live block.  A smaller rest stays with
 * the block: pieces too small to serve anything would fill the cache. */
#define LARGE_SPLIT_MIN ((size_t)1 << 20)

/* A cached mapping grown for a request takes the pages of another one
 * for the difference if that one has at least 1/LARGE_GROW_FROM of it:
 * moving fewer pages is not worth the two mremap calls. */
#define LARGE_GROW_FROM 4

/* A mapping of two VMAs is cut where the second starts when that one is
 * at least this large: the cut drops up to a unit of its pages (the
 * guard; a page of the first's at a unit boundary, see large_split) and
 * leaves two pieces for the cache to hold, which pays only for
 * a large one (bench/vm --mixed, whose pieces are mostly smaller, kept
 * more resident with cuts of 1 or 4 MiB). */
#define LARGE_CUT_MIN ((size_t)8 << 20)

/* Makes the rest os_split or os_cut cut off h, at t, a cached mapping of
 * its own, which goes back to BigCache with the age and state of h. */
static void large_cache_rest(struct large_hdr *h, struct large_hdr *t, size_t total)
{
  size_t t_size = total - (size_t)((char *)t - (char *)h);
  t->magic = LARGE_MAGIC;
  t->map_size = t_size;
  t->offset = LARGE_HEADER_SIZE;
  t->state = LARGE_CACHED;
  t->huge_advised = h->huge_advised;
  t->decommitted = h->decommitted;
  t->cached_at_ms = h->cached_at_ms;
  t->cache_next = NULL;
  t->seam = 0;
  if (!large_register((uintptr_t)t, t->offset)) {
    t->magic = 0;
    os_unmap(t, t_size);
    return;
  }
  large_seal(t);
  if (!bigcache_put_back(t))
    large_unmap(t);
}

/* Splits the rest of cached mapping h beyond map_size bytes off into a
 * cached mapping of its own, behind a guard, if it is worth one;
 * otherwise h stays whole.  The rest starts on the first unit boundary
 * at least a page past map_size (the registry names mappings by unit),
 * and the head keeps every page before it but the last, which becomes
 * the guard: a guard of one page changes one page table entry, so the
 * kernel invalidates that page alone rather than flushing the whole TLB,
 * as it does for a range of more than a few dozen pages (and the pages
 * that a longer guard would hold, resident but unusable, stay usable by
 * the block).  A mapping of two VMAs whose first holds the request is
 * first cut where the second starts (os_cut), if the second is at least
 * LARGE_CUT_MIN: each piece is then one VMA, which can be grown with
 * another's pages or give its own (large_grow_with_cached), where a
 * mapping of two could do neither and served, whole, requests of any
 * smaller size, its unused pages resident in a live block. */
static void large_split(struct large_hdr *h, size_t map_size)
{
  size_t total = h->map_size, guard = HAK_UNIT_SIZE + HAK_PAGE_SIZE; /* at most */
  size_t seam = h->seam;
  if (seam != 0 && map_size <= seam && total - seam >= guard + LARGE_CUT_MIN) {
    /* At a unit boundary the rest starts at the seam itself, the head's
     * last page its guard: one page of the first VMA is given up rather
     * than a unit of the second's (bigcache_round makes most seams of
     * multi-MiB mappings unit boundaries). */
    size_t cut = seam;
    if ((((uintptr_t)h + seam) & (HAK_UNIT_SIZE - 1)) == 0 && map_size <= seam - HAK_PAGE_SIZE)
      cut = seam - HAK_PAGE_SIZE;
    struct large_hdr *t = os_cut(h, total, cut);
    if (t) {
      h->map_size = cut;
      h->seam = 0;
      large_seal(h);
      large_cache_rest(h, t, total);
      total = cut;
    }
  }
  if (h->seam != 0 || total - map_size < guard + LARGE_SPLIT_MIN ||
      total - map_size < guard + map_size)
    return;
  size_t head = hak_align_up(map_size + HAK_PAGE_SIZE, HAK_UNIT_SIZE) - HAK_PAGE_SIZE;
  struct large_hdr *t = os_split(h, total, head);
  if (!t)
    return;
  h->map_size = head;
  large_seal(h);
  large_cache_rest(h, t, total);
}

/* Grows h's mapping in place to map_size bytes, if the range after it is
 * free: its last VMA grows.  Leaves large_live_bytes to the caller. */
static bool large_grow_in_place(struct large_hdr *h, size_t map_size)
{
  char *last = (char *)h + h->seam;
  if (os_resize_in_place(last, h->map_size - h->seam, map_size - h->seam) != 0)
    return false;
  h->map_size = map_size;
  large_seal(h);
  return true;
}

/* The span of one page table page (a PMD entry's worth of 4 KiB pages).
 * mremap moves a span's whole table when source and destination start at
 * the same offset in it; otherwise it moves each page table entry, and on
 * a guest whose page tables the hypervisor shadows, the first touch of
 * each page so moved then costs about three times as much as after a
 * move of whole tables (see doc/internals.md). */
#define LARGE_PMD_SPAN ((size_t)2 << 20)

/* Where the kernel will not move h's pages (a sandbox's seccomp filter
 * forbids mremap: EPERM or ENOSYS; or the mapping-count limit: ENOMEM):
 * copies the first copy bytes of h's mapping of old_size bytes (all of a
 * live block's, a cached mapping's header alone) to dest, a mapping at
 * least as large that is hakmem's already, and unmaps h, whose registry
 * entries the caller has withdrawn.  The one copy for pages that cannot
 * move: it costs no mapping beyond the one the move would have used. */
static void large_copy_instead(struct large_hdr *h, size_t old_size, size_t copy, void *dest)
{
  memcpy(dest, h, copy);
  os_unmap(h, old_size);
}

/* Moves h's pages to a new mapping of map_size bytes (no copy: mremap),
 * the rest of which is new, placed at the same offset in a page table
 * span as h.  Where the kernel will not move them, a live block (live)
 * is copied into the new mapping instead (large_copy_instead), whether
 * mremap is forbidden (EPERM or ENOSYS from a sandbox's seccomp filter)
 * or refused at the mapping-count limit (ENOMEM).  A cached mapping's
 * contents do not matter: at the limit only its header is carried over
 * (the new mapping replaces it, one map entry rather than two); under a
 * sandbox it stays as it was, for a request it fits.  Returns the header
 * at its new place, or NULL with h untouched and errno ENOMEM (no new
 * mapping) or mremap's error.  Leaves large_live_bytes to the caller. */
static struct large_hdr *large_move_to_new(struct large_hdr *h, size_t map_size, bool live)
{
  size_t align = h->offset > LARGE_HEADER_SIZE ? h->offset : 0;
  if (align < LARGE_PMD_SPAN)
    align = LARGE_PMD_SPAN;
  struct large_hdr *n = os_map_aligned_room(map_size, align, (uintptr_t)h & (align - 1),
                                            large_room(map_size));
  if (!n)
    return NULL;
  size_t old_size = h->map_size, off = h->offset, seam = h->seam;
  uintptr_t old_base = (uintptr_t)h;
  /* Register the new range first (the only step that can fail for want
   * of memory), then withdraw the old one before its pages move. */
  if (!large_register((uintptr_t)n, off)) {
    os_unmap(n, map_size);
    errno = ENOMEM;
    return NULL;
  }
  large_unregister(old_base, off);
  int err = os_move(h, old_size, seam, n, map_size);
  if (err != 0 && !live && err != ENOMEM) {
    large_unregister((uintptr_t)n, off);
    large_register(old_base, off);
    os_unmap(n, map_size);
    errno = err;
    return NULL;
  }
  if (err != 0) {
    large_copy_instead(h, old_size, live ? old_size : LARGE_HEADER_SIZE, n);
    n->seam = 0;
    /* The new mapping's flags are its own. */
    if (n->huge_advised)
      n->huge_advised = os_advise_huge(n, map_size, true) == 0;
  }
  n->map_size = map_size;
  large_seal(n);
  return n;
}

/* Joins h, taken out of BigCache, with n, the rest os_split cut off it,
 * taken out too: n's header becomes plain memory inside h's mapping.
 * False, nothing changed, if they cannot be one mapping of one VMA (a
 * seam, too large for BigCache, or the kernel refuses). */
static bool large_join(struct large_hdr *h, struct large_hdr *n)
{
  size_t total = (size_t)((char *)n - (char *)h) + n->map_size;
  if (h->seam != 0 || n->seam != 0 || total > BIGCACHE_MAX_BLOCK ||
      os_join(h, h->map_size, n, n->map_size, h->huge_advised || n->huge_advised) != 0)
    return false;
  large_unregister((uintptr_t)n, n->offset);
  n->magic = 0;
  n->check = 0;
  h->huge_advised = h->huge_advised || n->huge_advised;
  h->decommitted = h->decommitted && n->decommitted;
  h->map_size = total;
  large_seal(h);
  return true;
}

/* Joins h, taken out of BigCache for a request it is too small for, with
 * the cached pieces split off it or off which it was split, so that a
 * mapping cut up for smaller requests serves a larger one again with its
 * pages, rather than the cache keeping pieces while another grows.  Only
 * then: joining every freed piece at once would cost a split and a join
 * (two mprotect calls and TLB flushes) per request in a loop of mixed
 * sizes.  Returns the joined mapping (h, or the one before it). */
static struct large_hdr *large_join_cached(struct large_hdr *h)
{
  struct large_hdr *n;
  while ((n = bigcache_take_adjacent(h, true))) {
    if (!large_join(h, n)) {
      if (!bigcache_put_back(n))
        large_unmap(n);
      break;
    }
  }
  while ((n = bigcache_take_adjacent(h, false))) {
    if (!large_join(n, h)) {
      if (!bigcache_put_back(n))
        large_unmap(n);
      break;
    }
    h = n;
  }
  return h;
}

/* Grows h, taken out of BigCache for a request of map_size bytes it is
 * too small for, with the pages of another cached mapping rather than
 * new ones: h's range is extended (in place, or h moves), then the other
 * mapping's pages are moved after h's by mremap (no copy, no fault), and
 * its header becomes plain memory of the block.  Without it, a mixed-size
 * load keeps pieces in the cache, resident, while the mapping that serves
 * each larger request faults in the difference: the resident set climbs
 * to well above the largest live total.  The piece taken is the best fit
 * for what is missing (split if much larger, as for any request), or the
 * largest of at least a LARGE_GROW_FROM-th of it, grown as it moves.  The
 * result is two VMAs with h->seam between them, so h must be one (a
 * mapping of two is grown as before).  Returns h, or the header at its
 * new place; h->map_size is map_size or more on success, unchanged if
 * nothing could be moved (the caller grows it as before). */
static struct large_hdr *large_grow_with_cached(struct large_hdr *h, size_t map_size)
{
  size_t need = map_size - h->map_size;
  if (h->seam != 0)
    return h;
  struct large_hdr *c = bigcache_take(need / LARGE_GROW_FROM, need, SIZE_MAX);
  if (!c)
    return h;
  /* A piece of two VMAs would make three; a decommitted one has no pages
   * to give (moving it saves no fault). */
  if (c->seam != 0 || c->decommitted) {
    if (!bigcache_put_back(c))
      large_unmap(c);
    return h;
  }
  /* c was cached for a block at its own offset, whose registry units may
   * reach past need, into the piece a split leaves after it (which the
   * unregistering below would then withdraw): its contents are about to
   * become part of h's block, so its registry shrinks to the header's
   * unit first (a shrink clears, never fails). */
  if (c->offset != LARGE_HEADER_SIZE) {
    large_registry_move((uintptr_t)c, c->offset, LARGE_HEADER_SIZE);
    c->offset = LARGE_HEADER_SIZE;
    large_seal(c);
  }
  /* c's pages go where they keep their offset in a page table span (so
   * that mremap moves whole tables), over the last skew bytes of h's
   * pages (h is not live: its contents do not matter, and the kernel
   * frees the pages replaced), when c is large enough that no new page
   * is faulted in for it and the pages of h dropped are at most a
   * quarter of c's: a page faulted in later for one dropped costs about
   * four times what the first touch of a page moved at another offset
   * costs over one moved at the same (doc/internals.md).  Otherwise
   * right after h's.  h moves, if it must, to the same offset in a span
   * (large_move_to_new), which keeps skew. */
  size_t head = h->map_size, want = need;
  size_t skew = ((uintptr_t)h + head - (uintptr_t)c) & (LARGE_PMD_SPAN - 1);
  if (skew != 0 && skew + HAK_PAGE_SIZE <= head && c->map_size >= need + skew &&
      4 * skew <= c->map_size) {
    head -= skew;
    want = need + skew;
  }
  if (c->map_size > want)
    large_split(c, want);
  size_t tail = c->map_size > want ? c->map_size : want;
  size_t total = head + tail;
  if (!large_grow_in_place(h, total)) {
    struct large_hdr *n = large_move_to_new(h, total, false);
    if (!n) {
      if (!bigcache_put_back(c))
        large_unmap(c);
      return h;
    }
    h = n;
  }
  /* h now ends in the pages c's replace (new ones, or skew bytes of its
   * own first).  c's registry entries go first; its header is cleared
   * before its page becomes the block's (no stale sealed header inside a
   * live block). */
  struct large_hdr saved = *c;
  large_unregister((uintptr_t)c, saved.offset);
  memset(c, 0, sizeof *c);
  if (os_move(c, saved.map_size, 0, (char *)h + head, tail) != 0) {
    /* Nothing moved: c is as it was (its registry leaf exists), h keeps
     * its new pages. */
    *c = saved;
    large_register((uintptr_t)c, saved.offset);
    if (!bigcache_put_back(c))
      large_unmap(c);
    return h;
  }
  if (h->huge_advised)
    os_advise_huge((char *)h + head, tail, true);
  h->seam = head;
  large_seal(h);
  return h;
}

/* A mapping from BigCache for a block of map_size bytes at offset, or
 * NULL.  to_grow: the block is expected to grow (see large_alloc_to_grow),
 * so a larger mapping serves it whole; otherwise a much larger one is
 * split, and else the largest smaller one, however small, is grown: its
 * pages are used rather than left cached while the request faults in a
 * whole new mapping. */
static struct large_hdr *large_from_cache(size_t map_size, size_t offset, bool to_grow, bool *refused)
{
  size_t most = to_grow ? (map_size > SIZE_MAX / LARGE_GROW_ROOM ? SIZE_MAX : map_size * LARGE_GROW_ROOM)
                        : SIZE_MAX;
  struct large_hdr *h = bigcache_take(to_grow ? map_size : HAK_PAGE_SIZE, map_size, most);
  if (!h)
    return NULL;
  /* Grown first: the registry units of the new offset may lie beyond
   * the smaller mapping's end.  In place if the addresses after it are
   * free; otherwise its pages move to a new mapping of the size (mremap,
   * no copy), so that they are still used rather than the request
   * faulting in a whole new mapping while they stay cached. */
  if (h->map_size < map_size)
    h = large_join_cached(h);
  if (h->map_size < map_size)
    h = large_grow_with_cached(h, map_size);
  if (h->map_size < map_size && !large_grow_in_place(h, map_size)) {
    struct large_hdr *n = large_move_to_new(h, map_size, false);
    if (!n) {
      /* A new mapping of the size was refused: the caller's would be
       * too, so it fails at once (one attempt's calls, see
       * refused_request_reclaims_and_retries_once).  Not when only the
       * move was (mremap forbidden): a new mapping serves. */
      *refused = errno == ENOMEM;
      if (!bigcache_put_back(h))
        large_unmap(h);
      return NULL;
    }
    /* The new part has the new mapping's flags: advise it as the moved
     * part was, so that the mapping stays one VMA. */
    if (n->huge_advised)
      n->huge_advised = os_advise_huge(n, map_size, true) == 0;
    h = n;
  }
  if (h->offset != offset) {
    /* Cached for a block at another offset: its registry entries follow. */
    if (!large_registry_move((uintptr_t)h, h->offset, offset)) {
      large_unmap(h);
      return NULL;
    }
    h->offset = offset;
    large_seal(h);
  }
  if (!to_grow)
    large_split(h, map_size);
  return h;
}

static void *large_alloc_from(size_t size, size_t align, bool *fresh, bool to_grow)
{
  int saved = errno;
  size_t offset = large_offset(align);
  size_t map_size = large_map_size(size, offset);
  /* An alignment of 16 TiB or more has no room in the OS layer's
   * placement region (32 TiB), whose search for one did not end: refused
   * at once, as glibc refuses far smaller ones. */
  if (map_size == 0 || align >= LARGE_ALIGN_LIMIT) {
    errno = ENOMEM;
    return NULL;
  }
  struct large_hdr *h = NULL;
  bool refused = false;
  if (align <= HAK_UNIT_SIZE)
    h = large_from_cache(map_size, offset, to_grow, &refused);
  if (refused) {
    errno = ENOMEM;
    return NULL;
  }
  *fresh = h == NULL;
  if (h && hak_config.thp == HAK_THP_AUTO && !h->huge_advised && h->map_size >= ((size_t)2 << 20)) {
    /* Reused from BigCache: a hot block, worth huge pages. */
    h->huge_advised = os_advise_huge(h, h->map_size, true) == 0;
  }
  /* Refused: NULL with ENOMEM; the caller reclaims and retries once
   * (purge_reclaim). */
  if (!h && !(h = large_map(map_size, align, offset)))
    return NULL;
  h->state = LARGE_LIVE;
  h->cache_next = NULL;
  h->live_size = size;
  large_seal(h);
  counters_add(&hak_counters.large_allocs, 1);
  counters_add(&hak_counters.large_live_bytes, h->map_size);
  errno = saved;
  return large_block(h);
}

void *large_alloc(size_t size, size_t align, bool *fresh)
{
  return large_alloc_from(size, align, fresh, false);
}

void *large_alloc_to_grow(size_t size)
{
  bool fresh;
  return large_alloc_from(size, HAK_MIN_ALIGN, &fresh, true);
}

struct large_hdr *large_from_entry(uintptr_t entry, const void *p)
{
  struct large_hdr *h = (struct large_hdr *)entry;
  if (!large_header_ok(h))
    return h;
  if ((const char *)p < (const char *)h + LARGE_HEADER_SIZE ||
      (const char *)p >= (const char *)h + h->map_size)
    return NULL;
  return h;
}

/* A freed mapping grown past the largest BigCache keeps, for a request
 * that fits in that (large_grow_with_cached took a whole cached mapping,
 * or grew in place, for the difference), gives back its tail beyond
 * BIGCACHE_MAX_BLOCK and is cached with the rest of its pages, rather
 * than unmapped whole and its pages faulted in again by the next
 * requests (bench/large_replace: 133 MiB unmapped so in some runs). */
static void large_trim_for_cache(struct large_hdr *h)
{
  if (h->map_size <= BIGCACHE_MAX_BLOCK || !hak_config.bigcache || h->offset >= BIGCACHE_MAX_BLOCK ||
      h->live_size > BIGCACHE_MAX_BLOCK - h->offset ||
      os_resize_in_place(h, h->map_size, BIGCACHE_MAX_BLOCK) != 0)
    return;
  h->map_size = BIGCACHE_MAX_BLOCK;
  if (h->seam >= BIGCACHE_MAX_BLOCK)
    h->seam = 0;
  large_seal(h);
}

bool large_free(struct large_hdr *h, void *p)
{
  large_verify(h, "free(): corrupted large block header", p);
  if (p != large_block(h))
    hak_fatal_pointer("free(): invalid pointer", p);
  if (h->state != LARGE_LIVE)
    hak_fatal_pointer("free(): double free", p);
  int saved = errno;
  counters_add(&hak_counters.large_frees, 1);
  atomic_fetch_sub_explicit(&hak_counters.large_live_bytes, h->map_size, memory_order_relaxed);
  large_trim_for_cache(h);
  bool cached = bigcache_put(h);
  if (!cached)
    large_unmap(h);
  errno = saved;
  return cached;
}

/* Moves the pages of live block h over the head of cached mapping c (at
 * least as large), which becomes the block's mapping: c's tail keeps its
 * pages, as a second VMA; where the kernel will not move them, the block
 * is copied over c's head instead (c's VMAs stay as they were).  Returns
 * the block, or NULL with h and c untouched (also when the result would
 * be more than two VMAs). */
static void *large_move_into(struct large_hdr *h, struct large_hdr *c)
{
  size_t old_size = h->map_size, c_size = c->map_size, c_off = c->offset, off = h->offset;
  uintptr_t old_base = (uintptr_t)h, c_base = (uintptr_t)c;
  if (h->seam != 0 || c->seam > old_size || c_size <= old_size)
    return NULL;
  /* c's entries are re-cut for the block's offset first (the only step
   * that can fail for want of memory); h's are withdrawn before its pages
   * move, and restored if they cannot (their leaf exists). */
  if (!large_registry_move(c_base, c_off, off))
    return NULL;
  large_unregister(old_base, off);
  size_t c_seam = c->seam;
  bool c_huge = c->huge_advised, moved = os_move(h, old_size, 0, c, old_size) == 0;
  if (!moved)
    large_copy_instead(h, old_size, old_size, c);
  struct large_hdr *n = c; /* now holds h's header page */
  n->map_size = c_size;
  n->seam = moved ? old_size : c_seam;
  n->huge_advised = !moved && c_huge;
  n->decommitted = false;
  n->cache_next = NULL;
  large_seal(n);
  counters_add(&hak_counters.large_live_bytes, c_size - old_size);
  return large_block(n);
}

void *large_realloc(struct large_hdr *h, size_t size)
{
  large_verify(h, "realloc(): corrupted large block header", large_block(h));
  int saved = errno;
  size_t map_size = large_map_size(size, h->offset);
  if (map_size == 0) {
    errno = ENOMEM;
    return NULL;
  }
  /* A request within the block's usable size stays, unless the block
   * shrinks to under a quarter of its mapping.  A block that grows inside
   * a larger mapping (one taken from BigCache, say) costs nothing,
   * however much room is left.  map_size, rounded by BigCache, can exceed
   * a mapping of no size class (cut, split or trimmed) for a request that
   * fits it: that stays too, since a shrink that moved could fail with
   * ENOMEM. */
  if (size <= h->map_size - h->offset &&
      (map_size > h->map_size || map_size >= h->map_size / 4 || size >= h->live_size)) {
    h->live_size = size;
    return large_block(h);
  }
  if (map_size < h->map_size) {
    /* Shrink in place: give back the tail.  The registry entries end at
     * the block's start, which stays. */
    if (os_resize_in_place(h, h->map_size, map_size) == 0) {
      atomic_fetch_sub_explicit(&hak_counters.large_live_bytes, h->map_size - map_size,
                                memory_order_relaxed);
      h->map_size = map_size;
      if (h->seam >= map_size)
        h->seam = 0;
      large_seal(h);
    }
    h->live_size = size;
    errno = saved;
    return large_block(h);
  }
  size_t old_size = h->map_size;
  size_t align = h->offset > LARGE_HEADER_SIZE ? h->offset : 0;
  /* A cached mapping big enough has its pages faulted in already: the
   * block's pages move over its head and its tail is kept, so the growth
   * costs neither a copy nor new pages.  Up to LARGE_GROW_ROOM times the
   * size: the block is growing, and then grows inside it. */
  struct large_hdr *c = NULL;
  if (align <= HAK_UNIT_SIZE && h->seam == 0) {
    size_t most = map_size > SIZE_MAX / LARGE_GROW_ROOM ? SIZE_MAX : map_size * LARGE_GROW_ROOM;
    c = bigcache_take(map_size, map_size, most);
  }
  /* Moved there even when the addresses after the block are free, if c
   * is at least twice the block's mapping or the pages keep their offset
   * in a page table span there (their first touch is then the cheaper,
   * doc/internals.md): growing in place instead faults in new pages
   * while c's stay cached, and the resident set climbs by the growth
   * (several buffers grown at once by realloc each grew a mapping of
   * their own).  Not always: the move gives back the pages of c's head
   * that the block's replace, which are faulted in again later.  The
   * block grows inside c without a fault, so when c is at least twice
   * its mapping, what is given back is at most what its growth would
   * fault in; moved first whatever the sizes and offsets, bench/realloc
   * took half as many minor faults again and 14 % more CPU time. */
  bool move_first = c && (c->map_size >= 2 * old_size ||
                          (((uintptr_t)h ^ (uintptr_t)c) & (LARGE_PMD_SPAN - 1)) == 0);
  void *p = move_first ? large_move_into(h, c) : NULL;
  /* Grow in place if the following address range is free. */
  if (!p && large_grow_in_place(h, map_size)) {
    if (c && !bigcache_put_back(c))
      large_unmap(c);
    counters_add(&hak_counters.large_live_bytes, map_size - old_size);
    h->live_size = size;
    errno = saved;
    return large_block(h);
  }
  if (!p && c && !move_first)
    p = large_move_into(h, c);
  if (p) {
    c->live_size = size;
    errno = saved;
    return p;
  }
  if (c && !bigcache_put_back(c))
    large_unmap(c);
  /* Otherwise move the pages to a new aligned mapping: no copy, unless
   * the kernel will not move them. */
  struct large_hdr *n = large_move_to_new(h, map_size, true);
  if (!n)
    return NULL;
  counters_add(&hak_counters.large_live_bytes, map_size - old_size);
  n->live_size = size;
  errno = saved;
  return large_block(n);
}

/* ---- invariant check (debugging and tests) ---- */

static uintptr_t parse_hex(const char **s)
{
  uintptr_t v = 0;
  for (;; (*s)++) {
    char c = **s;
    unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
               : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16u;
    if (d == 16)
      return v;
    v = v << 4 | d;
  }
}

struct maps_probe {
  uintptr_t lo, hi, seam;
  unsigned vmas;              /* VMAs met inside [lo, hi) */
  uintptr_t covered;          /* [lo, covered) is mapped read-write */
  bool split_elsewhere;       /* a VMA boundary other than seam */
  bool after_accessible;      /* the page at hi is readable or writable */
};

static void maps_line(struct maps_probe *m, const char *line)
{
  const char *s = line;
  uintptr_t lo = parse_hex(&s);
  if (*s++ != '-')
    return;
  uintptr_t hi = parse_hex(&s);
  if (*s++ != ' ')
    return;
  bool rw = s[0] == 'r' && s[1] == 'w';
  if (lo <= m->hi && m->hi < hi && (s[0] == 'r' || s[1] == 'w'))
    m->after_accessible = true;
  if (hi <= m->lo || lo >= m->hi)
    return;
  m->vmas++;
  if (rw && lo <= m->covered && hi > m->covered)
    m->covered = hi;
  if (lo > m->lo && lo != m->seam)
    m->split_elsewhere = true;
}

/* Scans /proc/self/maps with read(2) only (no stdio inside the library).
 * Returns false if it cannot be read. */
static bool maps_scan(struct maps_probe *m)
{
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  char buf[4096], line[256];
  size_t len = 0;
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] != '\n') {
        if (len < sizeof line - 1) /* only the start of a line matters */
          line[len++] = buf[i];
        continue;
      }
      line[len] = 0;
      maps_line(m, line);
      len = 0;
    }
  }
  close(fd);
  return r == 0;
}

int large_check_invariants(const struct large_hdr *h)
{
  int saved = errno, bad = 0;
  uintptr_t base = (uintptr_t)h;
  if (h->magic != LARGE_MAGIC || !large_header_ok(h))
    bad = 1; /* the header does not verify */
  else if (base & (HAK_UNIT_SIZE - 1) || h->map_size % HAK_PAGE_SIZE || h->offset < LARGE_HEADER_SIZE ||
           h->offset >= h->map_size || h->seam >= h->map_size)
    bad = 2; /* fields out of range */
  else if (!os_owns_range(h, h->map_size))
    bad = 3; /* not all of it in the ownership map */
  if (!bad) {
    struct maps_probe m = { .lo = base, .hi = base + h->map_size, .seam = base + h->seam,
                            .covered = base };
    if (!maps_scan(&m))
      bad = 4; /* /proc/self/maps unreadable */
    else if (m.covered < m.hi)
      bad = 5; /* map_size exceeds what is mapped read-write from the header */
    else if (m.split_elsewhere || m.vmas > 2 || (m.vmas == 2 && h->seam == 0))
      bad = 6; /* VMAs other than the recorded seam: mremap would fail */
    else if (m.after_accessible && os_has_guard(h, h->map_size))
      bad = 7; /* no guard after the mapping (one placed at the map-count limit has none) */
  }
  if (!bad) {
    size_t units = large_units(h->offset);
    size_t all = (h->map_size + HAK_UNIT_SIZE - 1) >> HAK_UNIT_SHIFT;
    for (size_t u = 0; u < units && !bad; u++)
      if (registry_lookup(base + (u << HAK_UNIT_SHIFT)) != base)
        bad = 8; /* a unit that can hold the block start does not name it */
    for (size_t u = units; u < all && !bad; u++)
      if (registry_lookup(base + (u << HAK_UNIT_SHIFT)) != 0)
        bad = 9; /* a unit beyond the block start is registered */
  }
  errno = saved;
  return bad;
}

size_t large_good_size(size_t size, size_t align)
{
  size_t offset = large_offset(align);
  size_t map_size = large_map_size(size, offset);
  return map_size ? map_size - offset : 0;
}
