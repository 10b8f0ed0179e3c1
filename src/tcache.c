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
#include "locks.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Never handed out, never written: its list is always empty. */
struct slab tcache_no_slab = { .free = SLAB_LIST_END, .state = SLAB_HEADER };

#define NO_SLAB_X4 &tcache_no_slab, &tcache_no_slab, &tcache_no_slab, &tcache_no_slab
__thread struct tcache tcache_self __attribute__((tls_model("initial-exec"))) = {
  .active = { NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4,
              NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4, NO_SLAB_X4,
              NO_SLAB_X4, NO_SLAB_X4, &tcache_no_slab, &tcache_no_slab },
};
_Static_assert(HAK_NUM_CLASSES == 50, "tcache_self initialiser covers every class");

static _Atomic uint64_t tcache_next_id = 1;

/* A field another thread writes or reads, touched once, as it is in
 * memory now. */
#define TCACHE_PEEK(lvalue) (*(volatile __typeof__(lvalue) *)&(lvalue))

/* Zero-initialised, so that it needs no TLS image (which, holding the
 * address of slab_list_end_block, would be relocated: a page more of
 * dirty memory in every process).  A thread's first put, which capacity 0
 * sends to tcache_xfree_put_full, gives every class its list end; until
 * then each list is NULL, which every reader takes for an empty list. */
__thread struct slab tcache_xfree_slab[TCACHE_XFREE_CLASSES] __attribute__((tls_model("initial-exec")));

/* Bumped by malloc_trim: a thread whose cross-thread cache was flushed at
 * an older value flushes it at its next refill. */
static _Atomic uint32_t tcache_xfree_trim_epoch;
static __thread uint32_t tcache_xfree_flushed_epoch __attribute__((tls_model("initial-exec")));
/* Per tiny class, bumped by a thread about to carve fresh blocks of the
 * class (tcache_xfree_want): every other thread hands back the blocks of
 * the class it holds, at its next refill. */
static _Atomic uint32_t tcache_xfree_wanted[TCACHE_XFREE_CLASSES];
static __thread uint32_t tcache_xfree_wanted_seen[TCACHE_XFREE_CLASSES] __attribute__((tls_model("initial-exec")));
/* Bumped with the trim epoch and with each class's count, so that the
 * refill tests one word for both (tcache_xfree_answer). */
static _Atomic uint32_t tcache_xfree_epoch;
static __thread uint32_t tcache_xfree_answered_epoch __attribute__((tls_model("initial-exec")));
/* Set at the first put of any thread: until then no thread holds another
 * thread's blocks, and a carve asks nobody for them. */
static _Atomic bool tcache_xfree_in_use;

/* The threads whose held blocks (cross-thread and medium caches) the
 * purge takes back when they go idle (tcache_reclaim_idle) and the child
 * of a fork hands back (tcache_postfork_child): each thread links its
 * node from its first refill until its cache is flushed at exit, under
 * tcache_threads_lock, a leaf lock (nothing else is taken while it is
 * held) that the fork handlers hold across fork.  A thread links itself
 * once: one that allocates again after its exit flush (a later
 * thread-specific destructor) stays out, as the hook may not run again
 * to unlink it.
 *
 * The reclaim protocol.  The thread's medium caches and rings, and the
 * cross-thread caches' slow paths (activation, flush), run inside a
 * section (tcache_held.seq, tcache.h) whose entry is an add to memory
 * and a load: the depth goes up, then claimed is read; the exit takes
 * the depth down and counts the section.  The reclaimer, holding
 * tcache_threads_lock, sets claimed, runs membarrier(2), which makes
 * every thread of the process pass a full barrier, and reads seq: either
 * it finds the thread inside a section (it leaves the thread alone) or
 * the thread's next entry finds claimed set and waits for the lock;
 * either way they never both go on.  Outside a section the thread
 * touches a cross-thread cache only while it is the class's active list
 * (the reclaimer leaves that one alone) or by a put, which writes the new
 * head and carved: the reclaimer cuts the list after the head it reads,
 * whose links no put changes, and counts what it took in used. */
struct tcache_thread_node {
  struct slab *xfree;                     /* the thread's tcache_xfree_slab */
  struct tcache *self;                    /* the thread's tcache_self */
  struct tcache_held *held;               /* the thread's tcache_held */
  struct tcache_thread_node *next, *prev; /* the list; tcache_threads_lock */
  bool linked, retired;                   /* the thread's own */
  uint32_t quiet_seq;                     /* reclaimer's, under the lock */
  uint64_t quiet_sig, quiet_since_ms;     /* idem */
};
static __thread struct tcache_thread_node tcache_thread_node __attribute__((tls_model("initial-exec")));
static struct tcache_thread_node tcache_threads = { .next = &tcache_threads, .prev = &tcache_threads };
static pthread_mutex_t tcache_threads_lock = LOCK_INITIALIZER;
/* Some thread started holding blocks with nobody watching them. */
static _Atomic bool tcache_reclaim_flag;

/* The thread's section, above: enter and leave in pairs; sections nest. */
#define TCACHE_SEQ_DEPTH 0xffffu
__thread struct tcache_held tcache_held __attribute__((tls_model("initial-exec")));

static HAK_NOINLINE void tcache_guard_wait(void);
HAK_INLINE void tcache_guard_enter(void)
{
  tcache_held.seq++;
  /* The add before the load, for the compiler; membarrier orders them
   * for the processor. */
  atomic_signal_fence(memory_order_seq_cst);
  if (HAK_UNLIKELY(TCACHE_PEEK(tcache_held.claimed)))
    tcache_guard_wait();
}

HAK_INLINE void tcache_guard_leave(void)
{
  atomic_signal_fence(memory_order_seq_cst);
  tcache_held.seq += TCACHE_SEQ_DEPTH; /* one level down, one section more */
  atomic_signal_fence(memory_order_seq_cst);
}

/* The reclaimer claimed the thread: out of this level until it is done
 * (it holds tcache_threads_lock while it works), then in again.  Inside
 * an outer section the thread stays busy for the reclaimer, which leaves
 * it alone: the wait is then short and harmless. */
static HAK_NOINLINE void tcache_guard_wait(void)
{
  do {
    atomic_signal_fence(memory_order_seq_cst);
    tcache_held.seq--;
    lock_take(&tcache_threads_lock);
    lock_give(&tcache_threads_lock);
    tcache_held.seq++;
    atomic_signal_fence(memory_order_seq_cst);
  } while (TCACHE_PEEK(tcache_held.claimed));
}

/* The calling thread holds blocks and nobody watches it: it is watched
 * from now, and the purge must run.  With no lock held. */
static HAK_NOINLINE void tcache_watch_kick(void)
{
  tcache_held.watched = true;
  atomic_store_explicit(&tcache_reclaim_flag, true, memory_order_relaxed);
  purge_kick();
}

static void tcache_thread_link(void)
{
  struct tcache_thread_node *n = &tcache_thread_node;
  if (n->linked || n->retired)
    return;
  n->xfree = tcache_xfree_slab;
  n->self = &tcache_self;
  n->held = &tcache_held;
  lock_take(&tcache_threads_lock);
  n->prev = &tcache_threads;
  n->next = tcache_threads.next;
  tcache_threads.next->prev = n;
  tcache_threads.next = n;
  lock_give(&tcache_threads_lock);
  n->linked = true;
}

static void tcache_thread_unlink(void)
{
  struct tcache_thread_node *n = &tcache_thread_node;
  n->retired = true;
  if (!n->linked)
    return;
  lock_take(&tcache_threads_lock);
  n->prev->next = n->next;
  n->next->prev = n->prev;
  lock_give(&tcache_threads_lock);
  n->next = n->prev = NULL;
  n->linked = false;
}

/* The slab of next if next is a carved block of class cls of an ACTIVE
 * or ORPHAN slab, tagged free (with hardening): a block a cross-thread
 * cache may hold.  NULL otherwise. */
static struct slab *tcache_xfree_block_slab(unsigned cls, const void *next)
{
  uintptr_t e = registry_lookup((uintptr_t)next);
  if (!registry_is_superslab(e))
    return NULL;
  struct slab *s = superslab_slab_of(e, (uintptr_t)next);
  if ((s->state == SLAB_ACTIVE || s->state == SLAB_ORPHAN) && s->cls == cls &&
      slab_block_index(s, (uint16_t)(uintptr_t)next) < s->carved &&
      (!hak_hardened || slab_block_tagged(next)))
    return s;
  return NULL;
}

/* The far path of a link in x, one of the thread's cross-thread caches:
 * the end of the list, or a block tcache_xfree_block_slab accepts;
 * anything else is a fatal error. */
static void *tcache_xfree_next_far(const struct slab *x, const void *p, uintptr_t delta)
{
  void *next = (void *)(delta ^ (uintptr_t)p);
  if (slab_list_is_end(next) || tcache_xfree_block_slab((unsigned)(x - tcache_xfree_slab), next))
    return next;
  hak_fatal_pointer("malloc(): corrupted free list: bad link in free block", p);
}

/* The next block after p in class cls's cross-thread cache, checked: a
 * link inside p's 64 KiB slot costs what the fast path's does; one that
 * leaves it is checked by tcache_xfree_next_far. */
HAK_INLINE void *tcache_xfree_next(unsigned cls, void *p)
{
  return slab_link_follow(&tcache_xfree_slab[cls], p, tcache_xfree_next_far);
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

/* Pushes the cross-thread list of class cls that starts at p onto its
 * blocks' slabs' remote stacks, a run of blocks of one slab per push;
 * *n counts the blocks, those before p included, and a list longer than
 * the cache can hold is a cycle.  Returns whether an orphan got one. */
static bool tcache_xfree_push_chain(unsigned cls, void *p, unsigned *n)
{
  bool orphan = false;
  while (!slab_list_is_end(p)) {
    struct slab *s = superslab_slab_of(registry_lookup((uintptr_t)p), (uintptr_t)p);
    void *last = p, *next = tcache_xfree_next(cls, p);
    (*n)++;
    /* A small slab is its 64 KiB slot. */
    while (!slab_list_is_end(next) && ((uintptr_t)next ^ (uintptr_t)p) < HAK_SLAB_SIZE &&
           *n <= TCACHE_XFREE_CAP) {
      last = next;
      next = tcache_xfree_next(cls, next);
      (*n)++;
    }
    if (*n > TCACHE_XFREE_CAP + 1)
      hak_fatal_pointer("free(): corrupted cross-thread cache (cycle) at", p);
    slab_free_remote_chain(s, p, last);
    orphan |= s->state == SLAB_ORPHAN;
    p = next;
  }
  return orphan;
}

/* Hands every block of class cls's cross-thread cache back to its slab's
 * remote stack: the list's runs of blocks of one slab go as they are
 * linked, one CAS each.  A slab whose owner exited meanwhile is an
 * orphan: the pool hears of the free as from a remote free. */
static void tcache_xfree_flush(unsigned cls)
{
  struct slab *x = &tcache_xfree_slab[cls];
  tcache_xfree_deactivate(cls);
  unsigned n = 0;
  /* Detached before the first push (whose CAS orders the store): the
   * child of a fork made meanwhile finds the cache empty, never a block
   * already pushed (tcache_postfork_child). */
  void *head = x->free;
  x->free = SLAB_LIST_END;
  bool orphan = tcache_xfree_push_chain(cls, head, &n);
  x->carved = 0;
  x->used = 0;
  if (orphan) {
    shared_pool_orphan_freed();
    purge_kick();
  }
}

void tcache_xfree_put_full(unsigned cls, void *p)
{
  tcache_guard_enter();
  tcache_xfree_flush(cls);
  struct slab *x = &tcache_xfree_slab[cls];
  slab_block_set_free(p, x->free);
  atomic_signal_fence(memory_order_release); /* see tcache_xfree_put */
  x->free = p;
  x->carved++;
  /* The thread's first put, or the first since the reclaimer last took
   * blocks back (it set every class's capacity to 0): every class may
   * hold again. */
  if (x->capacity == 0) {
    if (!atomic_load_explicit(&tcache_xfree_in_use, memory_order_relaxed))
      atomic_store_explicit(&tcache_xfree_in_use, true, memory_order_relaxed);
    for (unsigned c = 0; c < TCACHE_XFREE_CLASSES; c++) {
      struct slab *y = &tcache_xfree_slab[c];
      /* The thread's first put: the puts that follow, inline, link each
       * block to the list's head, which the fast path's pop must find
       * ending in SLAB_LIST_END, never NULL. */
      if (y->free == NULL)
        y->free = SLAB_LIST_END;
      y->capacity = TCACHE_XFREE_CAP;
    }
  }
  tcache_guard_leave();
  if (!tcache_held.watched)
    tcache_watch_kick();
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

/* The calling thread is about to carve fresh blocks of tiny class cls:
 * every other thread hands back the blocks of the class it holds in its
 * cross-thread cache at its next refill, so that the owners reuse them
 * before their heap grows.  Held until one of the other conditions
 * flushed them, they kept the owners' slabs carving (bench/larson: peak
 * RSS 5.2 MiB without the request, 4.9 with).  A carve writes a page or
 * two of fresh blocks, so the requests come no more often than the heap
 * touches new pages. */
static HAK_NOINLINE void tcache_xfree_want(unsigned cls)
{
  uint32_t e = atomic_fetch_add_explicit(&tcache_xfree_wanted[cls], 1, memory_order_relaxed);
  /* The caller's own cache holds other threads' blocks, not its own. */
  if (tcache_xfree_wanted_seen[cls] == e)
    tcache_xfree_wanted_seen[cls] = e + 1;
  atomic_fetch_add_explicit(&tcache_xfree_epoch, 1, memory_order_relaxed);
}

/* At a refill of class cls, some thread asked since the calling thread
 * last looked: a malloc_trim (the whole cross-thread cache goes back) or
 * carves of classes (each such class's cache but cls's, which the refill
 * is about to use). */
static HAK_NOINLINE void tcache_xfree_answer(unsigned cls)
{
  tcache_xfree_answered_epoch = atomic_load_explicit(&tcache_xfree_epoch, memory_order_relaxed);
  bool trimmed = tcache_xfree_flushed_epoch !=
                 atomic_load_explicit(&tcache_xfree_trim_epoch, memory_order_relaxed);
  tcache_guard_enter();
  for (unsigned c = 0; c < TCACHE_XFREE_CLASSES; c++) {
    uint32_t e = atomic_load_explicit(&tcache_xfree_wanted[c], memory_order_relaxed);
    bool wanted = e != tcache_xfree_wanted_seen[c];
    tcache_xfree_wanted_seen[c] = e;
    if (wanted && !trimmed && c != cls && !slab_list_is_end(tcache_xfree_slab[c].free))
      tcache_xfree_flush(c);
  }
  if (trimmed)
    tcache_xfree_flush_all(HAK_NUM_CLASSES);
  tcache_guard_leave();
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
  /* A thread without the exit hook could not unlink itself. */
  if (init_thread_started(&tcache_self))
    tcache_thread_link();
}

/* Links s last in the ring whose first slab is *ring (NULL: none yet,
 * s becomes the ring), for the walks that rebuild a ring slab by slab. */
static void ring_append(struct slab **ring, struct slab *s)
{
  struct slab *first = *ring;
  if (!first) {
    *ring = s->next = s->prev = s;
    return;
  }
  s->prev = first->prev;
  s->next = first;
  first->prev->next = s;
  first->prev = s;
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

/* Unlinks s from its ring in tc, a thread's cache; if it was active,
 * the next slab of the ring becomes active. */
HAK_INLINE void ring_remove_from(struct tcache *tc, unsigned cls, struct slab *s)
{
  if (s->next == s) {
    tc->active[cls] = &tcache_no_slab;
  } else {
    s->prev->next = s->next;
    s->next->prev = s->prev;
    if (tc->active[cls] == s)
      tc->active[cls] = s->next;
  }
  s->next = s->prev = NULL;
}

static void ring_remove(unsigned cls, struct slab *s)
{
  ring_remove_from(&tcache_self, cls, s);
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
  if (s->cls < TCACHE_XFREE_CLASSES &&
      atomic_load_explicit(&tcache_xfree_in_use, memory_order_relaxed))
    tcache_xfree_want(s->cls);
  uint32_t n = slab_carve(s);
  if (HAK_UNLIKELY(hak_config.check) && n)
    check_fill_carved(s, n);
  return n != 0;
}

static void tcache_held_flush_all(unsigned except);

/* Refills between two sweeps of the thread's idle slabs. */
#define SWEEP_REFILLS 64

/* Hands back the active slab of every other class that holds no block in
 * use (a medium one is three to eight slots), so that a thread keeps only
 * slabs it uses: a program whose sizes drift would otherwise keep an
 * empty slab in every class it ever used, and map new SuperSlabs beside
 * them (bench/soak: 24 % RSS drift without).  The owner runs it from its
 * slow path, every SWEEP_REFILLS refills; a class used again takes a slab
 * back from the pool's EMPTY list.  A thread that stops allocating keeps
 * its last small ones until it exits or calls malloc_trim; its medium
 * ones go back by time (tcache_reclaim_idle). */
static void tcache_sweep(unsigned except)
{
  bool any = false;
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    struct slab *s = tcache_self.active[c];
    if (c == except || s == &tcache_no_slab)
      continue;
    /* The empty slab a medium class keeps beside its active one
     * (tcache_medium_emptied) is the active one's neighbour or further:
     * the walk ends at the active slab. */
    if (size_class_is_medium(c)) {
      for (struct slab *t = s->next, *next; t != s; t = next) {
        next = t->next;
        if (t->used == 0) {
          ring_remove(c, t);
          shared_pool_release_empty(t);
          any = true;
        }
      }
    }
    if (s->used != 0)
      continue;
    ring_remove(c, s);
    shared_pool_release_empty(s);
    any = true;
  }
  if (any)
    purge_kick();
}

/* A slab of the ring of s, the class's active slab, run dry, whose list
 * holds at least the blocks a carve of s would give (any, once s is fully
 * carved), its remote stack drained if need be, or that the drain left
 * with no block in use: taken before s carves pages not yet written, so
 * that a class's slabs fill up instead of each reaching a high-water mark
 * of its own while the others hold free blocks (bench/random_mixed with
 * 8192 live blocks: 4 % less peak RSS).  Fewer blocks would not pay for
 * the refill that takes them.  NULL if none of the first
 * ss_empty_scan_limit slabs qualifies. */
static struct slab *tcache_ring_freed(struct slab *s)
{
  uint32_t want = 1;
  if (s->carved < s->capacity) {
    want = (uint32_t)(HAK_PAGE_SIZE / slab_block_size(s));
    if (want == 0)
      want = 1;
  }
  struct slab *t = s->next;
  for (int k = 0; t != s && k < hak_config.ss_empty_scan_limit; k++, t = t->next) {
    if (t->carved - t->used >= want)
      return t;
    if (atomic_load_explicit(&t->remote, memory_order_relaxed) && tcache_drain(t) &&
        (t->carved - t->used >= want || t->used == 0))
      return t;
  }
  return NULL;
}

/* Refills class cls and returns a block (see tcache_alloc_slow). */
static HAK_NOINLINE void *tcache_refill(unsigned cls)
{
  if (HAK_UNLIKELY(tcache_self.id == 0))
    tcache_thread_init();
  if (HAK_UNLIKELY(tcache_xfree_answered_epoch !=
                   atomic_load_explicit(&tcache_xfree_epoch, memory_order_relaxed)))
    tcache_xfree_answer(cls);
  purge_start_if_wanted();
  /* A mapping refused and retried must not show in errno on success. */
  int saved_errno = errno;
  struct slab *s = tcache_self.active[cls];
  /* The fast path leaves a list whose head links out of its slot (the
   * end of the list, a medium slab) to the checked pop. */
  if (!slab_list_is_end(s->free))
    return tcache_pop(s);
  /* A medium slab holds 2 to 8 blocks, so its class's active slab runs
   * dry every few allocations while the ring's other slabs hold the
   * blocks the thread freed (a free in a head slot takes the fast path,
   * which does not make its slab active as tcache_free_local_medium
   * does): one of those takes over, before the remote stack and the
   * carving, which a refill is, and with no count or sweep tick. */
  if (size_class_is_medium(cls) && s != &tcache_no_slab) {
    struct slab *t = s->next;
    for (int k = 0; t != s && k < hak_config.ss_empty_scan_limit; k++, t = t->next)
      if (!slab_list_is_end(t->free)) {
        tcache_self.active[cls] = t;
        return tcache_pop(t);
      }
  }
  if (s == &tcache_no_slab) {
    s = NULL;
  } else if (!tcache_drain(s)) {
    struct slab *t = tcache_ring_freed(s);
    if (t) {
      s = t;
    } else if (!slab_refill(s)) {
      t = s->next;
      /* Up to ss_empty_scan_limit slabs of the ring before asking the pool. */
      for (int k = 0; t != s && k < hak_config.ss_empty_scan_limit; k++, t = t->next)
        if (slab_has_room(t) && slab_refill(t))
          break;
      s = t != s && !slab_list_is_end(t->free) ? t : NULL;
    }
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
    tcache_guard_enter();
    tcache_held_flush_all(cls);
    tcache_sweep(cls);
    tcache_guard_leave();
  }
  return tcache_pop(s);
}

/* Class cls's cross-thread cache x, active, ran dry: the ring's slab it
 * stood in for is active again, and gives the block, or the refill does.
 * In the reclaim protocol's section, as the reclaimer takes blocks from
 * the list of an inactive cache only. */
static HAK_NOINLINE void *tcache_xfree_dry(unsigned cls, struct slab *x)
{
  tcache_guard_enter();
  struct slab *a = tcache_self.active[cls] = x->next;
  x->next = NULL;
  x->carved = x->used = 0;
  tcache_guard_leave();
  if (!slab_list_is_end(a->free))
    return tcache_pop(a);
  return tcache_refill(cls);
}

/* Class cls's cross-thread cache x, which holds blocks, stands in for a,
 * the ring's slab, run dry: it becomes the active list and gives the
 * block.  In the section, as above. */
static HAK_NOINLINE void *tcache_xfree_activate(unsigned cls, struct slab *x, struct slab *a)
{
  tcache_guard_enter();
  x->next = a;
  tcache_self.active[cls] = x;
  void *p = tcache_xfree_pop(cls, x);
  tcache_guard_leave();
  return p;
}

/* The cross-thread cache first, a leaf with no frame; the refill and the
 * cache's changes of state are tail calls.  For a tiny class the fast
 * path leaves only a dry list (its links stay in their slot), unless the
 * cross-thread cache is active and its next block lies in another
 * slot. */
void *tcache_alloc_slow(unsigned cls)
{
  if (cls < TCACHE_XFREE_CLASSES) {
    struct slab *x = &tcache_xfree_slab[cls];
    struct slab *a = tcache_self.active[cls];
    if (a == x) {
      if (!slab_list_is_end(x->free))
        return tcache_xfree_pop(cls, x);
      return tcache_xfree_dry(cls, x);
    }
    if (!slab_list_is_end(x->free) && slab_list_is_end(a->free))
      return tcache_xfree_activate(cls, x, a);
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

/* A medium slab holds 2 to 8 blocks, so with a few live blocks of the
 * class one empties every few frees; given back at once, the class
 * claims one again soon after, through the pool's lock (bench medpair
 * with 16 live blocks of 40-44 KiB: one pool trip every 300 mallocs).
 * The thread keeps one such slab in its ring beside the active one
 * (which may be empty too), for the ring walk of tcache_refill to find;
 * the sweep hands it back when the class goes unused. */
void tcache_medium_emptied(struct slab *s)
{
  struct slab *t = s->next;
  for (int k = 0; t != s && k < hak_config.ss_empty_scan_limit; k++, t = t->next)
    if (t->used == 0 && t != tcache_self.active[s->cls]) {
      tcache_slab_emptied(s);
      return;
    }
}

/* The purge pass and the malloc_trim the thread's medium cache last went
 * back at. */
static __thread uint32_t tcache_medium_seen_pass __attribute__((tls_model("initial-exec")));
static __thread uint32_t tcache_medium_seen_trim __attribute__((tls_model("initial-exec")));
/* Per medium class, the blocks its medium cache holds at most: 0 with
 * check = 1 or prof = 1 recording every block, whose frees take the
 * validating path (tcache_configure). */
static uint8_t tcache_medium_cap[TCACHE_MEDIUM_CLASSES];

void tcache_configure(void)
{
  for (unsigned c = HAK_NUM_SMALL_CLASSES; c < HAK_NUM_CLASSES; c++) {
    uint32_t cap = TCACHE_MEDIUM_HELD_BYTES / size_class_size(c);
    cap = cap < 1 ? 1 : cap > TCACHE_MEDIUM_HELD_MAX ? TCACHE_MEDIUM_HELD_MAX : cap;
    tcache_medium_cap[c - HAK_NUM_SMALL_CLASSES] = hak_config.check || prof_every_block ? 0 : (uint8_t)cap;
  }
}

/* The slab of p, a block the medium cache of class cls of thread id
 * holds, from its address: the head of p's span if p is a carved block,
 * tagged free, of an ACTIVE slab of the class that the thread owns; NULL
 * otherwise. */
static struct slab *tcache_medium_block_slab(unsigned cls, const void *p, uint64_t id)
{
  uintptr_t e = registry_lookup((uintptr_t)p);
  if (!registry_is_superslab(e))
    return NULL;
  struct slab *s = superslab_slab_of(e, (uintptr_t)p);
  s -= s->head_offset;
  if (s->state != SLAB_ACTIVE || s->cls != cls || !slab_owned_by(s, id) ||
      !slab_is_block(s, p) || (hak_hardened && !slab_block_tagged(p)))
    return NULL;
  return s;
}

/* Hands every block of class cls's medium cache back to its slab's list. */
static void tcache_medium_flush(unsigned cls)
{
  struct tcache_medium_held *h = &tcache_held.medium[cls - HAK_NUM_SMALL_CLASSES];
  while (h->count) {
    void *p = h->blocks[--h->count];
    struct slab *s = tcache_medium_block_slab(cls, p, tcache_self.id);
    if (!s)
      hak_fatal_pointer("free(): corrupted medium cache (block written after free?) at", p);
    tcache_free_local_medium(s, p);
  }
}

/* Every class's medium cache back to its slabs, but except's. */
static void tcache_medium_flush_all(unsigned except)
{
  for (unsigned c = HAK_NUM_SMALL_CLASSES; c < HAK_NUM_CLASSES; c++)
    if (c != except)
      tcache_medium_flush(c);
  tcache_medium_seen_pass = atomic_load_explicit(&shared_pool_purge_passes, memory_order_relaxed);
  tcache_medium_seen_trim = atomic_load_explicit(&tcache_xfree_trim_epoch, memory_order_relaxed);
}

/* Both caches of held blocks, cross-thread and medium, back to their
 * slabs, every class but except (the ring walks that follow meet only
 * slabs of the ring).  Inside the reclaim protocol's section. */
static void tcache_held_flush_all(unsigned except)
{
  tcache_xfree_flush_all(except);
  tcache_medium_flush_all(except);
}

/* Whether a purge pass or a malloc_trim ran since the thread's medium
 * cache last went back. */
HAK_INLINE bool tcache_medium_purge_seen(void)
{
  return (tcache_medium_seen_pass ^
          atomic_load_explicit(&shared_pool_purge_passes, memory_order_relaxed)) |
         (tcache_medium_seen_trim ^
          atomic_load_explicit(&tcache_xfree_trim_epoch, memory_order_relaxed));
}

/* If so, the cache goes back now. */
HAK_INLINE void tcache_medium_follow_purge(void)
{
  if (HAK_UNLIKELY(tcache_medium_purge_seen()))
    tcache_medium_flush_all(HAK_NUM_CLASSES);
}

/* Pops the last block of h, a medium cache that holds one; inside the
 * section. */
HAK_INLINE void *tcache_medium_pop(struct tcache_medium_held *h)
{
  void *p = h->blocks[--h->count];
  h->slabs[h->count]->allocs++;
  /* The tag, written at the free, must still be there. */
  if (hak_hardened) {
    if (HAK_UNLIKELY(!slab_block_tagged(p)))
      hak_fatal_pointer("malloc(): corrupted medium cache (block written after free?) at", p);
    slab_block_words(p)[1] = 0;
  }
  return p;
}

/* Keeps p, a block of s, in h, a medium cache with room; inside the
 * section. */
HAK_INLINE void tcache_medium_push(struct tcache_medium_held *h, struct slab *s, void *p)
{
  slab_block_set_free(p, SLAB_LIST_END);
  h->slabs[h->count] = s;
  h->blocks[h->count++] = p;
}

/* tcache_alloc_medium's every case but the common one: the medium cache
 * empty (the thread's slabs), or the thread claimed by the reclaimer
 * (wait for it). */
static HAK_NOINLINE void *tcache_alloc_medium_slow(unsigned cls)
{
  tcache_guard_enter();
  struct tcache_medium_held *h = &tcache_held.medium[cls - HAK_NUM_SMALL_CLASSES];
  void *p;
  if (h->count) {
    p = tcache_medium_pop(h);
  } else {
    tcache_medium_follow_purge();
    p = tcache_alloc_else(cls, tcache_alloc_slow_of_class, cls);
  }
  tcache_guard_leave();
  return p;
}

/* The common case in a section of its own, with no call inside, so that
 * it needs no frame; everything else is a tail call. */
void *tcache_alloc_medium(unsigned cls)
{
  tcache_held.seq++;
  atomic_signal_fence(memory_order_seq_cst); /* see tcache_guard_enter */
  struct tcache_medium_held *h = &tcache_held.medium[cls - HAK_NUM_SMALL_CLASSES];
  if (HAK_UNLIKELY(TCACHE_PEEK(tcache_held.claimed) != 0 || h->count == 0)) {
    tcache_guard_leave();
    return tcache_alloc_medium_slow(cls);
  }
  void *p = tcache_medium_pop(h);
  tcache_guard_leave();
  return p;
}

/* tcache_free_medium's every case but the common one: the medium cache
 * full (onto s's list), a purge pass or malloc_trim to follow, the thread
 * claimed by the reclaimer (wait for it), nobody watching the thread. */
static HAK_NOINLINE void tcache_free_medium_slow(struct slab *s, void *p)
{
  unsigned k = s->cls - HAK_NUM_SMALL_CLASSES;
  struct tcache_medium_held *h = &tcache_held.medium[k];
  tcache_guard_enter();
  tcache_medium_follow_purge();
  bool held = h->count < tcache_medium_cap[k];
  if (held)
    tcache_medium_push(h, s, p);
  else
    tcache_free_local_medium(s, p);
  tcache_guard_leave();
  if (held && !tcache_held.watched)
    tcache_watch_kick();
}

void tcache_free_medium(struct slab *s, void *p)
{
  unsigned k = s->cls - HAK_NUM_SMALL_CLASSES;
  struct tcache_medium_held *h = &tcache_held.medium[k];
  tcache_held.seq++;
  atomic_signal_fence(memory_order_seq_cst); /* see tcache_guard_enter */
  if (HAK_UNLIKELY(TCACHE_PEEK(tcache_held.claimed) != 0 || h->count >= tcache_medium_cap[k] ||
                   !tcache_held.watched || tcache_medium_purge_seen())) {
    tcache_guard_leave();
    tcache_free_medium_slow(s, p);
    return;
  }
  tcache_medium_push(h, s, p);
  tcache_guard_leave();
}

static int tcache_check_medium_held(void)
{
  for (unsigned c = HAK_NUM_SMALL_CLASSES; c < HAK_NUM_CLASSES; c++) {
    const struct tcache_medium_held *h = &tcache_held.medium[c - HAK_NUM_SMALL_CLASSES];
    if (h->count > TCACHE_MEDIUM_HELD_MAX) {
      hak_warn_pointer("check_heap: medium cache holds more blocks than it can", h);
      return -1;
    }
    for (uint32_t i = 0; i < h->count; i++) {
      if (!tcache_medium_block_slab(c, h->blocks[i], tcache_self.id)) {
        hak_warn_pointer("check_heap: medium cache holds a block that is not a free block of its class "
                         "(written after free?) at", h->blocks[i]);
        return -1;
      }
      for (uint32_t j = 0; j < i; j++)
        if (h->blocks[j] == h->blocks[i]) {
          hak_warn_pointer("check_heap: medium cache holds a block twice", h->blocks[i]);
          return -1;
        }
    }
  }
  return 0;
}

HAK_RARE_TEXT int tcache_check_heap(void)
{
  tcache_guard_enter();
  int rc = shared_pool_check_heap(tcache_self.id) || tcache_check_medium_held() ? -1 : 0;
  tcache_guard_leave();
  return rc;
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
      ring_append(&keep, s); /* re-linked into a new ring */
    }
    s = next;
  }
  tcache_self.active[cls] = keep ? keep : &tcache_no_slab;
  purge_kick();
}

void tcache_flush(void)
{
  tcache_guard_enter();
  tcache_held_flush_all(HAK_NUM_CLASSES);
  tcache_thread_unlink();
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
    tcache_release_class(c, true);
  tcache_self.id = 0;
  tcache_self.free_key = 0;
  tcache_guard_leave();
}

void tcache_collect(void)
{
  atomic_fetch_add_explicit(&tcache_xfree_trim_epoch, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&tcache_xfree_epoch, 1, memory_order_relaxed);
  if (tcache_self.id == 0)
    return;
  tcache_guard_enter();
  tcache_held_flush_all(HAK_NUM_CLASSES);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
    tcache_release_class(c, false);
  tcache_guard_leave();
}

/* ---- taking back the blocks an idle thread holds ---- */

/* membarrier(2) for the reclaim protocol: registered at the first use;
 * false where the kernel or a seccomp filter refuses it (then idle
 * threads keep what they hold, as before).  Under tcache_threads_lock. */
static int tcache_membarrier_state; /* 0 not tried, 1 registered, -1 refused */

static bool tcache_membarrier(void)
{
  int saved_errno = errno;
  if (tcache_membarrier_state == 0)
    tcache_membarrier_state =
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 1 : -1;
  bool ok = tcache_membarrier_state > 0 &&
            syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
  errno = saved_errno;
  return ok;
}

/* What changes whenever thread n touches its held blocks: its sections
 * and its cross-thread caches' puts.  Any change restarts the delay. */
static uint64_t tcache_node_signature(const struct tcache_thread_node *n)
{
  uint64_t sig = TCACHE_PEEK(n->held->seq);
  for (unsigned c = 0; c < TCACHE_XFREE_CLASSES; c++)
    sig = sig * 31 + TCACHE_PEEK(n->xfree[c].carved);
  return sig;
}

/* Whether thread n seems to hold blocks, in either cache. */
static bool tcache_node_holds(const struct tcache_thread_node *n)
{
  for (unsigned c = 0; c < TCACHE_MEDIUM_CLASSES; c++)
    if (TCACHE_PEEK(n->held->medium[c].count))
      return true;
  for (unsigned c = 0; c < TCACHE_XFREE_CLASSES; c++)
    if (tcache_xfree_held(&n->xfree[c]))
      return true;
  return false;
}

/* Claimed thread n's cross-thread cache of class cls, x, if it is not
 * the class's active list: every block after the head goes back to its
 * slab's remote stack (the head stays, as a put may be linking a block
 * to it).  Returns whether an orphan got one. */
static bool tcache_xfree_reclaim(const struct tcache_thread_node *n, unsigned cls)
{
  struct slab *x = &n->xfree[cls];
  if (TCACHE_PEEK(n->self->active[cls]) == x)
    return false;
  void *head = TCACHE_PEEK(x->free);
  if (slab_list_is_end(head))
    return false;
  void *p = tcache_xfree_next(cls, head);
  if (slab_list_is_end(p))
    return false;
  slab_block_set_free(head, SLAB_LIST_END);
  unsigned count = 1; /* the head */
  bool orphan = tcache_xfree_push_chain(cls, p, &count);
  TCACHE_PEEK(x->used) = (uint16_t)(TCACHE_PEEK(x->used) + count - 1);
  return orphan;
}

/* Claimed thread n's medium caches back to their slabs' lists, and every
 * slab of its medium rings that holds no block in use out of the ring,
 * onto *empty (linked by next), for the pool: what the thread's own
 * sweep does. */
static void tcache_medium_reclaim(const struct tcache_thread_node *n, struct slab **empty)
{
  struct tcache *tc = n->self;
  for (unsigned c = HAK_NUM_SMALL_CLASSES; c < HAK_NUM_CLASSES; c++) {
    struct tcache_medium_held *h = &n->held->medium[c - HAK_NUM_SMALL_CLASSES];
    while (h->count) {
      void *p = h->blocks[--h->count];
      struct slab *s = tcache_medium_block_slab(c, p, tc->id);
      if (!s)
        hak_fatal_pointer("free(): corrupted medium cache (block written after free?) at", p);
      slab_block_set_free(p, s->free);
      s->free = p;
      s->used--;
    }
    struct slab *a = tc->active[c];
    if (a == &tcache_no_slab)
      continue;
    /* The ring as a list, walked from the active slab; the slabs kept
     * make a new ring in the same order. */
    a->prev->next = NULL;
    struct slab *keep = NULL;
    for (struct slab *s = a, *next; s; s = next) {
      next = s->next;
      tcache_drain(s);
      if (s->used == 0) {
        /* No owner from now: in the child of a fork made before the pool
         * takes it, it becomes an orphan, collected there. */
        atomic_store_explicit(&s->owner, HAK_NO_OWNER, memory_order_relaxed);
        s->prev = NULL;
        s->next = *empty;
        *empty = s;
      } else {
        ring_append(&keep, s);
      }
    }
    tc->active[c] = keep ? keep : &tcache_no_slab;
  }
}

bool tcache_reclaim_wanted(void)
{
  return atomic_load_explicit(&tcache_reclaim_flag, memory_order_relaxed);
}

bool tcache_reclaim_idle(uint64_t now_ms)
{
  if (hak_config.purge_delay_ms < 0)
    return false;
  atomic_store_explicit(&tcache_reclaim_flag, false, memory_order_relaxed);
  uint64_t delay = (uint64_t)hak_config.purge_delay_ms;
  bool pending = false, any = false, orphan = false;
  struct slab *empty = NULL;
  struct tcache_thread_node *self = &tcache_thread_node;
  lock_take(&tcache_threads_lock);
  for (struct tcache_thread_node *n = tcache_threads.next; n != &tcache_threads; n = n->next) {
    if (n == self || !TCACHE_PEEK(n->held->watched))
      continue;
    uint64_t sig = tcache_node_signature(n);
    uint32_t seq = TCACHE_PEEK(n->held->seq);
    bool busy = (seq & TCACHE_SEQ_DEPTH) != 0;
    bool holds = tcache_node_holds(n);
    if (sig != n->quiet_sig || busy) {
      n->quiet_sig = sig;
      n->quiet_since_ms = now_ms;
      pending |= holds;
      /* A thread that holds nothing is claimed at once, to be unwatched:
       * its next block held kicks the purge again. */
      if (holds || busy)
        continue;
    } else if (holds && hak_ms_elapsed(n->quiet_since_ms, now_ms) < delay) {
      pending = true;
      continue;
    }
    n->quiet_seq = seq;
    TCACHE_PEEK(n->held->claimed) = 1;
    any = true;
  }
  bool barrier = any && tcache_membarrier();
  for (struct tcache_thread_node *n = tcache_threads.next; any && n != &tcache_threads; n = n->next) {
    if (!TCACHE_PEEK(n->held->claimed))
      continue;
    /* Loads after the barrier's, in order (x86 keeps loads in order). */
    atomic_signal_fence(memory_order_seq_cst);
    if (barrier && TCACHE_PEEK(n->held->seq) == n->quiet_seq) {
      atomic_thread_fence(memory_order_acquire);
      tcache_medium_reclaim(n, &empty);
      for (unsigned c = 0; c < TCACHE_XFREE_CLASSES; c++) {
        orphan |= tcache_xfree_reclaim(n, c);
        /* Its next put watches the thread again (tcache_xfree_put_full). */
        TCACHE_PEEK(n->xfree[c].capacity) = 0;
      }
      TCACHE_PEEK(n->held->watched) = false;
    } else if (barrier) {
      pending = true; /* it woke up meanwhile */
    }
    atomic_thread_fence(memory_order_release);
    TCACHE_PEEK(n->held->claimed) = 0;
  }
  lock_give(&tcache_threads_lock);
  for (struct slab *s = empty, *next; s; s = next) {
    next = s->next;
    s->next = NULL;
    shared_pool_release_empty(s);
  }
  if (orphan)
    shared_pool_orphan_freed();
  return pending;
}

void tcache_prefork(void)
{
  lock_hold(&tcache_threads_lock);
}

void tcache_postfork_parent(void)
{
  pthread_mutex_unlock(&tcache_threads_lock);
}

/* Child of a fork: hands the blocks of class cls's cross-thread cache x,
 * left by a thread the child does not have, to their slabs' remote
 * stacks, one at a time.  That thread stopped wherever it was, so the
 * walk trusts nothing: it stops, leaving the rest in use, at the first
 * block that is not a tagged, carved block of the class, and after
 * TCACHE_XFREE_CAP blocks.  Returns whether an orphan got one. */
static bool tcache_xfree_hand_back(unsigned cls, struct slab *x)
{
  bool orphan = false;
  void *p = x->free;
  x->free = SLAB_LIST_END;
  for (unsigned n = 0; n < TCACHE_XFREE_CAP && !slab_list_is_end(p); n++) {
    struct slab *s = tcache_xfree_block_slab(cls, p);
    if (!s)
      break;
    uintptr_t w = *(const uintptr_t *)p;
    void *next = (void *)(hak_hardened ? w ^ hak_secret_list ^ (uintptr_t)p : w);
    slab_free_remote(s, p);
    orphan |= s->state == SLAB_ORPHAN;
    p = next;
  }
  return orphan;
}

/* Child of a fork: hands the blocks of the medium caches of n, a thread
 * the child does not have, to their slabs (orphans now) as remote frees.
 * Nothing of a thread caught inside its section (seq odd), whose arrays
 * may be half written; otherwise each block must be a tagged, carved
 * block of an orphaned slab of its class, held once, or it and the rest
 * of its class stay in use.  Returns whether it handed one back. */
static bool tcache_medium_hand_back(const struct tcache_thread_node *n)
{
  bool any = false;
  if (TCACHE_PEEK(n->held->seq) & TCACHE_SEQ_DEPTH)
    return false;
  for (unsigned c = HAK_NUM_SMALL_CLASSES; c < HAK_NUM_CLASSES; c++) {
    const struct tcache_medium_held *h = &n->held->medium[c - HAK_NUM_SMALL_CLASSES];
    uint32_t count = h->count < TCACHE_MEDIUM_HELD_MAX ? h->count : TCACHE_MEDIUM_HELD_MAX;
    for (uint32_t i = 0; i < count; i++) {
      void *p = h->blocks[i];
      uintptr_t e = registry_lookup((uintptr_t)p);
      if (!registry_is_superslab(e))
        break;
      struct slab *s = superslab_slab_of(e, (uintptr_t)p);
      s -= s->head_offset;
      bool twice = false;
      for (uint32_t j = 0; j < i; j++)
        twice |= h->blocks[j] == p;
      if (twice || s->state != SLAB_ORPHAN || s->cls != c || !slab_is_block(s, p) ||
          (hak_hardened && !slab_block_tagged(p)))
        break;
      slab_free_remote(s, p);
      any = true;
    }
  }
  return any;
}

HAK_RARE_TEXT void tcache_postfork_child(void)
{
  lock_reset(&tcache_threads_lock);
  /* The child's mm is not registered for membarrier. */
  tcache_membarrier_state = 0;
  bool orphan = false;
  struct tcache_thread_node *self = &tcache_thread_node;
  for (struct tcache_thread_node *n = tcache_threads.next, *next; n != &tcache_threads; n = next) {
    next = n->next;
    if (n == self)
      continue;
    for (unsigned c = 0; c < TCACHE_XFREE_CLASSES; c++)
      orphan |= tcache_xfree_hand_back(c, &n->xfree[c]);
    orphan |= tcache_medium_hand_back(n);
  }
  /* Only this thread is left. */
  tcache_threads.next = tcache_threads.prev = &tcache_threads;
  if (self->linked) {
    self->next = self->prev = &tcache_threads;
    tcache_threads.next = tcache_threads.prev = self;
  }
  if (orphan)
    shared_pool_orphan_freed();
}
