/* Thread cache slow paths: refill, EMPTY hand-back, flush at thread exit. */
#include "tcache.h"
#include "init.h"
#include "shared_pool.h"
#include "counters.h"
#include "config.h"
#include "purge.h"
#include "checkmode.h"
#include "prof.h"
#include "superslab.h"
#include "diag.h"

#include <errno.h>

/* Never handed out, never written: its list is always empty. */
struct slab tcache_no_slab = { .free = SLAB_LIST_END, .state = SLAB_HEADER };

#define NO_SLAB_X4 &tcache_no_slab, &tcache_no_slab, &tcache_no_slab, &tcache_no_slab
__thread struct tcache tcache_self __attribute__((tls_model("initial-exec"))) = {
  .active = { NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4,
              NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4,
              NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4 },
};
_Static_assert(HAK_NUM_CLASSES == 52, "tcache_self initialiser covers every class");

static _Atomic uint64_t tcache_next_id = 1;

#define XFREE_SLAB { .free = SLAB_LIST_END, .state = SLAB_HEADER }
__thread struct slab tcache_xfree_slab[TCACHE_XFREE_CLASSES] __attribute__((tls_model("initial-exec"))) = {
  [0 ... TCACHE_XFREE_CLASSES - 1] = XFREE_SLAB,
};

/* Bumped by malloc_trim: a thread whose cross-thread cache was flushed at
 * an older value flushes it at its next refill. */
static _Atomic uint32_t tcache_xfree_trim_epoch;
static __thread uint32_t tcache_xfree_flushed_epoch __attribute__((tls_model("initial-exec")));

/* tcache_xfree_next for a link that leaves p's slot (delta = next ^ p):
 * the end of the list, or a carved block of a slab of class cls that
 * carries the free tag; anything else is a fatal error. */
static void *tcache_xfree_next_far(unsigned cls, void *p, uintptr_t delta)
{
  void *next = (void *)(delta ^ (uintptr_t)p);
  if (slab_list_is_end(next))
    return next;
  uintptr_t e = registry_lookup((uintptr_t)next);
  if (registry_is_superslab(e)) {
    const struct slab *s = superslab_slab_of(e, (uintptr_t)next);
    if ((s->state == SLAB_ACTIVE || s->state == SLAB_ORPHAN) && s->cls == cls &&
        slab_block_index(s, (uint16_t)(uintptr_t)next) < s->carved && slab_block_tagged(next))
      return next;
  }
  hak_fatal_pointer("malloc(): corrupted free list: bad link in free block", p);
}

/* The next block after p in class cls's cross-thread cache, checked: a
 * link inside p's 64 KiB slot costs what the fast path's does; one that
 * leaves it is checked by tcache_xfree_next_far. */
HAK_INLINE void *tcache_xfree_next(unsigned cls, void *p)
{
  uintptr_t w = *(const uintptr_t *)p;
  if (!hak_hardened)
    return (void *)w;
  uintptr_t delta = w ^ hak_secret_list;  /* next ^ p */
  if (HAK_LIKELY(delta < HAK_SLAB_SIZE))
    return (void *)(delta ^ (uintptr_t)p);
  return tcache_xfree_next_far(cls, p, delta);
}

/* Makes the ring's slab active again if class cls's cross-thread cache
 * stands in for it. */
static void tcache_xfree_deactivate(unsigned cls)
{
  struct slab *x = &tcache_xfree_slab[cls];
  if (tcache_self.active[cls] == x)
    tcache_self.active[cls] = x->next;
  x->next = NULL;
}

/* Hands every block of class cls's cross-thread cache back to its slab's
 * remote stack: the list's runs of blocks of one slab go as they are
 * linked, one CAS each.  A slab whose owner exited meanwhile is an
 * orphan: the pool hears of the free as from a remote free. */
static void tcache_xfree_flush(unsigned cls)
{
  struct slab *x = &tcache_xfree_slab[cls];
  tcache_xfree_deactivate(cls);
  bool orphan = false;
  unsigned n = 0;
  for (void *p = x->free; !slab_list_is_end(p);) {
    struct slab *s = superslab_slab_of(registry_lookup((uintptr_t)p), (uintptr_t)p);
    void *last = p, *next = tcache_xfree_next(cls, p);
    n++;
    /* A small slab is its 64 KiB slot. */
    while (!slab_list_is_end(next) && ((uintptr_t)next ^ (uintptr_t)p) < HAK_SLAB_SIZE &&
           n <= TCACHE_XFREE_CAP) {
      last = next;
      next = tcache_xfree_next(cls, next);
      n++;
    }
    if (n > TCACHE_XFREE_CAP + 1)
      hak_fatal_pointer("free(): corrupted cross-thread cache (cycle) at", p);
    slab_free_remote_chain(s, p, last);
    orphan |= s->state == SLAB_ORPHAN;
    p = next;
  }
  x->free = SLAB_LIST_END;
  x->carved = 0;
  x->used = 0;
  if (orphan) {
    shared_pool_orphan_freed();
    purge_kick();
  }
}

void tcache_xfree_put_full(unsigned cls, void *p)
{
  tcache_xfree_flush(cls);
  struct slab *x = &tcache_xfree_slab[cls];
  slab_block_set_free(p, x->free);
  x->free = p;
  x->carved++;
}

/* Flushes every class of the cross-thread cache but except, and leaves
 * the ring's slab active in each, so that the ring walks that follow
 * (sweep, thread exit, malloc_trim) meet only slabs of the ring. */
static void tcache_xfree_flush_all(unsigned except)
{
  for (unsigned c = 0; c < TCACHE_XFREE_CLASSES; c++) {
    if (c == except)
      continue;
    if (!slab_list_is_end(tcache_xfree_slab[c].free))
      tcache_xfree_flush(c);
    else
      tcache_xfree_deactivate(c);
  }
  tcache_xfree_flushed_epoch = atomic_load_explicit(&tcache_xfree_trim_epoch, memory_order_relaxed);
}

/* Pops the head of x, class cls's cross-thread cache, which is not
 * empty, with the checked link; clears its free tag.  Its slab counts it
 * in use already. */
static void *tcache_xfree_pop(unsigned cls, struct slab *x)
{
  void *p = x->free;
  x->free = tcache_xfree_next(cls, p);
  if (hak_hardened)
    slab_block_words(p)[1] = 0;
  x->used++;
  return p;
}

static void tcache_thread_init(void)
{
  hak_init();
  /* hak_init may allocate (fork-handler registration), which initialises
   * this thread's cache already. */
  if (tcache_self.id != 0)
    return;
  tcache_self.id = atomic_fetch_add_explicit(&tcache_next_id, 1, memory_order_relaxed);
  /* check = 1, and prof = 1 recording every block, send every free to
   * the slow path. */
  tcache_self.free_key = hak_config.check || prof_every_block ? HAK_NO_OWNER - 1 : tcache_self.id;
  init_thread_started(&tcache_self);
}

static void ring_insert(unsigned cls, struct slab *s)
{
  struct slab *a = tcache_self.active[cls];
  if (a == &tcache_no_slab) {
    s->next = s->prev = s;
    tcache_self.active[cls] = s;
    return;
  }
  s->prev = a;
  s->next = a->next;
  a->next->prev = s;
  a->next = s;
}

/* Unlinks s; if it was active, the next slab of the ring becomes active. */
static void ring_remove(unsigned cls, struct slab *s)
{
  if (s->next == s) {
    tcache_self.active[cls] = &tcache_no_slab;
  } else {
    s->prev->next = s->next;
    s->next->prev = s->prev;
    if (tcache_self.active[cls] == s)
      tcache_self.active[cls] = s->next;
  }
  s->next = s->prev = NULL;
}

uint32_t tcache_drain(struct slab *s)
{
  uint32_t n = slab_drain_remote(s);
  if (n) {
    counters_add(&hak_counters.remote_drains, 1);
    counters_add(&hak_counters.remote_frees, n);
  }
  return n;
}

/* Gives s blocks on its local list if it can: remote frees first (warm
 * memory), then fresh carving. */
static bool slab_refill(struct slab *s)
{
  if (!slab_list_is_end(s->free))
    return true;
  if (tcache_drain(s))
    return true;
  uint32_t n = slab_carve(s);
  if (HAK_UNLIKELY(hak_config.check) && n)
    check_fill_carved(s, n);
  return n != 0;
}

/* Refills between two sweeps of the thread's idle slabs. */
#define SWEEP_REFILLS 64

/* Hands back the active slab of every other class that holds no block in
 * use (a medium one is a whole SuperSlab), so that a thread keeps only
 * slabs it uses: a program whose sizes drift would otherwise keep an
 * empty slab in every class it ever used, and map new SuperSlabs beside
 * them (bench/soak: 24 % RSS drift without).  The owner runs it from its
 * slow path, every SWEEP_REFILLS refills; a class used again takes a slab
 * back from the pool's EMPTY list.  A thread that stops allocating keeps
 * its last ones until it exits or calls malloc_trim. */
static void tcache_sweep(unsigned except)
{
  bool any = false;
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    struct slab *s = tcache_self.active[c];
    if (c == except || s == &tcache_no_slab || s->used != 0)
      continue;
    ring_remove(c, s);
    shared_pool_release_empty(s);
    any = true;
  }
  if (any)
    purge_kick();
}

/* Refills class cls and returns a block (see tcache_alloc_slow). */
static HAK_NOINLINE void *tcache_refill(unsigned cls)
{
  if (HAK_UNLIKELY(tcache_self.id == 0))
    tcache_thread_init();
  if (HAK_UNLIKELY(tcache_xfree_flushed_epoch !=
                   atomic_load_explicit(&tcache_xfree_trim_epoch, memory_order_relaxed)))
    tcache_xfree_flush_all(HAK_NUM_CLASSES);
  /* A mapping refused and retried must not show in errno on success. */
  int saved_errno = errno;
  struct slab *s = tcache_self.active[cls];
  /* The fast path leaves a list whose head links out of its slot (the
   * end of the list, a medium slab) to the checked pop. */
  if (!slab_list_is_end(s->free))
    return tcache_pop(s);
  if (s == &tcache_no_slab) {
    s = NULL;
  } else if (!slab_refill(s)) {
    struct slab *t = s->next;
    /* Up to ss_empty_scan_limit slabs of the ring before asking the pool. */
    for (int k = 0; t != s && k < hak_config.ss_empty_scan_limit; k++, t = t->next)
      if (slab_has_room(t) && slab_refill(t))
        break;
    s = t != s && !slab_list_is_end(t->free) ? t : NULL;
  }
  if (!s) {
    for (;;) {
      s = shared_pool_acquire(cls, tcache_self.id);
      /* Refused by the system: what hakmem keeps free goes back, and
       * the pool is asked once more. */
      if (!s && purge_reclaim())
        s = shared_pool_acquire(cls, tcache_self.id);
      if (!s)
        return NULL;
      ring_insert(cls, s);
      if (slab_refill(s))
        break;
      /* An adopted orphan with every block still live: keep it in the
       * ring (its blocks will come back) and ask again. */
    }
  }
  errno = saved_errno;
  tcache_self.active[cls] = s;
  counters_add(&hak_counters.refills[cls], 1);
  if (HAK_UNLIKELY(++tcache_self.refills_since_sweep >= SWEEP_REFILLS)) {
    tcache_self.refills_since_sweep = 0;
    tcache_xfree_flush_all(cls);
    tcache_sweep(cls);
  }
  return tcache_pop(s);
}

/* The cross-thread cache first, a leaf with no frame; the refill is a
 * tail call.  For a tiny class the fast path leaves only a dry list (its
 * links stay in their slot), unless the cross-thread cache is active and
 * its next block lies in another slot. */
void *tcache_alloc_slow(unsigned cls)
{
  if (cls < TCACHE_XFREE_CLASSES) {
    struct slab *x = &tcache_xfree_slab[cls];
    struct slab *a = tcache_self.active[cls];
    if (a == x) {
      if (!slab_list_is_end(x->free))
        return tcache_xfree_pop(cls, x);
      /* Dry: back to the ring's slab, which may have blocks again. */
      a = tcache_self.active[cls] = x->next;
      x->next = NULL;
      x->carved = x->used = 0;
      if (!slab_list_is_end(a->free))
        return tcache_pop(a);
    } else if (!slab_list_is_end(x->free) && slab_list_is_end(a->free)) {
      x->next = a;
      tcache_self.active[cls] = x;
      return tcache_xfree_pop(cls, x);
    }
  }
  return tcache_refill(cls);
}

void tcache_slab_emptied(struct slab *s)
{
  /* The ring's slab that the cross-thread cache stands in for stays, as
   * the active one does. */
  if (s->cls < TCACHE_XFREE_CLASSES && tcache_xfree_slab[s->cls].next == s)
    return;
  ring_remove(s->cls, s);
  shared_pool_release_empty(s);
  purge_kick();
}

/* Drains every slab of the ring and hands back those with no block in
 * use; with orphan_live the remaining slabs are orphaned, otherwise they stay in the ring. */
static void tcache_release_class(unsigned cls, bool orphan_live)
{
  struct slab *s = tcache_self.active[cls];
  if (s == &tcache_no_slab)
    return;
  /* Break the ring into a list so slabs can leave it while we walk. */
  s->prev->next = NULL;
  struct slab *keep = NULL;
  while (s) {
    struct slab *next = s->next;
    tcache_drain(s);
    if (s->used == 0) {
      s->next = s->prev = NULL;
      shared_pool_release_empty(s);
    } else if (orphan_live) {
      s->next = s->prev = NULL;
      shared_pool_orphan(s);
    } else {
      /* Re-link into a new ring. */
      if (!keep) {
        keep = s->next = s->prev = s;
      } else {
        s->prev = keep->prev;
        s->next = keep;
        keep->prev->next = s;
        keep->prev = s;
      }
    }
    s = next;
  }
  tcache_self.active[cls] = keep ? keep : &tcache_no_slab;
  purge_kick();
}

void tcache_flush(void)
{
  tcache_xfree_flush_all(HAK_NUM_CLASSES);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
    tcache_release_class(c, true);
  tcache_self.id = 0;
  tcache_self.free_key = 0;
}

void tcache_collect(void)
{
  atomic_fetch_add_explicit(&tcache_xfree_trim_epoch, 1, memory_order_relaxed);
  if (tcache_self.id == 0)
    return;
  tcache_xfree_flush_all(HAK_NUM_CLASSES);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
    tcache_release_class(c, false);
}
