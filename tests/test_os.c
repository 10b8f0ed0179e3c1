/* The OS layer (os.c): it refuses to unmap, decommit or advise a range
 * hakmem did not map; the first ENOMEM from a decommit turns decommit off
 * for good, and free memory is unmapped instead; it joins only the pieces
 * of a split that still stand as the split left them; a growth in place
 * that cannot be recorded in the ownership map leaves the mapping as it
 * was, still hakmem's; a placement hint that meets a reservation not
 * hakmem's moves the cursor away from it.
 *
 * The failures are the test's own madvise and mmap: this program is
 * linked with -Wl,--wrap=madvise,--wrap=mmap (tests/unit.mk), so that
 * os.c's calls reach __wrap_madvise and __wrap_mmap below, while
 * libhakmem has no hook and pays nothing. */
#include <check.h>
#include "core_util.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "config.h"
#include "os.h"
#include "os_limit.h"

/* The next decommit (MADV_FREE or MADV_DONTNEED) fails with this errno
 * value; 0: madvise runs. */
static _Atomic int madvise_error;

int __real_madvise(void *addr, size_t len, int advice);
int __wrap_madvise(void *addr, size_t len, int advice);

int __wrap_madvise(void *addr, size_t len, int advice)
{
  if (advice == MADV_FREE || advice == MADV_DONTNEED) {
    int err = atomic_exchange(&madvise_error, 0);
    if (err) {
      errno = err;
      return -1;
    }
  }
  return __real_madvise(addr, len, advice);
}

/* While set, the mapping of a new leaf of the ownership map fails with
 * ENOMEM (counted), as the kernel's refusal at the mapping-count limit
 * or under an address-space limit does. */
static _Atomic bool leaf_map_fails;
static _Atomic unsigned leaf_maps_failed;

void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
  if (atomic_load(&leaf_map_fails) && len == OS_UNITS_LEAF_MAP_SIZE) {
    atomic_fetch_add(&leaf_maps_failed, 1);
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return __real_mmap(addr, len, prot, flags, fd, off);
}

/* Makes sure hakmem is initialised (its constructor normally has). */
static void start(void)
{
  hak_free(hak_malloc(1));
}

/* An alignment beyond the whole placement region (32 TiB) is refused at
 * once: it used to wrap the region's bound and loop for ever (Check's
 * timeout fails a hang). */
START_TEST(alignment_past_the_region_refused)
{
  start();
  for (unsigned shift = 45; shift <= 62; shift += 17) {
    errno = 0;
    void *m = os_map_aligned((size_t)512 << 10, (size_t)1 << shift);
    ck_assert_msg(m == NULL, "2^%u alignment: %p", shift, m);
    ck_assert_int_eq(errno, ENOMEM);
  }
}
END_TEST

START_TEST(os_guard_refuses_foreign_ranges)
{
  start();
  static char not_ours[3 * 4096];
  char *page = (char *)(((uintptr_t)not_ours + 4095) & ~(uintptr_t)4095);
  hak_stats_t a = stats_now();
  ck_assert_int_eq(os_decommit(page, 4096, true), EINVAL);
  os_unmap(page, 4096);
  ck_assert_int_eq(os_advise_huge(page, 4096, true), EINVAL);
  page[0] = 1; /* still mapped */
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.os_refused - a.os_refused, 3);
  ck_assert(!os_owns_range(page, 4096));
  void *p = hak_malloc(100);
  ck_assert(os_owns_range(p, 100));
  hak_free(p);
}
END_TEST

START_TEST(decommit_enomem_fails_fast_to_unmap)
{
  start();
  hak_config.ss_mem_lean = 1;
  hak_config.ss_mem_lean_decommit = HAK_DECOMMIT_FREE;
  atomic_store(&madvise_error, ENOMEM);
  hak_stats_t a = stats_now();
  churn_in_thread(NULL);
  hak_stats_t b = stats_now();
  ck_assert(!os_decommit_enabled());
  /* Nothing more is decommitted: free SuperSlabs are unmapped instead. */
  ck_assert_uint_gt(b.lean_retire, a.lean_retire);
  churn_in_thread(NULL);
  hak_stats_t c = stats_now();
  ck_assert_uint_eq(c.lean_decommit, b.lean_decommit);
  ck_assert_uint_gt(c.lean_retire, b.lean_retire);
}
END_TEST

/* os_join joins only the two pieces os_split made of one mapping, while
 * both stand as it left them: once the rest is unmapped (and a mapping of
 * another VMA may take its place), or the head is shrunk, the pair is
 * refused with nothing changed. */
START_TEST(join_only_what_split_made)
{
  start();
  const size_t unit = 512 * 1024, size = 8 * unit;
  char *m = os_map_aligned(size, unit);
  ck_assert_ptr_nonnull(m);
  memset(m, 0x11, size);
  char *rest = os_split(m, size, 2 * unit);
  ck_assert_ptr_nonnull(rest);
  size_t rest_size = (size_t)(m + size - rest);
  ck_assert_ptr_eq(os_split_next(m, 2 * unit), rest);
  ck_assert(os_is_split_rest(rest));
  ck_assert_int_eq(os_join(m, 2 * unit, rest, rest_size, false), 0);
  /* Joined: the guard is read-write again and holds what it held. */
  ck_assert_uint_eq((unsigned char)m[2 * unit + 100], 0x11);
  ck_assert_ptr_null(os_split_next(m, 2 * unit));
  ck_assert(!os_is_split_rest(rest));
  ck_assert_int_eq(os_join(m, 2 * unit, rest, rest_size, false), EINVAL);
  /* Split again, unmap the rest: the pair is gone for good. */
  rest = os_split(m, size, 2 * unit);
  ck_assert_ptr_nonnull(rest);
  os_unmap(rest, rest_size);
  ck_assert_ptr_null(os_split_next(m, 2 * unit));
  ck_assert(!os_is_split_rest(rest));
  char *other = os_map_aligned(rest_size, unit);
  ck_assert_ptr_nonnull(other);
  ck_assert_int_eq(os_join(m, 2 * unit, rest, rest_size, false), EINVAL);
  os_unmap(other, rest_size);
  os_unmap(m, 2 * unit);
}
END_TEST

/* os_cut cuts a mapping as os_split does, anywhere (where a second VMA
 * starts), and the pieces, which would stay two VMAs, are never joined;
 * the guard, longer than a page here, gives its pages back first. */
START_TEST(cut_pieces_are_not_joined)
{
  start();
  const size_t unit = 512 * 1024, size = 8 * unit, head = 2 * unit + 3 * 4096;
  char *m = os_map_aligned(size, unit);
  ck_assert_ptr_nonnull(m);
  memset(m, 0x22, size);
  hak_stats_t a = stats_now();
  char *rest = os_cut(m, size, head);
  ck_assert_ptr_eq(rest, m + 3 * unit);
  ck_assert_uint_eq(stats_now().os_madvise - a.os_madvise, 1);
  unsigned char vec[3 * unit / 4096];
  size_t guard_pages = (size_t)(rest - (m + head)) / 4096;
  ck_assert_int_eq(mincore(m + head, guard_pages * 4096, vec), 0);
  for (size_t i = 0; i < guard_pages; i++)
    ck_assert_msg(!(vec[i] & 1), "guard page %zu still resident", i);
  ck_assert_uint_eq((unsigned char)m[head - 1], 0x22);
  ck_assert_uint_eq((unsigned char)rest[0], 0x22);
  size_t rest_size = (size_t)(m + size - rest);
  ck_assert_ptr_null(os_split_next(m, head));
  ck_assert(!os_is_split_rest(rest));
  ck_assert_int_eq(os_join(m, head, rest, rest_size, false), EINVAL);
  ck_assert(os_owns_range(rest, rest_size));
  os_unmap(rest, rest_size);
  os_unmap(m, head);
}
END_TEST

/* A mapping whose growth in place reaches a 4 GiB region the ownership
 * map has no leaf for yet, where the leaf cannot be mapped: the growth
 * is undone, and the mapping's own last unit, which the growth started
 * in, stays hakmem's.  It used to be cleared with the units the growth
 * had tried to mark: the block lost its last unit, and a later realloc
 * and free of it were refused ("mremap refused", "munmap refused": the
 * mapping leaked). */
START_TEST(growth_refused_for_the_ownership_map_keeps_the_mapping_its_own)
{
  start();
  const size_t unit = 512 * 1024, half = unit / 2;
  /* The last unit before a 4 GiB boundary high in the placement region,
   * past where its cursor starts: the region after it has no leaf. */
  const uintptr_t boundary = (uintptr_t)95 << 40, at = boundary - unit;
  ck_assert_ptr_null(atomic_load(&guard_l1[(boundary >> 32) & 0xffff]));
  ck_assert_uint_ne(os_hint_peek(), 0);
  ck_assert_uint_lt(os_hint_peek(), at);
  os_hint_skip(0, at - 4096); /* the cursor moves to at */
  char *m = os_map_aligned(half, unit);
  ck_assert_ptr_eq(m, (char *)at);
  memset(m, 0x33, half);
  hak_stats_t a = stats_now();
  atomic_store(&leaf_map_fails, true);
  int err = os_resize_in_place(m, half, 2 * unit);
  atomic_store(&leaf_map_fails, false);
  ck_assert_int_eq(err, ENOMEM);
  ck_assert_uint_ge(atomic_load(&leaf_maps_failed), 1);
  ck_assert(os_owns_range(m, half));
  ck_assert(!os_owns_range((void *)boundary, unit));
  ck_assert_uint_eq((unsigned char)m[half - 1], 0x33);
  /* Still a mapping of its own size: it grows and is unmapped, neither
   * refused. */
  ck_assert_int_eq(os_resize_in_place(m, half, unit), 0);
  ck_assert_uint_eq((unsigned char)m[half - 1], 0x33);
  os_unmap(m, unit);
  ck_assert_uint_eq(stats_now().os_refused - a.os_refused, 0);
  ck_assert(!os_owns_range(m, unit));
}
END_TEST

/* A hint that meets a reservation not hakmem's (a sanitizer's shadow, a
 * virtual machine's heap) costs one miss, not one per later mapping: the
 * kernel's placement serves that request, and the cursor then starts
 * again at a random address away from the reservation. */
START_TEST(cursor_leaves_a_foreign_reservation_after_one_miss)
{
  start();
  const size_t unit = 512 * 1024, len = (size_t)64 << 20;
  uintptr_t at = (os_hint_peek() + unit - 1) & ~(uintptr_t)(unit - 1);
  ck_assert_uint_ne(at, 0);
  void *foreign = mmap((void *)at, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  ck_assert_ptr_eq(foreign, (void *)at);
  uint64_t misses = atomic_load(&os_counters.hint_misses);
  char *m = os_map_aligned(unit, unit);
  ck_assert_ptr_nonnull(m);
  ck_assert_uint_eq(atomic_load(&os_counters.hint_misses) - misses, 1);
  ck_assert((uintptr_t)m + unit <= at || (uintptr_t)m >= at + len);
  /* Redrawn: not where the reservation would meet it again. */
  uintptr_t cursor = os_hint_peek();
  ck_assert(cursor < at || cursor >= at + len + ((size_t)128 << 20));
  /* The next mapping takes the new cursor's hint, unless that too lies in
   * something already mapped (under AddressSanitizer, a start in its
   * shadow: about one in four), which is then a miss of its own. */
  misses = atomic_load(&os_counters.hint_misses);
  char *n = os_map_aligned(unit, unit);
  ck_assert_ptr_nonnull(n);
  ck_assert((uintptr_t)n + unit <= at || (uintptr_t)n >= at + len);
  if (atomic_load(&os_counters.hint_misses) == misses)
    ck_assert_uint_eq((uintptr_t)n, (cursor + unit - 1) & ~(uintptr_t)(unit - 1));
  os_unmap(n, unit);
  os_unmap(m, unit);
  munmap(foreign, len);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("os");
  TCase *t = tcase_create("os");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, os_guard_refuses_foreign_ranges);
  tcase_add_test(t, decommit_enomem_fails_fast_to_unmap);
  tcase_add_test(t, join_only_what_split_made);
  tcase_add_test(t, cut_pieces_are_not_joined);
  tcase_add_test(t, alignment_past_the_region_refused);
  tcase_add_test(t, growth_refused_for_the_ownership_map_keeps_the_mapping_its_own);
  tcase_add_test(t, cursor_leaves_a_foreign_reservation_after_one_miss);
  suite_add_tcase(s, t);
  return check_run(s);
}
