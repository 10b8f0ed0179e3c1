/* Out of memory (RLIMIT_AS): a refused call returns NULL with ENOMEM (or
 * posix_memalign's ENOMEM) and changes nothing; a call that succeeds after
 * an internal attempt was refused leaves errno alone; the C library's
 * corner cases keep their answers when no memory is left; and memory
 * comes back: with the limit lifted, every kind of allocation succeeds
 * again.  A realloc that shrinks never fails.  The differential fuzzer (tests/fuzz_heap.c, MEMLIMIT) does the
 * same at random; the cases here are the ones it found, and the rules it
 * cannot reach by chance. */
#include <check.h>
#include "test_util.h"
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"
#include "bigcache.h"

#define ERRNO_SENTINEL 4242

/* Whether the n bytes at p all hold byte c. */
static bool holds(const unsigned char *p, size_t n, unsigned char c)
{
  for (size_t i = 0; i < n; i++)
    if (p[i] != c)
      return false;
  return true;
}

/* ---- a success after a refused attempt leaves errno alone ---- */

/* A slab block that grows into a large one, where the system refuses the
 * new mapping until BigCache's mappings go back: the retry succeeds, and
 * errno shows nothing of the first attempt's ENOMEM. */
static int realloc_growth_child(void)
{
  hak_free(hak_malloc(1));
  bigcache_flush();
  void *b[4];
  for (int i = 0; i < 4; i++)
    if (!(b[i] = hak_malloc(4 * MiB)))
      return 1;
  for (int i = 0; i < 4; i++)
    hak_free(b[i]);
  unsigned char *p = hak_malloc(100 * KiB);
  if (!p)
    return 2;
  memset(p, 0x5A, 100 * KiB);
  /* 12 MiB: beyond the slack, within it and what BigCache holds; no
   * cached 4 MiB mapping can serve it. */
  limit_address_space(4 * MiB);
  errno = ERRNO_SENTINEL;
  unsigned char *q = hak_realloc(p, 12 * MiB);
  if (!q)
    return 3;
  if (errno != ERRNO_SENTINEL)
    return 4;
  if (!holds(q, 100 * KiB, 0x5A))
    return 5;
  /* The same through reallocarray. */
  unsigned char *s = hak_malloc(100 * KiB);
  if (!s)
    return 6;
  hak_free(q);
  lift_limit();
  bigcache_flush();
  for (int i = 0; i < 4; i++)
    if (!(b[i] = hak_malloc(4 * MiB)))
      return 7;
  for (int i = 0; i < 4; i++)
    hak_free(b[i]);
  limit_address_space(4 * MiB);
  errno = ERRNO_SENTINEL;
  q = hak_reallocarray(s, 3, 4 * MiB);
  if (!q || errno != ERRNO_SENTINEL)
    return 8;
  hak_free(q);
  return 0;
}

START_TEST(success_after_refusal_keeps_errno)
{
#if defined(__SANITIZE_ADDRESS__)
  return; /* the sanitizer's allocator needs address space of its own */
#endif
  int rc = in_limited_child(realloc_growth_child);
  ck_assert_msg(rc == 0, "step %d failed (see realloc_growth_child)", rc);
}
END_TEST

/* ---- the corner cases with no memory left ---- */

/* With not a byte of address space to spare, every corner case of the C
 * library gives the answer it gives otherwise: an overflow or an
 * impossible size ENOMEM, a bad alignment EINVAL, realloc(p, 0) a free;
 * and refused requests of every size and kind change nothing. */
static int corner_cases_child(void)
{
  unsigned char *small = hak_malloc(200), *medium = hak_malloc(100 * KiB);
  unsigned char *large = hak_malloc(3 * MiB), *zero_me = hak_malloc(64);
  if (!small || !medium || !large || !zero_me)
    return 1;
  memset(small, 0x11, 200);
  memset(medium, 0x22, 100 * KiB);
  memset(large, 0x33, 3 * MiB);
  bigcache_flush();
  limit_address_space(0);
  void *p;

#define REFUSED(call, err, step)                          \
  do {                                                    \
    errno = ERRNO_SENTINEL;                               \
    p = (call);                                           \
    if (p != NULL || errno != (err))                      \
      return (step);                                      \
  } while (0)
  REFUSED(hak_malloc(opaque(SIZE_MAX)), ENOMEM, 10);
  REFUSED(hak_malloc(opaque((size_t)PTRDIFF_MAX + 1)), ENOMEM, 11);
  REFUSED(hak_malloc(opaque((size_t)PTRDIFF_MAX)), ENOMEM, 12);
  REFUSED(hak_calloc(opaque(SIZE_MAX / 2 + 2), opaque(2)), ENOMEM, 13);
  REFUSED(hak_calloc(opaque((size_t)1 << 33), opaque((size_t)1 << 31)), ENOMEM, 14);
  REFUSED(hak_reallocarray(NULL, opaque(SIZE_MAX / 3 + 1), opaque(3)), ENOMEM, 15);
  REFUSED(hak_reallocarray(small, opaque((size_t)1 << 40), opaque((size_t)1 << 30)), ENOMEM, 16);
  REFUSED(hak_realloc(medium, opaque(SIZE_MAX)), ENOMEM, 17);
  REFUSED(hak_memalign(opaque((size_t)1 << 62), opaque((size_t)1 << 62)), ENOMEM, 18);
  REFUSED(hak_memalign(opaque(SIZE_MAX / 2 + 1), opaque(64)), EINVAL, 19);
  REFUSED(hak_aligned_alloc(opaque(3), opaque(64)), EINVAL, 20);
  REFUSED(hak_aligned_alloc(opaque(0), opaque(64)), EINVAL, 21);
  REFUSED(hak_aligned_alloc(opaque(48), opaque(4096)), EINVAL, 22);
  REFUSED(hak_aligned_alloc(opaque(4096), opaque(SIZE_MAX)), ENOMEM, 23);
  REFUSED(hak_valloc(opaque(SIZE_MAX - 100)), ENOMEM, 24);
  REFUSED(hak_pvalloc(opaque(SIZE_MAX - 100)), ENOMEM, 25);

  /* posix_memalign: the error is returned; *memptr and errno stay. */
  static const struct { size_t align, size; int err; } pm[] = {
    { 24, 64, EINVAL }, { 0, 64, EINVAL }, { 4, 64, EINVAL },
    { (size_t)1 << 62, (size_t)1 << 62, ENOMEM }, { 64, SIZE_MAX, ENOMEM },
  };
  for (size_t i = 0; i < sizeof pm / sizeof pm[0]; i++) {
    void *m = &p;
    errno = ERRNO_SENTINEL;
    if (hak_posix_memalign(&m, pm[i].align, pm[i].size) != pm[i].err)
      return 30 + (int)i;
    if (m != &p || errno != ERRNO_SENTINEL)
      return 40 + (int)i;
  }

  /* Requests the limit refuses: large and aligned ones surely (each needs
   * a new mapping), small ones once the slabs already mapped are used. */
  REFUSED(hak_malloc(8 * MiB), ENOMEM, 50);
  REFUSED(hak_calloc(4, 2 * MiB), ENOMEM, 51);
  REFUSED(hak_aligned_alloc(2 * MiB, 2 * MiB), ENOMEM, 52);
  REFUSED(hak_memalign(64 * KiB, 5 * MiB), ENOMEM, 53);
  REFUSED(hak_realloc(small, 8 * MiB), ENOMEM, 54);
  REFUSED(hak_realloc(medium, 8 * MiB), ENOMEM, 55);
  REFUSED(hak_realloc(large, 64 * MiB), ENOMEM, 56);
  REFUSED(hak_reallocarray(large, 64, MiB), ENOMEM, 57);
  {
    void *m = &p;
    errno = ERRNO_SENTINEL;
    if (hak_posix_memalign(&m, 4096, 8 * MiB) != ENOMEM || m != &p || errno != ERRNO_SENTINEL)
      return 58;
  }
#undef REFUSED
  /* Each refused block is whole, of the same usable size, and usable. */
  if (!holds(small, 200, 0x11) || !holds(medium, 100 * KiB, 0x22) ||
      !holds(large, 3 * MiB, 0x33))
    return 60;
  if (hak_malloc_usable_size(large) < 3 * MiB || hak_malloc_usable_size(small) < 200)
    return 61;

  /* realloc(p, 0) frees p and returns NULL with errno unchanged. */
  errno = ERRNO_SENTINEL;
  if (hak_realloc(zero_me, 0) != NULL || errno != ERRNO_SENTINEL)
    return 70;
  errno = ERRNO_SENTINEL;
  if (hak_reallocarray(small, 0, 16) != NULL || errno != ERRNO_SENTINEL)
    return 71;
  hak_free(medium);
  hak_free(large);
  if (hakmem_check_heap() != 0)
    return 72;
  return 0;
}

START_TEST(corner_cases_with_no_memory_left)
{
#if defined(__SANITIZE_ADDRESS__)
  return;
#endif
  int rc = in_limited_child(corner_cases_child);
  ck_assert_msg(rc == 0, "step %d failed (see corner_cases_child)", rc);
}
END_TEST

/* ---- refusals and memory coming back ---- */

/* Blocks of size n until one is refused (ENOMEM), chained through their
 * first word; *count how many.  NULL with *count 0 if the first was. */
static void **fill(size_t n, size_t *count, size_t most)
{
  void **head = NULL;
  *count = 0;
  for (;;) {
    errno = ERRNO_SENTINEL;
    void **p = hak_malloc(n);
    if (!p) {
      if (errno != ENOMEM)
        _exit(80);
      return head;
    }
    p[0] = head;
    head = p;
    if (++*count == most)
      _exit(81);
  }
}

static void free_chain(void **head)
{
  while (head) {
    void **next = head[0];
    hak_free(head);
    head = next;
  }
}

/* ---- a shrink never fails ---- */

/* With no address space to spare and the target class used up, a realloc
 * that shrinks a block keeps the block (glibc's never fails either): from
 * a large block, a medium one and a small one. */
static int shrink_child(void)
{
  static const struct { size_t from, to; } cases[] = {
    { 3 * MiB, 100 }, { 100 * KiB, 40 }, { 1000, 300 }, { 200 * KiB, 20 * KiB },
  };
  enum { N = sizeof cases / sizeof cases[0] };
  unsigned char *b[N];
  for (int i = 0; i < N; i++) {
    if (!(b[i] = hak_malloc(cases[i].from)))
      return 1;
    memset(b[i], 0x40 + i, cases[i].from);
  }
  bigcache_flush();
  limit_address_space(0);
  void **held[N];
  for (int i = 0; i < N; i++) {
    size_t n;
    held[i] = fill(cases[i].to, &n, (size_t)1 << 26);
    errno = ERRNO_SENTINEL;
    unsigned char *q = hak_realloc(b[i], cases[i].to);
    if (!q)
      return 10 + i;
    if (errno != ERRNO_SENTINEL)
      return 20 + i;
    if (!holds(q, cases[i].to, (unsigned char)(0x40 + i)) || hak_malloc_usable_size(q) < cases[i].to)
      return 30 + i;
    b[i] = q;
  }
  for (int i = 0; i < N; i++) {
    free_chain(held[i]);
    hak_free(b[i]);
  }
  if (hakmem_check_heap() != 0)
    return 40;
  return 0;
}

START_TEST(shrinking_realloc_never_fails)
{
#if defined(__SANITIZE_ADDRESS__)
  return;
#endif
  int rc = in_limited_child(shrink_child);
  ck_assert_msg(rc == 0, "step %d failed (see shrink_child)", rc);
}
END_TEST

struct filler {
  pthread_barrier_t *go;
  size_t sizes_filled;
};

/* A thread born before the limit: fills memory with blocks of each size,
 * keeps them while the limit is lifted, then allocates each size again. */
static void *filler_main(void *arg)
{
  struct filler *f = arg;
  static const size_t sizes[] = { 48, 1000, 30000, 200 * KiB, 4 * MiB };
  void **held[5];
  pthread_barrier_wait(f->go); /* the limit is set */
  for (int i = 0; i < 5; i++) {
    size_t n;
    held[i] = fill(sizes[i], &n, (size_t)1 << 26);
    f->sizes_filled++;
  }
  pthread_barrier_wait(f->go);
  pthread_barrier_wait(f->go); /* the limit is lifted */
  for (int i = 0; i < 5; i++) {
    errno = ERRNO_SENTINEL;
    void *p = hak_malloc(sizes[i]);
    if (!p || errno != ERRNO_SENTINEL)
      _exit(90 + i);
    memset(p, 1, sizes[i]);
    hak_free(p);
    free_chain(held[i]);
  }
  return NULL;
}

/* A thread whose first call comes with nothing to spare; each size fails
 * or succeeds, and after the lift all succeed (no lasting failure state). */
static int memory_comes_back_child(void)
{
  hak_free(hak_malloc(1));
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, 2);
  struct filler f = { &go, 0 };
  pthread_t t;
  if (pthread_create(&t, NULL, filler_main, &f) != 0)
    return 1;
  limit_address_space(64 * MiB);
  pthread_barrier_wait(&go);
  pthread_barrier_wait(&go); /* filled */
  if (f.sizes_filled != 5)
    return 2;
  /* This thread too is refused now, and its blocks are untouched. */
  errno = ERRNO_SENTINEL;
  if (hak_malloc(64 * MiB) != NULL || errno != ENOMEM)
    return 3;
  lift_limit();
  pthread_barrier_wait(&go);
  pthread_join(t, NULL);
  static const size_t sizes[] = { 16, 5000, 100 * KiB, 8 * MiB, 64 * MiB };
  for (int i = 0; i < 5; i++) {
    errno = ERRNO_SENTINEL;
    void *p = hak_malloc(sizes[i]);
    if (!p || errno != ERRNO_SENTINEL)
      return 10 + i;
    memset(p, 2, sizes[i]);
    hak_free(p);
  }
  void *a = NULL;
  if (hak_posix_memalign(&a, 2 * MiB, 6 * MiB) != 0)
    return 20;
  hak_free(a);
  if (hakmem_check_heap() != 0)
    return 21;
  return 0;
}

START_TEST(memory_comes_back_after_the_limit_is_lifted)
{
#if defined(__SANITIZE_ADDRESS__)
  return;
#endif
  int rc = in_limited_child(memory_comes_back_child);
  ck_assert_msg(rc == 0, "step %d failed (see memory_comes_back_child)", rc);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("oom");
  TCase *t = tcase_create("oom");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, success_after_refusal_keeps_errno);
  tcase_add_test(t, corner_cases_with_no_memory_left);
  tcase_add_test(t, shrinking_realloc_never_fails);
  tcase_add_test(t, memory_comes_back_after_the_limit_is_lifted);
  suite_add_tcase(s, t);
  return check_run(s);
}
