/* The thread cache and the shared pool (tcache.c, shared_pool.c): EMPTY
 * slabs reused, UNUSED slots claimed, an exited thread's slabs adopted,
 * remote frees drained, a one-block loop kept on the fast path, medium
 * slabs of three to eight slots sharing SuperSlabs; read from hakmem's
 * counters. */
#include <check.h>
#include "core_util.h"
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "superslab.h"
#include "shared_pool.h"
#include "purge.h"
#include "tcache.h"
#include "diag.h"


START_TEST(pool_reuses_empty_slabs)
{
  hak_stats_t a = stats_now();
  /* 2000 blocks of 256 B span several slabs; all but the active one
   * become EMPTY on free and go back to the pool... */
  alloc_free_many((void *)(uintptr_t)2000);
  hak_stats_t b = stats_now();
  ck_assert_uint_gt(b.slabs_emptied, a.slabs_emptied);
  /* ...and the next round takes them back through stage 1. */
  alloc_free_many((void *)(uintptr_t)2000);
  hak_stats_t c = stats_now();
  ck_assert_uint_gt(c.pool_reuse_empty, b.pool_reuse_empty);
  ck_assert_uint_eq(c.pool_new_superslab, b.pool_new_superslab);
  ck_assert_uint_ge(c.malloc_calls - a.malloc_calls, 4000);
}
END_TEST

START_TEST(pool_stage2_claims_unused)
{
  hak_stats_t a = stats_now();
  void *p = hak_malloc(5000);
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.pool_claim_unused - a.pool_claim_unused +
                    b.pool_new_superslab - a.pool_new_superslab, 1);
  hak_free(p);
}
END_TEST

static void *leave_blocks(void *arg)
{
  void **out = arg;
  for (int i = 0; i < 64; i++)
    out[i] = hak_malloc(96);
  return NULL;
}

START_TEST(exited_thread_slabs_are_adopted)
{
  void *blocks[64];
  pthread_t t;
  hak_stats_t a = stats_now();
  ck_assert_int_eq(pthread_create(&t, NULL, leave_blocks, blocks), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* The thread's slab is an orphan now; our frees are remote pushes. */
  for (int i = 0; i < 64; i++)
    hak_free(blocks[i]);
  /* Our next allocations of the class adopt the slab and, once its local
   * list runs dry, collect the 64 blocks. */
  for (int i = 0; i < 64; i++)
    blocks[i] = hak_malloc(96);
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.pool_adopt - a.pool_adopt, 1);
  ck_assert_uint_eq(b.remote_frees - a.remote_frees, 64);
  for (int i = 0; i < 64; i++)
    hak_free(blocks[i]);
}
END_TEST

static void *free_remote(void *arg)
{
  void **v = arg;
  for (int i = 0; i < 1000; i++)
    hak_free(v[i]);
  return NULL;
}

START_TEST(remote_frees_are_drained)
{
  void *v[1000];
  for (int i = 0; i < 1000; i++)
    v[i] = hak_malloc(48);
  hak_stats_t a = stats_now();
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, free_remote, v), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* Allocating the class again drains the remote stacks. */
  for (int i = 0; i < 1000; i++)
    v[i] = hak_malloc(48);
  hak_stats_t b = stats_now();
  ck_assert_uint_ge(b.remote_drains - a.remote_drains, 1);
  ck_assert_uint_ge(b.remote_frees - a.remote_frees, 1);
  for (int i = 0; i < 1000; i++)
    hak_free(v[i]);
}
END_TEST

START_TEST(one_block_loop_stays_on_fast_path)
{
  void *p = hak_malloc(32);
  hak_free(p);
  hak_stats_t a = stats_now();
  for (int i = 0; i < 100000; i++) {
    p = hak_malloc(32);
    *(volatile char *)p = 1;
    hak_free(p);
  }
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.refills, a.refills);
  ck_assert_uint_eq(b.slabs_emptied, a.slabs_emptied);
  ck_assert_uint_ge(b.malloc_calls - a.malloc_calls, 100000);
}
END_TEST

/* The slab of block p. */
static struct slab *slab_of_block(void *p)
{
  return superslab_slab_of(registry_lookup((uintptr_t)p), (uintptr_t)p);
}

#define REFILL_SIZE 1024
#define REFILL_MAX ((int)(2 * HAK_SLAB_SIZE / REFILL_SIZE))

/* The active slab run dry takes the free blocks of another slab of the
 * thread's before it carves a page it has not written: a full slab A,
 * then B carved a page deep and all of it in use; eight blocks of A freed
 * here; the next malloc takes one of them and B carves nothing. */
START_TEST(dry_slab_takes_ring_blocks_before_carving)
{
  static void *v[REFILL_MAX];
  int n = 0;
  v[n++] = hak_malloc(REFILL_SIZE);
  struct slab *a = slab_of_block(v[0]), *b = NULL;
  while (n < REFILL_MAX) {
    v[n] = hak_malloc(REFILL_SIZE);
    ck_assert_ptr_nonnull(v[n]);
    if (slab_of_block(v[n++]) != a) {
      b = slab_of_block(v[n - 1]);
      break;
    }
  }
  ck_assert_ptr_nonnull(b);
  /* B's carved blocks all in use: its list is dry, pages left to carve. */
  while (!slab_list_is_end(b->free) && n < REFILL_MAX) {
    v[n] = hak_malloc(REFILL_SIZE);
    ck_assert_ptr_eq(slab_of_block(v[n++]), b);
  }
  ck_assert(slab_list_is_end(b->free));
  ck_assert_uint_lt(b->carved, b->capacity);
  int in_a = 0;
  for (int i = 0; i < n && in_a < 8; i++)
    if (slab_of_block(v[i]) == a) {
      hak_free(v[i]);
      v[i] = NULL;
      in_a++;
    }
  ck_assert_int_eq(in_a, 8);
  ck_assert_uint_gt(a->used, 0);
  uint32_t carved = b->carved;
  void *p = hak_malloc(REFILL_SIZE);
  ck_assert_ptr_eq(slab_of_block(p), a);
  ck_assert_uint_eq(b->carved, carved);
  hak_free(p);
  for (int i = 0; i < n; i++)
    hak_free(v[i]);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

#define MEDIUM_CLASSES (HAK_NUM_CLASSES - HAK_NUM_SMALL_CLASSES)
#define MEDIUM_PER_CLASS 16   /* 2, 4 or 8 slabs of each medium class */

/* Frees every other block of the MEDIUM_CLASSES x MEDIUM_PER_CLASS array
 * arg (a pthread body: remote frees). */
static void *free_even_medium(void *arg)
{
  void *(*v)[MEDIUM_PER_CLASS] = arg;
  for (int k = 0; k < MEDIUM_CLASSES; k++)
    for (int i = 0; i < MEDIUM_PER_CLASS; i += 2)
      hak_free(v[k][i]);
  return NULL;
}

/* The head descriptor of the medium slab holding block p. */
static struct slab *medium_slab_of(void *p)
{
  uintptr_t e = registry_lookup((uintptr_t)p);
  ck_assert(registry_is_superslab(e));
  struct slab *s = superslab_slab_of(e, (uintptr_t)p);
  if (s->state == SLAB_SPAN_TAIL)
    s -= s->head_offset;
  return s;
}

/* A medium slab is a run of three to eight 64 KiB slots that its blocks
 * fill exactly: blocks of every medium class, several slabs of each, lie
 * in the run of their slab's descriptor, blocks start in its tail slots
 * too, and one SuperSlab holds slabs of several classes beside a small
 * slab.  Half the blocks are freed by another thread, half here; the heap
 * walk passes at each step and the emptied slabs go back. */
START_TEST(medium_slabs_share_superslabs)
{
  static void *v[MEDIUM_CLASSES][MEDIUM_PER_CLASS];
  void *tiny = hak_malloc(16);
  hak_stats_t a = stats_now();
  unsigned slabs = 0, slots = 0, nslabs = 0;
  for (int k = 0; k < MEDIUM_CLASSES; k++) {
    unsigned cls = HAK_NUM_SMALL_CLASSES + (unsigned)k;
    size_t bs = size_class_size(cls);
    unsigned in_tail = 0;
    for (int i = 0; i < MEDIUM_PER_CLASS; i++) {
      v[k][i] = hak_malloc(bs);
      ck_assert_ptr_nonnull(v[k][i]);
      ck_assert_uint_eq(hak_malloc_usable_size(v[k][i]), bs);
      memset(v[k][i], k * MEDIUM_PER_CLASS + i, bs);
      struct slab *s = medium_slab_of(v[k][i]);
      struct superslab *ss = (struct superslab *)((uintptr_t)s & ~((uintptr_t)HAK_UNIT_SIZE - 1));
      unsigned span = superslab_span_slots(cls, ss->nslabs);
      nslabs = ss->nslabs;
      ck_assert_uint_eq(s->cls, cls);
      ck_assert_uint_eq(s->capacity, ((size_t)span << HAK_SLAB_SHIFT) / bs);
      uintptr_t off = (uintptr_t)v[k][i] - (uintptr_t)slab_start(s);
      ck_assert_uint_le(off + bs, (size_t)span << HAK_SLAB_SHIFT);
      in_tail += off >= HAK_SLAB_SIZE;
    }
    struct slab *s = medium_slab_of(v[k][0]);
    if (s->capacity > 1)
      ck_assert_uint_gt(in_tail, 0);
    unsigned n = (MEDIUM_PER_CLASS + s->capacity - 1) / s->capacity;
    slabs += n;
    slots += n * superslab_span_slots(s->cls, nslabs);
  }
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.large_allocs, a.large_allocs);
  /* One claim (or new SuperSlab) per slab, and slabs share SuperSlabs:
   * by default 60 slabs of 3-8 slots fill about 12 SuperSlabs of 31; at
   * least half of every SuperSlab mapped holds them. */
  ck_assert_uint_eq(b.pool_new_superslab - a.pool_new_superslab +
                    b.pool_claim_unused - a.pool_claim_unused, slabs);
  ck_assert_uint_le((b.pool_new_superslab - a.pool_new_superslab) * (nslabs - 1), 2 * slots);
  /* The small slab's SuperSlab takes the first medium slab, and some
   * SuperSlab holds slabs of two medium classes (a SuperSlab of 512 KiB
   * holds one medium slab only). */
  if (nslabs == 32)
    ck_assert_uint_eq(registry_lookup((uintptr_t)tiny), registry_lookup((uintptr_t)v[0][0]));
  unsigned shared = 0;
  for (int k = 1; k < MEDIUM_CLASSES; k++)
    for (int j = 0; j < k; j++)
      for (int i = 0; i < MEDIUM_PER_CLASS; i++)
        shared += registry_lookup((uintptr_t)v[k][0]) == registry_lookup((uintptr_t)v[j][i]);
  if (nslabs >= 16)
    ck_assert_uint_gt(shared, 0);
  ck_assert_int_eq(hakmem_check_heap(), 0);

  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, free_even_medium, v), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* Every slab holds a block freed there, on its remote stack until the
   * owner drains it (the heap walk does). */
  for (int k = 0; k < MEDIUM_CLASSES; k++)
    for (int i = 0; i < MEDIUM_PER_CLASS; i += 2)
      ck_assert_ptr_nonnull(atomic_load(&medium_slab_of(v[k][i])->remote));
  ck_assert_int_eq(hakmem_check_heap(), 0);
  hak_stats_t c = stats_now();
  for (int k = 0; k < MEDIUM_CLASSES; k++)
    for (int i = 1; i < MEDIUM_PER_CLASS; i += 2) {
      size_t bs = size_class_size(HAK_NUM_SMALL_CLASSES + (unsigned)k);
      ck_assert_uint_eq(((unsigned char *)v[k][i])[bs - 1], (unsigned char)(k * MEDIUM_PER_CLASS + i));
      hak_free(v[k][i]);
    }
  ck_assert_int_eq(hakmem_check_heap(), 0);
  tcache_collect();  /* the slabs whose blocks all came back remotely too */
  hak_stats_t d = stats_now();
  ck_assert_uint_ge(d.slabs_emptied - c.slabs_emptied, slabs - MEDIUM_CLASSES);
  struct shared_pool_usage u;
  shared_pool_usage(&u);
  for (unsigned cls = HAK_NUM_SMALL_CLASSES; cls < HAK_NUM_CLASSES; cls++)
    ck_assert_uint_eq(u.in_use_class[cls], 0);
  hak_free(tiny);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* A medium block starting in a tail slot of its slab, freed twice. */
static void *medium_tail_block(void)
{
  void *v[8];
  for (int i = 0; i < 8; i++)
    v[i] = hak_malloc(40960);
  ck_assert_uint_ge((uintptr_t)v[7] - (uintptr_t)slab_start(medium_slab_of(v[7])), HAK_SLAB_SIZE);
  return v[7];
}

START_TEST(medium_tail_double_free_aborts)
{
  void *p = medium_tail_block();
  hak_free(p);
  hak_free(p);
}
END_TEST

static void *free_arg(void *p)
{
  hak_free(p);
  return NULL;
}

START_TEST(medium_tail_remote_double_free_aborts)
{
  void *p = medium_tail_block();
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, free_arg, p), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_int_eq(pthread_create(&t, NULL, free_arg, p), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
}
END_TEST

/* The medium cache (tcache.h): the calling thread's, for class cls. */
static struct tcache_medium_held *medium_held(unsigned cls)
{
  return &tcache_held.medium[cls - HAK_NUM_SMALL_CLASSES];
}

/* A freed medium block is held for the thread's next malloc of its class,
 * still counted in use; the heap check walks the holding and sees a
 * block written after free; the holding is bounded. */
START_TEST(medium_cache_holds_last_freed)
{
  unsigned cls = size_class_of(65536);
  void *v[8];
  for (int i = 0; i < 8; i++)
    v[i] = hak_malloc(65536);
  struct slab *s = medium_slab_of(v[7]);
  uint16_t used = s->used;
  hak_free(v[7]);
  ck_assert_uint_eq(medium_held(cls)->count, 1);
  ck_assert_ptr_eq(medium_held(cls)->blocks[0], v[7]);
  ck_assert_uint_eq(s->used, used);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  if (hak_hardened) {
    /* A write after free clears the free tag: the heap check says so. */
    uintptr_t saved[2];
    memcpy(saved, v[7], sizeof saved);
    memset(v[7], 0, sizeof saved);
    ck_assert_int_eq(hakmem_check_heap(), -1);
    memcpy(v[7], saved, sizeof saved);
    ck_assert_int_eq(hakmem_check_heap(), 0);
  }
  void *p = hak_malloc(65536);
  ck_assert_ptr_eq(p, v[7]);
  ck_assert_uint_eq(medium_held(cls)->count, 0);
  v[7] = p;
  /* Four blocks of 64 KiB make the 256 KiB a class holds. */
  for (int i = 0; i < 8; i++)
    hak_free(v[i]);
  ck_assert_uint_eq(medium_held(cls)->count, TCACHE_MEDIUM_HELD_BYTES / 65536);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

START_TEST(medium_cache_double_free_aborts)
{
  void *p = hak_malloc(65536);
  hak_free(p);
  ck_assert_uint_eq(medium_held(size_class_of(65536))->count, 1);
  hak_free(p);
}
END_TEST

/* The thread's holding goes back to the slabs on malloc_trim, after a
 * purge pass (at the thread's next medium free), and at thread exit. */
/* Leaves one live medium block and holds another in its cache. */
static void *hold_medium_and_exit(void *arg)
{
  (void)arg;
  void *p = hak_malloc(65536);
  (void)hak_malloc(65536);
  hak_free(p);
  ck_assert_uint_eq(medium_held(size_class_of(65536))->count, 1);
  return NULL;
}

START_TEST(medium_cache_emptied_by_trim_purge_and_exit)
{
  unsigned cls = size_class_of(65536);
  void *p = hak_malloc(65536), *q = hak_malloc(65536);
  struct slab *s = medium_slab_of(p);
  uint16_t used = s->used;
  hak_free(p);
  ck_assert_uint_eq(medium_held(cls)->count, 1);
  hak_trim(0);
  ck_assert_uint_eq(medium_held(cls)->count, 0);
  ck_assert_uint_eq(s->used, used - 1);
  ck_assert_int_eq(hakmem_check_heap(), 0);

  p = hak_malloc(65536);
  hak_free(p);
  ck_assert_uint_eq(medium_held(cls)->count, 1);
  bool idle;
  uint64_t activity = 0;
  shared_pool_purge(hak_now_ms(), &idle, &activity);
  hak_free(q);
  ck_assert_uint_eq(medium_held(cls)->count, 1);
  ck_assert_ptr_eq(medium_held(cls)->blocks[0], q);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  hak_trim(0);

  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, hold_medium_and_exit, NULL), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* Of the exited thread's two blocks, the one it held went back: only
   * the live one is in use. */
  struct shared_pool_usage u;
  shared_pool_usage(&u);
  ck_assert_uint_eq(u.in_use_class[cls], 65536);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* The purge gives back the slots of an emptied medium slab, in a
 * SuperSlab that a small slab keeps in use, and unformats the slab: its
 * run's slots are UNUSED and decommitted; a later claim takes them. */
START_TEST(medium_slab_slots_purged_when_emptied)
{
  void *tiny = hak_malloc(16);
  hak_config.purge_delay_ms = -1;
  enum { N = 21 };  /* six slabs of four 64 KiB blocks */
  void *v[N];
  for (int i = 0; i < N; i++) {
    v[i] = hak_malloc(65536);
    memset(v[i], i, 65536);
  }
  struct slab *s = medium_slab_of(v[0]);
  struct superslab *ss = (struct superslab *)((uintptr_t)s & ~((uintptr_t)HAK_UNIT_SIZE - 1));
  /* Shared with the small slab where the SuperSlab holds them all. */
  bool shared = registry_lookup((uintptr_t)tiny) == ((uintptr_t)ss | REGISTRY_TAG_SUPERSLAB);
  ck_assert(shared || ss->nslabs < 32);
  uint32_t span = superslab_span_mask(ss->nslabs, s);
  ck_assert_uint_eq(superslab_slot_count(span), 4);
  for (int i = 0; i < N; i++)
    hak_free(v[i]);
  tcache_collect();  /* the active slab too */
  struct shared_pool_usage u;
  shared_pool_usage(&u);
  ck_assert_uint_ge(u.free_committed_bytes, (size_t)N << HAK_SLAB_SHIFT);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  hak_config.purge_delay_ms = 100000;
  bool idle;
  uint64_t activity = 0, now = hak_now_ms();
  shared_pool_purge(now, &idle, &activity);
  activity = 0;
  shared_pool_purge(now + 100000, &idle, &activity);
  shared_pool_usage(&u);
  ck_assert_uint_eq(u.free_committed_bytes, 0);
  ck_assert_uint_eq(ss->decommitted & span, span);
  for (unsigned i = 0; i < ss->nslabs; i++)
    if (span >> i & 1)
      ck_assert_uint_eq(ss->slabs[i].state, SLAB_UNUSED);
  if (shared)
    ck_assert_uint_ge(ss->ninuse, 1);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  hak_config.purge_delay_ms = -1;
  void *p = hak_malloc(40960);
  memset(p, 1, 40960);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  hak_free(p);
  hak_free(tiny);
}
END_TEST

/* A burst that repeats takes back the slabs the last one gave back, still
 * formatted: no slot claimed, no SuperSlab or mapping made, about one
 * refill per slab.  Their pages still go back by time: the purge (called
 * here with a chosen clock; purge_delay_ms is -1 while the bursts run, so
 * that no purge thread acts) marks the free slots, then decommits them a
 * purge delay later, unformatting the EMPTY slabs. */
enum { BURST_BLOCKS = 512, BURST_SIZE = 4000 };  /* 2 MiB: 32 slabs of 4 KiB blocks */

static void burst(void **v)
{
  for (int i = 0; i < BURST_BLOCKS; i++) {
    v[i] = hak_malloc(BURST_SIZE);
    ck_assert_ptr_nonnull(v[i]);
    memset(v[i], i, BURST_SIZE);
  }
  for (int i = 0; i < BURST_BLOCKS; i++) {
    ck_assert_uint_eq(((unsigned char *)v[i])[BURST_SIZE - 1], (unsigned char)i);
    hak_free(v[i]);
  }
}

START_TEST(burst_slabs_reused_then_purged_by_time)
{
  hak_free(hak_malloc(1));
  hak_config.purge_delay_ms = -1;
  void *v[BURST_BLOCKS];
  burst(v);
  hak_stats_t a = stats_now();
  burst(v);
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.pool_claim_unused, a.pool_claim_unused);
  ck_assert_uint_eq(b.pool_new_superslab, a.pool_new_superslab);
  ck_assert_uint_eq(b.os_mmap, a.os_mmap);
  ck_assert_uint_ge(b.pool_reuse_empty - a.pool_reuse_empty, BURST_BLOCKS / 16 - 2);
  ck_assert_uint_le(b.refills - a.refills, BURST_BLOCKS / 16 + 2);

  struct shared_pool_usage u;
  shared_pool_usage(&u);
  ck_assert_uint_ge(u.free_committed_bytes, (size_t)(BURST_BLOCKS / 16 - 2) * HAK_SLAB_SIZE);
  hak_config.purge_delay_ms = 100000;
  bool idle;
  uint64_t activity = 0, now = hak_now_ms();
  shared_pool_purge(now, &idle, &activity); /* marks the free slots */
  activity = 0;
  shared_pool_purge(now + 100000, &idle, &activity);
  shared_pool_usage(&u);
  ck_assert_uint_eq(u.free_committed_bytes, 0);
  hak_stats_t c = stats_now();
  ck_assert_uint_gt(c.purge_decommit, b.purge_decommit);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  /* Unformatted by the purge: the next burst claims slots again. */
  hak_config.purge_delay_ms = -1;
  burst(v);
  hak_stats_t d = stats_now();
  ck_assert_uint_ge(d.pool_claim_unused - c.pool_claim_unused, BURST_BLOCKS / 16 - 2);
  ck_assert_uint_eq(d.pool_reuse_empty, c.pool_reuse_empty);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* Pages of [p, p + len) resident, by mincore. */
static size_t resident_pages(void *p, size_t len)
{
  unsigned char vec[256];
  size_t n = len / 4096, r = 0;
  ck_assert_uint_le(n, sizeof vec);
  ck_assert_int_eq(mincore(p, len, vec), 0);
  for (size_t i = 0; i < n; i++)
    r += vec[i] & 1;
  return r;
}

/* A freed large block's resident pages go back at the purge's next pass
 * after the pool mapped a new SuperSlab, before their delay: they could
 * not serve the slabs the heap grows by.  The mapping stays cached and
 * serves the next large block. */
START_TEST(new_superslab_decommits_cached_large_blocks)
{
  hak_free(hak_malloc(1));
  hak_config.purge_delay_ms = -1;
  size_t len = 1u << 20;
  char *big = hak_malloc(len);
  ck_assert_ptr_nonnull(big);
  memset(big, 1, len);
  hak_free(big);
  char *page = (char *)((uintptr_t)(big + len / 2) & ~(uintptr_t)4095);
  ck_assert_uint_eq(resident_pages(page, 64 * 4096), 64);
  purge_heap_growth();
  ck_assert_uint_eq(purge_heap_growth(), 0);

  /* Blocks of 8 KiB until the pool maps a SuperSlab. */
  static void *held[4096];
  hak_stats_t a = stats_now();
  unsigned n = 0;
  while (n < 4096 && stats_now().pool_new_superslab == a.pool_new_superslab)
    held[n++] = hak_malloc(8192);
  ck_assert_uint_gt(stats_now().pool_new_superslab, a.pool_new_superslab);
  ck_assert_uint_eq(resident_pages(page, 64 * 4096), 64);
  ck_assert_uint_ge(purge_heap_growth(), len);
  ck_assert_uint_eq(resident_pages(page, 64 * 4096), 0);

  hak_stats_t b = stats_now();
  char *again = hak_malloc(len);
  ck_assert_uint_eq(stats_now().bigcache_hits, b.bigcache_hits + 1);
  ck_assert_ptr_eq(again, big);
  ck_assert_int_eq(again[len / 2], 0);
  hak_free(again);
  for (unsigned i = 0; i < n; i++)
    hak_free(held[i]);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* A class that finds no resident UNUSED slot re-formats the EMPTY slab of
 * another class whose carving reached furthest (a 2 KiB class's, all 64
 * KiB touched), not the first list's (a 16-byte class's, one page carved),
 * whose other fifteen pages would fault in as the new class carved them. */
START_TEST(claim_takes_the_most_carved_empty_slab)
{
  hak_free(hak_malloc(1));
  hak_config.purge_delay_ms = -1;
  void *small[10], *big[32];
  for (int i = 0; i < 10; i++)
    small[i] = hak_malloc(16);
  for (int i = 0; i < 32; i++) {
    big[i] = hak_malloc(2048);
    memset(big[i], i, 2048);
  }
  uintptr_t small_slab = (uintptr_t)small[0] & ~(uintptr_t)0xffff;
  uintptr_t big_slab = (uintptr_t)big[0] & ~(uintptr_t)0xffff;
  for (int i = 0; i < 32; i++)
    ck_assert_uint_eq((uintptr_t)big[i] & ~(uintptr_t)0xffff, big_slab);
  for (int i = 0; i < 10; i++)
    hak_free(small[i]);
  for (int i = 0; i < 32; i++)
    hak_free(big[i]);
  /* Both slabs go back to the pool EMPTY; every other slot of the
   * SuperSlab was never touched. */
  tcache_collect();
  hak_stats_t a = stats_now();
  void *p = hak_malloc(1000);
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.pool_claim_unused - a.pool_claim_unused, 1);
  ck_assert_uint_eq((uintptr_t)p & ~(uintptr_t)0xffff, big_slab);
  void *q = hak_malloc(16);
  ck_assert_uint_eq((uintptr_t)q & ~(uintptr_t)0xffff, small_slab);
  hak_free(p);
  hak_free(q);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* A class that finds no resident UNUSED slot and no EMPTY slab of its
 * own re-formats another class's EMPTY slab that it held before, here a
 * 2 KiB class's slab lent to the 4 KiB class, rather than the one the
 * fallback would pick (a 1 KiB class's, as fully carved and earlier in
 * the class order). */
START_TEST(claim_takes_back_a_slab_it_held)
{
  hak_free(hak_malloc(1));
  hak_config.purge_delay_ms = -1;
  void *two[32], *four[16], *one[64];
  for (int i = 0; i < 32; i++) {
    two[i] = hak_malloc(2048);
    memset(two[i], i, 2048);
  }
  uintptr_t lent = (uintptr_t)two[0] & ~(uintptr_t)0xffff;
  for (int i = 0; i < 32; i++)
    hak_free(two[i]);
  tcache_collect();
  /* The 4 KiB class takes the 2 KiB class's EMPTY slab... */
  for (int i = 0; i < 16; i++) {
    four[i] = hak_malloc(4096);
    memset(four[i], i, 4096);
    ck_assert_uint_eq((uintptr_t)four[i] & ~(uintptr_t)0xffff, lent);
  }
  /* ...and the 1 KiB class, finding none, a slot of its own. */
  for (int i = 0; i < 64; i++) {
    one[i] = hak_malloc(1024);
    memset(one[i], i, 1024);
  }
  uintptr_t other = (uintptr_t)one[0] & ~(uintptr_t)0xffff;
  ck_assert_uint_ne(other, lent);
  for (int i = 0; i < 16; i++)
    hak_free(four[i]);
  for (int i = 0; i < 64; i++)
    hak_free(one[i]);
  tcache_collect();
  hak_stats_t a = stats_now();
  void *p = hak_malloc(2048);
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.pool_claim_unused - a.pool_claim_unused, 1);
  ck_assert_uint_eq((uintptr_t)p & ~(uintptr_t)0xffff, lent);
  hak_free(p);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* ---- the cross-thread cache (tcache.h) ---- */

#define XFREE_BLOCKS 16
#define XFREE_SIZE 64

/* What a thread that frees another thread's blocks saw and did. */
#define XFREE_REUSE 256      /* mallocs that must meet the held blocks */
struct xfree_run {
  void **blocks;          /* XFREE_BLOCKS blocks of XFREE_SIZE bytes, another thread's */
  unsigned held_after_free;
  unsigned reused;        /* how many of blocks the next XFREE_REUSE mallocs returned */
  pthread_barrier_t *held, *trimmed;
  unsigned held_after_trim;
};

/* The blocks the calling thread holds in its cross-thread cache of the
 * class of XFREE_SIZE. */
static unsigned xfree_held_here(void)
{
  return tcache_xfree_held(&tcache_xfree_slab[size_class_of(XFREE_SIZE)]);
}

/* Allocates in the class (a thread keeps only blocks of classes it
 * allocates), frees the other thread's blocks, and reports how many it
 * holds. */
static void *xfree_free_blocks(void *arg)
{
  struct xfree_run *r = arg;
  hak_free(hak_malloc(XFREE_SIZE));
  for (int i = 0; i < XFREE_BLOCKS; i++)
    hak_free(r->blocks[i]);
  r->held_after_free = xfree_held_here();
  return NULL;
}

/* As xfree_free_blocks, then mallocs of the class take the blocks back
 * once the thread's own slab runs dry. */
static void *xfree_free_and_reuse(void *arg)
{
  struct xfree_run *r = arg;
  static __thread void *got[XFREE_REUSE];
  xfree_free_blocks(r);
  for (int i = 0; i < XFREE_REUSE; i++) {
    got[i] = hak_malloc(XFREE_SIZE);
    for (int j = 0; j < XFREE_BLOCKS; j++)
      r->reused += got[i] == r->blocks[j];
  }
  for (int i = 0; i < XFREE_REUSE; i++)
    hak_free(got[i]);
  return NULL;
}

/* As xfree_free_blocks, waits while the main thread trims (or carves
 * the blocks' class), then refills another class (its next refill). */
static void *xfree_free_and_see_trim(void *arg)
{
  struct xfree_run *r = arg;
  xfree_free_blocks(r);
  pthread_barrier_wait(r->held);
  pthread_barrier_wait(r->trimmed);
  hak_free(hak_malloc(20000));
  r->held_after_trim = xfree_held_here();
  return NULL;
}

/* The slab of block p. */
static struct slab *xfree_slab_of(void *p)
{
  return superslab_slab_of(registry_lookup((uintptr_t)p), (uintptr_t)p);
}

/* What every case starts from: XFREE_BLOCKS blocks of XFREE_SIZE bytes
 * allocated here, all in one slab, and that slab's blocks in use. */
struct xfree_setup {
  void *v[XFREE_BLOCKS];
  struct slab *s;
  unsigned used;
};

static void xfree_setup(struct xfree_setup *x)
{
  for (int i = 0; i < XFREE_BLOCKS; i++) {
    x->v[i] = hak_malloc(XFREE_SIZE);
    memset(x->v[i], 0x5a, XFREE_SIZE);
  }
  x->s = xfree_slab_of(x->v[0]);
  for (int i = 1; i < XFREE_BLOCKS; i++)
    ck_assert_ptr_eq(xfree_slab_of(x->v[i]), x->s);
  x->used = x->s->used;
}

START_TEST(cross_thread_free_is_reused_by_the_freeing_thread)
{
  struct xfree_setup x;
  xfree_setup(&x);
  struct xfree_run r = { .blocks = x.v };
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, xfree_free_and_reuse, &r), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_uint_eq(r.held_after_free, XFREE_BLOCKS);
  /* Its mallocs of the class handed out every one of our blocks. */
  ck_assert_uint_eq(r.reused, XFREE_BLOCKS);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

START_TEST(cross_thread_cache_flushed_at_thread_exit)
{
  struct xfree_setup x;
  xfree_setup(&x);
  struct xfree_run r = { .blocks = x.v };
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, xfree_free_blocks, &r), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_uint_eq(r.held_after_free, XFREE_BLOCKS);
  /* Held, they stayed in use; the thread's exit pushed them onto our
   * slab's remote stack, and the drain gives every one back. */
  ck_assert_uint_eq(x.s->used, x.used);
  ck_assert_uint_eq(tcache_drain(x.s), XFREE_BLOCKS);
  ck_assert_uint_eq(x.s->used, x.used - XFREE_BLOCKS);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

START_TEST(cross_thread_cache_flushed_by_malloc_trim)
{
  struct xfree_setup x;
  xfree_setup(&x);
  pthread_barrier_t held, trimmed;
  pthread_barrier_init(&held, NULL, 2);
  pthread_barrier_init(&trimmed, NULL, 2);
  struct xfree_run r = { .blocks = x.v, .held = &held, .trimmed = &trimmed };
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, xfree_free_and_see_trim, &r), 0);
  pthread_barrier_wait(&held);
  /* The other thread holds our blocks: they count in use, and the heap
   * check agrees. */
  ck_assert_uint_eq(x.s->used, x.used);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  hak_trim(0);
  pthread_barrier_wait(&trimmed);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_uint_eq(r.held_after_free, XFREE_BLOCKS);
  /* Its next refill, after the trim, handed them back. */
  ck_assert_uint_eq(r.held_after_trim, 0);
  ck_assert_uint_eq(tcache_drain(x.s), XFREE_BLOCKS);
  ck_assert_uint_eq(x.s->used, x.used - XFREE_BLOCKS);
  pthread_barrier_destroy(&held);
  pthread_barrier_destroy(&trimmed);
}
END_TEST

/* Fresh blocks of the class, more than a carve gives: the calling
 * thread's slab, whose freed blocks another thread holds, must carve. */
#define XFREE_CARVE_BLOCKS 256

START_TEST(cross_thread_cache_flushed_when_the_owner_carves)
{
  struct xfree_setup x;
  xfree_setup(&x);
  pthread_barrier_t held, carved;
  pthread_barrier_init(&held, NULL, 2);
  pthread_barrier_init(&carved, NULL, 2);
  struct xfree_run r = { .blocks = x.v, .held = &held, .trimmed = &carved };
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, xfree_free_and_see_trim, &r), 0);
  pthread_barrier_wait(&held);
  ck_assert_uint_eq(x.s->used, x.used);
  /* Our slab's list runs dry with our blocks held over there: it
   * carves fresh blocks, and so asks for ours back. */
  static void *fresh[XFREE_CARVE_BLOCKS];
  uint32_t carved_before = x.s->carved;
  for (int i = 0; i < XFREE_CARVE_BLOCKS; i++)
    fresh[i] = hak_malloc(XFREE_SIZE);
  ck_assert_uint_gt(x.s->carved, carved_before);
  pthread_barrier_wait(&carved);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_uint_eq(r.held_after_free, XFREE_BLOCKS);
  /* Its next refill, of another class, handed them back. */
  ck_assert_uint_eq(r.held_after_trim, 0);
  ck_assert_uint_eq(tcache_drain(x.s), XFREE_BLOCKS);
  for (int i = 0; i < XFREE_CARVE_BLOCKS; i++)
    hak_free(fresh[i]);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  pthread_barrier_destroy(&held);
  pthread_barrier_destroy(&carved);
}
END_TEST

/* Frees the other thread's blocks without ever allocating in their
 * class. */
static void *xfree_free_only(void *arg)
{
  struct xfree_run *r = arg;
  hak_free(hak_malloc(3000));
  for (int i = 0; i < XFREE_BLOCKS; i++)
    hak_free(r->blocks[i]);
  r->held_after_free = xfree_held_here();
  return NULL;
}

START_TEST(cross_thread_cache_skips_classes_not_allocated)
{
  struct xfree_setup x;
  xfree_setup(&x);
  struct xfree_run r = { .blocks = x.v };
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, xfree_free_only, &r), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* A consumer that never allocates the class pushed each block onto our
   * remote stack at once. */
  ck_assert_uint_eq(r.held_after_free, 0);
  ck_assert_uint_eq(tcache_drain(x.s), XFREE_BLOCKS);
  ck_assert_uint_eq(x.s->used, x.used - XFREE_BLOCKS);
}
END_TEST

/* More than the cache holds: the excess goes back to the owner's slab,
 * and nothing is lost or handed out twice. */
#define XFREE_MANY (4 * TCACHE_XFREE_CAP)
static void *xfree_free_many(void *arg)
{
  void **v = arg;
  hak_free(hak_malloc(XFREE_SIZE));
  for (int i = 0; i < XFREE_MANY; i++)
    hak_free(v[i]);
  unsigned held = xfree_held_here();
  void *w[XFREE_MANY];
  for (int i = 0; i < XFREE_MANY; i++)
    w[i] = hak_malloc(XFREE_SIZE);
  for (int i = 0; i < XFREE_MANY; i++)
    for (int j = i + 1; j < XFREE_MANY; j++)
      if (w[i] == w[j])
        return (void *)"a block handed out twice";
  for (int i = 0; i < XFREE_MANY; i++)
    hak_free(w[i]);
  if (held == 0 || held > TCACHE_XFREE_CAP)
    return (void *)"the cache holds none, or more blocks than TCACHE_XFREE_CAP";
  return NULL;
}

START_TEST(cross_thread_cache_is_bounded)
{
  static void *v[XFREE_MANY];
  for (int i = 0; i < XFREE_MANY; i++)
    v[i] = hak_malloc(XFREE_SIZE);
  pthread_t t;
  void *err;
  ck_assert_int_eq(pthread_create(&t, NULL, xfree_free_many, v), 0);
  ck_assert_int_eq(pthread_join(t, &err), 0);
  ck_assert_msg(err == NULL, "%s", (const char *)err);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  /* The cache covers every tiny class, and no other. */
  ck_assert_uint_eq(size_class_of_tiny(HAK_TINY_MAX) + 1u, TCACHE_XFREE_CLASSES);
}
END_TEST

/* In the child of a fork, after malloc_trim, nothing of class cls is in
 * use (the caches of the threads the child does not have went back) and
 * the heap checks clean. */
static void assert_fork_child_holds_none(unsigned cls)
{
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int bad = 0;
    hak_trim(0);
    struct shared_pool_usage u;
    shared_pool_usage(&u);
    bad |= u.in_use_class[cls] != 0;
    bad |= (hakmem_check_heap() != 0) << 1;
    _exit(bad);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child: status %d (exit 1: held blocks still in use, 2: heap check)", status);
}

/* ---- blocks held by a thread gone idle ---- */

#define IDLE_BLOCKS 8   /* of 64 KiB: two slabs, four of them held */

/* A thread that fills its medium cache of 64 KiB blocks (and frees the
 * rest onto its slabs' lists), then sleeps until woken, and then
 * allocates and frees again. */
struct idle_holder {
  pthread_barrier_t held, woken;
  struct tcache_medium_held *cache; /* the thread's, of the 64 KiB class */
  void *v[IDLE_BLOCKS];
  int heap_after_wake;
};

static void *hold_medium_then_sleep(void *arg)
{
  struct idle_holder *h = arg;
  for (int i = 0; i < IDLE_BLOCKS; i++) {
    h->v[i] = hak_malloc(65536);
    memset(h->v[i], i, 65536);
  }
  for (int i = 0; i < IDLE_BLOCKS; i++)
    hak_free(h->v[i]);
  h->cache = medium_held(size_class_of(65536));
  pthread_barrier_wait(&h->held);
  pthread_barrier_wait(&h->woken);
  void *w[IDLE_BLOCKS];
  for (int i = 0; i < IDLE_BLOCKS; i++) {
    w[i] = hak_malloc(65536);
    memset(w[i], i, 65536);
  }
  h->heap_after_wake = hakmem_check_heap();
  for (int i = 0; i < IDLE_BLOCKS; i++)
    hak_free(w[i]);
  h->heap_after_wake |= hakmem_check_heap();
  return NULL;
}

static void idle_holder_start(struct idle_holder *h, pthread_t *t)
{
  pthread_barrier_init(&h->held, NULL, 2);
  pthread_barrier_init(&h->woken, NULL, 2);
  ck_assert_int_eq(pthread_create(t, NULL, hold_medium_then_sleep, h), 0);
  pthread_barrier_wait(&h->held);
  ck_assert_uint_eq(h->cache->count, TCACHE_MEDIUM_HELD_BYTES / 65536);
}

static void idle_holder_wake(struct idle_holder *h, pthread_t t)
{
  pthread_barrier_wait(&h->woken);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_int_eq(h->heap_after_wake, 0);
  pthread_barrier_destroy(&h->held);
  pthread_barrier_destroy(&h->woken);
}

/* Once a thread has not touched its medium cache for purge_delay_ms, the
 * purge hands its blocks back and its emptied slabs go to the pool,
 * whose purge then gives their pages back; the thread, woken, allocates
 * as before.  The purge is called here with a chosen clock
 * (purge_delay_ms is -1 while the thread fills its cache, so that no
 * purge thread runs). */
START_TEST(idle_thread_medium_cache_reclaimed_by_time)
{
  hak_config.purge_delay_ms = -1;
  unsigned cls = size_class_of(65536);
  struct idle_holder h;
  pthread_t t;
  idle_holder_start(&h, &t);
  struct slab *a = medium_slab_of(h.v[0]), *b = medium_slab_of(h.v[IDLE_BLOCKS - 1]);
  ck_assert_ptr_ne(a, b);
  struct shared_pool_usage u;
  shared_pool_usage(&u);
  ck_assert_uint_eq(u.in_use_class[cls], (size_t)h.cache->count * 65536);
  hak_config.purge_delay_ms = 100000;
  uint64_t now = hak_now_ms();
  /* Not due yet: the thread keeps them. */
  ck_assert(tcache_reclaim_idle(now));
  ck_assert(tcache_reclaim_idle(now + 99999));
  ck_assert_uint_eq(h.cache->count, TCACHE_MEDIUM_HELD_BYTES / 65536);
  ck_assert(!tcache_reclaim_idle(now + 100000));
  ck_assert_uint_eq(h.cache->count, 0);
  shared_pool_usage(&u);
  ck_assert_uint_eq(u.in_use_class[cls], 0);
  ck_assert_uint_eq(a->state, SLAB_EMPTY);
  ck_assert_uint_eq(b->state, SLAB_EMPTY);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  /* Then their pages go back as any EMPTY slab's. */
  bool idle;
  uint64_t activity = 0;
  shared_pool_purge(now + 100000, &idle, &activity);
  activity = 0;
  shared_pool_purge(now + 200000, &idle, &activity);
  shared_pool_usage(&u);
  ck_assert_uint_eq(u.free_committed_bytes, 0);
  /* Nothing more to do for that thread. */
  ck_assert(!tcache_reclaim_idle(now + 300000));
  hak_config.purge_delay_ms = -1;
  idle_holder_wake(&h, t);
}
END_TEST

/* The same through the purge thread, on the real clock: the thread's
 * first block held asks for it, and the next allocation's slow path (a
 * large block here) starts it. */
START_TEST(idle_thread_medium_cache_reclaimed_by_the_purge_thread)
{
  hak_config.purge_delay_ms = 20;
  unsigned cls = size_class_of(65536);
  struct idle_holder h;
  pthread_t t;
  idle_holder_start(&h, &t);
  hak_free(hak_malloc(1 << 20));
  struct shared_pool_usage u;
  for (int i = 0; i < 500; i++) {
    shared_pool_usage(&u);
    if (u.in_use_class[cls] == 0 && u.free_committed_bytes == 0)
      break;
    nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
  }
  ck_assert_uint_eq(*(volatile uint32_t *)&h.cache->count, 0);
  ck_assert_uint_eq(u.in_use_class[cls], 0);
  ck_assert_uint_eq(u.free_committed_bytes, 0);
  idle_holder_wake(&h, t);
}
END_TEST

/* A thread that holds a medium block and uses its cache every 50 ms is
 * never due: the purge thread then waits a whole period between passes
 * (a kick ends the wait sooner), not a quarter of one, so that such a
 * program, a daemon waking every second say, does not keep it waking
 * four times a period.  Counted by the purge thread's voluntary context
 * switches, one per sleep: over 1.6 s with a period of 400 ms, a tick
 * of 100 ms would make about 16, a period about 4. */
struct busy_holder {
  _Atomic bool stop;
  _Atomic pid_t tid;
};

static void *hold_medium_busily(void *arg)
{
  struct busy_holder *b = arg;
  atomic_store(&b->tid, gettid());
  while (!atomic_load(&b->stop)) {
    void *p = hak_malloc(65536);
    memset(p, 1, 64);
    hak_free(p);
    nanosleep(&(struct timespec){ .tv_nsec = 50 * 1000 * 1000 }, NULL);
  }
  return NULL;
}

/* The voluntary context switches of the one thread of the process that is
 * neither the caller nor `other`: the purge thread; -1 if there is none. */
static long purge_thread_switches(pid_t other)
{
  DIR *d = opendir("/proc/self/task");
  ck_assert_ptr_nonnull(d);
  long switches = -1;
  for (struct dirent *e; (e = readdir(d));) {
    pid_t tid = (pid_t)atoi(e->d_name);
    if (tid <= 0 || tid == gettid() || tid == other)
      continue;
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    while (fgets(line, sizeof line, f))
      if (sscanf(line, "voluntary_ctxt_switches: %ld", &switches) == 1)
        break;
    fclose(f);
  }
  closedir(d);
  return switches;
}

START_TEST(purge_thread_waits_a_period_for_busy_holders)
{
  hak_config.purge_delay_ms = 400;
  struct busy_holder b = { .stop = false, .tid = 0 };
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, hold_medium_busily, &b), 0);
  while (!atomic_load(&b.tid))
    sched_yield();
  nanosleep(&(struct timespec){ .tv_nsec = 400 * 1000 * 1000 }, NULL);
  /* The held block asked for the purge thread; an allocation's slow path
   * starts it. */
  hak_free(hak_malloc(1 << 20));
  nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
  long before = purge_thread_switches(atomic_load(&b.tid));
  ck_assert_msg(before >= 0, "the held block did not start the purge thread");
  nanosleep(&(struct timespec){ .tv_sec = 1, .tv_nsec = 600 * 1000 * 1000 }, NULL);
  long after = purge_thread_switches(atomic_load(&b.tid));
  atomic_store(&b.stop, true);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_msg(after - before <= 9, "the purge thread slept %ld times in 1.6 s", after - before);
  hak_config.purge_delay_ms = -1;
}
END_TEST

/* A thread caught idle with blocks of another thread in its cross-thread
 * cache gives back all but its list's head to their slab's remote
 * stack. */
static void *xfree_free_then_sleep(void *arg)
{
  struct xfree_run *r = arg;
  xfree_free_blocks(r);
  pthread_barrier_wait(r->held);
  pthread_barrier_wait(r->trimmed);
  for (int i = 0; i < XFREE_REUSE; i++)
    hak_free(hak_malloc(XFREE_SIZE));
  r->held_after_trim = hakmem_check_heap() == 0;
  return NULL;
}

START_TEST(idle_thread_cross_thread_cache_reclaimed_by_time)
{
  hak_config.purge_delay_ms = -1;
  struct xfree_setup x;
  xfree_setup(&x);
  pthread_barrier_t held, woken;
  pthread_barrier_init(&held, NULL, 2);
  pthread_barrier_init(&woken, NULL, 2);
  struct xfree_run r = { .blocks = x.v, .held = &held, .trimmed = &woken };
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, xfree_free_then_sleep, &r), 0);
  pthread_barrier_wait(&held);
  ck_assert_uint_eq(r.held_after_free, XFREE_BLOCKS);
  ck_assert_uint_eq(x.s->used, x.used);
  hak_config.purge_delay_ms = 100000;
  uint64_t now = hak_now_ms();
  ck_assert(tcache_reclaim_idle(now));
  ck_assert_ptr_null(atomic_load(&x.s->remote));
  ck_assert(!tcache_reclaim_idle(now + 100000));
  ck_assert_uint_eq(tcache_drain(x.s), XFREE_BLOCKS - 1);
  ck_assert_uint_eq(x.s->used, x.used - (XFREE_BLOCKS - 1));
  ck_assert_int_eq(hakmem_check_heap(), 0);
  hak_config.purge_delay_ms = -1;
  pthread_barrier_wait(&woken);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_uint_eq(r.held_after_trim, 1);
  /* Its next put flushed the head it kept. */
  tcache_drain(x.s);
  ck_assert_uint_eq(x.s->used, x.used - XFREE_BLOCKS);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  pthread_barrier_destroy(&held);
  pthread_barrier_destroy(&woken);
}
END_TEST

/* A thread whose cross-thread caches never held a block (its
 * descriptors are zero until its first put): they read as empty to the
 * heap check, to the child of a fork and to the idle reclaim; then its
 * first put, of one class, gives every class its list end, so that
 * blocks another class takes by the inline put come back to its mallocs
 * and the list runs dry cleanly. */
#define UNTOUCHED_SMALL 64
#define UNTOUCHED_OTHER 256
struct xfree_untouched {
  pthread_barrier_t held, woken;
  struct slab *xfree;       /* the thread's tcache_xfree_slab */
  void *small[XFREE_BLOCKS], *other[XFREE_BLOCKS]; /* ours, for it to free */
  unsigned reused;          /* how many of other its mallocs returned */
  int heap;
};

static void *hold_medium_free_later(void *arg)
{
  struct xfree_untouched *u = arg;
  void *v[IDLE_BLOCKS];
  for (int i = 0; i < IDLE_BLOCKS; i++)
    v[i] = hak_malloc(65536);
  for (int i = 0; i < IDLE_BLOCKS; i++)
    hak_free(v[i]);
  /* Classes it allocates: the cache keeps blocks of these only. */
  hak_free(hak_malloc(UNTOUCHED_SMALL));
  hak_free(hak_malloc(UNTOUCHED_OTHER));
  u->xfree = tcache_xfree_slab;
  pthread_barrier_wait(&u->held);
  pthread_barrier_wait(&u->woken);
  for (int i = 0; i < XFREE_BLOCKS; i++)
    hak_free(u->small[i]);
  for (int i = 0; i < XFREE_BLOCKS; i++)
    hak_free(u->other[i]);
  static __thread void *got[XFREE_REUSE];
  for (int i = 0; i < XFREE_REUSE; i++) {
    got[i] = hak_malloc(UNTOUCHED_OTHER);
    for (int j = 0; j < XFREE_BLOCKS; j++)
      u->reused += got[i] == u->other[j];
  }
  for (int i = 0; i < XFREE_REUSE; i++)
    hak_free(got[i]);
  u->heap = hakmem_check_heap();
  return NULL;
}

START_TEST(untouched_cross_thread_cache_reads_empty)
{
  hak_config.purge_delay_ms = -1;
  struct xfree_untouched u = { .reused = 0 };
  for (int i = 0; i < XFREE_BLOCKS; i++) {
    u.small[i] = hak_malloc(UNTOUCHED_SMALL);
    u.other[i] = hak_malloc(UNTOUCHED_OTHER);
  }
  pthread_barrier_init(&u.held, NULL, 2);
  pthread_barrier_init(&u.woken, NULL, 2);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, hold_medium_free_later, &u), 0);
  pthread_barrier_wait(&u.held);
  for (unsigned c = 0; c < TCACHE_XFREE_CLASSES; c++) {
    ck_assert_uint_eq(tcache_xfree_held(&u.xfree[c]), 0);
    ck_assert(slab_list_is_end(u.xfree[c].free));
  }
  ck_assert_int_eq(hakmem_check_heap(), 0);
  /* The child hands back the thread's caches, the empty ones included. */
  unsigned medium = size_class_of(65536);
  assert_fork_child_holds_none(medium);
  /* The reclaim takes the medium blocks and finds nothing else. */
  hak_config.purge_delay_ms = 100000;
  uint64_t now = hak_now_ms();
  ck_assert(tcache_reclaim_idle(now));
  ck_assert(!tcache_reclaim_idle(now + 100000));
  struct shared_pool_usage pu;
  shared_pool_usage(&pu);
  ck_assert_uint_eq(pu.in_use_class[medium], 0);
  for (unsigned c = 0; c < TCACHE_XFREE_CLASSES; c++) {
    ck_assert_uint_eq(tcache_xfree_held(&u.xfree[c]), 0);
    ck_assert(slab_list_is_end(u.xfree[c].free));
  }
  ck_assert_int_eq(hakmem_check_heap(), 0);
  hak_config.purge_delay_ms = -1;
  pthread_barrier_wait(&u.woken);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_uint_eq(u.reused, XFREE_BLOCKS);
  ck_assert_int_eq(u.heap, 0);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  pthread_barrier_destroy(&u.held);
  pthread_barrier_destroy(&u.woken);
}
END_TEST

/* In the child of a fork, the medium cache of a thread the child does
 * not have goes back to its (orphaned) slabs: after malloc_trim nothing
 * of the class is in use there. */
START_TEST(fork_hands_back_other_threads_medium_caches)
{
  hak_config.purge_delay_ms = -1;
  unsigned cls = size_class_of(65536);
  struct idle_holder h;
  pthread_t t;
  idle_holder_start(&h, &t);
  assert_fork_child_holds_none(cls);
  idle_holder_wake(&h, t);
}
END_TEST

/* The reclaimer against the owner: a thread replaces medium blocks in
 * bursts with short sleeps between them, while this thread (and the
 * purge thread) reclaim with no delay, so that claims fall in the
 * sleeps and the owner wakes into them.  Every block keeps its contents,
 * the heap stays whole, and the thread was reclaimed (unwatched) many
 * times. */
struct reclaim_race {
  _Atomic bool stop;
  int bad;
  unsigned reclaimed;
};

static void *churn_medium_in_bursts(void *arg)
{
  struct reclaim_race *r = arg;
  unsigned char *v[8] = { 0 };
  unsigned x = 1;
  while (!atomic_load(&r->stop)) {
    for (int i = 0; i < 32; i++) {
      x = x * 1103515245u + 12345u;
      unsigned k = (x >> 16) & 7;
      if (v[k]) {
        r->bad |= v[k][0] != k || v[k][40959] != k;
        hak_free(v[k]);
      }
      v[k] = hak_malloc(40960 + (x >> 4) % (200 * 1024));
      v[k][0] = v[k][40959] = (unsigned char)k;
    }
    nanosleep(&(struct timespec){ .tv_nsec = 20000 + (x >> 8) % 80000 }, NULL);
    r->reclaimed += !tcache_held.watched;
  }
  for (unsigned k = 0; k < 8; k++)
    hak_free(v[k]);
  r->bad |= (hakmem_check_heap() != 0) << 1;
  return NULL;
}

START_TEST(idle_reclaim_races_with_its_thread)
{
  hak_config.purge_delay_ms = 0;
  struct reclaim_race r = { .bad = 0 };
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, churn_medium_in_bursts, &r), 0);
  uint64_t end = hak_now_ms() + 1000;
  while (hak_now_ms() < end)
    tcache_reclaim_idle(hak_now_ms());
  atomic_store(&r.stop, true);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  hak_config.purge_delay_ms = -1;
  ck_assert_int_eq(r.bad, 0);
  ck_assert_uint_gt(r.reclaimed, 10);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("pool");
  TCase *t = tcase_create("pool");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, pool_reuses_empty_slabs);
  tcase_add_test(t, pool_stage2_claims_unused);
  tcase_add_test(t, exited_thread_slabs_are_adopted);
  tcase_add_test(t, remote_frees_are_drained);
  tcase_add_test(t, one_block_loop_stays_on_fast_path);
  tcase_add_test(t, dry_slab_takes_ring_blocks_before_carving);
  tcase_add_test(t, medium_slabs_share_superslabs);
  tcase_add_test_raise_signal(t, medium_tail_double_free_aborts, SIGABRT);
  tcase_add_test_raise_signal(t, medium_tail_remote_double_free_aborts, SIGABRT);
  tcase_add_test(t, medium_slab_slots_purged_when_emptied);
  tcase_add_test(t, medium_cache_holds_last_freed);
  tcase_add_test_raise_signal(t, medium_cache_double_free_aborts, SIGABRT);
  tcase_add_test(t, medium_cache_emptied_by_trim_purge_and_exit);
  tcase_add_test(t, burst_slabs_reused_then_purged_by_time);
  tcase_add_test(t, claim_takes_the_most_carved_empty_slab);
  tcase_add_test(t, claim_takes_back_a_slab_it_held);
  tcase_add_test(t, new_superslab_decommits_cached_large_blocks);
  tcase_add_test(t, cross_thread_free_is_reused_by_the_freeing_thread);
  tcase_add_test(t, cross_thread_cache_flushed_at_thread_exit);
  tcase_add_test(t, cross_thread_cache_flushed_by_malloc_trim);
  tcase_add_test(t, cross_thread_cache_flushed_when_the_owner_carves);
  tcase_add_test(t, cross_thread_cache_skips_classes_not_allocated);
  tcase_add_test(t, cross_thread_cache_is_bounded);
  tcase_add_test(t, idle_thread_medium_cache_reclaimed_by_time);
  tcase_add_test(t, idle_thread_medium_cache_reclaimed_by_the_purge_thread);
  tcase_add_test(t, purge_thread_waits_a_period_for_busy_holders);
  tcase_add_test(t, idle_thread_cross_thread_cache_reclaimed_by_time);
  tcase_add_test(t, fork_hands_back_other_threads_medium_caches);
  tcase_add_test(t, untouched_cross_thread_cache_reads_empty);
  tcase_add_test(t, idle_reclaim_races_with_its_thread);
  suite_add_tcase(s, t);
  return check_run(s);
}
