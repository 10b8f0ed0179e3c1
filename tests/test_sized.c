/* The sized and query extensions: hak_good_size says what malloc would
 * give, and the sized frees (hak_free_sized, C23's free_sized and
 * free_aligned_sized, exported by libhakmem) free by address, so that a
 * wrong size frees the block as glibc would, and abort on a size other
 * than the one requested with check = 1. */
#include "test_util.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>

/* C23; glibc 2.36's <stdlib.h> does not declare them yet. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* Every size up to 4 KiB, then a spread up to 4 MiB. */
static size_t probe_size(unsigned i)
{
  return i <= 4096 ? i : 4096 + (size_t)(i - 4096) * (i - 4096) * 7 % (4 * MiB);
}
#define PROBES 5200u

START_TEST(good_size_is_malloc_usable_size)
{
  for (unsigned i = 0; i < PROBES; i++) {
    size_t n = probe_size(i);
    size_t good = hak_good_size(n);
    char *p = malloc(opaque(n));
    ck_assert_ptr_nonnull(p);
    size_t usable = malloc_usable_size(p);
    ck_assert_uint_ge(good, n);
    /* Equal for slab blocks; a large block may get a bigger cached mapping. */
    if (n <= 256 * KiB)
      ck_assert_msg(good == usable, "good_size(%zu) = %zu, usable %zu", n, good, usable);
    else
      ck_assert_msg(good <= usable, "good_size(%zu) = %zu > usable %zu", n, good, usable);
    free_sized(p, n);
  }
}
END_TEST

START_TEST(good_size_aligned_is_aligned_alloc_usable_size)
{
  for (size_t align = 1; align <= 2 * MiB; align <<= 1)
    for (unsigned i = 0; i < 600; i++) {
      size_t n = probe_size(i * 7);
      size_t good = hak_good_size_aligned(align, n);
      char *p = aligned_alloc(opaque(align), opaque(n));
      ck_assert_ptr_nonnull(p);
      ck_assert_uint_eq((uintptr_t)p & (align - 1), 0);
      size_t usable = malloc_usable_size(p);
      ck_assert_uint_ge(good, n);
      /* Above 32 KiB (size or alignment) an aligned block is large. */
      ck_assert_msg(good == usable || ((n > 32 * KiB || align > 32 * KiB) && good < usable),
                    "good_size_aligned(%zu, %zu) = %zu, usable %zu", align, n, good, usable);
      free_aligned_sized(p, align, n);
    }
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

START_TEST(good_size_of_impossible_requests)
{
  ck_assert_uint_eq(hak_good_size(opaque(SIZE_MAX)), 0);
  ck_assert_uint_eq(hak_good_size(opaque(SIZE_MAX / 2)), 0);
  ck_assert_uint_eq(hak_good_size_aligned(3, 100), 0);
  ck_assert_uint_eq(hak_good_size_aligned(0, 100), 0);
  ck_assert_uint_eq(hak_good_size_aligned(64, opaque(SIZE_MAX)), 0);
  errno = 0;
  ck_assert_ptr_null(malloc(opaque(SIZE_MAX / 2)));
  ck_assert_int_eq(errno, ENOMEM);
}
END_TEST

/* A right size frees the block: the thread's next malloc of that size
 * gets the same block back (its list is last in, first out). */
START_TEST(sized_free_frees)
{
  for (size_t n = 1; n <= 1024; n += 7) {
    void *p = malloc(opaque(n));
    free_sized(p, n);
    void *q = malloc(opaque(n));
    ck_assert_ptr_eq(p, q);
    hak_free_sized(q, n);
  }
  /* calloc's size is the product; medium and large blocks. */
  void *c = calloc(opaque(12), 10);
  free_sized(c, 120);
  size_t big[] = { 2000, 40000, 200000, 300000, 5 * MiB };
  for (unsigned i = 0; i < sizeof big / sizeof big[0]; i++)
    free_sized(malloc(opaque(big[i])), big[i]);
  free_sized(NULL, 100);
  free_aligned_sized(NULL, 64, 100);
  hak_free_sized(NULL, 0);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* realloc keeps a block in place when the new size still fills more than
 * half of it: free_sized with that new size is right. */
START_TEST(sized_free_after_realloc)
{
  char *p = malloc(opaque(100));
  size_t block = malloc_usable_size(p);
  char *q = realloc(p, block / 2 + 1);
  ck_assert_ptr_eq(p, q);
  free_sized(q, block / 2 + 1);
  char *r = malloc(opaque(300 * KiB));
  r = realloc(r, 600 * KiB);
  ck_assert_ptr_nonnull(r);
  free_sized(r, 600 * KiB);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

static void *free_sized_thread(void *arg)
{
  void **blocks = arg;
  for (unsigned i = 0; i < 64; i++)
    free_sized(blocks[i], 24 + i);
  return NULL;
}

/* Blocks of another thread take the slow path, with the same check. */
START_TEST(sized_free_from_another_thread)
{
  void *blocks[64];
  for (unsigned i = 0; i < 64; i++)
    blocks[i] = malloc(opaque(24 + i));
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, free_sized_thread, blocks), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* ---- misuse: each in a child that must abort with a hakmem line ---- */

static void smaller_class(void) { free_sized(malloc(opaque(100)), 8); }
static void larger_than_block(void) { free_sized(malloc(opaque(100)), 1000); }
static void hak_smaller_class(void) { hak_free_sized(hak_malloc(opaque(3000)), 100); }
static void medium_as_small(void) { free_sized(malloc(opaque(100 * KiB)), 1000); }
static void large_as_small(void) { free_sized(malloc(opaque(MiB)), 100); }
static void large_too_big(void) { free_sized(malloc(opaque(MiB)), 64 * MiB); }
static void aligned_misaligned(void)
{
  /* Of two neighbours, one at least is not 4096-aligned. */
  char *p = malloc(opaque(100)), *q = malloc(opaque(100));
  free_aligned_sized((uintptr_t)p % 4096 ? p : q, 4096, 100);
}
static void aligned_not_pow2(void) { free_aligned_sized(aligned_alloc(64, opaque(100)), 48, 100); }
static void aligned_wrong_size(void) { free_aligned_sized(aligned_alloc(4096, opaque(5000)), 4096, 100); }
static void sized_double_free(void)
{
  void *p = malloc(opaque(100));
  free_sized(p, 100);
  free_sized(p, 100);
}
static void sized_invalid_pointer(void)
{
  static char not_heap[64];
  free_sized(not_heap, 64);
}

/* Sizes (and alignments) that did not give the block. */
static const struct wrong_size_case {
  const char *name;
  void (*run)(void);
  const char *message; /* with check = 1 */
} wrong_sizes[] = {
  { "smaller_class", smaller_class, "free_sized(): size" },
  { "larger_than_block", larger_than_block, "free_sized(): size" },
  { "hak_smaller_class", hak_smaller_class, "hak_free_sized(): size" },
  { "medium_as_small", medium_as_small, "free_sized(): size" },
  { "large_as_small", large_as_small, "free_sized(): size" },
  { "large_too_big", large_too_big, "free_sized(): size" },
  { "aligned_misaligned", aligned_misaligned, "free_aligned_sized(): size (or alignment)" },
  { "aligned_not_pow2", aligned_not_pow2, "not a power of two" },
  { "aligned_wrong_size", aligned_wrong_size, "free_aligned_sized(): size" },
};
#define WRONG_SIZES (sizeof wrong_sizes / sizeof wrong_sizes[0])

/* By default the size is not read: each block is freed by its address, and
 * the heap stays sound, as under glibc, which ignores the size too. */
START_TEST(wrong_sizes_free_by_address)
{
  for (size_t i = 0; i < WRONG_SIZES; i++) {
    wrong_sizes[i].run();
    ck_assert_msg(hakmem_check_heap() == 0, "heap unsound after %s", wrong_sizes[i].name);
  }
  /* The block came back: the same thread gets it again. */
  void *p = malloc(opaque(100));
  free_sized(p, 8);
  void *q = malloc(opaque(100));
  ck_assert_ptr_eq(p, q);
  free(q);
}
END_TEST

/* What free itself rejects is rejected whatever the size. */
START_TEST(sized_free_misuse)
{
  expect_child_aborts(sized_double_free, "free_sized twice", "double free");
  expect_child_aborts(sized_invalid_pointer, "free_sized of a static array", "invalid pointer");
}
END_TEST

/* ---- check = 1: the exact size ---- */

static void check_exact_right(void)
{
  /* Not under Check's runner here: exit status 2 for a wrong answer. */
  for (size_t n = 0; n < 3000; n += 13) {
    if (hak_good_size(n) != n)
      _exit(2);
    free_sized(malloc(opaque(n)), n);
  }
  if (hak_good_size_aligned(256, 1000) != 1000)
    _exit(2);
  free_aligned_sized(aligned_alloc(256, opaque(1000)), 256, 1000);
  _exit(hakmem_check_heap() == 0 ? 0 : 1);
}
static void check_off_by_one(void) { free_sized(malloc(opaque(100)), 99); }

/* Runs case in a new process with HAKMEM_CHECK=1 from its start. */
static int run_check_case(const char *name, char *out, size_t outlen)
{
  int fd;
  pid_t pid = fork_capturing_stderr(&fd);
  if (pid == 0) {
    setenv("HAKMEM_CHECK", "1", 1);
    execl("/proc/self/exe", "test_sized", "--check-case", name, (char *)NULL);
    _exit(127);
  }
  read_to_end(fd, out, outlen);
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  return status;
}

START_TEST(check_mode_exact_size)
{
  char out[4096];
  for (size_t i = 0; i < WRONG_SIZES; i++) {
    int st = run_check_case(wrong_sizes[i].name, out, sizeof out);
    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(out, wrong_sizes[i].message),
                  "%s with check = 1 not caught: %s", wrong_sizes[i].name, out);
  }
  int st = run_check_case("right", out, sizeof out);
  ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "right sizes with check = 1: %s", out);
  st = run_check_case("off_by_one", out, sizeof out);
  ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(out, "free_sized(): size"),
                "free_sized(p, 99) of malloc(100) with check = 1 not caught: %s", out);
}
END_TEST

int main(int argc, char **argv)
{
  if (argc == 3 && strcmp(argv[1], "--check-case") == 0) {
    if (strcmp(argv[2], "right") == 0)
      check_exact_right();
    else if (strcmp(argv[2], "off_by_one") == 0)
      check_off_by_one();
    for (size_t i = 0; i < WRONG_SIZES; i++)
      if (strcmp(argv[2], wrong_sizes[i].name) == 0)
        wrong_sizes[i].run();
    return 3;
  }
  Suite *s = suite_create("sized (libhakmem)");
  TCase *t = tcase_create("sized");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, good_size_is_malloc_usable_size);
  tcase_add_test(t, good_size_aligned_is_aligned_alloc_usable_size);
  tcase_add_test(t, good_size_of_impossible_requests);
  tcase_add_test(t, sized_free_frees);
  tcase_add_test(t, sized_free_after_realloc);
  tcase_add_test(t, sized_free_from_another_thread);
  tcase_add_test(t, wrong_sizes_free_by_address);
  tcase_add_test(t, sized_free_misuse);
  tcase_add_test(t, check_mode_exact_size);
  suite_add_tcase(s, t);
  return check_run(s);
}
