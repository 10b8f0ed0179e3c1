/* The public allocation API, from the outside.
 *
 * One source, built twice (tests/local.mk):
 *   tests/test_api_direct  -DHAK_TEST_DIRECT: calls hak_malloc and the other
 *                          hak_ names; links the core library, so it also
 *                          runs under AddressSanitizer and UBSan;
 *   tests/test_api         calls malloc and the other standard names; links
 *                          libhakmem, so they must be hakmem's (the first
 *                          test proves it).
 * The T_ macros below are the only difference between the two; every test
 * body is shared, and a few tests of names only libhakmem defines (glibc's
 * __libc_ names, mallinfo2, malloc_stats) are added to the second.
 * Expected behaviour is glibc 2.36's wherever the standards leave a choice
 * (malloc(0) is a unique pointer, realloc(p, 0) frees p and returns NULL,
 * memalign rounds a bad alignment up). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include "test_util.h"
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"

#ifdef HAK_TEST_DIRECT
#define API_NAME "hak_"
#define T_MALLOC hak_malloc
#define T_FREE hak_free
#define T_CALLOC hak_calloc
#define T_REALLOC hak_realloc
#define T_REALLOCARRAY hak_reallocarray
#define T_POSIX_MEMALIGN hak_posix_memalign
#define T_ALIGNED_ALLOC hak_aligned_alloc
#define T_MEMALIGN hak_memalign
#define T_VALLOC hak_valloc
#define T_PVALLOC hak_pvalloc
#define T_USABLE hak_malloc_usable_size
#define T_TRIM hak_trim
#else
#define API_NAME "standard"
#define T_MALLOC malloc
#define T_FREE free
#define T_CALLOC calloc
#define T_REALLOC realloc
#define T_REALLOCARRAY reallocarray
#define T_POSIX_MEMALIGN posix_memalign
#define T_ALIGNED_ALLOC aligned_alloc
#define T_MEMALIGN memalign
#define T_VALLOC valloc
#define T_PVALLOC pvalloc
#define T_USABLE malloc_usable_size
#define T_TRIM malloc_trim
/* glibc's internal names, which libhakmem also defines (no header has them). */
extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
#endif

/* Check's assertions report each passing check to the parent process;
 * inside loops that costs more than the allocator.  REQUIRE reports only
 * failures. */
#define REQUIRE(cond, ...)          \
  do {                              \
    if (!(cond))                    \
      ck_abort_msg(__VA_ARGS__);    \
  } while (0)

/* --- content patterns ---------------------------------------------------
 * Byte i of a block filled with seed s is byte i % 8 of pat_word(s, i / 8),
 * whatever the block's size: any prefix of a filled block can be checked.
 *
 * Blocks up to 1 MiB are filled whole.  Beyond that (first-touch page
 * faults cost far more than the bytes), only sample(n) is: the first MiB,
 * the first 64 bytes of every 256 KiB, and the last 4 KiB, so that both
 * ends of every block are always written and read back. */

#define SAMPLE_FULL   ((size_t)1 << 20)
#define SAMPLE_STRIDE ((size_t)256 << 10)
#define SAMPLE_HEAD   64
#define SAMPLE_TAIL   4096

static uint64_t pat_word(uint64_t seed, size_t k)
{
  uint64_t x = (seed ^ 0x5bd1e995u) + (uint64_t)k * 0x9E3779B97F4A7C15ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 29);
}

static unsigned char pat_byte(uint64_t seed, size_t i)
{
  uint64_t w = pat_word(seed, i / 8);
  unsigned char b[8];
  memcpy(b, &w, 8);
  return b[i % 8];
}

/* Writes (write) or checks bytes [from, to) of c; returns the first byte
 * that differs, or SIZE_MAX. */
static size_t pat_range(unsigned char *c, size_t from, size_t to, uint64_t seed, bool write)
{
  size_t i = from;
  for (; i < to && i % 8; i++) {
    if (write)
      c[i] = pat_byte(seed, i);
    else if (c[i] != pat_byte(seed, i))
      return i;
  }
  for (; i + 8 <= to; i += 8) {
    uint64_t w = pat_word(seed, i / 8), v;
    if (write) {
      memcpy(c + i, &w, 8);
    } else {
      memcpy(&v, c + i, 8);
      if (v != w)
        break;
    }
  }
  for (; i < to; i++) {
    if (write)
      c[i] = pat_byte(seed, i);
    else if (c[i] != pat_byte(seed, i))
      return i;
  }
  return SIZE_MAX;
}

/* Visits the part of sample(n) below keep; returns the first mismatch (or
 * keep if none, or if writing). */
static size_t pat_sampled(void *p, size_t keep, size_t n, uint64_t seed, bool write)
{
  unsigned char *c = p;
  size_t r, head = n < SAMPLE_FULL ? n : SAMPLE_FULL;
  if (keep > n)
    keep = n;
  if ((r = pat_range(c, 0, head < keep ? head : keep, seed, write)) != SIZE_MAX)
    return r;
  if (n <= SAMPLE_FULL)
    return keep;
  for (size_t o = SAMPLE_FULL; o < keep; o += SAMPLE_STRIDE) {
    size_t e = o + SAMPLE_HEAD < keep ? o + SAMPLE_HEAD : keep;
    if ((r = pat_range(c, o, e, seed, write)) != SIZE_MAX)
      return r;
  }
  size_t t = n - SAMPLE_TAIL;
  if (t < keep && (r = pat_range(c, t, keep, seed, write)) != SIZE_MAX)
    return r;
  return keep;
}

/* fill(p, n, seed) writes sample(n); mismatch(p, n, seed) returns the
 * offset of the first byte of sample(n) that does not hold the pattern, or
 * n; mismatch_prefix(p, keep, n, seed) checks only its bytes below keep
 * (what realloc to keep bytes must preserve). */
static void fill(void *p, size_t n, uint64_t seed)
{
  pat_sampled(p, n, n, seed, true);
}

static size_t mismatch(const void *p, size_t n, uint64_t seed)
{
  return pat_sampled((void *)p, n, n, seed, false);
}

static size_t mismatch_prefix(const void *p, size_t keep, size_t n, uint64_t seed)
{
  return pat_sampled((void *)p, keep, n, seed, false);
}

/* Offset of the first nonzero byte of [p, p+n), or n. */
static size_t nonzero_at(const void *p, size_t n)
{
  const unsigned char *c = p;
  for (size_t i = 0; i < n; i++)
    if (c[i])
      return i;
  return n;
}

/* The same for the bytes of sample(n) only. */
static size_t nonzero_sampled(const void *p, size_t n)
{
  const unsigned char *c = p;
  size_t r;
  if (n <= SAMPLE_FULL)
    return nonzero_at(p, n);
  if ((r = nonzero_at(c, SAMPLE_FULL)) != SAMPLE_FULL)
    return r;
  for (size_t o = SAMPLE_FULL; o < n; o += SAMPLE_STRIDE) {
    size_t len = n - o < SAMPLE_HEAD ? n - o : SAMPLE_HEAD;
    if ((r = nonzero_at(c + o, len)) != len)
      return o + r;
  }
  if ((r = nonzero_at(c + n - SAMPLE_TAIL, SAMPLE_TAIL)) != SAMPLE_TAIL)
    return n - SAMPLE_TAIL + r;
  return n;
}

/* The alignment every block of size bytes must have without asking: 16,
 * or 8 for blocks of at most 8 bytes (hakmem(3), RETURN VALUE). */
static size_t fundamental_align(size_t size)
{
  return size <= 8 ? 8 : 16;
}

/* A block just returned for size bytes at alignment align: not NULL,
 * aligned, usable size at least size, every usable byte writable and
 * readable back. */
static void check_block(void *p, size_t size, size_t align, const char *what)
{
  size_t a = align > fundamental_align(size) ? align : fundamental_align(size);
  REQUIRE(p != NULL, "%s(size %zu, align %zu) returned NULL", what, size, align);
  REQUIRE((uintptr_t)p % a == 0, "%s(size %zu, align %zu) = %p, not %zu-aligned", what,
          size, align, p, a);
  size_t usable = T_USABLE(p);
  REQUIRE(usable >= size, "%s(size %zu): usable size %zu", what, size, usable);
  fill(p, usable, (uintptr_t)p ^ size);
  size_t bad = mismatch(p, usable, (uintptr_t)p ^ size);
  REQUIRE(bad == usable, "%s(size %zu): byte %zu of %zu did not hold its value", what, size,
          bad, usable);
}

/* Sizes around every power of two from 1 to 64 MiB. */
static size_t pow2_sizes(size_t *out)
{
  size_t n = 0;
  for (unsigned k = 0; k <= 26; k++) {
    size_t s = (size_t)1 << k;
    if (s > 1)
      out[n++] = s - 1;
    out[n++] = s;
    out[n++] = s + 1;
    if (s >= 64) {
      out[n++] = s - 16;
      out[n++] = s + 16;
    }
  }
  return n;
}

/* Requests no allocator can satisfy. */
static const size_t impossible[] = {
  SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4095, SIZE_MAX / 2 + 1, SIZE_MAX / 2,
  (size_t)1 << 62, (size_t)1 << 48,
};
#define N_IMPOSSIBLE (sizeof impossible / sizeof impossible[0])

/* --- identity ----------------------------------------------------------- */

START_TEST(allocator_is_hakmem)
{
  hak_stats_t a = stats_now();
  void *small[100];
  for (int i = 0; i < 100; i++)
    small[i] = T_MALLOC(opaque(40));
  hak_stats_t b = stats_now();
  REQUIRE(b.malloc_calls >= a.malloc_calls + 100,
          API_NAME " malloc does not count in hakmem's malloc_calls (%llu -> %llu)",
          (unsigned long long)a.malloc_calls, (unsigned long long)b.malloc_calls);
  /* hak_malloc_usable_size aborts on a pointer hakmem did not return. */
  ck_assert_uint_eq(T_USABLE(small[0]), hak_malloc_usable_size(small[0]));
  void *large = T_MALLOC(opaque(5 * MiB));
  hak_stats_t c = stats_now();
  ck_assert_uint_eq(c.large_allocs, b.large_allocs + 1);
  ck_assert_uint_eq(T_USABLE(large), hak_malloc_usable_size(large));
  ck_assert_uint_ge(T_USABLE(large), 5 * MiB);
  for (int i = 0; i < 100; i++)
    T_FREE(small[i]);
  T_FREE(large);
  ck_assert_uint_eq(stats_now().large_frees, c.large_frees + 1);
#ifndef HAK_TEST_DIRECT
  /* The two sets of names are one allocator: blocks cross freely. */
  void *p = hak_malloc(100);
  ck_assert_uint_eq(malloc_usable_size(p), hak_malloc_usable_size(p));
  free(p);
  p = malloc(opaque(100));
  hak_free(p);
#endif
}
END_TEST

/* --- hak_stats_t across versions ------------------------------------- */

/* hak_stats_t as 0.1.0's header defined it: no size field. */
struct stats_0_1_0 {
  uint64_t malloc_calls, refills, remote_frees, remote_drains, slabs_emptied,
    pool_reuse_empty, pool_claim_unused, pool_new_superslab, pool_adopt, superslabs_live,
    superslabs_empty, superslabs_unmapped, large_allocs, large_frees, bigcache_hits,
    bigcache_misses, os_mmap, os_munmap, os_madvise, os_mremap, mapped_bytes, large_bytes,
    bigcache_bytes, lean_decommit, lean_retire, purge_decommit, purge_threads, prewarm_bytes,
    os_refused;
};
/* The library's exported hakmem_stats_get, as a 0.1.0 binary calls it
 * (the parentheses keep hakmem.h's macro of that name out). */
int (hakmem_stats_get)(void *st);

#define STATS_FILL 0xa5a5a5a5a5a5a5a5ull

START_TEST(stats_struct_grows_safely)
{
  /* Counters that do not move while the test runs: a large block (and
   * its free) before any snapshot, none after; small blocks, so that
   * malloc_calls is not 0. */
  T_FREE(T_MALLOC(opaque(5 * MiB)));
  void *small_blocks[100];
  for (int i = 0; i < 100; i++)
    small_blocks[i] = T_MALLOC(opaque(40));
  for (int i = 0; i < 100; i++)
    T_FREE(small_blocks[i]);
  hak_stats_t now = stats_now();
  ck_assert_uint_ge(now.large_allocs, 1);
  ck_assert_uint_eq(now.size, sizeof(hak_stats_t));

  /* A program built against 0.1.0: its 29 counters, in its order, and
   * not one byte after them. */
  struct { struct stats_0_1_0 st; uint64_t after; } old;
  memset(&old, 0xa5, sizeof old);
  ck_assert_int_eq((hakmem_stats_get)(&old.st), 0);
  ck_assert_uint_eq(old.after, STATS_FILL);
  ck_assert_uint_eq(old.st.large_allocs, now.large_allocs);
  ck_assert_uint_eq(old.st.large_frees, now.large_frees);
  ck_assert_uint_eq(old.st.os_refused, now.os_refused);
  ck_assert_uint_eq(old.st.prewarm_bytes, now.prewarm_bytes);
  ck_assert_uint_ge(old.st.malloc_calls, 1);
  ck_assert_uint_ne(old.st.os_mmap, STATS_FILL);

  /* A program built with a later header, whose struct has two counters
   * more: they read as 0, size says where this library stopped, and
   * nothing past the caller's struct is written. */
  struct { hak_stats_t st; uint64_t later[2]; uint64_t after; } big;
  memset(&big, 0xa5, sizeof big);
  big.st.size = sizeof big.st + sizeof big.later;
  ck_assert_int_eq(hakmem_stats_read(&big.st), 0);
  ck_assert_uint_eq(big.st.size, sizeof(hak_stats_t));
  ck_assert_uint_eq(big.later[0], 0);
  ck_assert_uint_eq(big.later[1], 0);
  ck_assert_uint_eq(big.after, STATS_FILL);
  ck_assert_uint_eq(big.st.large_allocs, now.large_allocs);
  ck_assert_uint_eq(big.st.os_refused, now.os_refused);
  /* Called again with the size it got back, it fills the same. */
  ck_assert_int_eq(hakmem_stats_read(&big.st), 0);
  ck_assert_uint_eq(big.st.size, sizeof(hak_stats_t));

  /* A program built with an older header that knew two counters: those
   * are filled, the rest of the struct is not touched. */
  hak_stats_t small;
  memset(&small, 0xa5, sizeof small);
  small.size = offsetof(hak_stats_t, remote_frees);
  ck_assert_int_eq(hakmem_stats_read(&small), 0);
  ck_assert_uint_eq(small.size, offsetof(hak_stats_t, remote_frees));
  ck_assert_uint_ge(small.malloc_calls, old.st.malloc_calls);
  ck_assert_uint_ne(small.refills, STATS_FILL);
  ck_assert_uint_eq(small.remote_frees, STATS_FILL);
  ck_assert_uint_eq(small.os_refused, STATS_FILL);
  /* A size that ends inside a field counts the whole fields before it
   * (the caller's bytes of the cut field read as 0, the next ones are
   * not touched). */
  memset(&small, 0xa5, sizeof small);
  small.size = offsetof(hak_stats_t, refills) + 4;
  ck_assert_int_eq(hakmem_stats_read(&small), 0);
  ck_assert_uint_eq(small.size, offsetof(hak_stats_t, refills));
  ck_assert_uint_ne(small.malloc_calls, STATS_FILL);
  const unsigned char *bytes = (const unsigned char *)&small;
  for (size_t i = offsetof(hak_stats_t, refills); i < sizeof small; i++)
    ck_assert_uint_eq(bytes[i], i < offsetof(hak_stats_t, refills) + 4 ? 0 : 0xa5);

  /* Bad calls fail with EINVAL and change nothing. */
  memset(&small, 0xa5, sizeof small);
  small.size = sizeof small.size - 1;
  errno = 0;
  ck_assert_int_eq(hakmem_stats_read(&small), -1);
  ck_assert_int_eq(errno, EINVAL);
  ck_assert_uint_eq(small.malloc_calls, STATS_FILL);
  errno = 0;
  ck_assert_int_eq(hakmem_stats_read(NULL), -1);
  ck_assert_int_eq(errno, EINVAL);
  /* A good call leaves errno alone. */
  errno = ERANGE;
  hak_stats_t init = HAKMEM_STATS_INIT;
  ck_assert_uint_eq(init.size, sizeof init);
  ck_assert_int_eq(hakmem_stats_read(&init), 0);
  ck_assert_int_eq(errno, ERANGE);
  ck_assert_uint_eq(init.large_allocs, now.large_allocs);

  /* Source written against 0.1.0 (hakmem_stats_get, size never set)
   * gets this header's whole struct. */
  hak_stats_t src;
  memset(&src, 0xa5, sizeof src);
  ck_assert_int_eq(hakmem_stats_get(&src), 0);
  ck_assert_uint_eq(src.size, sizeof src);
  ck_assert_uint_eq(src.large_allocs, now.large_allocs);
  ck_assert_uint_eq(src.os_refused, now.os_refused);
}
END_TEST

#ifndef HAK_TEST_DIRECT
START_TEST(libc_internal_names_are_hakmem)
{
  void *p = __libc_malloc(opaque(100));
  check_block(p, 100, 0, "__libc_malloc");
  ck_assert_uint_eq(malloc_usable_size(p), hak_malloc_usable_size(p));
  p = __libc_realloc(p, opaque(100000));
  check_block(p, 100000, 0, "__libc_realloc");
  __libc_free(p);
  p = __libc_calloc(opaque(10), opaque(10));
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_eq(nonzero_at(p, 100), 100);
  check_block(p, 100, 0, "__libc_calloc");
  free(p);
  p = __libc_memalign(opaque(4096), opaque(100));
  check_block(p, 100, 4096, "__libc_memalign");
  hak_free(p);
}
END_TEST
#endif

/* --- sizes --------------------------------------------------------------- */

START_TEST(size_zero)
{
  void *a = T_MALLOC(opaque(0)), *b = T_MALLOC(opaque(0));
  check_block(a, 0, 0, "malloc");
  check_block(b, 0, 0, "malloc");
  ck_assert_ptr_ne(a, b);
  T_FREE(a);
  T_FREE(b);
  check_block(a = T_CALLOC(0, opaque(1)), 0, 0, "calloc");
  T_FREE(a);
  check_block(a = T_CALLOC(opaque(1), 0), 0, 0, "calloc");
  T_FREE(a);
  check_block(a = T_CALLOC(0, 0), 0, 0, "calloc");
  T_FREE(a);
  check_block(a = T_REALLOC(NULL, opaque(0)), 0, 0, "realloc(NULL)");
  T_FREE(a);
  check_block(a = T_REALLOCARRAY(NULL, 0, 0), 0, 0, "reallocarray(NULL)");
  T_FREE(a);
  a = NULL;
  ck_assert_int_eq(T_POSIX_MEMALIGN(&a, 64, opaque(0)), 0);
  check_block(a, 0, 64, "posix_memalign");
  T_FREE(a);
  check_block(a = T_ALIGNED_ALLOC(64, opaque(0)), 0, 64, "aligned_alloc");
  T_FREE(a);
  check_block(a = T_MEMALIGN(64, opaque(0)), 0, 64, "memalign");
  T_FREE(a);
  check_block(a = T_VALLOC(opaque(0)), 0, 4096, "valloc");
  T_FREE(a);
  /* pvalloc(0) is one page. */
  check_block(a = T_PVALLOC(opaque(0)), 4096, 4096, "pvalloc");
  T_FREE(a);
}
END_TEST

START_TEST(size_one)
{
  void *p;
  check_block(p = T_MALLOC(opaque(1)), 1, 0, "malloc");
  T_FREE(p);
  p = T_CALLOC(1, opaque(1));
  ck_assert_ptr_nonnull(p);
  ck_assert_int_eq(*(unsigned char *)p, 0);
  check_block(p, 1, 0, "calloc");
  p = T_REALLOC(p, opaque(1));
  check_block(p, 1, 0, "realloc");
  T_FREE(p);
  check_block(p = T_REALLOC(NULL, opaque(1)), 1, 0, "realloc(NULL)");
  T_FREE(p);
  check_block(p = T_REALLOCARRAY(NULL, 1, opaque(1)), 1, 0, "reallocarray(NULL)");
  T_FREE(p);
  p = NULL;
  ck_assert_int_eq(T_POSIX_MEMALIGN(&p, sizeof(void *), opaque(1)), 0);
  check_block(p, 1, sizeof(void *), "posix_memalign");
  T_FREE(p);
  check_block(p = T_ALIGNED_ALLOC(1, opaque(1)), 1, 1, "aligned_alloc");
  T_FREE(p);
  check_block(p = T_MEMALIGN(1, opaque(1)), 1, 1, "memalign");
  T_FREE(p);
  check_block(p = T_VALLOC(opaque(1)), 1, 4096, "valloc");
  T_FREE(p);
  check_block(p = T_PVALLOC(opaque(1)), 4096, 4096, "pvalloc");
  T_FREE(p);
}
END_TEST

/* Every entry point refuses an impossible size with NULL and ENOMEM, and a
 * block passed to realloc stays as it was. */
START_TEST(impossible_sizes_enomem)
{
  void *keep_small = T_MALLOC(opaque(100));
  void *keep_large = T_MALLOC(opaque(2 * MiB));
  ck_assert_ptr_nonnull(keep_small);
  ck_assert_ptr_nonnull(keep_large);
  fill(keep_small, 100, 1);
  fill(keep_large, 2 * MiB, 2);
  for (size_t i = 0; i < N_IMPOSSIBLE; i++) {
    size_t s = opaque(impossible[i]);
    void *p;
#define EXPECT_ENOMEM(call)                                                              \
  do {                                                                                   \
    errno = 0;                                                                           \
    p = (call);                                                                          \
    REQUIRE(p == NULL, "%s with size %zu returned %p", #call, s, p);                     \
    REQUIRE(errno == ENOMEM, "%s with size %zu: errno %d, not ENOMEM", #call, s, errno); \
  } while (0)
    EXPECT_ENOMEM(T_MALLOC(s));
    EXPECT_ENOMEM(T_CALLOC(1, s));
    EXPECT_ENOMEM(T_CALLOC(s, 1));
    EXPECT_ENOMEM(T_REALLOC(NULL, s));
    EXPECT_ENOMEM(T_REALLOC(keep_small, s));
    EXPECT_ENOMEM(T_REALLOC(keep_large, s));
    EXPECT_ENOMEM(T_REALLOCARRAY(NULL, 1, s));
    EXPECT_ENOMEM(T_REALLOCARRAY(keep_small, s, 1));
    EXPECT_ENOMEM(T_ALIGNED_ALLOC(16, s));
    EXPECT_ENOMEM(T_ALIGNED_ALLOC(4096, s));
    EXPECT_ENOMEM(T_ALIGNED_ALLOC(2 * MiB, s));
    EXPECT_ENOMEM(T_MEMALIGN(64, s));
    EXPECT_ENOMEM(T_VALLOC(s));
    EXPECT_ENOMEM(T_PVALLOC(s));
#undef EXPECT_ENOMEM
    void *q = &q;
    int r = T_POSIX_MEMALIGN(&q, 64, s);
    REQUIRE(r == ENOMEM, "posix_memalign(64, %zu) returned %d", s, r);
    REQUIRE(q == &q || q == NULL, "posix_memalign changed *memptr on failure");
    ck_assert_uint_eq(mismatch(keep_small, 100, 1), 100);
  }
  ck_assert_uint_eq(mismatch(keep_large, 2 * MiB, 2), 2 * MiB);
  ck_assert_uint_ge(T_USABLE(keep_small), 100);
  T_FREE(keep_small);
  T_FREE(keep_large);
}
END_TEST

/* Several blocks of each size at once: they must not overlap. */
START_TEST(malloc_power_of_two_sizes)
{
  size_t sizes[200];
  size_t n = pow2_sizes(sizes);
  for (size_t i = 0; i < n; i++) {
    void *p[3];
    for (int j = 0; j < 3; j++) {
      p[j] = T_MALLOC(opaque(sizes[i]));
      check_block(p[j], sizes[i], 0, "malloc");
    }
    for (int j = 0; j < 3; j++)
      fill(p[j], sizes[i], sizes[i] * 3 + (size_t)j);
    for (int j = 0; j < 3; j++) {
      REQUIRE(mismatch(p[j], sizes[i], sizes[i] * 3 + (size_t)j) == sizes[i],
              "blocks of size %zu overlap", sizes[i]);
      T_FREE(p[j]);
    }
  }
}
END_TEST

START_TEST(other_entry_points_power_of_two_sizes)
{
  size_t sizes[200];
  size_t n = pow2_sizes(sizes);
  for (size_t i = 0; i < n; i++) {
    size_t s = sizes[i];
    void *p = T_CALLOC(1, opaque(s));
    REQUIRE(p && nonzero_sampled(p, s) == s, "calloc(1, %zu) not zeroed", s);
    check_block(p, s, 0, "calloc");
    T_FREE(p);
    check_block(p = T_REALLOC(NULL, opaque(s)), s, 0, "realloc(NULL)");
    T_FREE(p);
    check_block(p = T_REALLOCARRAY(NULL, opaque(s), 1), s, 0, "reallocarray(NULL)");
    T_FREE(p);
    p = NULL;
    ck_assert_int_eq(T_POSIX_MEMALIGN(&p, 64, opaque(s)), 0);
    check_block(p, s, 64, "posix_memalign");
    T_FREE(p);
    check_block(p = T_ALIGNED_ALLOC(256, opaque(s)), s, 256, "aligned_alloc");
    T_FREE(p);
    check_block(p = T_MEMALIGN(32, opaque(s)), s, 32, "memalign");
    T_FREE(p);
    check_block(p = T_VALLOC(opaque(s)), s, 4096, "valloc");
    T_FREE(p);
  }
}
END_TEST

/* --- alignment ----------------------------------------------------------- */

START_TEST(alignments_up_to_64k)
{
  for (size_t align = 1; align <= 64 * KiB; align <<= 1) {
    const size_t sizes[] = { 1, 8, 16, align - 1 ? align - 1 : 1, align, align + 1, 3 * align + 5,
                             1000, 70000, 300000, 2 * MiB + 3 };
    void *live[3 * (sizeof sizes / sizeof sizes[0])];
    size_t live_size[3 * (sizeof sizes / sizeof sizes[0])];
    size_t nlive = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      size_t s = sizes[i];
      void *p = &p;
      int r = T_POSIX_MEMALIGN(&p, opaque(align), opaque(s));
      if (align < sizeof(void *)) {
        REQUIRE(r == EINVAL, "posix_memalign(%zu, %zu) returned %d, not EINVAL", align, s, r);
        ck_assert(p == &p || p == NULL);
      } else {
        REQUIRE(r == 0, "posix_memalign(%zu, %zu) returned %d", align, s, r);
        check_block(p, s, align, "posix_memalign");
        live_size[nlive] = s;
        live[nlive++] = p;
      }
      p = T_ALIGNED_ALLOC(opaque(align), opaque(s));
      check_block(p, s, align, "aligned_alloc");
      live_size[nlive] = s;
      live[nlive++] = p;
      p = T_MEMALIGN(opaque(align), opaque(s));
      check_block(p, s, align, "memalign");
      live_size[nlive] = s;
      live[nlive++] = p;
    }
    /* All live together: no overlap.  Then realloc keeps the contents of an
     * aligned block (a large one may carry its header at an offset). */
    for (size_t i = 0; i < nlive; i++)
      fill(live[i], live_size[i], i + align);
    for (size_t i = 0; i < nlive; i++)
      REQUIRE(mismatch(live[i], live_size[i], i + align) == live_size[i],
              "aligned blocks (align %zu) overlap", align);
    for (size_t i = 0; i < nlive; i++) {
      size_t grown = live_size[i] * 2 + 100;
      void *q = T_REALLOC(live[i], opaque(grown));
      ck_assert_ptr_nonnull(q);
      REQUIRE(mismatch(q, live_size[i], i + align) == live_size[i],
              "realloc of a %zu-aligned block of %zu lost its contents", align, live_size[i]);
      check_block(q, grown, 0, "realloc");
      T_FREE(q);
    }
  }
}
END_TEST

START_TEST(alignments_above_64k)
{
  const size_t aligns[] = { 128 * KiB, 1 * MiB, 2 * MiB, 4 * MiB, 16 * MiB };
  const size_t sizes[] = { 1, 4096, 1 * MiB, 3 * MiB + 1 };
  for (size_t i = 0; i < sizeof aligns / sizeof aligns[0]; i++)
    for (size_t j = 0; j < sizeof sizes / sizeof sizes[0]; j++) {
      void *p = NULL;
      ck_assert_int_eq(T_POSIX_MEMALIGN(&p, opaque(aligns[i]), opaque(sizes[j])), 0);
      check_block(p, sizes[j], aligns[i], "posix_memalign");
      void *q = T_ALIGNED_ALLOC(opaque(aligns[i]), opaque(sizes[j]));
      check_block(q, sizes[j], aligns[i], "aligned_alloc");
      check_block(p, sizes[j], aligns[i], "posix_memalign (again)");
      /* realloc need not keep the alignment, but must keep the contents */
      fill(q, sizes[j], 5);
      q = T_REALLOC(q, opaque(sizes[j] * 2 + 1));
      REQUIRE(q != NULL && mismatch(q, sizes[j], 5) == sizes[j],
              "realloc of a %zu-aligned block of %zu lost its contents", aligns[i], sizes[j]);
      check_block(q, sizes[j] * 2 + 1, 0, "realloc");
      T_FREE(p);
      T_FREE(q);
    }
}
END_TEST

/* Size 0 at an alignment beyond the slab classes: the block must still be
 * one hakmem owns (usable size, free), not the end of its mapping. */
START_TEST(alignments_above_64k_size_zero)
{
  for (size_t a = 64 * KiB; a <= 4 * MiB; a *= 2) {
    void *p = NULL;
    ck_assert_int_eq(T_POSIX_MEMALIGN(&p, opaque(a), opaque(0)), 0);
    check_block(p, 0, a, "posix_memalign");
    T_FREE(p);
    check_block(p = T_ALIGNED_ALLOC(opaque(a), opaque(0)), 0, a, "aligned_alloc");
    T_FREE(p);
    check_block(p = T_MEMALIGN(opaque(a), opaque(0)), 0, a, "memalign");
    T_FREE(p);
  }
}
END_TEST

/* Aligned requests up to 256 KiB at alignments up to 64 KiB come from
 * the size classes, not from mappings of their own: an interpreter's
 * heap pages (aligned_alloc(65536, 65536)) share SuperSlabs as 64 KiB
 * mallocs do.  None is counted as a large block, each is aligned and
 * whole, and pages freed and asked for again come back aligned. */
START_TEST(aligned_pages_from_slabs)
{
  enum { PAGES = 64 };
  hak_stats_t a = stats_now();
  void *page[PAGES];
  for (int i = 0; i < PAGES; i++) {
    page[i] = T_ALIGNED_ALLOC(opaque(64 * KiB), opaque(64 * KiB));
    check_block(page[i], 64 * KiB, 64 * KiB, "aligned_alloc");
  }
  void *p = NULL;
  ck_assert_int_eq(T_POSIX_MEMALIGN(&p, opaque(4096), opaque(200000)), 0);
  check_block(p, 200000, 4096, "posix_memalign");
  void *q = T_MEMALIGN(opaque(32 * KiB), opaque(100000));
  check_block(q, 100000, 32 * KiB, "memalign");
  for (int i = 0; i < PAGES; i += 2) {
    T_FREE(page[i]);
    page[i] = T_ALIGNED_ALLOC(opaque(64 * KiB), opaque(64 * KiB));
    check_block(page[i], 64 * KiB, 64 * KiB, "aligned_alloc (again)");
  }
  for (int i = 0; i < PAGES; i++)
    for (int j = i + 1; j < PAGES; j++)
      REQUIRE(page[i] != page[j], "aligned_alloc returned %p twice", page[i]);
  hak_stats_t b = stats_now();
  REQUIRE(b.large_allocs == a.large_allocs, "%llu aligned blocks of at most 256 KiB were large",
          (unsigned long long)(b.large_allocs - a.large_allocs));
  for (int i = 0; i < PAGES; i++)
    T_FREE(page[i]);
  T_FREE(p);
  T_FREE(q);
  hak_stats_t c = stats_now();
  ck_assert_uint_eq(c.large_frees, a.large_frees);
}
END_TEST

START_TEST(bad_alignments)
{
  const size_t not_pow2[] = { 0, 3, 5, 6, 12, 24, 48, 100, 4097, 65535, 3 * MiB,
                              SIZE_MAX, SIZE_MAX / 2 };
  for (size_t i = 0; i < sizeof not_pow2 / sizeof not_pow2[0]; i++) {
    size_t a = opaque(not_pow2[i]);
    void *p = &p;
    int r = T_POSIX_MEMALIGN(&p, a, opaque(64));
    REQUIRE(r == EINVAL, "posix_memalign(%zu, 64) returned %d, not EINVAL", a, r);
    REQUIRE(p == &p || p == NULL, "posix_memalign changed *memptr on failure");
    errno = 0;
    p = T_ALIGNED_ALLOC(a, opaque(64));
    REQUIRE(p == NULL && errno == EINVAL,
            "aligned_alloc(%zu, 64) = %p errno %d, not NULL and EINVAL", a, p, errno);
  }
  /* Powers of two below sizeof(void *): EINVAL for posix_memalign only. */
  for (size_t a = 1; a < sizeof(void *); a <<= 1) {
    void *p = &p;
    ck_assert_int_eq(T_POSIX_MEMALIGN(&p, opaque(a), opaque(64)), EINVAL);
    ck_assert(p == &p || p == NULL);
    p = T_ALIGNED_ALLOC(opaque(a), opaque(64));
    check_block(p, 64, a, "aligned_alloc");
    T_FREE(p);
  }
  /* An alignment of 2^63 is valid but cannot be met. */
  void *p = &p;
  ck_assert_int_eq(T_POSIX_MEMALIGN(&p, opaque((size_t)1 << 63), opaque(64)), ENOMEM);
  errno = 0;
  ck_assert_ptr_null(T_ALIGNED_ALLOC(opaque((size_t)1 << 63), opaque(64)));
  ck_assert_int_eq(errno, ENOMEM);
  /* memalign, as glibc's, rounds an alignment that is not a power of two
   * up to the next one, and refuses one above 2^63 with EINVAL. */
  const struct { size_t align, expect; } rounded[] = {
    { 0, 1 }, { 3, 4 }, { 24, 32 }, { 100, 128 }, { 4097, 8192 }, { 65535, 65536 },
    { 3 * MiB, 4 * MiB },
  };
  for (size_t i = 0; i < sizeof rounded / sizeof rounded[0]; i++) {
    p = T_MEMALIGN(opaque(rounded[i].align), opaque(100));
    check_block(p, 100, rounded[i].expect, "memalign (alignment rounded up)");
    T_FREE(p);
  }
  errno = 0;
  ck_assert_ptr_null(T_MEMALIGN(opaque(SIZE_MAX), opaque(64)));
  ck_assert_int_eq(errno, EINVAL);
}
END_TEST

/* aligned_alloc as C17 and glibc 2.36: the size need not be a multiple of
 * the alignment. */
START_TEST(aligned_alloc_any_size)
{
  const size_t cases[][2] = { { 64, 1 }, { 64, 100 }, { 4096, 10 }, { 4096, 4097 },
                              { 32, 33 }, { 128 * KiB, 5 }, { 1 * MiB, 1 * MiB + 1 } };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    void *p = T_ALIGNED_ALLOC(opaque(cases[i][0]), opaque(cases[i][1]));
    check_block(p, cases[i][1], cases[i][0], "aligned_alloc");
    T_FREE(p);
  }
}
END_TEST

START_TEST(valloc_pvalloc_pages)
{
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t sizes[] = { 1, 100, 4095, 4096, 4097, 8191, 65536, 300000, 1 * MiB + 1 };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t s = sizes[i];
    void *p = T_VALLOC(opaque(s));
    check_block(p, s, page, "valloc");
    /* pvalloc rounds the size up to whole pages: all of them usable. */
    size_t rounded = (s + page - 1) / page * page;
    void *q = T_PVALLOC(opaque(s));
    check_block(q, rounded, page, "pvalloc");
    T_FREE(p);
    T_FREE(q);
  }
}
END_TEST

/* --- calloc -------------------------------------------------------------- */

/* Blocks filled with 0xAA and freed, then calloc of the same sizes: every
 * requested byte zero, whichever block (or cached mapping) comes back. */
START_TEST(calloc_zeroes_reused_memory)
{
  const size_t sizes[] = { 1, 8, 16, 24, 48, 100, 128, 500, 1024, 1025, 2000, 4096, 8192, 10000,
                           65536, 100000, 262144, 262145, 1 * MiB, 4 * MiB + 1, 16 * MiB };
  enum { MAXN = 64 };
  void *p[MAXN];
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t s = sizes[i];
    int n = s <= 64 * KiB ? MAXN : 4;
    for (int round = 0; round < 2; round++) {
      for (int j = 0; j < n; j++) {
        p[j] = T_MALLOC(opaque(s));
        REQUIRE(p[j] != NULL, "malloc(%zu) failed", s);
        memset(p[j], 0xAA, T_USABLE(p[j]));
      }
      for (int j = n - 1; j >= 0; j--)
        T_FREE(p[j]);
      for (int j = 0; j < n; j++) {
        /* Both argument orders, and the count times element size split. */
        p[j] = j % 3 == 0 ? T_CALLOC(1, opaque(s))
               : j % 3 == 1 ? T_CALLOC(opaque(s), 1)
               : s % 4 == 0 ? T_CALLOC(opaque(s / 4), 4) : T_CALLOC(opaque(s), 1);
        REQUIRE(p[j] != NULL, "calloc(%zu) failed", s);
        size_t bad = nonzero_at(p[j], s);
        REQUIRE(bad == s, "calloc(%zu) after free: byte %zu is 0x%02x", s, bad,
                bad < s ? ((unsigned char *)p[j])[bad] : 0);
        memset(p[j], 0xAA, s);
      }
      for (int j = 0; j < n; j++)
        T_FREE(p[j]);
    }
  }
}
END_TEST

/* Memory coming back through realloc shrink and calloc of a larger count. */
START_TEST(calloc_after_realloc_and_arrays)
{
  for (int round = 0; round < 50; round++) {
    char *a = T_MALLOC(opaque(24000));
    ck_assert_ptr_nonnull(a);
    memset(a, 0xAA, 24000);
    a = T_REALLOC(a, opaque(24));
    ck_assert_ptr_nonnull(a);
    T_FREE(a);
    int *v = T_CALLOC(opaque(1000), sizeof(int) * 6);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(nonzero_at(v, 24000), 24000);
    memset(v, 0xAA, 24000);
    T_FREE(v);
  }
}
END_TEST

START_TEST(calloc_overflow_enomem)
{
  const size_t pairs[][2] = {
    { SIZE_MAX / 2 + 1, 2 }, { 2, SIZE_MAX / 2 + 1 }, { (size_t)1 << 32, (size_t)1 << 32 },
    { SIZE_MAX, SIZE_MAX }, { SIZE_MAX, 2 }, { 65537, SIZE_MAX / 65536 },
    /* no overflow, but above PTRDIFF_MAX */
    { (size_t)1 << 31, (size_t)1 << 32 }, { SIZE_MAX / 16, 16 },
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    errno = 0;
    void *p = T_CALLOC(opaque(pairs[i][0]), opaque(pairs[i][1]));
    REQUIRE(p == NULL && errno == ENOMEM, "calloc(%zu, %zu) = %p errno %d", pairs[i][0],
            pairs[i][1], p, errno);
  }
}
END_TEST

/* --- realloc ------------------------------------------------------------- */

START_TEST(reallocarray_overflow_and_use)
{
  char *p = T_REALLOCARRAY(NULL, opaque(100), 10);
  check_block(p, 1000, 0, "reallocarray(NULL)");
  fill(p, 1000, 77);
  const size_t pairs[][2] = { { SIZE_MAX / 2 + 1, 2 }, { (size_t)1 << 32, (size_t)1 << 32 },
                              { SIZE_MAX, SIZE_MAX }, { 3, SIZE_MAX / 2 } };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    errno = 0;
    void *q = T_REALLOCARRAY(p, opaque(pairs[i][0]), opaque(pairs[i][1]));
    REQUIRE(q == NULL && errno == ENOMEM, "reallocarray(p, %zu, %zu) = %p errno %d",
            pairs[i][0], pairs[i][1], q, errno);
    errno = 0;
    q = T_REALLOCARRAY(NULL, opaque(pairs[i][0]), opaque(pairs[i][1]));
    REQUIRE(q == NULL && errno == ENOMEM, "reallocarray(NULL, %zu, %zu) = %p errno %d",
            pairs[i][0], pairs[i][1], q, errno);
  }
  /* p survived every refusal; it grows and shrinks as realloc. */
  ck_assert_uint_eq(mismatch(p, 1000, 77), 1000);
  p = T_REALLOCARRAY(p, opaque(1000), 1000);
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_eq(mismatch(p, 1000, 77), 1000);
  check_block(p, 1000000, 0, "reallocarray");
  fill(p, 1000000, 78);
  p = T_REALLOCARRAY(p, opaque(10), 10);
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_eq(mismatch_prefix(p, 100, 1000000, 78), 100);
  T_FREE(p);
}
END_TEST

/* One block grown from 1 byte to 64 MiB and shrunk back, through every
 * size class boundary: the common prefix always survives. */
START_TEST(realloc_grow_and_shrink_preserve)
{
  size_t sizes[200];
  size_t n = pow2_sizes(sizes);
  const uint64_t seed = 4242;
  size_t cur = 1;
  char *p = T_MALLOC(opaque(cur));
  ck_assert_ptr_nonnull(p);
  fill(p, cur, seed);
  for (size_t i = 0; i < n; i++) {
    p = T_REALLOC(p, opaque(sizes[i]));
    REQUIRE(p != NULL, "realloc to %zu failed", sizes[i]);
    size_t keep = cur < sizes[i] ? cur : sizes[i];
    REQUIRE(mismatch_prefix(p, keep, cur, seed) == keep, "realloc %zu -> %zu lost contents", cur,
            sizes[i]);
    ck_assert_uint_ge(T_USABLE(p), sizes[i]);
    fill(p, sizes[i], seed);
    cur = sizes[i];
  }
  for (size_t i = n; i-- > 0;) {
    p = T_REALLOC(p, opaque(sizes[i]));
    REQUIRE(p != NULL, "realloc to %zu failed", sizes[i]);
    size_t keep = cur < sizes[i] ? cur : sizes[i];
    REQUIRE(mismatch_prefix(p, keep, cur, seed) == keep, "realloc %zu -> %zu lost contents", cur,
            sizes[i]);
    ck_assert_uint_ge(T_USABLE(p), sizes[i]);
    fill(p, sizes[i], seed);
    cur = sizes[i];
  }
  T_FREE(p);
}
END_TEST

/* Jumps between small, medium and large, in both directions. */
START_TEST(realloc_small_large_small)
{
  const size_t steps[] = { 24, 1000, 1025, 70000, 262144, 262145, 5 * MiB, 100, 300000, 16,
                           64 * MiB, 7, 3 * MiB, 2 * MiB, 1 * MiB, 8 * MiB, 200000, 1 };
  for (int variant = 0; variant < 2; variant++) {
    /* variant 1 keeps other live blocks around so nothing can grow in place
     * by accident of an empty neighbourhood. */
    void *others[16] = { 0 };
    size_t cur = steps[0];
    uint64_t seed = 99 + (uint64_t)variant;
    char *p = T_MALLOC(opaque(cur));
    ck_assert_ptr_nonnull(p);
    fill(p, cur, seed);
    for (size_t i = 1; i < sizeof steps / sizeof steps[0]; i++) {
      if (variant) {
        others[i % 16] = T_REALLOC(others[i % 16], opaque(steps[i] / 2 + 1));
        ck_assert_ptr_nonnull(others[i % 16]);
      }
      p = T_REALLOC(p, opaque(steps[i]));
      REQUIRE(p != NULL, "realloc %zu -> %zu failed", cur, steps[i]);
      size_t keep = cur < steps[i] ? cur : steps[i];
      REQUIRE(mismatch_prefix(p, keep, cur, seed) == keep, "realloc %zu -> %zu lost contents", cur,
              steps[i]);
      check_block(p, steps[i], 0, "realloc");
      fill(p, steps[i], seed);
      cur = steps[i];
    }
    T_FREE(p);
    for (int i = 0; i < 16; i++)
      T_FREE(others[i]);
  }
}
END_TEST

/* Large blocks next to each other, grown and shrunk in turn: in place when
 * the neighbour allows, moved otherwise. */
START_TEST(realloc_large_neighbours)
{
  enum { N = 8 };
  char *p[N];
  size_t size[N];
  for (int i = 0; i < N; i++) {
    size[i] = (size_t)(i + 1) * 512 * KiB;
    p[i] = T_MALLOC(opaque(size[i]));
    ck_assert_ptr_nonnull(p[i]);
    fill(p[i], size[i], (uint64_t)i);
  }
  for (int round = 0; round < 6; round++)
    for (int i = 0; i < N; i++) {
      size_t next = (round % 2 == 0) ? size[i] * 3 + 4096 * (size_t)i : size[i] / 3 + 300 * KiB;
      p[i] = T_REALLOC(p[i], opaque(next));
      ck_assert_ptr_nonnull(p[i]);
      size_t keep = next < size[i] ? next : size[i];
      REQUIRE(mismatch_prefix(p[i], keep, size[i], (uint64_t)i) == keep,
              "round %d: realloc of block %d (%zu -> %zu) lost contents", round, i, size[i],
              next);
      ck_assert_uint_ge(T_USABLE(p[i]), next);
      fill(p[i], next, (uint64_t)i);
      size[i] = next;
    }
  for (int i = 0; i < N; i++) {
    ck_assert_uint_eq(mismatch(p[i], size[i], (uint64_t)i), size[i]);
    T_FREE(p[i]);
  }
}
END_TEST

START_TEST(realloc_null_is_malloc)
{
  size_t sizes[200];
  size_t n = pow2_sizes(sizes);
  for (size_t i = 0; i < n; i++) {
    hak_stats_t a = stats_now();
    void *p = T_REALLOC(NULL, opaque(sizes[i]));
    hak_stats_t b = stats_now();
    check_block(p, sizes[i], 0, "realloc(NULL)");
    REQUIRE(b.malloc_calls + b.large_allocs > a.malloc_calls + a.large_allocs,
            "realloc(NULL, %zu) counted as no allocation", sizes[i]);
    T_FREE(p);
  }
}
END_TEST

/* realloc(p, 0) frees p and returns NULL, as glibc does. */
START_TEST(realloc_zero_frees)
{
  void *p = T_MALLOC(opaque(3 * MiB));
  ck_assert_ptr_nonnull(p);
  hak_stats_t a = stats_now();
  ck_assert_ptr_null(T_REALLOC(p, opaque(0)));
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.large_frees, a.large_frees + 1);
  ck_assert_uint_le(b.large_bytes + 3 * MiB, a.large_bytes);
  /* Small blocks: a million realloc(malloc(n), 0) must not accumulate. */
  for (int i = 0; i < 1000000; i++) {
    void *q = T_MALLOC(opaque(100 + (size_t)(i % 7) * 500));
    REQUIRE(q != NULL, "malloc failed");
    q = T_REALLOC(q, opaque(0));
    if (q != NULL)
      ck_abort_msg("realloc(p, 0) returned %p, not NULL", q);
  }
  hak_stats_t c = stats_now();
  REQUIRE(c.mapped_bytes < b.mapped_bytes + 64 * MiB,
          "realloc(p, 0) does not free: mapped %llu -> %llu bytes",
          (unsigned long long)b.mapped_bytes, (unsigned long long)c.mapped_bytes);
}
END_TEST

/* --- usable size, free, trim --------------------------------------------- */

START_TEST(usable_size)
{
  ck_assert_uint_eq(T_USABLE(NULL), 0);
  /* Every size from 0 to 5000, then a sweep: usable size covers the
   * request, is writable to its end (check_block), and does not change. */
  for (size_t s = 0; s <= 5000; s++) {
    void *p = T_MALLOC(opaque(s));
    check_block(p, s, 0, "malloc");
    size_t u = T_USABLE(p);
    REQUIRE(T_USABLE(p) == u, "usable size of one block changed");
    /* Growing within the usable size keeps the contents. */
    fill(p, u, s);
    p = T_REALLOC(p, opaque(u));
    REQUIRE(p != NULL && mismatch(p, u, s) == u, "realloc(p, usable size %zu) lost contents", u);
    T_FREE(p);
  }
  for (size_t s = 5000; s <= 600000; s = s * 9 / 8 + 13) {
    void *p = T_MALLOC(opaque(s));
    check_block(p, s, 0, "malloc");
    T_FREE(p);
  }
}
END_TEST

START_TEST(free_null_and_errno)
{
  for (int i = 0; i < 1000; i++)
    T_FREE(NULL);
  /* free preserves errno (glibc >= 2.33, POSIX.1-2024), even when it
   * gives memory back to the system. */
  const size_t sizes[] = { 16, 1000, 100000, 300000, 64 * MiB };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    void *p = T_MALLOC(opaque(sizes[i]));
    ck_assert_ptr_nonnull(p);
    memset(p, 1, sizes[i]);
    errno = EDOM;
    T_FREE(p);
    REQUIRE(errno == EDOM, "free of %zu bytes changed errno to %d", sizes[i], errno);
  }
  errno = ERANGE;
  T_FREE(NULL);
  ck_assert_int_eq(errno, ERANGE);
  /* Successful allocations leave errno alone too. */
  errno = EDOM;
  void *p = T_MALLOC(opaque(70000));
  void *q = T_MALLOC(opaque(9 * MiB));
  ck_assert_ptr_nonnull(p);
  ck_assert_ptr_nonnull(q);
  ck_assert_int_eq(errno, EDOM);
  T_FREE(p);
  T_FREE(q);
}
END_TEST

START_TEST(trim_returns_0_or_1)
{
  int r = T_TRIM(0);
  REQUIRE(r == 0 || r == 1, "trim returned %d", r);
  void *p[2000];
  for (int i = 0; i < 2000; i++) {
    p[i] = T_MALLOC(opaque((size_t)(i % 50) * 300 + 1));
    ck_assert_ptr_nonnull(p[i]);
  }
  void *big = T_MALLOC(opaque(20 * MiB));
  ck_assert_ptr_nonnull(big);
  for (int i = 0; i < 2000; i++)
    T_FREE(p[i]);
  T_FREE(big);
  r = T_TRIM(0);
  REQUIRE(r == 0 || r == 1, "trim returned %d", r);
  r = T_TRIM(1 * MiB);
  REQUIRE(r == 0 || r == 1, "trim returned %d", r);
  /* The allocator works as before. */
  for (int i = 0; i < 2000; i++) {
    p[i] = T_MALLOC(opaque((size_t)(i % 50) * 300 + 1));
    check_block(p[i], (size_t)(i % 50) * 300 + 1, 0, "malloc after trim");
  }
  for (int i = 0; i < 2000; i++)
    T_FREE(p[i]);
  check_block(big = T_MALLOC(opaque(20 * MiB)), 20 * MiB, 0, "malloc after trim");
  T_FREE(big);
}
END_TEST

#ifndef HAK_TEST_DIRECT
START_TEST(mallinfo2_plausible)
{
  struct mallinfo2 a = mallinfo2();
  char *big = malloc(opaque(32 * MiB));
  ck_assert_ptr_nonnull(big);
  memset(big, 1, 32 * MiB);
  struct mallinfo2 b = mallinfo2();
  REQUIRE(b.uordblks >= a.uordblks + 32 * MiB, "uordblks %zu -> %zu with 32 MiB live",
          a.uordblks, b.uordblks);
  ck_assert_uint_ge(b.hblkhd, 32 * MiB);
  ck_assert_uint_ge(b.hblks, 1);
  free(big);
  struct mallinfo2 c = mallinfo2();
  REQUIRE(c.uordblks + 32 * MiB <= b.uordblks, "uordblks %zu -> %zu after free",
          b.uordblks, c.uordblks);
  /* Small blocks count too. */
  enum { N = 2000 };
  void *v[N];
  for (int i = 0; i < N; i++) {
    v[i] = malloc(opaque(200));
    ck_assert_ptr_nonnull(v[i]);
  }
  struct mallinfo2 d = mallinfo2();
  REQUIRE(d.uordblks >= c.uordblks + N * 200, "uordblks %zu -> %zu with %d x 200 B live",
          c.uordblks, d.uordblks, N);
  ck_assert_uint_gt(d.arena, 0);
  /* In use and free small memory fit in the arena plus the large blocks. */
  ck_assert_uint_le(d.uordblks + d.fordblks, d.arena + d.hblkhd);
  for (int i = 0; i < N; i++)
    free(v[i]);
}
END_TEST
#endif

/* --- counters ------------------------------------------------------------ */

static void *alloc_blocks(void *arg)
{
  void **v = arg;
  for (int i = 0; i < 1000; i++) {
    v[i] = T_MALLOC(opaque(64 + (size_t)(i % 4) * 16));
    if (v[i])
      fill(v[i], 64, (uint64_t)i);
  }
  return NULL;
}

static void *free_blocks(void *arg)
{
  void **v = arg;
  for (int i = 0; i < 1000; i++)
    T_FREE(v[i]);
  return NULL;
}

START_TEST(stats_counters_move)
{
  hak_stats_t a = stats_now();
  void *v[1000];
  for (int i = 0; i < 1000; i++) {
    v[i] = T_MALLOC(opaque(48));
    ck_assert_ptr_nonnull(v[i]);
  }
  hak_stats_t b = stats_now();
  ck_assert_uint_ge(b.malloc_calls, a.malloc_calls + 1000);
  ck_assert_uint_ge(b.superslabs_live, 1);
  ck_assert_uint_ge(b.os_mmap, 1);
  ck_assert_uint_gt(b.mapped_bytes, 0);
  ck_assert_uint_le(b.superslabs_empty, b.superslabs_live);
  for (int i = 0; i < 1000; i++)
    T_FREE(v[i]);

  /* Large blocks: counted while live, uncounted when freed. */
  void *big[3];
  for (int i = 0; i < 3; i++) {
    big[i] = T_MALLOC(opaque(2 * MiB + (size_t)i * 4096));
    ck_assert_ptr_nonnull(big[i]);
  }
  hak_stats_t c = stats_now();
  ck_assert_uint_eq(c.large_allocs, b.large_allocs + 3);
  ck_assert_uint_ge(c.large_bytes, b.large_bytes + 6 * MiB);
  ck_assert_uint_ge(c.mapped_bytes, c.large_bytes);
  for (int i = 0; i < 3; i++)
    T_FREE(big[i]);
  hak_stats_t d = stats_now();
  ck_assert_uint_eq(d.large_frees, c.large_frees + 3);
  ck_assert_uint_le(d.large_bytes + 6 * MiB, c.large_bytes);

  /* Blocks allocated by a thread that has exited and freed here, then
   * allocated here and freed by a thread: the cross-thread path counts. */
  pthread_t t;
  void *w[1000];
  ck_assert_int_eq(pthread_create(&t, NULL, alloc_blocks, w), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  for (int i = 0; i < 1000; i++) {
    ck_assert_ptr_nonnull(w[i]);
    ck_assert_uint_eq(mismatch(w[i], 64, (uint64_t)i), 64);
  }
  free_blocks(w);
  for (int i = 0; i < 1000; i++)
    v[i] = T_MALLOC(opaque(64));
  ck_assert_int_eq(pthread_create(&t, NULL, free_blocks, v), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* The owner collects the blocks other threads freed when it allocates
   * again in that class; remote_frees counts them by then at the latest. */
  for (int i = 0; i < 1000; i++)
    v[i] = T_MALLOC(opaque(64));
  hak_stats_t e = stats_now();
  REQUIRE(e.remote_frees > d.remote_frees, "no remote free counted (%llu)",
          (unsigned long long)e.remote_frees);
  REQUIRE(e.remote_drains > d.remote_drains, "no remote drain counted (%llu)",
          (unsigned long long)e.remote_drains);
  for (int i = 0; i < 1000; i++)
    T_FREE(v[i]);
  ck_assert_uint_eq(e.os_refused, 0);
  ck_assert_uint_ge(e.os_munmap + e.os_madvise + e.superslabs_live, 1);
}
END_TEST

/* hakmem_stats_print's report, read back through a file into buf. */
static void report_text(char *buf, size_t size)
{
  FILE *f = tmpfile();
  ck_assert_ptr_nonnull(f);
  hakmem_stats_print(fileno(f));
  rewind(f);
  size_t n = fread(buf, 1, size - 1, f);
  buf[n] = 0;
  fclose(f);
}

/* A daemon that rewrites its argv for ps, as postgres does ("postgres:
 * checkpointer"), writes over the string program_invocation_short_name
 * points into; the report still names the program as it was invoked. */
START_TEST(report_names_the_program_after_argv_is_rewritten)
{
  T_FREE(T_MALLOC(opaque(100)));
  char name[256];
  snprintf(name, sizeof name, "%s", program_invocation_short_name);
  size_t len = strlen(name);
  ck_assert_uint_gt(len, 2);
  memset(program_invocation_short_name, ' ', len);
  program_invocation_short_name[0] = 'p';
  program_invocation_short_name[len - 1] = 'q';
  char buf[65536];
  report_text(buf, sizeof buf);
  char want[300];
  snprintf(want, sizeof want, " program=%s ", name);
  REQUIRE(strstr(buf, want) != NULL, "report without \"%s\":\n%s", want, buf);
}
END_TEST

START_TEST(version_and_report)
{
  char want[32];
  snprintf(want, sizeof want, "%d.%d.", HAK_VERSION_MAJOR, HAK_VERSION_MINOR);
  ck_assert_ptr_nonnull(hakmem_version());
  REQUIRE(strncmp(hakmem_version(), want, strlen(want)) == 0, "version %s, header %s",
          hakmem_version(), want);
#ifdef PACKAGE_VERSION
  ck_assert_str_eq(hakmem_version(), PACKAGE_VERSION);
#endif
  T_FREE(T_MALLOC(opaque(100)));
  char buf[65536];
  report_text(buf, sizeof buf);
  REQUIRE(strstr(buf, "malloc_calls") != NULL, "report without malloc_calls:\n%s", buf);
  REQUIRE(strstr(buf, "hakmem: ") != NULL, "report lines not prefixed:\n%s", buf);
#ifndef HAK_TEST_DIRECT
  /* malloc_stats writes the same report on stderr. */
  int saved = dup(2);
  FILE *f = tmpfile();
  ck_assert_ptr_nonnull(f);
  dup2(fileno(f), 2);
  malloc_stats();
  dup2(saved, 2);
  close(saved);
  rewind(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  REQUIRE(strstr(buf, "malloc_calls") != NULL, "malloc_stats wrote:\n%s", buf);
#endif
}
END_TEST

/* --- misuse ----------------------------------------------------------------
 * A pointer hakmem never returned and a second free of the block just
 * freed are caught where the check is cheap: one line on stderr, then
 * abort (hakmem(3), SECURITY). */

static void expect_abort(void (*fn)(void), const char *what, const char *needle)
{
  expect_child_aborts(fn, what, needle);
}

static char global_buffer[256];

static void free_stack_address(void)
{
  char buf[64];
  void *volatile p = buf + 16;
  memset(buf, 0, sizeof buf);
  T_FREE(p);
}

static void free_global_address(void)
{
  void *volatile p = global_buffer + 32;
  T_FREE(p);
}

static void free_small_twice(void)
{
  void *volatile p = T_MALLOC(opaque(64));
  T_FREE(p);
  T_FREE(p);
}

static void free_large_twice(void)
{
  void *volatile p = T_MALLOC(opaque(4 * MiB));
  T_FREE(p);
  T_FREE(p);
}

static void free_inside_large_block(void)
{
  char *volatile p = T_MALLOC(opaque(4 * MiB));
  T_FREE(p + 4096);
}

START_TEST(invalid_free_aborts)
{
  expect_abort(free_stack_address, "free of a stack address", "invalid pointer");
  expect_abort(free_global_address, "free of a static address", "invalid pointer");
  expect_abort(free_small_twice, "double free of a small block", "double free");
  expect_abort(free_large_twice, "double free of a large block", "free");
  expect_abort(free_inside_large_block, "free inside a large block", "invalid pointer");
}
END_TEST

/* --- many blocks at once ------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static size_t random_size(uint64_t *rng)
{
  uint64_t r = rng_next(rng);
  switch (r % 100) {
  case 0: return (size_t)(r >> 8) % (3 * MiB) + 1;        /* large */
  case 1 ... 8: return (size_t)(r >> 8) % (256 * KiB) + 1; /* medium */
  case 9 ... 29: return (size_t)(r >> 8) % 4096 + 1;
  default: return (size_t)(r >> 8) % 256;
  }
}

/* A random mix of every entry point on 3000 slots: every live block keeps
 * its contents until freed, whatever happens to the others. */
START_TEST(random_mix_keeps_contents)
{
  enum { SLOTS = 3000, OPS = 60000 };
  static char *slot[SLOTS];
  static size_t size[SLOTS];
  uint64_t rng = 0x1234567u;
  for (int op = 0; op < OPS; op++) {
    size_t i = (size_t)(rng_next(&rng) % SLOTS);
    if (slot[i]) {
      REQUIRE(mismatch(slot[i], size[i], i ^ size[i]) == size[i],
              "op %d: block of %zu bytes in slot %zu corrupted", op, size[i], i);
      if (rng_next(&rng) % 3 == 0) {
        size_t ns = random_size(&rng);
        char *q = T_REALLOC(slot[i], opaque(ns ? ns : 1));
        ck_assert_ptr_nonnull(q);
        ns = ns ? ns : 1;
        size_t keep = ns < size[i] ? ns : size[i];
        REQUIRE(mismatch_prefix(q, keep, size[i], i ^ size[i]) == keep, "op %d: realloc %zu -> %zu", op,
                size[i], ns);
        slot[i] = q;
        size[i] = ns;
        fill(q, ns, i ^ ns);
      } else {
        T_FREE(slot[i]);
        slot[i] = NULL;
      }
      continue;
    }
    size_t s = random_size(&rng);
    void *p = NULL;
    switch (rng_next(&rng) % 6) {
    case 0: p = T_CALLOC(1, opaque(s));
      REQUIRE(p && nonzero_sampled(p, s) == s, "calloc(%zu) not zero", s);
      break;
    case 1: p = T_REALLOC(NULL, opaque(s)); break;
    case 2: p = T_ALIGNED_ALLOC((size_t)64 << (rng_next(&rng) % 8), opaque(s)); break;
    case 3: ck_assert_int_eq(T_POSIX_MEMALIGN(&p, 32, opaque(s)), 0); break;
    default: p = T_MALLOC(opaque(s)); break;
    }
    REQUIRE(p != NULL, "allocation of %zu failed", s);
    REQUIRE((uintptr_t)p % fundamental_align(s) == 0, "%p misaligned for %zu", p, s);
    slot[i] = p;
    size[i] = s;
    fill(p, s, i ^ s);
  }
  for (size_t i = 0; i < SLOTS; i++)
    if (slot[i]) {
      REQUIRE(mismatch(slot[i], size[i], i ^ size[i]) == size[i],
              "block of %zu bytes in slot %zu corrupted at the end", size[i], i);
      T_FREE(slot[i]);
    }
}
END_TEST

/* Blocks pass between threads in both directions and keep their contents. */
struct handoff {
  void *blocks[4000];
  size_t sizes[4000];
};

static void *make_blocks(void *arg)
{
  struct handoff *h = arg;
  uint64_t rng = 777;
  for (int i = 0; i < 4000; i++) {
    h->sizes[i] = random_size(&rng);
    h->blocks[i] = T_MALLOC(opaque(h->sizes[i]));
    if (h->blocks[i])
      fill(h->blocks[i], h->sizes[i], (uint64_t)i);
  }
  return NULL;
}

static void *check_and_free_blocks(void *arg)
{
  struct handoff *h = arg;
  intptr_t bad = 0;
  for (int i = 0; i < 4000; i++) {
    if (!h->blocks[i] || mismatch(h->blocks[i], h->sizes[i], (uint64_t)i) != h->sizes[i])
      bad++;
    T_FREE(h->blocks[i]);
  }
  return (void *)bad;
}

START_TEST(cross_thread_free)
{
  static struct handoff h;
  for (int round = 0; round < 3; round++) {
    pthread_t t;
    void *bad;
    /* made by a thread that has exited, freed here */
    ck_assert_int_eq(pthread_create(&t, NULL, make_blocks, &h), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_ptr_null(check_and_free_blocks(&h));
    /* made here, freed by another thread */
    make_blocks(&h);
    ck_assert_int_eq(pthread_create(&t, NULL, check_and_free_blocks, &h), 0);
    ck_assert_int_eq(pthread_join(t, &bad), 0);
    ck_assert_ptr_null(bad);
  }
}
END_TEST

/* hakmem_check_heap: 0 on a sound heap with blocks of every kind live and
 * freed (also by another thread), -1 with one line once a freed block's
 * free tag has been overwritten (what a use-after-free write does). */
START_TEST(check_heap_sound_then_damaged)
{
  static struct handoff h;
  void *keep[64];
  for (int i = 0; i < 64; i++)
    keep[i] = T_MALLOC(opaque((size_t)i * 997 % 70000 + 1));
  make_blocks(&h);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  for (int i = 0; i < 64; i += 2)
    T_FREE(keep[i]);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  pthread_t t;
  void *bad;
  ck_assert_int_eq(pthread_create(&t, NULL, check_and_free_blocks, &h), 0);
  ck_assert_int_eq(pthread_join(t, &bad), 0);
  ck_assert_ptr_null(bad);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  for (int i = 1; i < 64; i += 2)
    T_FREE(keep[i]);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  /* A freed 48-byte block, its second word overwritten. */
  char *volatile p = T_MALLOC(opaque(48));
  char *volatile q = T_MALLOC(opaque(48));
  T_FREE(p);
  memset(p + 8, 0x41, 8);
  ck_assert_int_eq(hakmem_check_heap(), -1);
  /* Check runs each test in a process of its own: the damage ends here. */
  (void)q;
}
END_TEST

int main(void)
{
  Suite *s = suite_create("api (" API_NAME " names)");
  TCase *t = tcase_create("api");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, allocator_is_hakmem);
  tcase_add_test(t, stats_struct_grows_safely);
  tcase_add_test(t, check_heap_sound_then_damaged);
#ifndef HAK_TEST_DIRECT
  tcase_add_test(t, libc_internal_names_are_hakmem);
#endif
  tcase_add_test(t, size_zero);
  tcase_add_test(t, size_one);
  tcase_add_test(t, impossible_sizes_enomem);
  tcase_add_test(t, malloc_power_of_two_sizes);
  tcase_add_test(t, other_entry_points_power_of_two_sizes);
  tcase_add_test(t, alignments_up_to_64k);
  tcase_add_test(t, alignments_above_64k);
  tcase_add_test(t, alignments_above_64k_size_zero);
  tcase_add_test(t, aligned_pages_from_slabs);
  tcase_add_test(t, bad_alignments);
  tcase_add_test(t, aligned_alloc_any_size);
  tcase_add_test(t, valloc_pvalloc_pages);
  tcase_add_test(t, calloc_zeroes_reused_memory);
  tcase_add_test(t, calloc_after_realloc_and_arrays);
  tcase_add_test(t, calloc_overflow_enomem);
  tcase_add_test(t, reallocarray_overflow_and_use);
  tcase_add_test(t, realloc_grow_and_shrink_preserve);
  tcase_add_test(t, realloc_small_large_small);
  tcase_add_test(t, realloc_large_neighbours);
  tcase_add_test(t, realloc_null_is_malloc);
  tcase_add_test(t, realloc_zero_frees);
  tcase_add_test(t, usable_size);
  tcase_add_test(t, free_null_and_errno);
  tcase_add_test(t, trim_returns_0_or_1);
#ifndef HAK_TEST_DIRECT
  tcase_add_test(t, mallinfo2_plausible);
#endif
  tcase_add_test(t, stats_counters_move);
  tcase_add_test(t, version_and_report);
  tcase_add_test(t, report_names_the_program_after_argv_is_rewritten);
  tcase_add_test(t, invalid_free_aborts);
  tcase_add_test(t, random_mix_keeps_contents);
  tcase_add_test(t, cross_thread_free);
  suite_add_tcase(s, t);
  return check_run(s);
}
