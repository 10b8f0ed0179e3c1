/* Differential heap fuzzer: random sequences of every allocation entry
 * point, in several threads, checked against a shadow model of the heap.
 *
 *   fuzz_heap SEED OPS [THREADS [DEADLINE_S [MEMLIMIT]]]
 *
 * Each thread owns a table of slots; a slot holds one live block or none,
 * described by a shadow record: requested size, alignment, usable size
 * and a pattern id (the block's bytes are a function of (id, offset)).
 * Threads hand blocks to each other through a shared exchange array (a
 * swap under a mutex), so blocks are freed and reallocated by threads
 * other than the one that allocated them; threads exit and new ones carry
 * on with their slots every epoch, so slabs are orphaned and adopted.
 *
 * Every observation of the allocator is compared with the model:
 *  - a new block is not NULL, is aligned (16, or 8 for <= 8 bytes, or the
 *    requested alignment), has a usable size >= the request, does not
 *    overlap any other live block (a global interval tree: records leave
 *    it before free and enter it after malloc), and calloc's is zero;
 *  - a live block holds its pattern whenever its holder looks at it: before
 *    free, before and after realloc (the kept prefix), on usable-size
 *    queries, on receipt from another thread, at the end; whole for blocks
 *    up to 256 KiB, else sampled (first and last 4 KiB, four pages chosen
 *    by its id);
 *  - malloc_usable_size of a block does not change while it lives;
 *  - errno is unchanged by every call that succeeds (free included; glibc
 *    is let off for the allocating calls, see strict_errno);
 *  - impossible requests give NULL and ENOMEM and leave the block intact;
 *  - a realloc that shrinks (to at most the usable size) never fails.
 * Every round (ROUND_OPS operations per thread) the threads stop at a
 * barrier and each calls hakmem_check_heap() (which walks the caller's own
 * slabs and the shared ones), which must return 0; the main thread calls
 * it after every epoch and at the end, before and after freeing every
 * block.
 *
 * Built twice (tests/local.mk): tests/fuzz_heap links libhakmem, and
 * tests/fuzz_heap_glibc (-DFUZZ_GLIBC) is the same source on glibc's
 * malloc, which shows that the harness itself is right.  Sizes run from 0
 * to 64 MiB (log-uniform, mostly small), alignments up to 2 MiB.
 *
 * With THREADS = 1 a seed replays exactly; with more threads the exchange
 * depends on scheduling.  Any mismatch prints one "fuzz_heap: FAIL" line
 * (seed, thread, operation, block) and aborts; a hang hits the deadline
 * (alarm) and exits with status 2 after a "fuzz_heap: FAIL ... deadline"
 * line.  Success prints one "fuzz_heap: ok" line with the counts.
 *
 * MEMLIMIT runs the same operations where the kernel refuses memory
 * (RLIMIT_AS), with a limit chosen by the seed: from nothing to 512 MiB
 * above what the process has mapped when it is set.
 *  - none (the default): no limit; every allocation must succeed.
 *  - fixed: one limit from the first round to the end.
 *  - cycle: rounds are shorter and alternate: a limited round (a new limit
 *    each time), then an open one (the limit the process started with), in
 *    which every allocation must succeed again: running out of memory
 *    leaves no lasting trace.
 *  - maps: no memory limit, but the process starts MAPS_HEADROOM entries
 *    short of the kernel's limit on its mappings (vm.max_map_count): the
 *    fuzzer takes the rest with pages of its own, of alternating
 *    protection.  Every allocation must still succeed, as with glibc.
 * While a limit is set, an allocating call may fail, but only as the rules
 * say: NULL with errno ENOMEM (posix_memalign: ENOMEM returned, *memptr and
 * errno unchanged), and a failed realloc leaves its block allocated, whole
 * and of the same usable size.  Every other check stays.  The fuzzer's own
 * needs (the shadow tree's nodes, the threads' stacks) lift the limit for
 * a moment.  Each limited round starts with every thread idle for 20 ms,
 * which lets the purge thread take back what they hold while allocations
 * are refused. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <search.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "proc_maps.h"

#ifndef FUZZ_GLIBC
#include "hakmem.h"
#define ALLOCATOR "hakmem"
#else
#define ALLOCATOR "glibc"
#endif

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

#define SLOTS 1024            /* per thread */
#define XCHG 64               /* exchange slots */
#define MAX_THREADS 16
#define ROUND_OPS 20000       /* per thread, between two heap checks */
#define CYCLE_ROUND_OPS 2500  /* the same with MEMLIMIT cycle */
#define THREAD_STACK (256 * KiB) /* little address space under a limit */
#define ROUNDS_PER_EPOCH 4    /* then the threads exit and new ones start */
#define FULL_LIMIT (256 * KiB) /* blocks up to this are checked whole */
#define BIG_BUDGET (768 * MiB) /* requested bytes in live blocks >= 1 MiB */
#define ERRNO_SENTINEL 4242
#define MAPS_HEADROOM 30      /* mappings left free with MEMLIMIT maps */

/* --- the heap check under test ------------------------------------------ */

/* hakmem_check_heap() walks the heap; 0 when sound.  glibc has no such
 * function: the glibc build checks only what the model sees. */
static int check_heap(void)
{
#ifdef FUZZ_GLIBC
  return 0;
#else
  return hakmem_check_heap();
#endif
}

/* --- reporting ------------------------------------------------------------ */

static uint64_t g_seed;
static unsigned g_threads;
static _Thread_local int t_index = -1;
static _Thread_local uint64_t t_op;

static void say(const char *s)
{
  size_t n = strlen(s);
  while (n) {
    ssize_t w = write(2, s, n);
    if (w <= 0)
      return;
    s += w;
    n -= (size_t)w;
  }
}

static volatile sig_atomic_t failing;

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
  char buf[1024];
  failing = 1;
  int n = snprintf(buf, sizeof buf, "fuzz_heap: FAIL (" ALLOCATOR ", seed %" PRIu64
                   ", threads %u, thread %d, op %" PRIu64 "): ",
                   g_seed, g_threads, t_index, t_op);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof buf)
    vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
  va_end(ap);
  say(buf);
  say("\n");
  abort();
}

/* A crash or an abort inside the allocator (its own check, or a bug):
 * say where the fuzzer was, then die of the same signal. */
static void on_fatal(int sig)
{
  if (!failing) {
    char buf[300];
    snprintf(buf, sizeof buf,
             "fuzz_heap: FAIL (" ALLOCATOR ", seed %" PRIu64 ", threads %u, thread %d, op %" PRIu64
             "): %s\n", g_seed, g_threads, t_index, t_op,
             sig == SIGABRT ? "aborted (see the line above)" : "crashed");
    say(buf);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void on_alarm(int sig)
{
  (void)sig;
  char buf[200];
  snprintf(buf, sizeof buf,
           "fuzz_heap: FAIL (" ALLOCATOR ", seed %" PRIu64 ", threads %u): deadline exceeded, "
           "the run hung or crawled\n", g_seed, g_threads);
  say(buf);
  _exit(2);
}

/* --- the memory limit ------------------------------------------------------ */

static size_t below(uint64_t *s, size_t n);

enum limit_mode { LIMIT_NONE, LIMIT_FIXED, LIMIT_CYCLE, LIMIT_MAPS };

static enum limit_mode g_limit_mode;
static struct rlimit g_rlimit_open;          /* as the process started */
static rlim_t g_rlimit_cur;                  /* in force (RLIM_INFINITY: none) */
static _Atomic bool g_limited;               /* an allocation may fail */
static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_limit_rng;
static _Atomic uint64_t limits_set;

/* Address space mapped now, from /proc/self/statm, without stdio (whose
 * buffer would come from the allocator under test). */
static size_t vm_size_now(void)
{
  char buf[64];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  return (size_t)strtoull(buf, NULL, 10) * (size_t)sysconf(_SC_PAGESIZE);
}

static void set_as_limit_locked(rlim_t cur)
{
  struct rlimit rl = { cur, g_rlimit_open.rlim_max };
  if (setrlimit(RLIMIT_AS, &rl) != 0)
    fail("setrlimit(RLIMIT_AS, %llu): errno %d", (unsigned long long)cur, errno);
}

/* Sets a new limit: what is mapped now plus a headroom chosen by the seed,
 * log-uniform from 1 MiB to 512 MiB, and one time in eight none at all. */
static void limit_lower(void)
{
  pthread_mutex_lock(&limit_lock);
  uint64_t *s = &g_limit_rng;
  size_t head = 0;
  if (below(s, 8) != 0) {
    size_t b = MiB << below(s, 9);
    head = b + below(s, b);
  }
  g_rlimit_cur = (rlim_t)(vm_size_now() + head);
  set_as_limit_locked(g_rlimit_cur);
  atomic_store(&g_limited, true);
  atomic_fetch_add(&limits_set, 1);
  pthread_mutex_unlock(&limit_lock);
}

/* Back to the limit the process started with: every call must succeed. */
static void limit_lift(void)
{
  pthread_mutex_lock(&limit_lock);
  atomic_store(&g_limited, false);
  g_rlimit_cur = g_rlimit_open.rlim_cur;
  set_as_limit_locked(g_rlimit_cur);
  pthread_mutex_unlock(&limit_lock);
}

/* The fuzzer's own allocation (a tree node, a thread) failed under the
 * limit: lifts it, retries, and puts it back. */
#define WITHOUT_LIMIT(stmt)                                     \
  do {                                                          \
    pthread_mutex_lock(&limit_lock);                            \
    set_as_limit_locked(g_rlimit_open.rlim_cur);                \
    stmt;                                                       \
    set_as_limit_locked(g_rlimit_cur);                          \
    pthread_mutex_unlock(&limit_lock);                          \
  } while (0)

/* The process's mappings; fails if they cannot be counted. */
static long map_count(void)
{
  long n = proc_maps_lines();
  if (n < 0)
    fail("/proc/self/maps: errno %d", errno);
  return n;
}

/* MEMLIMIT maps: takes all but MAPS_HEADROOM of the mappings the kernel
 * allows, with one reservation every other page of which is PROT_NONE
 * (each such page adds two entries that cannot merge). */
static void consume_map_count(void)
{
  char text[32] = { 0 };
  int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || read(fd, text, sizeof text - 1) <= 0)
    fail("/proc/sys/vm/max_map_count: errno %d", errno);
  close(fd);
  long max = strtol(text, NULL, 10), splits = (max - MAPS_HEADROOM - map_count()) / 2;
  if (splits <= 0)
    fail("vm.max_map_count %ld leaves no room to consume", max);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *r = mmap(NULL, (size_t)(2 * splits + 1) * page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED)
    fail("mmap for the map count: errno %d", errno);
  for (long i = 0; i < splits; i++)
    if (mprotect(r + (2 * i + 1) * page, page, PROT_NONE) != 0)
      fail("mprotect %ld of %ld for the map count: errno %d", i, splits, errno);
}

/* --- randomness and patterns --------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static uint64_t rnd(uint64_t *s)
{
  *s += 0x9E3779B97F4A7C15ull;
  return mix64(*s);
}

static size_t below(uint64_t *s, size_t n)
{
  return n ? (size_t)(rnd(s) % n) : 0;
}

static uint64_t pat_word(uint64_t id, size_t w)
{
  return mix64(id * 0xD6E8FEB86659FD93ull + w);
}

static unsigned char pat_byte(uint64_t id, size_t i)
{
  return (unsigned char)(pat_word(id, i / 8) >> (8 * (i % 8)));
}

enum visit { V_WRITE, V_CHECK, V_ZERO };

/* Applies v to bytes [a, b) of block c; returns the first bad offset or
 * SIZE_MAX. */
static size_t range(unsigned char *c, size_t a, size_t b, uint64_t id, enum visit v)
{
  size_t i = a;
  for (; i < b && (i % 8 || b - i < 8); i++) {
    unsigned char want = v == V_ZERO ? 0 : pat_byte(id, i);
    if (v == V_WRITE)
      c[i] = want;
    else if (c[i] != want)
      return i;
  }
  for (; i + 8 <= b; i += 8) {
    uint64_t want = v == V_ZERO ? 0 : pat_word(id, i / 8), got;
    if (v == V_WRITE) {
      memcpy(c + i, &want, 8);
    } else {
      memcpy(&got, c + i, 8);
      if (got != want)
        for (size_t j = i;; j++)
          if (c[j] != (v == V_ZERO ? 0 : pat_byte(id, j)))
            return j;
    }
  }
  for (; i < b; i++) {
    unsigned char want = v == V_ZERO ? 0 : pat_byte(id, i);
    if (v == V_WRITE)
      c[i] = want;
    else if (c[i] != want)
      return i;
  }
  return SIZE_MAX;
}

/* The sample of a block of u usable bytes with pattern id: all of it up to
 * FULL_LIMIT, else the first and last 4 KiB and four pages chosen by id.
 * visit applies v to the sample's bytes below lim. */
static size_t visit(void *p, size_t u, uint64_t id, size_t lim, enum visit v)
{
  unsigned char *c = p;
  size_t r;
  if (lim > u)
    lim = u;
  if (u <= FULL_LIMIT)
    return range(c, 0, lim, id, v);
  size_t pages = u / 4096;
  size_t regions[6][2] = { { 0, 4096 }, { u - 4096, u } };
  for (int k = 0; k < 4; k++) {
    size_t pg = (size_t)(mix64(id ^ (0x1234567ull * (uint64_t)(k + 1))) % pages);
    regions[2 + k][0] = pg * 4096;
    regions[2 + k][1] = pg * 4096 + 4096;
  }
  for (int k = 0; k < 6; k++) {
    size_t a = regions[k][0], b = regions[k][1] < lim ? regions[k][1] : lim;
    if (a < b && (r = range(c, a, b, id, v)) != SIZE_MAX)
      return r;
  }
  return SIZE_MAX;
}

/* --- the shadow model ----------------------------------------------------- */

struct rec {
  char *p;             /* NULL: the slot is empty */
  size_t size;         /* requested */
  size_t align;        /* requested (0: none) */
  size_t usable;       /* malloc_usable_size when it was made */
  uint64_t id;         /* pattern */
  uintptr_t lo, hi;    /* [p, p + max(usable, 1)): its place in the tree */
  const char *how;     /* the call that made it */
};

static struct rec *recs;             /* g_threads * SLOTS + XCHG */
static unsigned xchg[XCHG];          /* record indices in the exchange */
static pthread_mutex_t xchg_lock = PTHREAD_MUTEX_INITIALIZER;
static void *tree;                   /* live intervals (tsearch) */
static pthread_mutex_t tree_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic size_t big_bytes;

static int ival_cmp(const void *a, const void *b)
{
  const struct rec *x = a, *y = b;
  if (x->hi <= y->lo)
    return -1;
  if (y->hi <= x->lo)
    return 1;
  return 0;
}

static void describe(const struct rec *r, char *buf, size_t n)
{
  snprintf(buf, n, "block %p (%s, size %zu, align %zu, usable %zu, id %" PRIx64 ")",
           (void *)r->p, r->how, r->size, r->align, r->usable, r->id);
}

static void tree_add(struct rec *r)
{
  r->lo = (uintptr_t)r->p;
  r->hi = r->lo + (r->usable ? r->usable : 1);
  pthread_mutex_lock(&tree_lock);
  void **n = tsearch(r, &tree, ival_cmp);
  if (!n && atomic_load(&g_limited))
    WITHOUT_LIMIT(n = tsearch(r, &tree, ival_cmp));
  if (!n) {
    pthread_mutex_unlock(&tree_lock);
    fail("tsearch: out of memory");
  }
  struct rec *o = *n;
  pthread_mutex_unlock(&tree_lock);
  if (o != r) {
    char a[256], b[256];
    describe(r, a, sizeof a);
    describe(o, b, sizeof b);
    fail("new %s overlaps live %s", a, b);
  }
}

static void tree_del(struct rec *r)
{
  pthread_mutex_lock(&tree_lock);
  void **n = tfind(r, &tree, ival_cmp);
  bool ok = n && *n == r;
  if (ok)
    tdelete(r, &tree, ival_cmp);
  pthread_mutex_unlock(&tree_lock);
  if (!ok) {
    char a[256];
    describe(r, a, sizeof a);
    fail("shadow model lost %s", a);
  }
}

static void big_account(const struct rec *r, int sign)
{
  if (r->size >= MiB) {
    if (sign > 0)
      atomic_fetch_add(&big_bytes, r->size);
    else
      atomic_fetch_sub(&big_bytes, r->size);
  }
}

/* --- per-thread state ------------------------------------------------------ */

struct stats {
  uint64_t ops, allocs, frees, reallocs, usable, exchanges, impossible, checks, refused;
};

struct worker {
  int index;
  uint64_t rng;
  uint64_t next_id;
  unsigned slot[SLOTS];      /* record indices */
  struct stats st;
  uint64_t ops_left;
};

static struct worker *workers;
static pthread_barrier_t barrier;
static unsigned g_rounds_this_epoch;
static uint64_t g_round_ops = ROUND_OPS;
static uint64_t g_round;             /* rounds begun, all epochs */
static _Atomic uint64_t heap_checks;

static void verify(const struct rec *r, size_t lim, const char *when)
{
  size_t bad = visit(r->p, r->usable, r->id, lim, V_CHECK);
  if (bad != SIZE_MAX) {
    char a[256];
    describe(r, a, sizeof a);
    fail("%s: byte %zu of %s is 0x%02x, expected 0x%02x", when, bad, a,
         ((unsigned char *)r->p)[bad], pat_byte(r->id, bad));
  }
}

/* glibc's malloc may leave errno ENOMEM after a success (a thread arena
 * that could not grow falls back to mmap): the glibc build checks errno
 * only where glibc keeps it (free, malloc_usable_size, failed calls). */
#ifdef FUZZ_GLIBC
static const bool strict_errno = false;
#else
static const bool strict_errno = true;
#endif

static size_t fundamental(size_t size)
{
  return size <= 8 ? 8 : 16;
}

/* Whether a call that returned NULL (errno now e) failed as it may:
 * under a memory limit, with ENOMEM.  Otherwise the run fails. */
static void refusal_allowed(struct worker *w, const char *how, size_t size, size_t align, int e)
{
  if (!atomic_load(&g_limited))
    fail("%s(size %zu, align %zu) returned NULL (errno %d)%s", how, size, align, e,
         g_limit_mode == LIMIT_FIXED || g_limit_mode == LIMIT_CYCLE ? " with no memory limit in force" : "");
  if (e != ENOMEM)
    fail("%s(size %zu, align %zu) failed under the memory limit with errno %d, not ENOMEM",
         how, size, align, e);
  w->st.refused++;
}

/* Checks a block just returned for r's request and makes it live; a NULL
 * is a refusal, which leaves the slot empty. */
static void adopt(struct worker *w, struct rec *r, void *p, size_t size, size_t align,
                  const char *how, bool zero, int saved_errno)
{
  if (!p) {
    refusal_allowed(w, how, size, align, errno);
    w->st.allocs--;
    return;
  }
  if (strict_errno && errno != saved_errno)
    fail("%s(size %zu, align %zu) = %p succeeded but changed errno %d -> %d", how, size,
         align, p, saved_errno, errno);
  size_t a = align > fundamental(size) ? align : fundamental(size);
  if ((uintptr_t)p % a)
    fail("%s(size %zu, align %zu) = %p is not %zu-aligned", how, size, align, p, a);
  size_t u = malloc_usable_size(p);
  if (u < size)
    fail("%s(size %zu, align %zu) = %p: usable size %zu", how, size, align, p, u);
  r->p = p;
  r->size = size;
  r->align = align;
  r->usable = u;
  r->how = how;
  r->id = ((uint64_t)(w->index + 1) << 48) ^ (g_seed << 20) ^ w->next_id++;
  tree_add(r);
  big_account(r, +1);
  if (zero) {
    size_t bad = visit(p, u, r->id, size, V_ZERO);
    if (bad != SIZE_MAX)
      fail("%s(size %zu) = %p: byte %zu is 0x%02x, not zero", how, size, p, bad,
           ((unsigned char *)p)[bad]);
  }
  visit(p, u, r->id, u, V_WRITE);
}

/* Request sizes: log-uniform within bands, mostly small, rarely up to 64 MiB. */
static size_t rand_size(uint64_t *s)
{
  unsigned band = (unsigned)below(s, 1000);
  unsigned lo, hi;
  if (band < 700) {
    lo = 0, hi = 10;
  } else if (band < 940) {
    lo = 10, hi = 15;
  } else if (band < 985) {
    lo = 15, hi = 18;
  } else if (band < 998) {
    lo = 18, hi = 22;
  } else {
    lo = 22, hi = 26;
  }
  unsigned b = lo + (unsigned)below(s, hi - lo + 1);
  size_t n;
  if (below(s, 20) == 0) /* a power of two, or one off it */
    n = ((size_t)1 << b) + below(s, 3) - 1;
  else
    n = b == 0 ? below(s, 2) : ((size_t)1 << (b - 1)) + below(s, (size_t)1 << (b - 1));
  if (n > 64 * MiB)
    n = 64 * MiB;
  if (n >= MiB && atomic_load(&big_bytes) + n > BIG_BUDGET)
    n >>= 8;
  return n;
}

static size_t rand_align(uint64_t *s)
{
  unsigned k = (unsigned)below(s, 100);
  if (k < 60)
    return (size_t)8 << below(s, 4);   /* 8 .. 64 */
  if (k < 90)
    return (size_t)128 << below(s, 6); /* 128 .. 4096 */
  return (size_t)8192 << below(s, 9);  /* 8 KiB .. 2 MiB */
}

/* Requests no allocator can satisfy. */
static size_t impossible_size(uint64_t *s)
{
  static const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX / 2 + 1,
                                  (size_t)1 << 62, (size_t)1 << 48 };
  return sizes[below(s, sizeof sizes / sizeof sizes[0])];
}

#define EXPECT_ENOMEM(call, what)                                                  \
  do {                                                                             \
    errno = ERRNO_SENTINEL;                                                        \
    void *q_ = (call);                                                             \
    if (q_ != NULL || errno != ENOMEM)                                             \
      fail("%s returned %p, errno %d (expected NULL, ENOMEM)", what, q_, errno);   \
  } while (0)

static void op_fill_empty(struct worker *w, struct rec *r)
{
  uint64_t *s = &w->rng;
  size_t size = rand_size(s), align = 0;
  unsigned k = (unsigned)below(s, 100);
  void *p = NULL;
  const char *how;
  bool zero = false;
  w->st.allocs++;
  errno = ERRNO_SENTINEL;
  if (k < 35) {
    how = "malloc";
    p = malloc(size);
  } else if (k < 50) {
    /* calloc(n, m) with n * m == size, split at random */
    size_t m = 1, n = size;
    if (size && below(s, 2)) {
      m = (size_t)1 << below(s, 5);
      while (size % m)
        m >>= 1;
      n = size / m;
    }
    how = "calloc";
    zero = true;
    p = below(s, 2) ? calloc(n, m) : calloc(m, n);
  } else if (k < 55) {
    how = "realloc(NULL)";
    p = realloc(NULL, size);
  } else if (k < 60) {
    how = "reallocarray(NULL)";
    p = size ? reallocarray(NULL, 1, size) : reallocarray(NULL, 0, 7);
  } else if (k < 72) {
    how = "posix_memalign";
    align = rand_align(s);
    void *const untouched = &p;
    p = untouched;
    int e = posix_memalign(&p, align, size);
    if (e) {
      /* glibc's sets errno too. */
      if (p != untouched || (strict_errno && errno != ERRNO_SENTINEL))
        fail("posix_memalign(%zu, %zu) = %d changed *memptr to %p or errno to %d", align,
             size, e, p, errno);
      refusal_allowed(w, how, size, align, e);
      w->st.allocs--;
      return;
    }
  } else if (k < 82) {
    how = "aligned_alloc";
    align = rand_align(s);
    p = aligned_alloc(align, size);
  } else if (k < 92) {
    how = "memalign";
    align = rand_align(s);
    p = memalign(align, size);
  } else if (k < 95) {
    how = "valloc";
    align = 4096;
    p = valloc(size);
  } else {
    /* Impossible requests: NULL and ENOMEM, the slot stays empty. */
    w->st.allocs--;
    w->st.impossible++;
    size_t huge = impossible_size(s);
    switch (below(s, 5)) {
    case 0: EXPECT_ENOMEM(malloc(huge), "malloc(huge)"); break;
    case 1: EXPECT_ENOMEM(calloc(huge / 2 + 2, 4), "calloc(overflow)"); break;
    case 2: EXPECT_ENOMEM(realloc(NULL, huge), "realloc(NULL, huge)"); break;
    case 3: EXPECT_ENOMEM(reallocarray(NULL, huge, 3), "reallocarray(NULL, overflow)"); break;
    default: EXPECT_ENOMEM(memalign(64, huge), "memalign(64, huge)"); break;
    }
    return;
  }
  adopt(w, r, p, size, align, how, zero, ERRNO_SENTINEL);
}

static void op_free(struct worker *w, struct rec *r)
{
  verify(r, r->usable, "before free");
  tree_del(r);
  big_account(r, -1);
  w->st.frees++;
  errno = ERRNO_SENTINEL;
  free(r->p);
  if (errno != ERRNO_SENTINEL)
    fail("free(%p) changed errno to %d", (void *)r->p, errno);
  r->p = NULL;
}

static void op_realloc(struct worker *w, struct rec *r, bool array, bool to_zero)
{
  uint64_t *s = &w->rng;
  verify(r, r->usable, "before realloc");
  size_t size = to_zero ? 0 : rand_size(s);
  struct rec old = *r;
  tree_del(r);
  big_account(r, -1);
  w->st.reallocs++;
  errno = ERRNO_SENTINEL;
  void *p;
  const char *how = array ? "reallocarray" : "realloc";
  if (array) {
    size_t m = 1, n = size;
    if (size) {
      m = (size_t)1 << below(s, 4);
      while (size % m)
        m >>= 1;
      n = size / m;
    }
    p = reallocarray(r->p, n, m);
  } else {
    p = realloc(r->p, size);
  }
  if (size == 0 && p == NULL) {
    /* glibc's and hakmem's realloc(p, 0): p is freed. */
    if (strict_errno && errno != ERRNO_SENTINEL)
      fail("%s(%p, 0) returned NULL and set errno %d", how, (void *)old.p, errno);
    r->p = NULL;
    w->st.frees++;
    return;
  }
  if (!p) {
    /* A shrink never fails (glibc's neither): the block can stay. */
    if (size <= old.usable)
      fail("%s(%p, %zu) of a block of usable size %zu returned NULL (errno %d)", how,
           (void *)old.p, size, old.usable, errno);
    /* Refused: the block stays allocated, whole and as usable as it was. */
    refusal_allowed(w, how, size, 0, errno);
    tree_add(r);
    big_account(r, +1);
    verify(r, r->usable, "after a refused realloc");
    size_t u = malloc_usable_size(r->p);
    if (u != r->usable) {
      char a[256];
      describe(r, a, sizeof a);
      fail("%s(%zu) of %s was refused, and now its usable size is %zu", how, size, a, u);
    }
    return;
  }
  size_t keep = old.size < size ? old.size : size;
  /* The kept prefix, with the old pattern, before adopt rewrites it. */
  size_t bad = visit(p, old.usable, old.id, keep, V_CHECK);
  if (bad != SIZE_MAX) {
    char a[256];
    describe(&old, a, sizeof a);
    fail("%s(%zu) of %s = %p: byte %zu of the kept %zu is 0x%02x, expected 0x%02x", how,
         size, a, p, bad, keep, ((unsigned char *)p)[bad], pat_byte(old.id, bad));
  }
  /* realloc keeps only the fundamental alignment. */
  adopt(w, r, p, size, 0, how, false, ERRNO_SENTINEL);
}

/* A request that cannot be met leaves the block as it was. */
static void op_realloc_impossible(struct worker *w, struct rec *r)
{
  w->st.impossible++;
  size_t huge = impossible_size(&w->rng);
  if (below(&w->rng, 2))
    EXPECT_ENOMEM(realloc(r->p, huge), "realloc(p, huge)");
  else
    EXPECT_ENOMEM(reallocarray(r->p, huge / 2 + 2, 4), "reallocarray(p, overflow)");
  verify(r, r->usable, "after a failed realloc");
}

static void op_usable(struct worker *w, struct rec *r)
{
  w->st.usable++;
  errno = ERRNO_SENTINEL;
  size_t u = malloc_usable_size(r->p);
  if (errno != ERRNO_SENTINEL)
    fail("malloc_usable_size changed errno to %d", errno);
  if (u != r->usable) {
    char a[256];
    describe(r, a, sizeof a);
    fail("malloc_usable_size of %s is now %zu", a, u);
  }
  verify(r, r->usable, "usable-size query");
}

static void op_exchange(struct worker *w, unsigned *slot)
{
  w->st.exchanges++;
  unsigned j = (unsigned)below(&w->rng, XCHG);
  pthread_mutex_lock(&xchg_lock);
  unsigned got = xchg[j];
  xchg[j] = *slot;
  pthread_mutex_unlock(&xchg_lock);
  *slot = got;
  struct rec *r = &recs[got];
  if (r->p)
    verify(r, r->usable, "received from another thread");
}

static void one_op(struct worker *w)
{
  uint64_t *s = &w->rng;
  unsigned *slot = &w->slot[below(s, SLOTS)];
  struct rec *r = &recs[*slot];
  w->st.ops++;
  t_op++;
  if (!r->p) {
    if (below(s, 20) == 0)
      op_exchange(w, slot);
    else
      op_fill_empty(w, r);
    return;
  }
  unsigned k = (unsigned)below(s, 100);
  if (k < 30)
    op_free(w, r);
  else if (k < 33)
    op_realloc(w, r, below(s, 2), true);
  else if (k < 50)
    op_realloc(w, r, false, false);
  else if (k < 55)
    op_realloc(w, r, true, false);
  else if (k < 65)
    op_usable(w, r);
  else if (k < 75)
    op_exchange(w, slot);
  else if (k < 76)
    op_realloc_impossible(w, r);
  else
    verify(r, r->usable, "spot check");
}

static void heap_check(const char *when)
{
  int rc = check_heap();
  atomic_fetch_add(&heap_checks, 1);
  if (rc != 0)
    fail("hakmem_check_heap() = %d %s", rc, when);
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  t_index = w->index;
  t_op = w->st.ops;
  for (unsigned round = 0; round < g_rounds_this_epoch; round++) {
    /* One thread sets the round's memory limit while the others wait. */
    if (pthread_barrier_wait(&barrier) == PTHREAD_BARRIER_SERIAL_THREAD) {
      if (g_limit_mode == LIMIT_CYCLE && g_round % 2 == 0)
        limit_lower();
      else if (g_limit_mode == LIMIT_CYCLE)
        limit_lift();
      else if (g_limit_mode == LIMIT_FIXED && g_round == 0)
        limit_lower();
      g_round++;
      /* Every thread idle a moment with the limit in force: the purge
       * thread may take back what they hold (idle reclaim) and give
       * memory back while allocations are refused. */
      if (atomic_load(&g_limited))
        nanosleep(&(struct timespec){ .tv_nsec = 20 * 1000 * 1000 }, NULL);
    }
    pthread_barrier_wait(&barrier);
    uint64_t n = w->ops_left < g_round_ops ? w->ops_left : g_round_ops;
    for (uint64_t i = 0; i < n; i++)
      one_op(w);
    w->ops_left -= n;
    /* Everyone stops allocating; then each thread walks the heap (the
     * walk covers the caller's own slabs, and the shared ones), and
     * nobody allocates again before every walk is over. */
    pthread_barrier_wait(&barrier);
    heap_check("between rounds (every thread stopped at a barrier)");
    pthread_barrier_wait(&barrier);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr, "usage: %s SEED OPS [THREADS [DEADLINE_S [none|fixed|cycle|maps]]]\n", argv[0]);
    return 64;
  }
  g_seed = strtoull(argv[1], NULL, 0);
  uint64_t ops = strtoull(argv[2], NULL, 0);
  g_threads = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 4;
  unsigned deadline = argc > 4 ? (unsigned)strtoul(argv[4], NULL, 0) : 300;
  if (g_threads < 1 || g_threads > MAX_THREADS) {
    fprintf(stderr, "fuzz_heap: THREADS must be 1..%d\n", MAX_THREADS);
    return 64;
  }
  const char *limit_arg = argc > 5 ? argv[5] : "none";
  if (strcmp(limit_arg, "none") == 0) {
    g_limit_mode = LIMIT_NONE;
  } else if (strcmp(limit_arg, "fixed") == 0) {
    g_limit_mode = LIMIT_FIXED;
  } else if (strcmp(limit_arg, "cycle") == 0) {
    g_limit_mode = LIMIT_CYCLE;
    g_round_ops = CYCLE_ROUND_OPS;
  } else if (strcmp(limit_arg, "maps") == 0) {
    g_limit_mode = LIMIT_MAPS;
  } else {
    fprintf(stderr, "fuzz_heap: MEMLIMIT must be none, fixed, cycle or maps, not '%s'\n", limit_arg);
    return 64;
  }
  if (getrlimit(RLIMIT_AS, &g_rlimit_open) != 0) {
    perror("fuzz_heap: getrlimit");
    return 1;
  }
  g_rlimit_cur = g_rlimit_open.rlim_cur;
  g_limit_rng = mix64(g_seed ^ 0x6c696d6974ull);
  signal(SIGALRM, on_alarm);
  signal(SIGABRT, on_fatal);
  signal(SIGSEGV, on_fatal);
  signal(SIGBUS, on_fatal);
  alarm(deadline);

  /* Before the first allocation: the process starts near the limit. */
  if (g_limit_mode == LIMIT_MAPS)
    consume_map_count();
  size_t nrec = (size_t)g_threads * SLOTS + XCHG;
  recs = calloc(nrec, sizeof *recs);
  workers = calloc(g_threads, sizeof *workers);
  if (!recs || !workers)
    fail("no memory for the model");
  for (unsigned t = 0; t < g_threads; t++) {
    struct worker *w = &workers[t];
    w->index = (int)t;
    w->rng = mix64(g_seed * 0x100000001b3ull + t);
    w->ops_left = ops / g_threads + (t < ops % g_threads);
    for (unsigned i = 0; i < SLOTS; i++)
      w->slot[i] = t * SLOTS + i;
  }
  for (unsigned j = 0; j < XCHG; j++)
    xchg[j] = g_threads * SLOTS + j;

  uint64_t per_thread = ops / g_threads + 1;
  uint64_t rounds = (per_thread + g_round_ops - 1) / g_round_ops;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, THREAD_STACK);
  for (uint64_t done = 0; done < rounds; done += g_rounds_this_epoch) {
    g_rounds_this_epoch = (unsigned)(rounds - done < ROUNDS_PER_EPOCH ? rounds - done : ROUNDS_PER_EPOCH);
    pthread_barrier_init(&barrier, NULL, g_threads);
    pthread_t tid[MAX_THREADS];
    int rc = 0;
    for (unsigned t = 0; t < g_threads && rc == 0; t++)
      WITHOUT_LIMIT(rc = pthread_create(&tid[t], &attr, worker_main, &workers[t]));
    if (rc != 0)
      fail("pthread_create failed: %d", rc);
    for (unsigned t = 0; t < g_threads; t++)
      pthread_join(tid[t], NULL);
    pthread_barrier_destroy(&barrier);
    heap_check("after an epoch (its threads have exited)");
  }

  /* The end: every block checked, the heap checked with them live, then
   * everything freed (by the main thread: cross-thread frees into slabs
   * of exited threads) and the heap checked empty. */
  struct stats tot = { 0 };
  for (unsigned t = 0; t < g_threads; t++) {
    struct stats *s = &workers[t].st;
    tot.ops += s->ops, tot.allocs += s->allocs, tot.frees += s->frees;
    tot.reallocs += s->reallocs, tot.usable += s->usable, tot.exchanges += s->exchanges;
    tot.impossible += s->impossible, tot.refused += s->refused;
  }
  for (size_t i = 0; i < nrec; i++)
    if (recs[i].p)
      verify(&recs[i], recs[i].usable, "at the end");
  heap_check("at the end, every block still live");
  size_t live = 0;
  for (size_t i = 0; i < nrec; i++)
    if (recs[i].p) {
      live++;
      tree_del(&recs[i]);
      big_account(&recs[i], -1);
      free(recs[i].p);
      recs[i].p = NULL;
    }
  if (tree != NULL)
    fail("the shadow tree is not empty after every block was freed");
  heap_check("at the end, every block freed");
  /* Memory comes back: with the limit lifted, every size works again. */
  if (g_limit_mode == LIMIT_FIXED || g_limit_mode == LIMIT_CYCLE) {
    limit_lift();
    static const size_t sizes[] = { 16, 1000, 40000, 300 * KiB, 5 * MiB, 64 * MiB };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      errno = ERRNO_SENTINEL;
      char *p = malloc(sizes[i]);
      if (!p)
        fail("malloc(%zu) with the limit lifted returned NULL (errno %d)", sizes[i], errno);
      memset(p, 0x5A, sizes[i]);
      free(p);
    }
    heap_check("at the end, the limit lifted");
  }
#ifndef FUZZ_GLIBC
  /* The calls above were hakmem's. */
  hak_stats_t st;
  if (hakmem_stats_get(&st) != 0 || st.malloc_calls < tot.allocs / 2)
    fail("malloc is not hakmem's (malloc_calls %" PRIu64 " for %" PRIu64 " allocations)",
         st.malloc_calls, tot.allocs);
#endif
  printf("fuzz_heap: ok " ALLOCATOR " seed %" PRIu64 " threads %u ops %" PRIu64
         " (allocs %" PRIu64 ", frees %" PRIu64 ", reallocs %" PRIu64 ", usable %" PRIu64
         ", exchanges %" PRIu64 ", impossible %" PRIu64 ", heap checks %" PRIu64
         ", freed at the end %zu, memory limit %s: %" PRIu64 " set, %" PRIu64 " refused)\n",
         g_seed, g_threads, tot.ops, tot.allocs, tot.frees, tot.reallocs, tot.usable,
         tot.exchanges, tot.impossible, (uint64_t)atomic_load(&heap_checks), live, limit_arg,
         (uint64_t)atomic_load(&limits_set), tot.refused);
  free(recs);
  free(workers);
  return 0;
}
