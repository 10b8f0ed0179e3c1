/* Stress tests of libhakmem through the standard names: threads handing
 * blocks to each other, thousands of short-lived threads, fork from a
 * multithreaded program, out of memory under RLIMIT_AS.
 *
 * Every block carries a pattern derived from its address and size, checked
 * before it is freed.  Worker threads never call Check (its assertions are
 * not thread-safe); they count failures, which the test thread asserts.
 * Nothing here depends on timing: random choices come from fixed seeds,
 * and the only clock is the deadline that turns a hung child into a
 * failure. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include "test_util.h"
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

static uint64_t rng_next(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Mostly small, some medium, a few large (up to 4 MiB). */
static size_t random_size(uint64_t *rng)
{
  uint64_t r = rng_next(rng);
  unsigned k = (unsigned)(r % 1000);
  r >>= 10;
  if (k < 2)
    return (size_t)(r % (4 * MiB)) + 256 * KiB;
  if (k < 60)
    return (size_t)(r % (256 * KiB)) + 1;
  if (k < 300)
    return (size_t)(r % 4096) + 1;
  return (size_t)(r % 1040) + 1;
}

/* --- block stamps ---------------------------------------------------------
 * A block of n bytes at p holds words derived from (p, n): all of it up to
 * 8 KiB, beyond that the first and last 4 KiB and one word per 64 KiB (a
 * word per page would make page faults the bulk of the test's time). */

static uint64_t stamp_word(const void *p, size_t n, size_t i)
{
  uint64_t x = ((uint64_t)(uintptr_t)p ^ ((uint64_t)n << 20)) + (uint64_t)i * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 32);
}

/* Runs body for every stamped word index off of an n-byte block. */
#define FOR_STAMPED(n, off, body)                                             \
  do {                                                                        \
    size_t n_ = (n);                                                          \
    size_t words_ = n_ / 8;                                                   \
    for (size_t off = 0; off < words_; off++) {                               \
      if (n_ > 8 * KiB && off >= 512 && off < words_ - 512) {                 \
        /* middle of a big block: one word per 64 KiB */                      \
        if (off % 8192 != 0)                                                  \
          off = (off / 8192 + 1) * 8192;                                      \
        if (off >= words_ - 512)                                              \
          off = words_ - 512;                                                 \
      }                                                                       \
      body;                                                                   \
    }                                                                         \
  } while (0)

static void stamp(void *p, size_t n)
{
  uint64_t *w = p;
  FOR_STAMPED(n, i, w[i] = stamp_word(p, n, i));
  unsigned char *c = p;
  for (size_t i = n & ~(size_t)7; i < n; i++)
    c[i] = (unsigned char)(stamp_word(p, n, i) >> 3);
}

/* True if the block still holds its stamp. */
static bool stamp_ok(const void *p, size_t n)
{
  const uint64_t *w = p;
  bool ok = true;
  FOR_STAMPED(n, i, if (w[i] != stamp_word(p, n, i)) { ok = false; break; });
  const unsigned char *c = p;
  for (size_t i = n & ~(size_t)7; ok && i < n; i++)
    if (c[i] != (unsigned char)(stamp_word(p, n, i) >> 3))
      ok = false;
  return ok;
}

/* True if q holds the part below keep of the stamp a block of n bytes at
 * old had: what realloc(old, keep or more) must preserve. */
static bool stamp_moved_ok(const void *q, const void *old, size_t n, size_t keep)
{
  const uint64_t *w = q;
  bool ok = true;
  FOR_STAMPED(n, i, if ((i + 1) * 8 <= keep && w[i] != stamp_word(old, n, i)) {
    ok = false;
    break;
  });
  const unsigned char *c = q;
  for (size_t i = n & ~(size_t)7; ok && i < n && i < keep; i++)
    if (c[i] != (unsigned char)(stamp_word(old, n, i) >> 3))
      ok = false;
  return ok;
}

/* realloc of a stamped block: the common part survives, then the block is
 * stamped anew.  Returns false (after counting the failure) if realloc
 * returned NULL, leaving *p and *n as they were. */
static bool realloc_checked(void **p, size_t *n, size_t new_n, const char *who);

/* --- failures seen by worker threads ------------------------------------ */

static atomic_ulong n_failures;
static char first_failure[256];
static pthread_mutex_t failure_lock = PTHREAD_MUTEX_INITIALIZER;

static void failure(const char *what, const void *p, size_t n)
{
  if (atomic_fetch_add(&n_failures, 1) == 0) {
    pthread_mutex_lock(&failure_lock);
    snprintf(first_failure, sizeof first_failure, "%s (block %p, %zu bytes)", what, p, n);
    pthread_mutex_unlock(&failure_lock);
  }
}

/* Asserts that the workers saw no failure, and that hakmem never had to
 * refuse itself an OS call on a range it believed was not its own (its
 * bookkeeping of its own mappings went wrong: a leak at least). */
static void assert_no_failures(void)
{
  unsigned long n = atomic_load(&n_failures);
  pthread_mutex_lock(&failure_lock);
  ck_assert_msg(n == 0, "%lu failures; first: %s", n, first_failure);
  pthread_mutex_unlock(&failure_lock);
  ck_assert_msg(stats_now().os_refused == 0, "hakmem refused %llu of its own OS calls",
                (unsigned long long)stats_now().os_refused);
}

/* A new stamped block, or NULL after counting the failure.  The entry
 * point varies with the size: mostly malloc, some calloc (checked zero),
 * aligned_alloc and posix_memalign. */
static void *new_block(size_t n)
{
  void *p = NULL;
  size_t align = n <= 8 ? 8 : 16;
  switch (n % 8) {
  case 1:
    p = calloc(1, opaque(n));
    for (size_t i = 0; p && i < n && i < 512; i++)
      if (((unsigned char *)p)[i] != 0) {
        failure("calloc block not zeroed", p, n);
        break;
      }
    break;
  case 2:
    align = 64;
    p = aligned_alloc(align, opaque(n));
    break;
  case 3:
    align = 256;
    if (posix_memalign(&p, align, opaque(n)) != 0)
      p = NULL;
    break;
  default:
    p = malloc(opaque(n));
    break;
  }
  if (!p) {
    failure("allocation returned NULL", p, n);
    return NULL;
  }
  if ((uintptr_t)p % align != 0)
    failure("misaligned block", p, n);
  if (malloc_usable_size(p) < n)
    failure("usable size below the request", p, n);
  stamp(p, n);
  return p;
}

static bool realloc_checked(void **p, size_t *n, size_t new_n, const char *who)
{
  if (!stamp_ok(*p, *n))
    failure(who, *p, *n);
  void *old = *p;
  void *q = realloc(old, opaque(new_n));
  if (!q) {
    failure("realloc returned NULL", old, new_n);
    return false;
  }
  if (!stamp_moved_ok(q, old, *n, new_n))
    failure("realloc did not keep the contents", q, new_n);
  if (malloc_usable_size(q) < new_n)
    failure("usable size below the request after realloc", q, new_n);
  stamp(q, new_n);
  *p = q;
  *n = new_n;
  return true;
}

static void check_and_free(void *p, size_t n, const char *who)
{
  if (!stamp_ok(p, n))
    failure(who, p, n);
  free(p);
}

/* --- 8 threads, blocks handed on through queues ------------------------- */

enum { NTHREADS = 8, QCAP = 1024, OPS = 150000, LOCAL_SLOTS = 256 };

struct item {
  void *p;
  size_t n;
};

struct queue {
  pthread_mutex_t lock;
  struct item buf[QCAP];
  unsigned head, count;
};

static struct queue queues[NTHREADS];

static bool queue_push(struct queue *q, struct item it)
{
  bool ok = false;
  pthread_mutex_lock(&q->lock);
  if (q->count < QCAP) {
    q->buf[(q->head + q->count++) % QCAP] = it;
    ok = true;
  }
  pthread_mutex_unlock(&q->lock);
  return ok;
}

static bool queue_pop(struct queue *q, struct item *it)
{
  bool ok = false;
  pthread_mutex_lock(&q->lock);
  if (q->count > 0) {
    *it = q->buf[q->head];
    q->head = (q->head + 1) % QCAP;
    q->count--;
    ok = true;
  }
  pthread_mutex_unlock(&q->lock);
  return ok;
}

/* Thread i allocates for thread i+1 (and for itself) and frees what
 * thread i-1 made. */
static void *handoff_worker(void *arg)
{
  unsigned me = (unsigned)(uintptr_t)arg;
  uint64_t rng = 0x9E3779B97F4A7C15ull * (me + 1);
  struct item local[LOCAL_SLOTS] = { { 0 } };
  for (int op = 0; op < OPS; op++) {
    unsigned r = (unsigned)(rng_next(&rng) % 10);
    if (r < 4) {
      struct item it = { NULL, random_size(&rng) };
      if (!(it.p = new_block(it.n)))
        continue;
      if (!queue_push(&queues[(me + 1) % NTHREADS], it))
        check_and_free(it.p, it.n, "corrupted before a local free");
    } else if (r < 7) {
      struct item it;
      if (!queue_pop(&queues[me], &it))
        continue;
      /* sometimes a realloc of the block another thread allocated */
      if (r == 6 && !realloc_checked(&it.p, &it.n, random_size(&rng),
                                     "corrupted while passed between threads"))
        continue;
      check_and_free(it.p, it.n, "corrupted while passed between threads");
    } else {
      struct item *s = &local[rng_next(&rng) % LOCAL_SLOTS];
      if (s->p && r == 9) {
        realloc_checked(&s->p, &s->n, random_size(&rng), "corrupted in a thread's own slot");
      } else if (s->p) {
        check_and_free(s->p, s->n, "corrupted in a thread's own slot");
        s->p = NULL;
      } else {
        s->n = random_size(&rng);
        s->p = new_block(s->n);
      }
    }
  }
  for (int i = 0; i < LOCAL_SLOTS; i++)
    if (local[i].p)
      check_and_free(local[i].p, local[i].n, "corrupted in a thread's own slot");
  return NULL;
}

/* Runs in a fresh process (threads_hand_off_blocks_case below) with a
 * purge delay of ten minutes: the SuperSlab counts it compares must not
 * depend on how long the runs take, so no SuperSlab may be unmapped
 * (with the default delay one free for ten delays, 10 s, would be).  The
 * purge thread still runs: it collects the exited threads' slabs (and the
 * next threads adopt them).  It once unmapped SuperSlabs that had just
 * emptied, when a thread stamped one after the pass had read its clock:
 * the first run then left 90 of its 142 and the second needed 143. */
START_TEST(threads_hand_off_blocks)
{
  const char *delay = getenv("HAKMEM_PURGE_DELAY_MS");
  ck_assert(delay && strcmp(delay, "600000") == 0);
  hak_stats_t before = stats_now();
  pthread_t t[NTHREADS];
  for (unsigned i = 0; i < NTHREADS; i++)
    pthread_mutex_init(&queues[i].lock, NULL);
  for (unsigned i = 0; i < NTHREADS; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, handoff_worker, (void *)(uintptr_t)i), 0);
  for (unsigned i = 0; i < NTHREADS; i++)
    ck_assert_int_eq(pthread_join(t[i], NULL), 0);
  /* What is left in the queues was made by threads that have exited. */
  struct item it;
  for (unsigned i = 0; i < NTHREADS; i++)
    while (queue_pop(&queues[i], &it))
      check_and_free(it.p, it.n, "corrupted in a queue after its threads exited");
  assert_no_failures();
  hak_stats_t after = stats_now();
  ck_assert_msg(after.remote_frees > before.remote_frees, "no cross-thread free counted");
  ck_assert_uint_ge(after.malloc_calls, before.malloc_calls + NTHREADS * OPS / 4);
  /* All blocks are free: the memory must be reusable, not stranded with
   * the exited threads.  The second run of the same workload (whose live
   * memory the queue and slot counts bound) must fit mostly in what the
   * first one left: stranded memory would double the SuperSlab count. */
  for (unsigned i = 0; i < NTHREADS; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, handoff_worker, (void *)(uintptr_t)i), 0);
  for (unsigned i = 0; i < NTHREADS; i++)
    ck_assert_int_eq(pthread_join(t[i], NULL), 0);
  for (unsigned i = 0; i < NTHREADS; i++)
    while (queue_pop(&queues[i], &it))
      check_and_free(it.p, it.n, "corrupted in a queue after its threads exited");
  assert_no_failures();
  hak_stats_t again = stats_now();
  ck_assert_msg(again.superslabs_unmapped == before.superslabs_unmapped,
                "%llu SuperSlabs unmapped with a purge delay of ten minutes",
                (unsigned long long)(again.superslabs_unmapped - before.superslabs_unmapped));
  ck_assert_msg(again.superslabs_live <= after.superslabs_live + after.superslabs_live / 2 + 4,
                "SuperSlabs live: %llu after the first run, %llu after the second",
                (unsigned long long)after.superslabs_live,
                (unsigned long long)again.superslabs_live);
}
END_TEST

START_TEST(threads_hand_off_blocks_case)
{
  char *env[] = { "HAKMEM_PURGE_DELAY_MS=600000", NULL };
  run_case_in_env("hand_off", env);
}
END_TEST

/* --- thread churn --------------------------------------------------------- */

enum { CHURN_THREADS = 4000, WAVE = 8, CHURN_BLOCKS = 64 };

struct churn_slot {
  uint64_t seed;
  void *left[CHURN_BLOCKS / 2];  /* freed by the main thread */
  size_t left_n[CHURN_BLOCKS / 2];
  void *late;                    /* allocated by a thread-specific destructor */
  size_t late_n;
  int dtor_rounds;
};

static struct churn_slot churn_slots[WAVE];
static pthread_key_t churn_key;

/* Runs at thread exit, twice (it re-arms itself once), so that its second
 * run comes after every other destructor of the thread, hakmem's own
 * thread-exit cleanup included: allocation must work then too. */
static void churn_destructor(void *arg)
{
  struct churn_slot *s = arg;
  void *p = new_block(100 + (size_t)s->dtor_rounds * 1000);
  if (p)
    check_and_free(p, 100 + (size_t)s->dtor_rounds * 1000, "corrupted in a destructor");
  if (s->dtor_rounds++ == 0) {
    pthread_setspecific(churn_key, s);
    return;
  }
  s->late_n = 333;
  s->late = new_block(s->late_n);
}

static void *churn_worker(void *arg)
{
  struct churn_slot *s = arg;
  uint64_t rng = s->seed;
  void *mine[CHURN_BLOCKS];
  size_t n[CHURN_BLOCKS];
  s->dtor_rounds = 0;
  pthread_setspecific(churn_key, s);
  for (int i = 0; i < CHURN_BLOCKS; i++) {
    /* one thread in 16 also makes a large block */
    n[i] = (i == 0 && s->seed % 16 == 0) ? 3 * MiB : random_size(&rng) % (64 * KiB) + 1;
    mine[i] = new_block(n[i]);
  }
  for (int i = 0; i < CHURN_BLOCKS; i++) {
    if (i % 2) {
      if (mine[i])
        check_and_free(mine[i], n[i], "corrupted in a short-lived thread");
    } else {
      s->left[i / 2] = mine[i];
      s->left_n[i / 2] = n[i];
    }
  }
  return NULL;
}

START_TEST(thread_churn)
{
  ck_assert_int_eq(pthread_key_create(&churn_key, churn_destructor), 0);
  hak_stats_t warm = { 0 };
  for (int wave = 0; wave < CHURN_THREADS / WAVE; wave++) {
    pthread_t t[WAVE];
    for (int i = 0; i < WAVE; i++) {
      memset(&churn_slots[i], 0, sizeof churn_slots[i]);
      churn_slots[i].seed = (uint64_t)(wave * WAVE + i) * 2654435761u + 1;
      ck_assert_int_eq(pthread_create(&t[i], NULL, churn_worker, &churn_slots[i]), 0);
    }
    for (int i = 0; i < WAVE; i++)
      ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < WAVE; i++) {
      struct churn_slot *s = &churn_slots[i];
      ck_assert_msg(s->dtor_rounds == 2, "destructor ran %d times", s->dtor_rounds);
      for (int j = 0; j < CHURN_BLOCKS / 2; j++)
        if (s->left[j])
          check_and_free(s->left[j], s->left_n[j], "corrupted after its thread exited");
      if (s->late)
        check_and_free(s->late, s->late_n, "corrupted after its destructor ran");
    }
    if (wave == 20)
      warm = stats_now();
  }
  assert_no_failures();
  /* 4000 threads came and went, each leaving blocks behind that were then
   * freed: the memory must have been reused, not stranded per thread.  One
   * stranded slab (64 KiB) per thread alone would be 250 MiB. */
  hak_stats_t end = stats_now();
  ck_assert_msg(end.mapped_bytes <= warm.mapped_bytes + 64 * MiB,
                "mapped bytes grew from %llu (after 168 threads) to %llu (after %d threads)",
                (unsigned long long)warm.mapped_bytes, (unsigned long long)end.mapped_bytes,
                CHURN_THREADS);
  pthread_key_delete(churn_key);
}
END_TEST

/* --- fork from a multithreaded program ----------------------------------- */

enum { BUSY_THREADS = 4, FORKS = 16, PUBLISHED = 64 };

static atomic_bool busy_stop;
/* Stamped blocks any thread may take (exchange) and free; fork copies them
 * into the child, which frees them there. */
static _Atomic(void *) published[PUBLISHED];

/* A published block carries its size in its second word (the stamp of that
 * word is restored for the check). */
static void *publishable(size_t n)
{
  if (n < 16)
    n = 16;
  void *p = new_block(n);
  if (p)
    ((size_t *)p)[1] = n;
  return p;
}

static bool published_ok(void *p)
{
  size_t n = ((size_t *)p)[1];
  ((size_t *)p)[1] = (size_t)stamp_word(p, n, 1);
  bool ok = stamp_ok(p, n);
  ((size_t *)p)[1] = n;
  return ok;
}

static void *busy_worker(void *arg)
{
  uint64_t rng = 0xABCDEFull + (uintptr_t)arg;
  void *mine[32] = { 0 };
  size_t n[32];
  while (!atomic_load_explicit(&busy_stop, memory_order_relaxed)) {
    unsigned i = (unsigned)(rng_next(&rng) % 32);
    if (mine[i])
      check_and_free(mine[i], n[i], "corrupted in a busy thread");
    n[i] = random_size(&rng);
    mine[i] = new_block(n[i]);
    if (rng_next(&rng) % 8 == 0) {
      void *p = publishable(random_size(&rng));
      void *old = atomic_exchange(&published[rng_next(&rng) % PUBLISHED], p);
      if (old) {
        if (!published_ok(old))
          failure("published block corrupted", old, 0);
        free(old);
      }
    }
  }
  for (int i = 0; i < 32; i++)
    if (mine[i])
      check_and_free(mine[i], n[i], "corrupted in a busy thread");
  return NULL;
}

static void *child_thread(void *arg)
{
  uint64_t rng = (uintptr_t)arg;
  for (int i = 0; i < 2000; i++) {
    size_t n = random_size(&rng);
    void *p = new_block(n);
    if (p)
      check_and_free(p, n, "corrupted in the child's thread");
  }
  return NULL;
}

/* The child of a fork: frees what the parent's threads published, works in
 * several sizes, in two threads.  Exit status 0 if all went well. */
static void fork_child(int round)
{
  static const size_t sizes[] = { 16, 100, 1000, 5000, 70000, 300000, 3 * MiB };
  alarm(60); /* a deadlock kills the child; the parent reports it */
  for (int i = 0; i < PUBLISHED; i++) {
    void *old = atomic_exchange(&published[i], NULL);
    if (old) {
      if (!published_ok(old))
        failure("published block corrupted", old, 0);
      free(old);
    }
  }
  for (int rep = 0; rep < 4; rep++) {
    void *v[sizeof sizes / sizeof sizes[0]][8];
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      for (int j = 0; j < 8; j++)
        v[s][j] = new_block(sizes[s] + (size_t)j);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
      for (int j = 0; j < 8; j++)
        if (v[s][j])
          check_and_free(v[s][j], sizes[s] + (size_t)j, "corrupted in the child");
  }
  pthread_t t;
  if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(round + 1)) != 0) {
    fprintf(stderr, "child: pthread_create failed\n");
    _exit(3);
  }
  child_thread((void *)(uintptr_t)(round + 1000));
  pthread_join(t, NULL);
  if (atomic_load(&n_failures)) {
    fprintf(stderr, "child: %s\n", first_failure);
    _exit(2);
  }
  _exit(0);
}

START_TEST(fork_while_threads_allocate)
{
  pthread_t t[BUSY_THREADS];
  atomic_store(&busy_stop, false);
  for (int i = 0; i < BUSY_THREADS; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, busy_worker, (void *)(uintptr_t)i), 0);
  uint64_t rng = 5;
  for (int round = 0; round < FORKS; round++) {
    /* The parent keeps working between forks, so every fork catches the
     * threads somewhere in the allocator. */
    for (int i = 0; i < 3000; i++) {
      size_t n = random_size(&rng);
      void *p = new_block(n);
      if (p)
        check_and_free(p, n, "corrupted in the forking thread");
    }
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
      fork_child(round);
    int status = wait_deadline(pid, 90);
    ck_assert_msg(status != -1, "fork %d: the child hung (killed after 90 s)", round);
    ck_assert_msg(status >= 0, "fork %d: waitpid failed", round);
    ck_assert_msg(!WIFSIGNALED(status), "fork %d: the child died of signal %d%s", round,
                  WTERMSIG(status), WTERMSIG(status) == SIGALRM ? " (hung: alarm)" : "");
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "fork %d: the child exited with status %d", round, WEXITSTATUS(status));
  }
  atomic_store(&busy_stop, true);
  for (int i = 0; i < BUSY_THREADS; i++)
    ck_assert_int_eq(pthread_join(t[i], NULL), 0);
  for (int i = 0; i < PUBLISHED; i++) {
    void *old = atomic_exchange(&published[i], NULL);
    if (old) {
      if (!published_ok(old))
        failure("published block corrupted", old, 0);
      free(old);
    }
  }
  assert_no_failures();
}
END_TEST

/* --- out of memory ------------------------------------------------------- */

/* The child's checks: exits with the line number of the first that fails. */
#define CHILD_CHECK(cond, ...)                                      \
  do {                                                              \
    if (!(cond)) {                                                  \
      fprintf(stderr, "oom child, line %d: ", __LINE__);            \
      fprintf(stderr, __VA_ARGS__);                                 \
      fprintf(stderr, " (errno %d)\n", errno);                      \
      _exit(1);                                                     \
    }                                                               \
  } while (0)

static size_t vm_size_now(void)
{
  unsigned long pages = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f || fscanf(f, "%lu", &pages) != 1)
    pages = 0;
  if (f)
    fclose(f);
  return pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* Allocates blocks of n bytes until malloc fails, linking each block to
 * the previous through its first word; returns the last, counts in *count. */
static void **fill_memory(size_t n, size_t *count, size_t limit)
{
  void **head = NULL;
  *count = 0;
  for (;;) {
    errno = 0;
    void **p = malloc(opaque(n));
    if (!p) {
      CHILD_CHECK(errno == ENOMEM, "malloc(%zu) failed after %zu blocks without ENOMEM", n,
                  *count);
      return head;
    }
    p[0] = head;
    ((char *)p)[n - 1] = 1;
    head = p;
    CHILD_CHECK(++*count < limit, "malloc(%zu) never failed (%zu blocks)", n, *count);
  }
}

static void free_chain(void **head)
{
  while (head) {
    void **next = head[0];
    free(head);
    head = next;
  }
}

/* Address space allowed beyond what the child uses when it sets the limit. */
#define OOM_MARGIN (192 * MiB)

static void oom_child(void)
{
  alarm(100);
  /* hakmem initialised, a little of everything in use */
  void *warm[4] = { malloc(opaque(64)), malloc(opaque(100000)), malloc(opaque(8 * MiB)),
                    malloc(opaque(500)) };
  for (int i = 0; i < 4; i++)
    CHILD_CHECK(warm[i] != NULL, "warm-up malloc failed");
  free(warm[2]);
  struct rlimit rl;
  size_t vm = vm_size_now();
  CHILD_CHECK(vm > 0, "cannot read /proc/self/statm");
  rl.rlim_cur = rl.rlim_max = vm + OOM_MARGIN;
  CHILD_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit");
  char *small = malloc(opaque(200));
  CHILD_CHECK(small != NULL, "malloc(200) under the limit");
  memset(small, 0x5A, 200);

  /* Single requests beyond the limit. */
  void *p;
  errno = 0;
  p = malloc(opaque(1024 * MiB));
  CHILD_CHECK(p == NULL && errno == ENOMEM, "malloc(1 GiB) = %p", p);
  errno = 0;
  p = calloc(opaque(1024), opaque(MiB));
  CHILD_CHECK(p == NULL && errno == ENOMEM, "calloc(1024, 1 MiB) = %p", p);
  errno = 0;
  p = aligned_alloc(opaque(2 * MiB), opaque(512 * MiB));
  CHILD_CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(2 MiB, 512 MiB) = %p", p);
  p = &p;
  int r = posix_memalign(&p, opaque(4096), opaque(512 * MiB));
  CHILD_CHECK(r == ENOMEM, "posix_memalign(4096, 512 MiB) returned %d", r);
  errno = 0;
  p = realloc(small, opaque(512 * MiB));
  CHILD_CHECK(p == NULL && errno == ENOMEM, "realloc(200 B -> 512 MiB) = %p", p);
  for (int i = 0; i < 200; i++)
    CHILD_CHECK(small[i] == 0x5A, "realloc failure damaged the block");

  /* Many large blocks, then many small ones, then medium ones, then
   * large ones again, each until refused and then freed.  Each round must
   * get at least half of the margin: memory freed by the round before
   * (cached large mappings, empty SuperSlabs) has to be given back or
   * reused when the system refuses more, not held while malloc fails. */
  size_t n;
  hak_stats_t st;
  void **chain = fill_memory(8 * MiB, &n, 1000);
  CHILD_CHECK(n * 8 * MiB >= OOM_MARGIN / 2, "only %zu blocks of 8 MiB in a %zu MiB margin", n,
              OOM_MARGIN >> 20);
  free_chain(chain);

  chain = fill_memory(64, &n, (size_t)64 << 20);
  st = stats_now();
  CHILD_CHECK(n * 64 >= OOM_MARGIN / 2,
              "after the large blocks were freed, only %zu MiB of 64-byte blocks fit in a %zu MiB "
              "margin; when malloc failed, BigCache held %llu MiB and hakmem had %llu MiB mapped",
              (n * 64) >> 20, OOM_MARGIN >> 20, (unsigned long long)st.bigcache_bytes >> 20,
              (unsigned long long)st.mapped_bytes >> 20);
  /* While memory is exhausted, the existing blocks still work. */
  small[0] = 1;
  free(small);
  free_chain(chain);

  /* Everything freed: each kind of allocation works again. */
  errno = 0;
  p = malloc(opaque(64));
  CHILD_CHECK(p != NULL, "malloc(64) after freeing everything");
  free(p);
  p = malloc(opaque(100000));
  CHILD_CHECK(p != NULL, "malloc(100000) after freeing everything");
  memset(p, 1, 100000);
  free(p);
  p = malloc(opaque(8 * MiB));
  CHILD_CHECK(p != NULL, "malloc(8 MiB) after freeing everything");
  memset(p, 1, 8 * MiB);
  free(p);

  chain = fill_memory(20000, &n, 1000000);
  st = stats_now();
  CHILD_CHECK(n * 20000 >= OOM_MARGIN / 2,
              "after the small blocks were freed, only %zu MiB of 20000-byte blocks fit in a %zu "
              "MiB margin; when malloc failed, BigCache held %llu MiB, %llu of %llu SuperSlabs "
              "were empty", (n * 20000) >> 20, OOM_MARGIN >> 20,
              (unsigned long long)st.bigcache_bytes >> 20,
              (unsigned long long)st.superslabs_empty, (unsigned long long)st.superslabs_live);
  free_chain(chain);

  chain = fill_memory(8 * MiB, &n, 1000);
  st = stats_now();
  CHILD_CHECK(n * 8 * MiB >= OOM_MARGIN / 2,
              "after the medium blocks were freed, only %zu blocks of 8 MiB fit in a %zu MiB "
              "margin; when malloc failed, %llu of %llu SuperSlabs were empty", n,
              OOM_MARGIN >> 20, (unsigned long long)st.superslabs_empty,
              (unsigned long long)st.superslabs_live);
  free_chain(chain);
  for (int i = 0; i < 4; i++)
    if (i != 2)
      free(warm[i]);
  _exit(0);
}

START_TEST(out_of_memory_under_rlimit)
{
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0)
    oom_child();
  int status = wait_deadline(pid, 110);
  ck_assert_msg(status != -1, "the out-of-memory child hung");
  ck_assert_msg(status >= 0, "waitpid failed");
  ck_assert_msg(!WIFSIGNALED(status), "the out-of-memory child died of signal %d",
                WTERMSIG(status));
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "the out-of-memory child failed (see its message above)");
}
END_TEST

int main(void)
{
  if (fresh_case_requested()) {
    /* The cases run by run_case_in_env. */
    Suite *s = suite_create("stress");
    TCase *t = tcase_create("hand_off");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, threads_hand_off_blocks);
    suite_add_tcase(s, t);
    return check_run(s);
  }
  Suite *s = suite_create("stress");
  TCase *t = tcase_create("stress");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, threads_hand_off_blocks_case);
  tcase_add_test(t, thread_churn);
  tcase_add_test(t, fork_while_threads_allocate);
  tcase_add_test(t, out_of_memory_under_rlimit);
  suite_add_tcase(s, t);
  return check_run(s);
}
