/* Front door, out-of-line parts: the generic malloc and free paths,
 * calloc, realloc, the aligned family and usable size. */
#include "alloc.h"
#include "checkmode.h"
#include "config.h"
#include "hakmem.h"
#include "init.h"
#include "bigcache.h"
#include "large.h"
#include "prof.h"
#include "prof_stash.h"
#include "purge.h"
#include "shared_pool.h"
#include "diag.h"

#include <errno.h>
#include <string.h>

/* Requests above this are refused with ENOMEM before any arithmetic. */
#define ALLOC_MAX ((size_t)PTRDIFF_MAX - ((size_t)64 << 20))

/* A large block; errno is left alone on success (internal attempts that
 * failed on the way, such as a refused mapping hint, do not show).  When
 * the system refuses the mapping, what hakmem keeps free goes back and
 * the request is tried once more (purge_reclaim). */
static void *alloc_large(size_t size, size_t align, bool *fresh)
{
  int saved = errno;
  hak_init();
  void *p = large_alloc(size, align, fresh);
  if (!p && purge_reclaim())
    p = large_alloc(size, align, fresh);
  /* After the mapping, which counts towards the heap that starts it. */
  purge_start_if_wanted();
  if (p)
    errno = saved;
  return p;
}

/* 0 until initialisation: the first malloc of the process takes the slow
 * path, which initialises first, so that no block is handed out before
 * the configuration (check = 1 in particular) is known. */
size_t alloc_fast_bound = 0;

size_t alloc_profiled_bound = 0;

uintptr_t alloc_superslab_mask = 0;

uintptr_t alloc_slab_desc_mask = 0;

uint8_t alloc_tiny_class[HAK_TINY_MAX + 1];

/* check = 1 with prof = 0: requests below this, whose checked blocks
 * (the request and the trailer) are of a tiny class, go from
 * alloc_malloc_generic straight to the class's pop and check_hand_out;
 * 0 otherwise, and until initialisation. */
static size_t alloc_checked_tiny_bound = 0;

void alloc_configure(void)
{
  for (size_t n = 0; n <= HAK_TINY_MAX; n++)
    alloc_tiny_class[n] = (uint8_t)size_class_of_tiny(n);
  alloc_superslab_mask = ~(((uintptr_t)1 << hak_config.superslab_lg) - 1);
  alloc_slab_desc_mask = ~alloc_superslab_mask >> ALLOC_SLAB_DESC_SHIFT & ~(uintptr_t)(sizeof(struct slab) - 1);
  alloc_fast_bound = hak_config.check || prof_active ? 0 : HAK_TINY_MAX + 1;
  alloc_profiled_bound = hak_config.check ? 0 : HAK_TINY_MAX + 1;
  alloc_checked_tiny_bound = hak_config.check && !prof_active ? HAK_TINY_MAX - CHECK_TRAILER + 1 : 0;
  if (hak_config.check)
    check_configure();
  tcache_configure();
}

/* check = 1: a block of class cls, which has room for size and the
 * trailer, from the thread cache, made a checked block by checkmode;
 * NULL with errno ENOMEM.  The tail of alloc_checked and of check = 1's
 * shortcut for tiny requests. */
HAK_INLINE void *alloc_checked_in_class(unsigned cls, size_t size)
{
  unsigned char *p = tcache_alloc(cls);
  return p ? check_hand_out(p, size, size_class_size(cls)) : NULL;
}

/* check = 1: a block with room for the trailer, from the thread cache,
 * made a checked block by checkmode; NULL with errno ENOMEM.  In line in
 * its two callers: malloc's checked path makes no call before
 * check_hand_out's. */
HAK_INLINE void *alloc_checked(size_t size, size_t align)
{
  int cls = check_class(size, align);
  if (cls < 0) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_checked_in_class((unsigned)cls, size);
}

/* The generic path's block, without the profiler's hook. */
HAK_INLINE void *alloc_malloc_block(size_t size)
{
  if (HAK_UNLIKELY(hak_config.check)) {
    /* Every slab block gets its trailer; the last few sizes of the
     * medium classes, which leave no room for it, become large blocks. */
    if (size <= HAK_MEDIUM_MAX - CHECK_TRAILER)
      return alloc_checked(size, HAK_MIN_ALIGN);
  } else if (size <= HAK_MEDIUM_MAX) {
    return tcache_alloc(size_class_of(size));
  }
  if (size > ALLOC_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  bool fresh;
  return alloc_large(size, HAK_MIN_ALIGN, &fresh);
}

/* Every free alloc_free_slab_slow does not finish itself: checks exactly,
 * reports misuse, and frees. */
static HAK_NOINLINE void free_slab_checked(struct slab *s, void *p)
{
  /* With check = 1 every free comes here: the common one, the owner's
   * free of a live block, passes the fast path's own tests (with the
   * thread's real id) and skips the general ones below. */
  if (HAK_UNLIKELY(hak_config.check) && tcache_self.id != 0 &&
      alloc_free_is_local(s, p, tcache_self.id)) {
    check_free_block(s, p);
    tcache_free_local(s, p);
    return;
  }
  if (s->state == SLAB_SPAN_TAIL)
    s -= s->head_offset;
  if (HAK_UNLIKELY(s->state != SLAB_ACTIVE && s->state != SLAB_ORPHAN))
    hak_fatal_pointer(slab_block_tagged(p) ? "free(): double free of" : "free(): invalid pointer", p);
  if (HAK_UNLIKELY(!slab_is_block(s, p)))
    hak_fatal_pointer("free(): invalid pointer", p);
  bool mine = tcache_self.id != 0 && slab_owned_by(s, tcache_self.id);
  /* Only a free block carries the secret tag: on a list of its slab, on
   * its remote stack, or in some thread's cross-thread cache (tcache.h),
   * where even its owner cannot see it, so the tag alone decides. */
  if (HAK_UNLIKELY(slab_block_tagged(p)))
    hak_fatal_pointer("free(): double free of", p);
  if (HAK_UNLIKELY(hak_config.check))
    check_free_block(s, p);
  /* Only then is a small block ever recorded (else samples are large). */
  if (HAK_UNLIKELY(prof_every_block))
    prof_before_free(p);
  if (mine) {
    if (size_class_is_medium(s->cls))
      tcache_free_medium(s, p);
    else
      tcache_free_local(s, p);
    return;
  }
  /* With check = 1 another thread's tiny block, checked and filled now,
   * goes to the cross-thread cache as alloc_free_slab_slow's would: this
   * thread's next malloc of the class then compares the lines it has
   * just filled, instead of the owner pulling the whole block from this
   * core (bench/larson). */
  if (s->state == SLAB_ACTIVE && !prof_every_block && tcache_xfree_wants(s->cls)) {
    tcache_xfree_put(s->cls, p);
    return;
  }
  slab_free_remote(s, p);
  if (s->state == SLAB_ORPHAN) {
    shared_pool_orphan_freed();
    purge_kick();
  }
}

/* prof = 1: before large block p (header h, as found from the registry)
 * is freed or moved.  A sample that alloc_sampled made large carries its
 * record before it; any other block is looked up by prof_before_free.
 * The record is read only where the header, once verified, says it lies
 * in the mapping; the cheap tests come first, so that the common large
 * block (at offset 64) skips the verification, which large_free does.
 * True if p was such a sample: live, its header verified. */
static bool alloc_prof_forget_large(struct large_hdr *h, void *p)
{
  if (h->offset >= PROF_TAGGED_ALIGN && p == large_block(h) && h->state == LARGE_LIVE &&
      large_header_ok(h) && prof_forget_tagged(p))
    return true;
  prof_before_free(p);
  return false;
}

/* A medium block (a tail slot carries its slab's class): every one
 * comes here (SLAB_OWNER_MEDIUM), in the head slot or not, which the
 * program's pattern decides, so nothing branches on that: a head's
 * head_offset is 0.  The owner's free of a live block is
 * tcache_free_medium's; anything else free_slab_checked's.  Out of line,
 * so that the cross-thread free of a small block saves no register. */
static HAK_NOINLINE void free_medium_slow(struct slab *s, void *p)
{
  s -= s->head_offset;
  if (HAK_LIKELY(!hak_config.check && !prof_every_block && s->state == SLAB_ACTIVE &&
                 slab_owned_by(s, tcache_self.id)) &&
      slab_is_block(s, p) && !slab_block_tagged(p)) {
    tcache_free_medium(s, p);
    return;
  }
  free_slab_checked(s, p);
}

void alloc_free_slab_slow(struct slab *s, void *p)
{
  if (size_class_is_medium(s->cls)) {
    free_medium_slow(s, p);
    return;
  }
  /* The common case here, another thread's free of a block of a slab it
   * owns, takes the fast path's tests, on the line that remote frees only
   * read, then keeps a tiny block in the thread's cross-thread cache
   * (tcache.h) or pushes it with one CAS: s is the descriptor of p's
   * slot, so when it heads an ACTIVE slab, p's offset in its 64 KiB slot is
   * its offset in the slab. */
  if (HAK_LIKELY(s->state == SLAB_ACTIVE && !hak_config.check && !prof_every_block) &&
      /* No medium slab comes here: the owner's id as it is. */
      atomic_load_explicit(&s->owner, memory_order_relaxed) != tcache_self.id &&
      slab_block_index(s, (uint16_t)(uintptr_t)p) < s->carved && !slab_block_tagged(p)) {
    if (tcache_xfree_wants(s->cls)) {
      tcache_xfree_put(s->cls, p);
      return;
    }
    slab_free_remote(s, p);
    /* Its owner may have exited meanwhile. */
    if (HAK_UNLIKELY(s->state == SLAB_ORPHAN)) {
      shared_pool_orphan_freed();
      purge_kick();
    }
    return;
  }
  free_slab_checked(s, p);
}

void alloc_free_generic(void *p, uintptr_t entry)
{
  if (!p)
    return;
  if (registry_is_superslab(entry)) {
    alloc_free_in_slab(superslab_slab_of(entry, (uintptr_t)p), p);
    return;
  }
  if (entry == 0)
    hak_fatal_pointer("free(): invalid pointer (not allocated by hakmem)", p);
  struct large_hdr *h = large_from_entry(entry, p);
  if (!h)
    hak_fatal_pointer("free(): invalid pointer (not allocated by hakmem)", p);
  /* A sample's mapping goes to the profiler's stash for the next one. */
  if (HAK_UNLIKELY(prof_active) && alloc_prof_forget_large(h, p)) {
    enum prof_stash_put_result kept = prof_stash_put(h);
    if (kept == PROF_STASH_KEPT_KICK)
      purge_kick();
    if (kept != PROF_STASH_REFUSED)
      return;
  }
  if (large_free(h, p))
    purge_kick();
}

HAK_EXPORT void *hak_malloc(size_t size)
{
  return alloc_malloc(size);
}

HAK_EXPORT void hak_free(void *p)
{
  alloc_free(p);
}

HAK_EXPORT void *hak_calloc(size_t nmemb, size_t size)
{
  size_t total;
  if (__builtin_mul_overflow(nmemb, size, &total) || total > ALLOC_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  if (total <= HAK_MEDIUM_MAX) {
    void *p = alloc_malloc(total);
    if (p)
      memset(p, 0, total);
    return p;
  }
  bool fresh;
  void *p = alloc_large(total, HAK_MIN_ALIGN, &fresh);
  if (p && !fresh)
    memset(p, 0, total);
  if (HAK_UNLIKELY(prof_active) && prof_sample_due(&tcache_self.prof_countdown, total))
    prof_record(p, total);
  return p;
}

/* Usable size of a live block hakmem owns; fatal error, naming the
 * caller (fn), for any other pointer and for a block already freed. */
static size_t usable_size(const void *p, uintptr_t entry, struct large_hdr **large, const char *fn)
{
  char what[64];
  *large = NULL;
  if (entry == 0)
    hak_fatal_pointer(hak_concat(what, sizeof what, fn, ": invalid pointer (not allocated by hakmem)"), p);
  if (!registry_is_superslab(entry)) {
    struct large_hdr *h = large_from_entry(entry, p);
    if (h)
      large_verify(h, hak_concat(what, sizeof what, fn, ": corrupted large block header"), p);
    if (!h || h->magic != LARGE_MAGIC || p != large_block(h))
      hak_fatal_pointer(hak_concat(what, sizeof what, fn, ": invalid pointer"), p);
    if (h->state != LARGE_LIVE)
      hak_fatal_pointer(hak_concat(what, sizeof what, fn, ": pointer already freed"), p);
    *large = h;
    return large_usable(h);
  }
  struct slab *s = superslab_slab_of(entry, (uintptr_t)p);
  if (s->state == SLAB_SPAN_TAIL)
    s -= s->head_offset;
  /* The tag first: a freed block may sit in a slab that is EMPTY now. */
  if (slab_block_tagged(p))
    hak_fatal_pointer(hak_concat(what, sizeof what, fn, ": pointer already freed"), p);
  if ((s->state != SLAB_ACTIVE && s->state != SLAB_ORPHAN) || !slab_is_block(s, p))
    hak_fatal_pointer(hak_concat(what, sizeof what, fn, ": invalid pointer"), p);
  if (HAK_UNLIKELY(hak_config.check))
    return check_block_size(s, p);
  return slab_block_size(s);
}

HAK_EXPORT void *hak_realloc(void *p, size_t size)
{
  if (!p)
    return alloc_malloc(size);
  if (size == 0) {
    alloc_free(p);
    return NULL;
  }
  if (size > ALLOC_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  struct large_hdr *h;
  size_t usable = usable_size(p, registry_lookup((uintptr_t)p), &h, "realloc()");
  int saved = errno;
  if (h && size > HAK_MEDIUM_MAX) {
    /* The profiler sees a move as a free and a new block (a failed one
     * loses the old block's sample). */
    if (HAK_UNLIKELY(prof_active))
      alloc_prof_forget_large(h, p);
    void *n = large_realloc(h, size);
    if (!n && purge_reclaim())
      n = large_realloc(h, size);
    /* Where the pages cannot move (mremap refused by a sandbox or at the
     * mapping-count limit) large_realloc copies them itself; NULL means
     * no mapping of the size could be had (ENOMEM), which a new block
     * would need too. */
    if (n) {
      errno = saved;
      if (HAK_UNLIKELY(prof_active) && prof_sample_due(&tcache_self.prof_countdown, size))
        prof_record(n, size);
    }
    return n;
  }
  /* Small block: stay in place while the request fits and uses at least
   * half of the block; otherwise move to the right class.  With check = 1
   * always move, so that the new block gets its canary. */
  if (!h && size <= usable && size > usable / 2 && !hak_config.check)
    return p;
  /* A slab block growing into a large one: see large_alloc_to_grow (and
   * alloc_large for the retry). */
  void *n;
  if (!h && size > HAK_MEDIUM_MAX && !hak_config.check) {
    n = large_alloc_to_grow(size);
    if (!n && purge_reclaim())
      n = large_alloc_to_grow(size);
    /* The first attempt's ENOMEM does not show when the second succeeds. */
    if (n)
      errno = saved;
  } else {
    n = alloc_malloc(size);
  }
  if (!n) {
    /* A shrink keeps its block when no smaller one can be had, as
     * glibc's never fails: few programs check a shrinking realloc. */
    if (size > usable)
      return NULL;
    errno = saved;
    return p;
  }
  errno = saved;
  memcpy(n, p, size < usable ? size : usable);
  /* Bytes the program never wrote may hold a stale copy of the free tag
   * (a mapping reused at another offset shows an old block's copy of a
   * medium block's interior): copied into a slab block's second word, it
   * would mark the live block free. */
  if (HAK_UNLIKELY(slab_block_tagged(n)))
    slab_block_words(n)[1] = 0;
  alloc_free(p);
  return n;
}

HAK_EXPORT void *hak_reallocarray(void *p, size_t nmemb, size_t size)
{
  size_t total;
  if (__builtin_mul_overflow(nmemb, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return hak_realloc(p, total);
}

/* Aligned allocation, align > HAK_MIN_ALIGN a power of two. */
static void *alloc_aligned_block(size_t align, size_t size)
{
  /* A unique block, as for malloc(0); a large block of size 0 would start
   * at its mapping's end. */
  if (size == 0)
    size = 1;
  if (size > ALLOC_MAX || align > ALLOC_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  hak_init();
  if (HAK_UNLIKELY(hak_config.check)) {
    if (size_class_for_aligned(size + CHECK_TRAILER, align) >= 0)
      return alloc_checked(size, align);
  } else {
    int cls = size_class_for_aligned(size, align);
    if (cls >= 0)
      return tcache_alloc((unsigned)cls);
  }
  bool fresh;
  return alloc_large(size, align, &fresh);
}

/* prof = 1: a sampled allocation.  The block is made a large one (as
 * jemalloc promotes its samples), unless every allocation is recorded:
 * its free then reaches alloc_free_generic, where the profiler forgets
 * it, and the frees of all the other blocks keep their fast path.  The
 * block starts PROF_TAGGED_ALIGN bytes (or its alignment) into its
 * mapping, which leaves room for its record between the header and it.
 * A small one comes from the profiler's stash of freed samples, or else
 * gets a mapping of the stash's size, so that its free can stash it.
 * from: where the stack walk starts (NULL: the whole stack). */
static HAK_NOINLINE void *alloc_sampled(size_t size, size_t align, const struct prof_frame *from)
{
  void *p;
  if (prof_every_block) {
    p = align <= HAK_MIN_ALIGN ? alloc_malloc_block(size) : alloc_aligned_block(align, size);
    prof_record(p, size);
  } else if (size > ALLOC_MAX || align > ALLOC_MAX) {
    errno = ENOMEM;
    return NULL;
  } else if (size <= PROF_STASH_BLOCK && align <= PROF_TAGGED_ALIGN) {
    p = prof_stash_take(size);
    if (!p) {
      bool fresh;
      p = alloc_large(PROF_STASH_BLOCK, PROF_STASH_OFFSET, &fresh);
      /* Realloc tells growth from shrinking by the size asked for. */
      if (p)
        ((struct large_hdr *)((char *)p - PROF_STASH_OFFSET))->live_size = size;
    }
    prof_record_tagged(p, size, from);
  } else {
    /* At least a page past the header page: BigCache decommits all but
     * the header page of a cached mapping, which must leave something to
     * decommit.  The page beyond the request is never touched. */
    bool fresh;
    p = alloc_large(size < HAK_PAGE_SIZE ? HAK_PAGE_SIZE : size,
                    align < PROF_TAGGED_ALIGN ? PROF_TAGGED_ALIGN : align, &fresh);
    prof_record_tagged(p, size, from);
  }
  return p;
}

_Static_assert(PROF_STASH_OFFSET == PROF_TAGGED_ALIGN, "a stashed block's record fits before it");

/* The generic path without the profiler. */
static HAK_NOINLINE void *alloc_malloc_unsampled(size_t size)
{
  hak_init();
  return alloc_malloc_block(size);
}

/* prof = 1: the countdown of alloc_malloc_profiled crossed zero; samples
 * the request or serves it. */
static HAK_NOINLINE void *alloc_malloc_profiled_crossed(size_t size)
{
  if (prof_sample_slow(&tcache_self.prof_countdown)) {
    /* Reached from malloc by tail calls: the caller is the program. */
    struct prof_frame from = PROF_CALLER_FRAME();
    return alloc_sampled(size, HAK_MIN_ALIGN, &from);
  }
  return alloc_malloc_unsampled(size);
}

/* prof = 1: a request the profiled fast path does not serve (above
 * HAK_TINY_MAX, or with check = 1), counted down here.  A small one
 * that is not sampled goes straight to its class's pop, as in
 * alloc_malloc_generic with prof = 0 (alloc_profiled_bound is not 0 once
 * initialised with check = 0), rather than through initialisation's and
 * check = 1's tests and the size dispatch again; the call that samples
 * is out of line, so that this path needs no stack frame. */
static HAK_NOINLINE void *alloc_malloc_profiled(size_t size)
{
  if (HAK_UNLIKELY(prof_countdown_crossed(&tcache_self.prof_countdown, size)))
    return alloc_malloc_profiled_crossed(size);
  if (HAK_LIKELY(size <= HAK_SMALL_MAX && alloc_profiled_bound != 0))
    return tcache_alloc(size_class_of_small(size));
  return alloc_malloc_unsampled(size);
}

HAK_NOINLINE void *alloc_malloc_small_counted(size_t size)
{
  if (prof_sample_slow(&tcache_self.prof_countdown)) {
    /* Reached from malloc by a tail call: the caller is the program. */
    struct prof_frame from = PROF_CALLER_FRAME();
    return alloc_sampled(size, HAK_MIN_ALIGN, &from);
  }
  return tcache_alloc(size_class_of_tiny(size));
}

void *alloc_malloc_tiny_slow(size_t size)
{
  return tcache_alloc_slow(size_class_of_tiny(size));
}

/* check = 1's common request, below alloc_checked_tiny_bound:
 * alloc_checked's work without initialisation's test, the size dispatch
 * and the class search.  Out of line, so that alloc_malloc_generic's
 * other requests, reached by a tail call, need no stack frame. */
static HAK_NOINLINE void *alloc_malloc_checked_tiny(size_t size)
{
  return alloc_checked_in_class(alloc_tiny_class[size + CHECK_TRAILER], size);
}

/* Every malloc the inline paths leave: small requests above HAK_TINY_MAX,
 * medium and large ones, the first malloc of the process (which
 * initialises), and those of check = 1 and the profiler.  A small request
 * goes straight to its class's pop when alloc_fast_bound says the inline
 * path is open (initialised, check = 0, prof = 0): one test instead of
 * the profiler's, initialisation's, check = 1's and three size tests
 * (bench/burst: three mallocs in four are of 1-4 KiB). */
void *alloc_malloc_generic(size_t size)
{
  if (HAK_LIKELY(size <= HAK_SMALL_MAX && alloc_fast_bound != 0))
    return tcache_alloc_small(size_class_of_small(size));
  if (size < alloc_checked_tiny_bound)
    return alloc_malloc_checked_tiny(size);
  if (HAK_UNLIKELY(prof_active))
    return alloc_malloc_profiled(size);
  return alloc_malloc_unsampled(size);
}

/* Aligned allocation; align is a power of two. */
static void *alloc_aligned(size_t align, size_t size)
{
  if (align <= HAK_MIN_ALIGN)
    return alloc_malloc(size);
  if (HAK_UNLIKELY(prof_active) && prof_sample_due(&tcache_self.prof_countdown, size))
    return alloc_sampled(size, align, NULL);
  return alloc_aligned_block(align, size);
}

HAK_EXPORT int hak_posix_memalign(void **memptr, size_t align, size_t size)
{
  if (align < sizeof(void *) || !hak_is_pow2(align))
    return EINVAL;
  int saved = errno;
  void *p = alloc_aligned(align, size);
  if (!p) {
    errno = saved;
    return ENOMEM;
  }
  *memptr = p;
  return 0;
}

HAK_EXPORT void *hak_aligned_alloc(size_t align, size_t size)
{
  if (!hak_is_pow2(align)) {
    errno = EINVAL;
    return NULL;
  }
  return alloc_aligned(align, size);
}

HAK_EXPORT void *hak_memalign(size_t align, size_t size)
{
  /* As glibc: a non-power-of-two alignment is rounded up to one. */
  if (align > ALLOC_MAX) {
    errno = EINVAL;
    return NULL;
  }
  if (!hak_is_pow2(align))
    align = align <= 1 ? 1 : (size_t)1 << (64 - __builtin_clzll(align - 1));
  return alloc_aligned(align, size);
}

HAK_EXPORT void *hak_valloc(size_t size)
{
  return alloc_aligned(HAK_PAGE_SIZE, size);
}

HAK_EXPORT void *hak_pvalloc(size_t size)
{
  if (size > ALLOC_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  return alloc_aligned(HAK_PAGE_SIZE, size ? hak_align_up(size, HAK_PAGE_SIZE) : HAK_PAGE_SIZE);
}

HAK_EXPORT size_t hak_malloc_usable_size(const void *p)
{
  if (!p)
    return 0;
  struct large_hdr *h;
  return usable_size(p, registry_lookup((uintptr_t)p), &h, "malloc_usable_size()");
}

HAK_EXPORT int hakmem_check_heap(void)
{
  if (atomic_load_explicit(&hak_init_state, memory_order_acquire) != 2)
    return 0;
  if (tcache_check_heap())
    return -1;
  const struct large_hdr *bad = bigcache_check();
  if (bad) {
    hak_warn_pointer("check_heap: BigCache holds a damaged or miscounted large block header", bad);
    return -1;
  }
  return 0;
}

HAK_EXPORT int hak_trim(size_t pad)
{
  (void)pad;
  tcache_collect();
  return purge_reclaim();
}

/* For the sized API (alloc_sized.c): the bound malloc and the aligned
 * family apply to a request before anything else. */
bool alloc_request_too_large(size_t size)
{
  return size > ALLOC_MAX;
}
