/* Thread cache: each thread's slabs, per class.
 *
 * A thread owns a ring of slabs per class and allocates from one of them,
 * the active slab, by popping its local free list.  Frees of blocks in a
 * slab the thread owns push onto that slab's list; frees from other
 * threads go to the slab's remote stack.  When the active slab runs dry
 * the thread refills in one batch: collect the slab's remote stack, move
 * to another slab of the ring that holds a carve's worth of freed blocks,
 * carve a page of fresh blocks, move to another slab of the ring with
 * room, or take a slab from the shared pool.  A non-active slab whose last block
 * comes back goes to the shared pool as EMPTY; the active one stays, so a
 * one-block malloc/free loop never leaves the fast path; every 64 refills
 * the thread hands back the active slabs of other classes left empty.
 *
 * A block of a tiny class (at most HAK_TINY_MAX bytes) that the thread
 * frees while another thread owns its slab, in a class the thread itself
 * allocates (it has an active slab of it), does not go to that slab's
 * remote stack at once: it goes onto the thread's cross-thread cache of
 * the class, the list of a slab descriptor in thread-local memory that
 * belongs to no SuperSlab (tcache_xfree_slab).  When the thread's own
 * active slab of the class runs dry, that descriptor becomes the active
 * one, so malloc's fast path pops those blocks, until its list runs dry
 * and the ring's slab comes back.  The block's cache line, which the
 * freeing thread has just touched, stays on its core, and neither the
 * block nor the owner's descriptor moves between cores per operation
 * (bench/larson, where most frees are of the other thread's blocks).
 * Such a block stays counted in its slab's used, as a block on a remote
 * stack does until drained, so its slab never becomes EMPTY under it.
 * It carries the free tag, so a second free of it from any thread, the
 * owner included, aborts as a double free; a link that leaves its 64 KiB
 * slot is followed only to a tagged block of a slab of the class.  The
 * cache goes back to the owners' remote stacks, one CAS per run of
 * blocks of one slab, when it holds TCACHE_XFREE_CAP blocks, every
 * SWEEP_REFILLS refills (every class but the one refilled), at thread
 * exit, when any thread calls malloc_trim (the caller at once, the
 * others at their next refill), when another thread is about to carve
 * fresh blocks of the class (at the next refill of another class); once
 * the thread has not touched it for purge_delay_ms, the purge takes back
 * every block but the list's head, unless the cache is the class's
 * active list (tcache_reclaim_idle).  In
 * the child of a fork, the forking thread keeps its cache, and the
 * caches of the threads the child does not have go back to their slabs'
 * remote stacks (every thread with a cache is on a list the fork
 * handlers hold).
 *
 * All state is thread-local (initial-exec TLS) and touched only by its
 * thread, but for the held blocks and medium rings of a thread gone idle,
 * which the purge takes back under the protocol of tcache_reclaim_idle;
 * at thread exit the cache is flushed: empty slabs go back to the pool
 * and slabs with live blocks become orphans other threads adopt. */
#ifndef HAKMEM_TCACHE_H
#define HAKMEM_TCACHE_H

#include "slab.h"
#include "size_class.h"

struct tcache {
  /* Never NULL: a class without a slab points at tcache_no_slab, whose
   * list is empty (SLAB_LIST_END), so the fast path has a single test. */
  struct slab *active[HAK_NUM_CLASSES];
  uint64_t id;            /* 0 until the thread's first refill */
  /* What free compares a slab's owner with: id, or with check = 1 a value
   * no slab has, which sends every free through the validating path. */
  uint64_t free_key;
  uint32_t refills_since_sweep; /* see tcache_sweep */
  /* prof = 1: bytes until the heap profiler's next sample (prof.h), kept
   * here so that the profiled fast path reaches it through the same
   * thread pointer as active[]; unused otherwise. */
  int64_t prof_countdown;
};

extern HAK_HIDDEN struct slab tcache_no_slab;

extern HAK_HIDDEN __thread struct tcache tcache_self __attribute__((tls_model("initial-exec")));

/* Slow path of tcache_alloc: refills class cls and returns a block, or
 * NULL with errno ENOMEM. */
void *tcache_alloc_slow(unsigned cls);
/* malloc of medium class cls: the medium cache's last block (see
 * tcache_medium_held below), else the thread's slabs. */
void *tcache_alloc_medium(unsigned cls);
/* Slow path of a local free that left slab s with no block in use. */
void tcache_slab_emptied(struct slab *s);
/* s, a medium slab of the thread's ring that is no longer active, holds
 * no block in use: it stays in the ring if no other slab of the ring is
 * empty, else it goes back to the pool. */
void tcache_medium_emptied(struct slab *s);

/* Owner: pops the head of s's list, which is not empty: decodes and
 * checks its link, clears its free tag. */
HAK_INLINE void *tcache_pop(struct slab *s)
{
  void *p = s->free;
  s->free = slab_link_next(s, p);
  if (hak_hardened)
    slab_block_words(p)[1] = 0;
  s->used++;
  s->allocs++;
  return p;
}

/* tcache_alloc_else's pop; with prefetch_next (a constant at each call
 * site) it also asks for the line of the list's next block, so that the
 * class's next malloc need not wait for the line its pop reads: on
 * bench/burst, whose blocks' lines have left the cache by the time they
 * are handed out again, that wait was 60 % of alloc_malloc_generic's
 * time.  One instruction, which the inline path of malloc's tiny
 * requests goes without. */
HAK_INLINE void *tcache_pop_else(unsigned cls, void *(*slow)(size_t), size_t arg, bool prefetch_next)
{
  struct slab *s = tcache_self.active[cls];
  uintptr_t *p = s->free;
  void *next;
  if (!hak_hardened) {
    if (HAK_UNLIKELY(p == NULL))
      return slow(arg);
    next = (void *)p[0];
  } else {
    uintptr_t delta = p[0] ^ hak_secret_list;  /* next ^ p */
    if (HAK_UNLIKELY(delta >= HAK_SLAB_SIZE))
      return slow(arg);
    next = (void *)(delta ^ (uintptr_t)p);
    p[1] = 0;
  }
  s->free = next;
  if (prefetch_next)
    __builtin_prefetch(next);
  s->used++;
  s->allocs++;
  return p;
}

/* Fast path: the thread's active slab of class cls pops one block, or,
 * when it cannot, returns slow(arg).  With hardening the only branch is
 * the link check (the next block lies in the same 64 KiB slot), which an
 * empty list fails too, as its head is SLAB_LIST_END; without, the only
 * branch is the empty-list test.  The slow path takes everything else: it
 * ends lists, follows a medium slab's links across slots, and refills.
 * slow and arg let malloc pass the request's size, which it holds in the
 * argument register already, instead of copying the class there on the
 * way to the pop. */
HAK_INLINE void *tcache_alloc_else(unsigned cls, void *(*slow)(size_t), size_t arg)
{
  return tcache_pop_else(cls, slow, arg, false);
}

/* tcache_alloc_slow with the class as a size_t, for tcache_alloc_else. */
HAK_INLINE void *tcache_alloc_slow_of_class(size_t cls)
{
  return tcache_alloc_slow((unsigned)cls);
}

/* The pop of tcache_alloc_else with the next block prefetched, refilling
 * class cls, a small class, when it cannot: malloc's small requests
 * above HAK_TINY_MAX. */
HAK_INLINE void *tcache_alloc_small(unsigned cls)
{
  return tcache_pop_else(cls, tcache_alloc_slow_of_class, cls, true);
}

/* tcache_alloc_small for any class: a medium class takes the medium
 * cache first. */
HAK_INLINE void *tcache_alloc(unsigned cls)
{
  if (size_class_is_medium(cls))
    return tcache_alloc_medium(cls);
  return tcache_alloc_small(cls);
}

/* Owner's free of p into s: push; a non-active slab left with no block in
 * use goes back to the pool. */
HAK_INLINE void tcache_free_local(struct slab *s, void *p)
{
  void *head = s->free;
  slab_block_set_free(p, head);
  s->free = p;
  if (HAK_UNLIKELY(--s->used == 0) && s != tcache_self.active[s->cls])
    tcache_slab_emptied(s);
}

/* The owner's free of p into s, a slab of a medium class, from free's
 * slow path: tcache_free_local's push, and s becomes the class's active
 * slab, so that the next malloc of the class takes p back while its
 * lines are in the cache, as with one slab per class.  A medium slab
 * holds 2 to 8 blocks, so a thread's few live blocks of a class spread
 * over several slabs: with the active slab left as it was, malloc took
 * an older block of another slab, or ran dry and refilled.  Which slab
 * a free lands in is the program's pattern, which no predictor learns,
 * so nothing branches on it.  The slab that was active, if it holds no
 * block in use, goes to tcache_medium_emptied. */
HAK_INLINE void tcache_free_local_medium(struct slab *s, void *p)
{
  struct slab *a = tcache_self.active[s->cls];
  slab_block_set_free(p, s->free);
  s->free = p;
  s->used--;
  tcache_self.active[s->cls] = s;
  if (HAK_UNLIKELY(a->used == 0) && a != s)
    tcache_medium_emptied(a);
}

/* The medium cache: per medium class, the blocks the thread freed last,
 * at most TCACHE_MEDIUM_HELD_BYTES of them (one block of 160-256 KiB,
 * six of 40 KiB), held in a thread-local array, outside the blocks, so
 * that no link in them needs checking.  malloc of the class takes the
 * last one freed, whatever its slab, as a single list per class would
 * give it: with a few blocks a slab, a slab's own list handed back
 * older blocks of more slabs, more pages and more TLB entries per live
 * block (bench medpair, 16 live blocks of 40-44 KiB).  A held block
 * carries the free tag, so a second free of it aborts as a double free,
 * and stays counted in its slab's used, so its slab never becomes
 * EMPTY under it.  The cache goes back to the slabs' lists when the
 * thread sees a purge pass (its next medium malloc or free), at the
 * sweep, at thread exit and on malloc_trim (another thread's at its next
 * medium malloc or free), and, with the empty slabs of its medium rings,
 * to the pool once the thread has not touched them for purge_delay_ms
 * (tcache_reclaim_idle); hakmem_check_heap checks the calling thread's.
 * Not used with check = 1 or prof = 1 recording every block, whose
 * frees take the validating path (tcache_configure). */
#define TCACHE_MEDIUM_HELD_BYTES (256u * 1024)
#define TCACHE_MEDIUM_HELD_MAX 6
#define TCACHE_MEDIUM_CLASSES (HAK_NUM_CLASSES - HAK_NUM_SMALL_CLASSES)
struct tcache_medium_held {
  uint32_t count;
  void *blocks[TCACHE_MEDIUM_HELD_MAX];
  struct slab *slabs[TCACHE_MEDIUM_HELD_MAX]; /* each block's, for its allocs */
};

/* The thread's held blocks and the reclaim protocol's state (tcache.c),
 * together so that the medium paths reach them through one TLS offset.
 * seq: the owner's sections, their depth in the low 16 bits and the
 * count of sections left above; written by the owner only, read by the
 * reclaimer.  claimed: set by the reclaimer, under tcache_threads_lock,
 * while it works on the thread.  watched: set by the owner when it holds
 * blocks and nobody watches them, cleared by the reclaimer under its
 * claim. */
struct tcache_held {
  uint32_t seq;
  uint32_t claimed;
  bool watched;
  struct tcache_medium_held medium[TCACHE_MEDIUM_CLASSES];
};
extern HAK_HIDDEN __thread struct tcache_held tcache_held __attribute__((tls_model("initial-exec")));

/* The owner's free of p, a live block of s, an ACTIVE medium slab it
 * owns: into the medium cache, or, when that is full (or has no room:
 * check = 1, prof = 1 recording every block), onto s's list
 * (tcache_free_local_medium). */
void tcache_free_medium(struct slab *s, void *p);
/* Sets what depends on the configuration: each medium class's cap. */
void tcache_configure(void);
/* hakmem_check_heap's part: the pool's walk of the slabs (the calling
 * thread's own lists included), then every block of the calling thread's
 * medium cache is a carved block, tagged free, of an ACTIVE slab of its
 * class that the thread owns, and held once.  0, or -1 after a
 * warning. */
int tcache_check_heap(void);

/* The tiny classes: those the cross-thread cache holds. */
#define TCACHE_XFREE_CLASSES 20
/* Blocks held per class: at most 128 KiB of other threads' memory in
 * the largest tiny class, 800 KiB over all of them.  With 64,
 * bench/larson pushed twice the blocks onto remote stacks and its owners
 * drained twice as often (0.89 of the CPU time with 128, for 7 % more
 * peak RSS). */
#define TCACHE_XFREE_CAP 128

/* Per tiny class, the thread's cross-thread cache: a descriptor that
 * belongs to no SuperSlab, whose local list holds the blocks (links
 * encoded as in any list), so that while it is the class's active slab
 * malloc's fast path pops them.  It is active from the refill that finds
 * the thread's own slab dry and it holding blocks, until its list runs
 * dry; its next then holds the ring's slab that it stands in for.  carved
 * counts the blocks pushed and used (which the fast path increments)
 * those popped, or taken back by the purge, both modulo 2^16, so the
 * blocks held are their difference.  capacity is the most it holds:
 * TCACHE_XFREE_CAP, or 0 until the thread's first put and after the
 * purge took blocks back, so that the next put takes the out-of-line
 * path, which tells the purge to watch the thread again. */
extern HAK_HIDDEN __thread struct slab tcache_xfree_slab[TCACHE_XFREE_CLASSES] __attribute__((tls_model("initial-exec")));

/* The blocks held in x, a cross-thread cache. */
HAK_INLINE unsigned tcache_xfree_held(const struct slab *x)
{
  return (uint16_t)((uint16_t)x->carved - x->used);
}

/* tcache_xfree_put when class cls's cross-thread cache is full (or has
 * capacity 0): hands every block it holds back to the owners, then keeps
 * p.  Out of line, and a tail call, so that the common put saves no
 * register. */
void tcache_xfree_put_full(unsigned cls, void *p);

/* Whether the thread keeps blocks of class cls freed from other threads'
 * slabs in its cross-thread cache: a tiny class that it allocates itself
 * (it has a slab of it).  A consumer that only frees would hold blocks
 * only to flush them, and a thread that never allocated, or has exited,
 * has no exit hook to flush them. */
HAK_INLINE bool tcache_xfree_wants(unsigned cls)
{
  return cls < TCACHE_XFREE_CLASSES && tcache_self.active[cls] != &tcache_no_slab;
}

/* A free of p, a carved, untagged block of class cls of an ACTIVE small
 * slab that another thread owns, when tcache_xfree_wants(cls): keeps it
 * in the thread's cross-thread cache. */
HAK_INLINE void tcache_xfree_put(unsigned cls, void *p)
{
  struct slab *x = &tcache_xfree_slab[cls];
  if (HAK_UNLIKELY(tcache_xfree_held(x) >= x->capacity)) {
    tcache_xfree_put_full(cls, p);
    return;
  }
  slab_block_set_free(p, x->free);
  /* A compiler barrier, no instruction: the child of a fork made now
   * must never find p at the head with its link not yet written
   * (tcache_postfork_child). */
  atomic_signal_fence(memory_order_release);
  x->free = p;
  x->carved++;
}

/* Owner: collects s's remote-free stack into its list, counting it. */
uint32_t tcache_drain(struct slab *s);

/* Flushes the calling thread's cache (thread exit). */
void tcache_flush(void);
/* Fork handlers: the list of threads with a cross-thread cache is held
 * across fork (a leaf lock, taken last); in the child, the blocks of the
 * caches of threads the child does not have go back to their slabs'
 * remote stacks (after shared_pool_postfork_child has orphaned those
 * threads' slabs). */
void tcache_prefork(void);
void tcache_postfork_parent(void);
void tcache_postfork_child(void);
/* Flushes the calling thread's cross-thread cache and returns its
 * EMPTY-able slabs to the pool; other threads flush their cross-thread
 * caches at their next refill (malloc_trim). */
void tcache_collect(void);
/* The purge's part (purge.c): every thread that has not touched its held
 * blocks for purge_delay_ms by now_ms gives them back, the medium ones to
 * their slabs' lists, the cross-thread ones but each list's head to their
 * slabs' remote stacks, and the slabs of its medium rings left with no
 * block in use go to the pool (to be purged as any EMPTY slab).  The
 * thread is not stopped: see the protocol in tcache.c.  Returns whether
 * a thread holds blocks not yet due.  tcache_reclaim_wanted: a thread
 * started holding blocks since the last call. */
bool tcache_reclaim_idle(uint64_t now_ms);
bool tcache_reclaim_wanted(void);

#endif
