/* Thread cache slow paths: refill, EMPTY hand-back, flush at thread exit. */
#include "tcache.h"
#include "init.h"
#include "shared_pool.h"
#include "counters.h"
#include "config.h"
#include "purge.h"
#include "checkmode.h"
#include "prof.h"

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

void *tcache_alloc_slow(unsigned cls)
{
  if (HAK_UNLIKELY(tcache_self.id == 0))
    tcache_thread_init();
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
    tcache_sweep(cls);
  }
  return tcache_pop(s);
}

void tcache_slab_emptied(struct slab *s)
{
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
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
    tcache_release_class(c, true);
  tcache_self.id = 0;
  tcache_self.free_key = 0;
}

void tcache_collect(void)
{
  if (tcache_self.id == 0)
    return;
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
    tcache_release_class(c, false);
}
