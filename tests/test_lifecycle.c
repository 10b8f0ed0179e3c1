/* Memory lifecycle: the release policy under each mode and decommit kind,
 * the purge by time (passes called with a chosen clock) and of an idle
 * program (the purge thread itself, waited for with a deadline), trim.
 * RSS checks use generous bounds; no assertion depends on how long
 * anything took. */
#include <check.h>
#include "core_util.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"
#include "bigcache.h"
#include "config.h"
#include "diag.h"
#include "locks.h"
#include "shared_pool.h"
#include "stats.h"
#include "superslab.h"
#include "tcache.h"

/* Initialises hakmem (which loads the defaults), then applies a setting. */
static void start(void)
{
  hak_free(hak_malloc(1));
}

/* Initialises hakmem in lean mode with this decommit kind and target (a
 * negative one keeps the default), and no purge thread (purge_delay_ms =
 * -1), so that only lean mode acts. */
static void start_lean(int decommit, int target_mb)
{
  start();
  hak_config.ss_mem_lean = 1;
  hak_config.ss_mem_lean_decommit = decommit;
  if (target_mb >= 0)
    hak_config.ss_mem_lean_target_mb = target_mb;
  hak_config.purge_delay_ms = -1;
}

/* Allocates n blocks of size bytes into v, each written with byte. */
static void alloc_filled(void **v, int n, size_t size, int byte)
{
  for (int i = 0; i < n; i++) {
    v[i] = hak_malloc(size);
    memset(v[i], byte, size);
  }
}

#define BLOCKS CHURN_BLOCKS
static void *churned[BLOCKS];  /* addresses of the last churn (freed) */

/* Churns in a thread that then exits, recording the blocks' addresses. */
static void churn(void)
{
  churn_in_thread(churned);
}

/* Pages of [p, p+len) resident, by mincore. */
static size_t resident_pages(void *p, size_t len)
{
  size_t n = len / 4096, r = 0;
  unsigned char *vec = malloc(n);
  ck_assert_int_eq(mincore(p, len, vec), 0);
  for (size_t i = 0; i < n; i++)
    r += vec[i] & 1;
  free(vec);
  return r;
}

/* With a zero target, lean mode keeps no free page: every free SuperSlab
 * is decommitted as it empties. */
START_TEST(lean_decommits_at_once_dontneed)
{
  start_lean(HAK_DECOMMIT_DONTNEED, 0);
  hak_stats_t a = stats_now();
  churn();
  hak_stats_t b = stats_now();
  ck_assert_uint_gt(b.lean_decommit, a.lean_decommit);
  /* The kept free SuperSlabs are decommitted: of the SuperSlabs the
   * thread used, those still mapped have almost no page resident
   * (MADV_DONTNEED takes effect at once). */
  ck_assert_uint_ge(b.superslabs_empty, 1);
  unsigned checked = 0;
  for (int i = 0; i < BLOCKS; i += 500) {
    uintptr_t e = registry_lookup((uintptr_t)churned[i]);
    if (!registry_is_superslab(e))
      continue;
    struct superslab *ss = (struct superslab *)(e - REGISTRY_TAG_SUPERSLAB);
    if (!ss->empty_kept)
      continue; /* also holds the main thread's slabs */
    ck_assert_uint_eq(resident_pages((char *)ss + (1 << 16), (1 << 21) - (1 << 16)), 0);
    checked++;
  }
  ck_assert_uint_ge(checked, 1);
}
END_TEST

START_TEST(lean_decommit_free_reuses_and_zeroes)
{
  /* No purge thread, which would unmap the kept SuperSlabs if the test
   * took ten purge delays. */
  start_lean(HAK_DECOMMIT_FREE, -1);
  churn();
  hak_stats_t a = stats_now();
  ck_assert_uint_gt(a.lean_decommit, 0);
  ck_assert_uint_gt(a.superslabs_empty, 0);
  /* Decommitted SuperSlabs are reused before new ones are mapped, and
   * calloc still hands out zeroes there. */
  unsigned char **v = malloc(BLOCKS * sizeof *v);
  for (int i = 0; i < BLOCKS; i++) {
    v[i] = hak_calloc(1, 1000);
    for (int k = 0; k < 1000; k += 97)
      ck_assert_uint_eq(v[i][k], 0);
  }
  hak_stats_t b = stats_now();
  /* Every kept (decommitted) SuperSlab was taken before any new one. */
  ck_assert_uint_eq(b.superslabs_empty, 0);
  ck_assert_uint_ge(b.pool_claim_unused - a.pool_claim_unused, a.superslabs_empty);
  for (int i = 0; i < BLOCKS; i++)
    hak_free(v[i]);
  free(v);
}
END_TEST

/* Lean mode holds the pool's free committed memory under
 * ss_mem_lean_target_mb at every moment, keeps that much hot for reuse
 * and gives back the rest at once; the SuperSlabs stay mapped.  The purge
 * thread is kept out (purge_delay_ms = -1) so that only the target acts. */
START_TEST(lean_holds_its_target)
{
  start_lean(HAK_DECOMMIT_DONTNEED, 4);
  hak_stats_t a = stats_now();
  void **v = malloc(BLOCKS * sizeof *v);
  alloc_filled(v, BLOCKS, 1000, 0xcd);
  struct shared_pool_usage u;
  size_t most = 0;
  for (int i = 0; i < BLOCKS; i++) {
    hak_free(v[i]);
    if (i % 1000 == 999) {
      shared_pool_usage(&u);
      most = u.free_committed_bytes > most ? u.free_committed_bytes : most;
    }
  }
  free(v);
  tcache_collect(); /* this thread's emptied slabs back to the pool */
  shared_pool_usage(&u);
  most = u.free_committed_bytes > most ? u.free_committed_bytes : most;
  hak_stats_t b = stats_now();
  ck_assert_uint_le(most, (size_t)4 << 20);
  /* What is under the target is kept committed, for reuse without faults. */
  ck_assert_uint_ge(u.free_committed_bytes, (size_t)1 << 20);
  ck_assert_uint_gt(b.lean_decommit, a.lean_decommit);
  ck_assert_uint_ge(b.superslabs_empty, 8);
  ck_assert_uint_eq(b.superslabs_unmapped, a.superslabs_unmapped);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* A new slab takes a free slot whose pages are resident before one whose
 * pages were given back: after lean mode kept 4 MiB resident and gave
 * back the rest, 2 MiB of new blocks take resident slots only. */
START_TEST(resident_free_slots_reused_first)
{
  start_lean(HAK_DECOMMIT_DONTNEED, 4);
  void **v = malloc(BLOCKS * sizeof *v);
  alloc_filled(v, BLOCKS, 1000, 0xcd);
  for (int i = 0; i < BLOCKS; i++)
    hak_free(v[i]);
  tcache_collect();
  struct shared_pool_usage a, b;
  shared_pool_usage(&a);
  ck_assert_uint_ge(a.free_committed_bytes, (size_t)3 << 20);
  /* 2 MiB of 2 KiB blocks: 32 slabs of another class. */
  hak_config.ss_mem_lean = 0;
  alloc_filled(v, 1024, 2000, 0x3c);
  shared_pool_usage(&b);
  ck_assert_uint_ge(a.free_committed_bytes - b.free_committed_bytes, (size_t)31 << 16);
  for (int i = 0; i < 1024; i++)
    hak_free(v[i]);
  free(v);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

START_TEST(lean_decommit_off_only_keeps)
{
  start_lean(HAK_DECOMMIT_OFF, 4);
  hak_stats_t a = stats_now();
  churn();
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.lean_decommit, a.lean_decommit);
  /* Kept memory is bounded by the target: 4 MiB = two SuperSlabs. */
  ck_assert_uint_le(b.superslabs_empty, 2);
  ck_assert_uint_gt(b.lean_retire, a.lean_retire);
}
END_TEST

START_TEST(balanced_idle_program_shrinks)
{
  start();
  hak_config.purge_delay_ms = 100;
  long before = rss_kb();
  void **v = malloc(100000 * sizeof *v);
  for (int i = 0; i < 100000; i++) {
    v[i] = hak_malloc(500);
    memset(v[i], 1, 500);
  }
  long peak = rss_kb();
  ck_assert_int_gt(peak - before, 40000);
  for (int i = 0; i < 100000; i++)
    hak_free(v[i]);
  free(v);
  /* No further malloc or free: the purge thread must do it.  Wait for it
   * up to 30 s (a loaded machine), never for a set time; the bound is
   * generous.  Under AddressSanitizer
   * the shadow of the memory the test wrote (an eighth) stays resident. */
  long bound = (peak - before) / 10;
#if defined(__SANITIZE_ADDRESS__)
  bound += (peak - before) / 8;
#endif
  /* Wait for the purge itself too: the SuperSlabs beyond the kept ones
   * are unmapped at once, which can bring RSS under the bound before the
   * purge has run (with the sanitizer's larger bound). */
  long now = peak;
  hak_stats_t s = stats_now();
  for (int i = 0; i < 300 && (now - before > bound || s.purge_decommit == 0); i++) {
    usleep(100000);
    now = rss_kb();
    s = stats_now();
  }
  ck_assert_int_le(now - before, bound);
  ck_assert_uint_ge(s.purge_threads, 1);
  ck_assert_uint_ge(s.purge_decommit, 1);
}
END_TEST

/* Makes every thread creation of this process fail with EAGAIN, as
 * RLIMIT_NPROC or a cgroup's pids limit does (which root escapes, and
 * this filter not).  False if the kernel refuses the filter. */
static bool refuse_new_threads(void)
{
  const unsigned arg0_low = offsetof(struct seccomp_data, args[0]) +
                            (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__ ? 4 : 0);
  struct sock_filter f[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#ifdef __NR_clone3
    /* glibc tries clone3 first and falls back to clone only on ENOSYS. */
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
#endif
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 3),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, arg0_low),
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0;
}

static void *nothing(void *arg)
{
  return arg;
}

/* A program that may start no thread: the purge thread's start failed
 * on every kick (a clone each, several times slower), and nothing was
 * ever purged.  Now a failed start is tried again once per period, and
 * the kicker purges in its place, so memory still goes back by time. */
START_TEST(purge_without_a_thread)
{
  start();
  hak_config.purge_delay_ms = 100;
  if (!refuse_new_threads()) {
    printf("purge_without_a_thread: the kernel refuses a seccomp filter; not tested\n");
    return;
  }
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, nothing, NULL), EAGAIN);
  hak_stats_t a = stats_now();
  uint64_t t0 = hak_now_ms();
  /* Many kicks: large blocks freed into BigCache, slabs emptied. */
  void **v = malloc(20000 * sizeof *v);
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 20000; i++) {
      v[i] = hak_malloc(500);
      memset(v[i], 1, 500);
    }
    for (int i = 0; i < 20000; i++)
      hak_free(v[i]);
    for (int i = 0; i < 50; i++) {
      void *p = hak_malloc((size_t)(1 + i % 4) << 20);
      memset(p, 2, 4096);
      hak_free(p);
    }
    tcache_collect();
  }
  free(v);
  hak_stats_t b = stats_now();
  /* purge_threads counts the tries (it is bumped before pthread_create):
   * one, and one more per period (100 ms) since. */
  uint64_t periods = (hak_now_ms() - t0) / 100;
  ck_assert_uint_ge(b.purge_threads - a.purge_threads, 1);
  ck_assert_msg(b.purge_threads - a.purge_threads <= periods + 2,
                "%llu tries to start the purge thread in %llu periods",
                (unsigned long long)(b.purge_threads - a.purge_threads),
                (unsigned long long)periods);
  /* The kicks of a program that goes on freeing purge in the thread's
   * place: wait for it with a long deadline. */
  hak_stats_t s = b;
  for (int i = 0; i < 3000 && s.purge_decommit == a.purge_decommit; i++) {
    void *p = hak_malloc(1 << 20);
    hak_free(p);
    usleep(10000);
    s = stats_now();
  }
  ck_assert_uint_gt(s.purge_decommit, a.purge_decommit);
}
END_TEST

/* The modes run in fresh processes (run_case_in_env) whose environment
 * sets them, so that their presets, and what init derives from them, are
 * the ones a user gets. */

/* fast: no purge thread is ever started (purge_start_now counts a start
 * before the thread exists), so nothing can decommit later either. */
START_TEST(fast_mode_never_decommits)
{
  ck_assert_int_eq(hak_config.mode, HAK_MODE_FAST);
  ck_assert_int_eq(hak_config.purge_delay_ms, -1);
  ck_assert_int_eq(hak_config.superslab_keep, 16);
  churn();
  hak_stats_t s = stats_now();
  ck_assert_uint_eq(s.purge_threads, 0);
  ck_assert_uint_eq(s.purge_decommit, 0);
  ck_assert_uint_eq(s.lean_decommit, 0);
  ck_assert_uint_ge(s.superslabs_empty, 4);
}
END_TEST

START_TEST(fast_mode)
{
  char *env[] = { "HAKMEM_MODE=fast", "HAKMEM_SUPERSLAB_KEEP=16", NULL };
  run_case_in_env("fast_mode", env);
}
END_TEST

START_TEST(minimal_mode_unmaps_at_once)
{
  ck_assert_int_eq(hak_config.mode, HAK_MODE_MINIMAL);
  ck_assert_int_eq(hak_config.purge_delay_ms, -1);
  hak_stats_t a = stats_now();
  churn();
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.superslabs_empty, 0);
  ck_assert_uint_gt(b.superslabs_unmapped, a.superslabs_unmapped);
}
END_TEST

START_TEST(minimal_mode)
{
  char *env[] = { "HAKMEM_MODE=minimal", "HAKMEM_SUPERSLAB_KEEP=0", NULL };
  run_case_in_env("minimal_mode", env);
}
END_TEST

START_TEST(prewarm_faults_a_superslab_in)
{
  start();
  hak_stats_t a = stats_now();
  shared_pool_prewarm();
  hak_stats_t b = stats_now();
  ck_assert_uint_ge(b.prewarm_bytes - a.prewarm_bytes, (1u << 21) - (1u << 16));
  ck_assert_uint_eq(b.pool_new_superslab - a.pool_new_superslab, 1);
}
END_TEST

START_TEST(bigcache_batches_decommit)
{
  start();
  /* No purge thread runs: purge_delay_ms is -1 while the block is freed,
   * so none is started; the pass is called here with a chosen clock. */
  hak_config.purge_delay_ms = -1;
  hak_config.batch_madvise = 1;
  char *p = hak_malloc(1 << 20);
  memset(p, 1, 1 << 20);
  hak_stats_t a = stats_now();
  uint64_t before_free = hak_now_ms();
  hak_free(p);
  hak_stats_t b = stats_now();
  /* Batched: the free keeps the pages... */
  ck_assert_uint_eq(b.os_madvise, a.os_madvise);
  ck_assert_uint_ge(resident_pages((char *)p - 64 + 4096, (1 << 20) - 4096), 200);
  /* ... until a pass finds the block purge_delay_ms old. */
  hak_config.purge_delay_ms = 50;
  /* A pass whose clock was read before the block was cached (before it
   * took the BigCache lock) finds it cached for no time: kept. */
  bigcache_purge(before_free - 1, false);
  ck_assert_uint_eq(stats_now().os_madvise, a.os_madvise);
  bigcache_purge(hak_now_ms() + 50, false);
  hak_stats_t c = stats_now();
  ck_assert_uint_eq(c.os_madvise - b.os_madvise, 1);
  ck_assert_uint_le(resident_pages((char *)p - 64 + 4096, (1 << 20) - 4096), 1);
  /* Unbatched: the free itself gives the pages back. */
  hak_config.batch_madvise = 0;
  p = hak_malloc(1 << 20);
  memset(p, 1, 1 << 20);
  c = stats_now();
  hak_free(p);
  hak_stats_t d = stats_now();
  ck_assert_uint_eq(d.os_madvise - c.os_madvise, 1);
  ck_assert_uint_le(resident_pages((char *)p - 64 + 4096, (1 << 20) - 4096), 1);
}
END_TEST

/* A thread that moved on to other sizes does not keep an empty medium
 * slab (a whole SuperSlab) as its active one; in lean mode with a zero
 * target its pages go back to the kernel at once. */
static void *medium_then_small(void *arg)
{
  hak_stats_t *out = arg;
  hak_free(hak_malloc(100 << 10));
  hakmem_stats_get(&out[0]);
  void **v = malloc(20000 * sizeof *v);
  for (int i = 0; i < 20000; i++)
    v[i] = hak_malloc(1000);
  hakmem_stats_get(&out[1]);
  for (int i = 0; i < 20000; i++)
    hak_free(v[i]);
  free(v);
  return NULL;
}

START_TEST(thread_hands_back_idle_slabs)
{
  start();
  hak_config.ss_mem_lean = 1;
  hak_config.ss_mem_lean_target_mb = 0;
  hak_config.ss_mem_lean_decommit = HAK_DECOMMIT_DONTNEED;
  hak_stats_t st[2];
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, medium_then_small, st), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* While it allocated only small blocks, the empty medium SuperSlab went
   * back to the pool and its pages to the kernel. */
  ck_assert_uint_gt(st[1].lean_decommit, st[0].lean_decommit);
  ck_assert_uint_gt(st[1].slabs_emptied, st[0].slabs_emptied);
}
END_TEST

/* A large block that must move to grow takes a cached mapping that has
 * its pages already: the block's pages go over its head, its faulted tail
 * stays, and no new mapping is made. */
START_TEST(large_realloc_reuses_cached_pages)
{
  start();
  /* No purge thread, which would decommit the cached mapping if the test
   * took a purge delay. */
  hak_config.purge_delay_ms = -1;
  char *cached = hak_malloc(6 << 20);
  memset(cached, 7, 6 << 20);
  char *p = hak_malloc(600 << 10);
  /* A neighbour after p and the room for growth it was placed with
   * (three times its size), so that p cannot grow in place to 5 MiB. */
  char *wall = hak_malloc(600 << 10);
  ck_assert_ptr_nonnull(wall);
  memset(p, 0x5a, 600 << 10);
  hak_free(cached);
  hak_stats_t a = stats_now();
  char *q = hak_realloc(p, 5 << 20);
  hak_stats_t b = stats_now();
  ck_assert_ptr_nonnull(q);
  ck_assert_ptr_ne(q, p);
  ck_assert_uint_eq(b.bigcache_hits - a.bigcache_hits, 1);
  ck_assert_uint_eq(b.os_mmap, a.os_mmap);
  for (size_t i = 0; i < (600 << 10); i++)
    if (q[i] != 0x5a)
      ck_abort_msg("byte %zu lost in the move", i);
  /* The cached mapping's tail is still resident: growing costs no faults. */
  char *tail = (char *)(((uintptr_t)q + (1 << 20)) & ~(uintptr_t)4095);
  ck_assert_uint_ge(resident_pages(tail, 1 << 20), 200);
  hak_free(q);
  hak_free(wall);
}
END_TEST

/* A program that only allocates and frees large blocks is busy, not idle:
 * the purge leaves its cached mapping alone while it keeps using it. */
START_TEST(bigcache_churn_is_not_idle)
{
  start();
  /* No purge thread: the passes below, with a chosen clock, are the only
   * ones, so that a loaded machine cannot make the churn look idle. */
  hak_config.purge_delay_ms = -1;
  hak_config.batch_madvise = 1;
  hak_trim(0);
  hak_free(hak_malloc(1 << 20));
  uint64_t now = hak_now_ms();
  bigcache_purge(now, true); /* sees the activity so far */
  hak_stats_t a = stats_now();
  for (int i = 0; i < 600; i++) {
    char *p = hak_malloc(1 << 20);
    memset(p, i, 1 << 20);
    hak_free(p);
  }
  hak_stats_t b = stats_now();
  ck_assert_uint_ge(b.bigcache_hits - a.bigcache_hits, 599);
  ck_assert_uint_eq(b.os_madvise, a.os_madvise);
  /* The pool may look idle; BigCache was busy since the last pass, so the
   * cached block keeps its pages. */
  bigcache_purge(now, true);
  hak_stats_t c = stats_now();
  ck_assert_uint_eq(c.os_madvise, b.os_madvise);
  /* A pass with no BigCache activity since the last one is idle. */
  bigcache_purge(now, true);
  hak_stats_t d = stats_now();
  ck_assert_uint_gt(d.os_madvise, c.os_madvise);
}
END_TEST


/* Free SuperSlabs are kept by time, not by count: a churn that empties
 * twenty of them unmaps none; the purge decommits them after
 * purge_delay_ms and unmaps them after ten times that.  The purge is
 * called here with a chosen clock; no purge thread runs (purge_delay_ms
 * is -1 while the test frees: a thread would purge everything once the
 * pool had been idle for a second). */
START_TEST(free_superslabs_kept_by_time)
{
  start();
  hak_config.purge_delay_ms = -1;
  hak_stats_t a = stats_now();
  uint64_t before_churn = hak_now_ms();
  churn();
  hak_config.purge_delay_ms = 100000;
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.superslabs_unmapped, a.superslabs_unmapped);
  ck_assert_uint_ge(b.superslabs_empty, 8);
  bool idle;
  uint64_t activity = 0;
  /* A pass whose clock was read before the SuperSlabs emptied (the purge
   * thread reads it before waiting for the pool lock) finds them free for
   * no time at all, not for ages: it neither unmaps nor decommits them. */
  shared_pool_purge(before_churn - 1, &idle, &activity);
  hak_stats_t early = stats_now();
  ck_assert_uint_eq(early.superslabs_unmapped, a.superslabs_unmapped);
  ck_assert_uint_eq(early.purge_decommit, b.purge_decommit);
  ck_assert_uint_eq(early.superslabs_empty, b.superslabs_empty);
  uint64_t now = hak_now_ms();
  shared_pool_purge(now + 100000 + 10, &idle, &activity);
  hak_stats_t c = stats_now();
  ck_assert_uint_eq(c.superslabs_unmapped, a.superslabs_unmapped);
  ck_assert_uint_gt(c.purge_decommit, b.purge_decommit);
  shared_pool_purge(now + 10 * 100000 + 10, &idle, &activity);
  hak_stats_t d = stats_now();
  ck_assert_uint_ge(d.superslabs_unmapped - a.superslabs_unmapped, b.superslabs_empty);
  ck_assert_uint_eq(d.superslabs_empty, 0);
}
END_TEST

/* Free slots of a SuperSlab still in use are given back by time too, not
 * only when the program idles: the purge marks them, and those still free
 * purge_delay_ms later are decommitted.  A slot taken in between loses its
 * mark.  The purge runs here with a chosen clock; no purge thread runs
 * (purge_delay_ms is -1 while the test allocates and frees). */
START_TEST(busy_superslab_free_slots_purged_by_time)
{
  start();
  hak_config.purge_delay_ms = -1;
  /* 1 KiB blocks: one live block in each slab keeps every SuperSlab in
   * use; the other slabs of each are freed whole. */
  void **v = malloc(BLOCKS * sizeof *v);
  for (int i = 0; i < BLOCKS; i++) {
    v[i] = hak_malloc(1000);
    memset(v[i], 0x5a, 1000);
  }
  for (int i = 0; i < BLOCKS; i++)
    if (i % 1984 != 0)
      hak_free(v[i]);
  tcache_collect();
  struct shared_pool_usage a, b, c;
  shared_pool_usage(&a);
  ck_assert_uint_ge(a.free_committed_bytes, (size_t)16 << 20);
  hak_stats_t sa = stats_now();

  /* activity = 0 each time: the pool counted activity since (the purge
   * would otherwise take the program for idle and purge everything). */
  hak_config.purge_delay_ms = 100000;
  bool idle;
  uint64_t activity = 0, now = hak_now_ms();
  shared_pool_purge(now, &idle, &activity); /* marks */
  ck_assert(!idle);
  activity = 0;
  shared_pool_purge(now + 50000, &idle, &activity); /* not yet due */
  shared_pool_usage(&b);
  ck_assert_uint_eq(b.free_committed_bytes, a.free_committed_bytes);
  /* Busy: a slab taken and given back meanwhile is not purged with the
   * others (its slot lost its mark). */
  void *p = hak_malloc(20000);
  memset(p, 1, 20000);
  hak_free(p);
  tcache_collect();
  activity = 0;
  shared_pool_purge(now + 100000, &idle, &activity);
  ck_assert(!idle);
  shared_pool_usage(&c);
  hak_stats_t sc = stats_now();
  ck_assert_uint_gt(sc.purge_decommit, sa.purge_decommit);
  ck_assert_uint_ge(c.free_committed_bytes, (size_t)64 << 10);
  ck_assert_uint_le(c.free_committed_bytes, (size_t)1 << 20);
  ck_assert_uint_eq(sc.superslabs_unmapped, sa.superslabs_unmapped);
  /* The next round gives back the rest. */
  activity = 0;
  shared_pool_purge(now + 200000, &idle, &activity);
  shared_pool_usage(&c);
  ck_assert_uint_eq(c.free_committed_bytes, 0);
  for (int i = 0; i < BLOCKS; i += 1984) {
    ck_assert_uint_eq(((unsigned char *)v[i])[999], 0x5a);
    hak_free(v[i]);
  }
  free(v);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* The delays, as the purge applies them: balanced decommits after
 * purge_delay_ms and unmaps after ten of them (at least a second); lean
 * decommits after a quarter of the delay; -1 never. */
START_TEST(purge_delays_by_mode)
{
  start();
  hak_config.purge_delay_ms = 1000;
  hak_config.ss_mem_lean = 0;
  ck_assert(!superslab_purge_due(5000, 5999));
  ck_assert(superslab_purge_due(5000, 6000));
  ck_assert(!superslab_unmap_due(5000, 14999));
  ck_assert(superslab_unmap_due(5000, 15000));
  hak_config.ss_mem_lean = 1;
  ck_assert(!superslab_purge_due(5000, 5249));
  ck_assert(superslab_purge_due(5000, 5250));
  hak_config.purge_delay_ms = 20;
  ck_assert(!superslab_unmap_due(5000, 5999));
  ck_assert(superslab_unmap_due(5000, 6000));
  /* A clock read before the stamp: no time has passed, not 2^64 ms. */
  ck_assert(!superslab_purge_due(5001, 5000));
  ck_assert(!superslab_unmap_due(5001, 5000));
  hak_config.purge_delay_ms = -1;
  ck_assert(!superslab_purge_due(0, UINT64_MAX / 2));
  ck_assert(!superslab_unmap_due(0, UINT64_MAX / 2));
  ck_assert_uint_eq(shared_pool_purge_period_ms(), 10);
  hak_config.purge_delay_ms = 5000;
  ck_assert_uint_eq(shared_pool_purge_period_ms(), 1000);
}
END_TEST

/* A thread that exits with its blocks live leaves orphaned slabs; once
 * other threads have freed every block, malloc_trim gives their memory
 * back (before, 1 M blocks of 64 B kept 73 MB resident for good). */
#define ORPHAN_BLOCKS 200000
static void *orphan_blocks[ORPHAN_BLOCKS];

static void *allocate_and_exit(void *arg)
{
  (void)arg;
  for (int i = 0; i < ORPHAN_BLOCKS; i++) {
    orphan_blocks[i] = hak_malloc(64);
    memset(orphan_blocks[i], 7, 64);
  }
  return NULL;
}

START_TEST(orphaned_slabs_come_back)
{
  start();
  hak_config.purge_delay_ms = -1;
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, allocate_and_exit, NULL), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  hak_stats_t a = stats_now();
  for (int i = 0; i < ORPHAN_BLOCKS; i++)
    hak_free(orphan_blocks[i]);
  hak_trim(0);
  hak_stats_t b = stats_now();
  /* 200000 x 64 B is 12.5 MB of slabs: nearly all of it unmapped. */
  ck_assert_uint_ge(a.mapped_bytes - b.mapped_bytes, (size_t)10 << 20);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

START_TEST(trim_returns_memory)
{
  alloc_free_many((void *)(uintptr_t)20000);
  void *big = hak_malloc(1 << 20);
  hak_free(big);
  hak_stats_t a = stats_now();
  ck_assert_int_eq(hak_trim(0), 1);
  hak_stats_t b = stats_now();
  ck_assert_uint_gt(b.os_madvise + b.os_munmap, a.os_madvise + a.os_munmap);
  ck_assert_uint_eq(b.bigcache_bytes, 0);
  ck_assert_uint_lt(b.mapped_bytes, a.mapped_bytes);
}
END_TEST

/* Small and large blocks, so that the shared pool's and BigCache's locks
 * are taken. */
static void *allocate_in_thread(void *arg)
{
  (void)arg;
  for (size_t n = 16; n <= ((size_t)1 << 20); n *= 4)
    hak_free(hak_malloc(n));
  return NULL;
}

/* The fork handlers wait for a second thread (locks.h): the only thread
 * registers none, however much it allocates; the first lock a second
 * thread takes registers them, and a fork after that leaves the child a
 * working allocator. */
START_TEST(fork_handlers_wait_for_a_second_thread)
{
#if LOCKS_LAZY_FORK_HANDLERS
  start();
  hak_config.purge_delay_ms = -1; /* no purge thread: one thread only */
  ck_assert_msg(LOCKS_SINGLE_THREADED() && !atomic_load(&locks_fork_handlers_on),
                "fork handlers registered before a second thread (prof = 1?) or the test process has one (CK_FORK=no?)");
  allocate_in_thread(NULL);
  ck_assert(!atomic_load(&locks_fork_handlers_on));
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, allocate_in_thread, NULL), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert(atomic_load(&locks_fork_handlers_on));
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    void *p = hak_malloc(100), *q = hak_malloc((size_t)1 << 20);
    _exit(p && q ? 0 : 1);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#endif
}
END_TEST

/* Late registration from inside another library's fork handler: the
 * first lock taken once a second thread exists is taken by a prepare
 * handler registered before hakmem's, during a fork.  pthread_atfork then
 * runs inside fork; with glibc 2.36 or later that must not wait for the
 * fork in progress (locks.h), and the fork completes.  alarm turns a hang
 * into a failure. */
static void *volatile prefork_block;

static void malloc_in_prepare(void)
{
  /* A class this process has not used: the slow path, the pool's lock. */
  prefork_block = hak_malloc(7000);
}

static void *wait_for_release(void *arg)
{
  /* Holds no lock of hakmem's: it never calls it. */
  pthread_mutex_t *gate = arg;
  pthread_mutex_lock(gate);
  pthread_mutex_unlock(gate);
  return NULL;
}

START_TEST(fork_handlers_registered_inside_a_fork)
{
#if LOCKS_LAZY_FORK_HANDLERS
  start();
  hak_config.purge_delay_ms = -1;
  hak_free(hak_malloc(40));
  ck_assert_msg(!atomic_load(&locks_fork_handlers_on), "fork handlers registered at start");
  ck_assert_int_eq(pthread_atfork(malloc_in_prepare, NULL, NULL), 0);
  static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&gate);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, wait_for_release, &gate), 0);
  ck_assert(!atomic_load(&locks_fork_handlers_on));
  alarm(20);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    void *p = hak_malloc(100), *q = hak_malloc(7000);
    _exit(p && q ? 0 : 1);
  }
  alarm(0);
  ck_assert(prefork_block != NULL);
  ck_assert(atomic_load(&locks_fork_handlers_on));
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  pthread_mutex_unlock(&gate);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
#endif
}
END_TEST

/* A fork made while another thread is inside pthread_atfork leaves the
 * child with the registration "in progress" and without the thread that
 * would finish it: the child's first lock takes the registration over
 * rather than waiting for ever.  Another thread's registration is
 * simulated by the state it leaves (minus this process's pid). */
START_TEST(fork_during_registration_child_takes_over)
{
#if LOCKS_LAZY_FORK_HANDLERS
  start();
  hak_config.purge_delay_ms = -1;
  hak_free(hak_malloc(40));
  static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&gate);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, wait_for_release, &gate), 0);
  ck_assert(!atomic_load(&locks_fork_handlers_on));
  atomic_store(&locks_fork_state, -(long)getpid());
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    alarm(20);
    void *p = hak_malloc(9000); /* a new class: the pool's lock */
    _exit(p && atomic_load(&locks_fork_handlers_on) &&
                  atomic_load(&locks_fork_state) == LOCKS_REGISTERED
              ? 0
              : 1);
  }
  atomic_store(&locks_fork_state, LOCKS_ARMED);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the child hung (SIGALRM) or did not register: status %d", status);
  pthread_mutex_unlock(&gate);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
#endif
}
END_TEST

/* A fork while another thread holds blocks of ours in its cross-thread
 * cache (tcache.h): the child, which does not have that thread, hands
 * them back to our slab's remote stack rather than keeping them in use
 * for good. */
#define FORK_XFREE_BLOCKS 16
#define FORK_XFREE_SIZE 64
struct fork_xfree {
  void **blocks;
  pthread_barrier_t held, forked;
};

static void *hold_blocks_across_fork(void *arg)
{
  struct fork_xfree *f = arg;
  /* A thread keeps only blocks of a class it allocates itself. */
  hak_free(hak_malloc(FORK_XFREE_SIZE));
  for (int i = 0; i < FORK_XFREE_BLOCKS; i++)
    hak_free(f->blocks[i]);
  pthread_barrier_wait(&f->held);
  pthread_barrier_wait(&f->forked);
  return NULL;
}

static struct slab *slab_of_block(void *p)
{
  return superslab_slab_of(registry_lookup((uintptr_t)p), (uintptr_t)p);
}

/* Waits for the forked child pid, then lets thread t, which holds its
 * state across the fork, go on past forked and joins it; returns the
 * child's status. */
static int reap_child_then_thread(pid_t pid, pthread_barrier_t *forked, pthread_t t)
{
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  pthread_barrier_wait(forked);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  return status;
}

/* FORK_XFREE_BLOCKS blocks of FORK_XFREE_SIZE, filled, all of one slab,
 * which it returns. */
static struct slab *alloc_fork_xfree_blocks(void **v)
{
  alloc_filled(v, FORK_XFREE_BLOCKS, FORK_XFREE_SIZE, 0x5a);
  struct slab *s = slab_of_block(v[0]);
  for (int i = 1; i < FORK_XFREE_BLOCKS; i++)
    ck_assert_ptr_eq(slab_of_block(v[i]), s);
  return s;
}

START_TEST(fork_hands_back_other_threads_cross_thread_caches)
{
  start();
  hak_config.purge_delay_ms = -1;
  void *v[FORK_XFREE_BLOCKS];
  struct slab *s = alloc_fork_xfree_blocks(v);
  unsigned used = s->used;
  struct fork_xfree f = { .blocks = v };
  pthread_barrier_init(&f.held, NULL, 2);
  pthread_barrier_init(&f.forked, NULL, 2);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, hold_blocks_across_fork, &f), 0);
  pthread_barrier_wait(&f.held);
  /* Held by the other thread: still in use, nothing pushed yet. */
  ck_assert_uint_eq(s->used, used);
  ck_assert_ptr_null(atomic_load(&s->remote));
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int bad = 0;
    bad |= tcache_drain(s) != FORK_XFREE_BLOCKS;
    bad |= (s->used != used - FORK_XFREE_BLOCKS) << 1;
    bad |= (hakmem_check_heap() != 0) << 2;
    _exit(bad);
  }
  int status = reap_child_then_thread(pid, &f.forked, t);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child: status %d (exit 1: blocks not on the remote stack, 2: used, 4: heap check)",
                status);
  /* In the parent the thread's exit flushed them. */
  ck_assert_uint_eq(tcache_drain(s), FORK_XFREE_BLOCKS);
  ck_assert_uint_eq(s->used, used - FORK_XFREE_BLOCKS);
  pthread_barrier_destroy(&f.held);
  pthread_barrier_destroy(&f.forked);
}
END_TEST

/* A fork while another thread flushes its cross-thread cache: the list
 * detached, its first blocks pushed to their slab's remote stack, the
 * rest not yet.  The child finds the cache empty, so no block is pushed
 * twice; the rest stay in use there (a leak). */
#define FORK_XFREE_PUSHED 6
struct fork_xfree_flush {
  struct fork_xfree f;
  void *rest;         /* the blocks the flush had not pushed */
};

static void *flush_half_across_fork(void *arg)
{
  struct fork_xfree_flush *ff = arg;
  hak_free(hak_malloc(FORK_XFREE_SIZE));
  for (int i = 0; i < FORK_XFREE_BLOCKS; i++)
    hak_free(ff->f.blocks[i]);
  struct slab *x = &tcache_xfree_slab[size_class_of(FORK_XFREE_SIZE)];
  void *p = x->free;
  x->free = SLAB_LIST_END;
  for (int i = 0; i < FORK_XFREE_PUSHED; i++) {
    void *next = (void *)slab_link_raw(p);
    slab_free_remote(slab_of_block(p), p);
    p = next;
  }
  ff->rest = p;
  pthread_barrier_wait(&ff->f.held);
  pthread_barrier_wait(&ff->f.forked);
  while (!slab_list_is_end(p)) {
    void *next = (void *)slab_link_raw(p);
    slab_free_remote(slab_of_block(p), p);
    p = next;
  }
  x->carved = 0;
  x->used = 0;
  return NULL;
}

START_TEST(fork_child_takes_a_cross_thread_flush_half_done)
{
  start();
  hak_config.purge_delay_ms = -1;
  void *v[FORK_XFREE_BLOCKS];
  struct slab *s = alloc_fork_xfree_blocks(v);
  unsigned used = s->used;
  struct fork_xfree_flush ff = { .f = { .blocks = v } };
  pthread_barrier_init(&ff.f.held, NULL, 2);
  pthread_barrier_init(&ff.f.forked, NULL, 2);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, flush_half_across_fork, &ff), 0);
  pthread_barrier_wait(&ff.f.held);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int bad = 0;
    bad |= tcache_drain(s) != FORK_XFREE_PUSHED;
    bad |= (s->used != used - FORK_XFREE_PUSHED) << 1;
    bad |= (hakmem_check_heap() != 0) << 2;
    static void *w[2000];
    for (int i = 0; i < 2000; i++) {
      w[i] = hak_malloc(FORK_XFREE_SIZE);
      for (void *p = ff.rest; !slab_list_is_end(p); p = (void *)slab_link_raw(p))
        bad |= (w[i] == p) << 3;
    }
    for (int i = 0; i < 2000; i++)
      hak_free(w[i]);
    bad |= (hakmem_check_heap() != 0) << 4;
    _exit(bad);
  }
  int status = reap_child_then_thread(pid, &ff.f.forked, t);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child: status %#x (exit 1: remote stack, 2: used, 4: heap check, 8: a block "
                "not pushed handed out, 16: heap check after allocating)", status);
  ck_assert_uint_eq(tcache_drain(s), FORK_XFREE_BLOCKS);
  ck_assert_uint_eq(s->used, used - FORK_XFREE_BLOCKS);
  pthread_barrier_destroy(&ff.f.held);
  pthread_barrier_destroy(&ff.f.forked);
}
END_TEST

/* A thread that fork stops between a list change and its count leaves
 * its slab's free list and counts apart in the child: a pop or a push
 * before used changes, a carve before carved does.  The thread makes that
 * state by hand, holds it across the fork, then completes it.  The
 * child's heap check accepts the orphaned slab, and the child allocates
 * and frees its class through it (a push left used a block too high and
 * the child's malloc aborted on an empty list; a carve left listed
 * blocks that free rejected). */
enum torn_kind { TORN_POP, TORN_PUSH, TORN_CARVE, TORN_DRAIN };

struct fork_torn {
  pthread_barrier_t torn, forked;
  enum torn_kind kind;
  size_t size;        /* of the blocks: a small or a medium class */
  void *live[2];      /* the thread's blocks in use at the fork */
  void *lost;         /* a block the thread held free: the child's leak */
};

static void *tear_a_slab_across_fork(void *arg)
{
  struct fork_torn *f = arg;
  void *keep = hak_malloc(f->size), *b = hak_malloc(f->size);
  struct slab *s = slab_of_block(b);
  s -= s->head_offset;
  uint32_t carved = 0;
  void *taken = NULL;
  switch (f->kind) {
  case TORN_POP:
    hak_free(b);                       /* b heads the list */
    s->free = slab_link_next(s, b);
    break;
  case TORN_PUSH:
    slab_block_set_free(b, s->free);
    s->free = b;
    break;
  case TORN_CARVE:
    carved = slab_carve(s);
    s->carved -= carved;
    break;
  case TORN_DRAIN:
    /* b freed by another thread, then the owner's drain took the stack
     * (its exchange) and stopped before linking it to its list. */
    slab_free_remote(s, b);
    taken = atomic_exchange(&s->remote, NULL);
    break;
  }
  f->live[0] = keep;
  f->live[1] = f->kind == TORN_CARVE ? b : NULL;
  f->lost = f->kind == TORN_DRAIN ? b : NULL;
  pthread_barrier_wait(&f->torn);
  pthread_barrier_wait(&f->forked);
  switch (f->kind) {
  case TORN_POP:
    s->free = b;                       /* b's link and tag are intact */
    break;
  case TORN_PUSH:
    s->used--;
    break;
  case TORN_CARVE:
    s->carved += carved;
    hak_free(b);
    break;
  case TORN_DRAIN:
    atomic_store(&s->remote, taken);
    break;
  }
  hak_free(keep);
  return NULL;
}

static void fork_with_a_torn_slab(enum torn_kind kind, size_t size)
{
  start();
  hak_config.purge_delay_ms = -1;
  struct fork_torn f = { .kind = kind, .size = size };
  pthread_barrier_init(&f.torn, NULL, 2);
  pthread_barrier_init(&f.forked, NULL, 2);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, tear_a_slab_across_fork, &f), 0);
  pthread_barrier_wait(&f.torn);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int bad = (hakmem_check_heap() != 0);
    /* The dead thread's blocks come back, and a purge pass collects the
     * orphan, to the EMPTY list, if its count says every block has. */
    hak_free(f.live[0]);
    hak_free(f.live[1]);
    bool idle;
    uint64_t activity = 0;
    shared_pool_purge(hak_now_ms(), &idle, &activity);
    void *v[2000];
    int n = size > HAK_SMALL_MAX ? 200 : 2000;
    for (int i = 0; i < n; i++) {
      v[i] = hak_malloc(size);
      bad |= (v[i] == f.lost) << 2;
    }
    for (int i = 0; i < n; i++)
      hak_free(v[i]);
    bad |= (hakmem_check_heap() != 0) << 1;
    _exit(bad);
  }
  int status = reap_child_then_thread(pid, &f.forked, t);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child: status %#x (exit 1: heap check after the fork, 2: after allocating, "
                "4: a block the dead thread held handed out)", status);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  pthread_barrier_destroy(&f.torn);
  pthread_barrier_destroy(&f.forked);
}

START_TEST(fork_child_accepts_a_pop_stopped_before_its_count)
{
  fork_with_a_torn_slab(TORN_POP, 48);
}
END_TEST

START_TEST(fork_child_accepts_a_push_stopped_before_its_count)
{
  fork_with_a_torn_slab(TORN_PUSH, 48);
}
END_TEST

START_TEST(fork_child_accepts_a_carve_stopped_before_its_count)
{
  fork_with_a_torn_slab(TORN_CARVE, 48);
}
END_TEST

/* The drain's stack taken and not yet on the list: its blocks stay in
 * use in the child (a leak), counted as such, never listed twice. */
START_TEST(fork_child_accepts_a_drain_stopped_before_its_list)
{
  fork_with_a_torn_slab(TORN_DRAIN, 48);
}
END_TEST

/* What a fork child of a fork child meets: the slabs its parent's fork
 * orphaned and nothing adopted yet (still to be recounted), and one that
 * its parent's own thread left torn.  Returns a bit per failure. */
static int grandchild_with_torn_slabs(struct fork_torn *outer, struct fork_torn *inner)
{
  int bad = hakmem_check_heap() != 0;
  hak_free(inner->live[0]);
  hak_free(inner->live[1]);
  shared_pool_orphan_freed();
  bool idle;
  uint64_t activity = 0;
  shared_pool_purge(hak_now_ms(), &idle, &activity);
  static void *v[2000];
  const struct fork_torn *f[2] = { outer, inner };
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < 2000; i++)
      v[i] = hak_malloc(f[k]->size);
    for (int i = 0; i < 2000; i++)
      hak_free(v[i]);
  }
  bad |= (hakmem_check_heap() != 0) << 1;
  return bad;
}

/* A fork of a fork child, as tests/fork_stress's grandchildren: the
 * child forks again while the orphans of the first fork wait for their
 * recount and a thread of its own holds another slab torn. */
START_TEST(fork_child_forks_again_with_slabs_torn_by_both_generations)
{
  start();
  hak_config.purge_delay_ms = -1;
  struct fork_torn outer = { .kind = TORN_PUSH, .size = 48 };
  pthread_barrier_init(&outer.torn, NULL, 2);
  pthread_barrier_init(&outer.forked, NULL, 2);
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, tear_a_slab_across_fork, &outer), 0);
  pthread_barrier_wait(&outer.torn);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    alarm(60);
    struct fork_torn inner = { .kind = TORN_POP, .size = 96 };
    pthread_barrier_init(&inner.torn, NULL, 2);
    pthread_barrier_init(&inner.forked, NULL, 2);
    pthread_t u;
    if (pthread_create(&u, NULL, tear_a_slab_across_fork, &inner) != 0)
      _exit(64);
    pthread_barrier_wait(&inner.torn);
    pid_t g = fork();
    if (g == 0)
      _exit(grandchild_with_torn_slabs(&outer, &inner));
    int status = 0;
    if (g < 0 || waitpid(g, &status, 0) != g)
      _exit(32);
    pthread_barrier_wait(&inner.forked);
    pthread_join(u, NULL);
    int bad = WIFEXITED(status) ? WEXITSTATUS(status) : 16;
    bad |= (hakmem_check_heap() != 0) << 2;
    _exit(bad);
  }
  int status = reap_child_then_thread(pid, &outer.forked, t);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child: status %#x (exit 1: grandchild's heap check after the fork, 2: after "
                "allocating, 4: child's heap check, 16: grandchild killed)", status);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  pthread_barrier_destroy(&outer.torn);
  pthread_barrier_destroy(&outer.forked);
}
END_TEST

/* The reclaim of an idle thread (tcache_reclaim_idle) takes the medium
 * slabs it emptied out of the thread's ring, owned by nobody, under the
 * thread list's lock, and gives them to the pool after it: a fork in
 * between leaves the child slabs that no list holds.  The child orphans
 * them, and its purge gives them back. */
START_TEST(fork_child_collects_the_slabs_a_reclaim_had_not_given_back)
{
  start();
  hak_config.purge_delay_ms = -1;
  /* The fork handlers wait for a second thread. */
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, allocate_in_thread, NULL), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  unsigned cls = size_class_of(40000);
  struct slab *s = shared_pool_acquire(cls, tcache_self.id);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(s->used, 0);
  atomic_store(&s->owner, HAK_NO_OWNER);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int bad = s->state != SLAB_ORPHAN;
    bad |= (hakmem_check_heap() != 0) << 1;
    shared_pool_orphan_freed();
    bool idle;
    uint64_t activity = 0;
    shared_pool_purge(hak_now_ms(), &idle, &activity);
    bad |= (s->state != SLAB_EMPTY && s->state != SLAB_UNUSED) << 2;
    bad |= (hakmem_check_heap() != 0) << 3;
    _exit(bad);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child: status %#x (exit 1: not orphaned, 2: heap check, 4: not collected, "
                "8: heap check after)", status);
  shared_pool_release_empty(s);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* A medium slab's links leave their 64 KiB slot: the recount's walk
 * checks them against the capacity too. */
START_TEST(fork_child_accepts_a_medium_carve_stopped_before_its_count)
{
  fork_with_a_torn_slab(TORN_CARVE, 40000);
}
END_TEST

/* The purge thread, with nothing left to purge, waits for the next kick
 * instead of ending: a later start could come from a free that glibc
 * makes holding the lock of its stack cache, which pthread_create takes
 * (tests/fork_stress.sh: a fork's child hung so).  The second burst of
 * purgeable memory is purged without a second start. */
START_TEST(purge_thread_waits_for_the_next_kick)
{
  start();
  hak_config.purge_delay_ms = 20;
  hak_stats_t a = stats_now();
  void **v = malloc(20000 * sizeof *v);
  for (int round = 0; round < 2; round++) {
    hak_stats_t b = stats_now();
    alloc_filled(v, 20000, 500, 1);
    for (int i = 0; i < 20000; i++)
      hak_free(v[i]);
    hak_stats_t s = stats_now();
    for (int i = 0; i < 3000 && s.purge_decommit == b.purge_decommit; i++) {
      usleep(10000);
      s = stats_now();
    }
    ck_assert_uint_gt(s.purge_decommit, b.purge_decommit);
    /* Long enough for the thread to find nothing left, many periods. */
    usleep(300000);
  }
  free(v);
  ck_assert_uint_eq(stats_now().purge_threads - a.purge_threads, 1);
}
END_TEST

/* A fork's child has no purge thread, and the stacks of the threads it
 * lacks fill glibc's stack cache, their TLS in orphaned slabs: the frees
 * glibc makes of it as the cache outgrows its limit, holding its lock,
 * each kick.  So the child's frees never start the thread; its first
 * allocation's slow path does. */
START_TEST(fork_child_starts_the_purge_thread_at_an_allocation)
{
  start();
  hak_config.purge_delay_ms = 20;
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, allocate_in_thread, NULL), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  void **v = malloc(20000 * sizeof *v);
  alloc_filled(v, 20000, 500, 1);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    alarm(30);
    hak_stats_t a = stats_now();
    for (int i = 0; i < 20000; i++)
      hak_free(v[i]);
    hak_stats_t b = stats_now();
    int bad = b.purge_threads != a.purge_threads;
    /* A class the process has not used: the refill. */
    hak_free(hak_malloc(7000));
    hak_stats_t c = stats_now();
    bad |= (c.purge_threads != b.purge_threads + 1) << 1;
    _exit(bad);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "child: status %#x (exit 1: a free started the purge thread, 2: the allocation did not)",
                status);
  for (int i = 0; i < 20000; i++)
    hak_free(v[i]);
  free(v);
}
END_TEST

/* The cases run by run_case_in_env, each in a process of its own whose
 * environment sets the mode. */
static Suite *fresh_suite(void)
{
  Suite *s = suite_create("lifecycle");
  TCase *t = tcase_create("fast_mode");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, fast_mode_never_decommits);
  suite_add_tcase(s, t);
  t = tcase_create("minimal_mode");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, minimal_mode_unmaps_at_once);
  suite_add_tcase(s, t);
  return s;
}

int main(void)
{
  if (fresh_case_requested())
    return check_run(fresh_suite());
  Suite *s = suite_create("lifecycle");
  TCase *t = tcase_create("policy");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, lean_decommits_at_once_dontneed);
  tcase_add_test(t, lean_decommit_free_reuses_and_zeroes);
  tcase_add_test(t, lean_holds_its_target);
  tcase_add_test(t, resident_free_slots_reused_first);
  tcase_add_test(t, lean_decommit_off_only_keeps);
  tcase_add_test(t, balanced_idle_program_shrinks);
  tcase_add_test(t, fast_mode);
  tcase_add_test(t, minimal_mode);
  tcase_add_test(t, prewarm_faults_a_superslab_in);
  tcase_add_test(t, bigcache_batches_decommit);
  tcase_add_test(t, bigcache_churn_is_not_idle);
  tcase_add_test(t, thread_hands_back_idle_slabs);
  tcase_add_test(t, large_realloc_reuses_cached_pages);
  tcase_add_test(t, free_superslabs_kept_by_time);
  tcase_add_test(t, busy_superslab_free_slots_purged_by_time);
  tcase_add_test(t, purge_delays_by_mode);
  tcase_add_test(t, orphaned_slabs_come_back);
  tcase_add_test(t, trim_returns_memory);
  tcase_add_test(t, purge_without_a_thread);
  tcase_add_test(t, fork_handlers_wait_for_a_second_thread);
  tcase_add_test(t, fork_handlers_registered_inside_a_fork);
  tcase_add_test(t, fork_during_registration_child_takes_over);
  tcase_add_test(t, fork_hands_back_other_threads_cross_thread_caches);
  tcase_add_test(t, fork_child_accepts_a_pop_stopped_before_its_count);
  tcase_add_test(t, fork_child_accepts_a_push_stopped_before_its_count);
  tcase_add_test(t, fork_child_accepts_a_carve_stopped_before_its_count);
  tcase_add_test(t, fork_child_accepts_a_medium_carve_stopped_before_its_count);
  tcase_add_test(t, fork_child_takes_a_cross_thread_flush_half_done);
  tcase_add_test(t, fork_child_accepts_a_drain_stopped_before_its_list);
  tcase_add_test(t, fork_child_collects_the_slabs_a_reclaim_had_not_given_back);
  tcase_add_test(t, fork_child_forks_again_with_slabs_torn_by_both_generations);
  tcase_add_test(t, purge_thread_waits_for_the_next_kick);
  tcase_add_test(t, fork_child_starts_the_purge_thread_at_an_allocation);
  suite_add_tcase(s, t);
  return check_run(s);
}
