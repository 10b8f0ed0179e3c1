/* Size classes (size_class.c): the table's shape, the lookup's smallest
 * fit for every size, the waste bound, aligned classes. */
#include <check.h>
#include "test_util.h"

#include "size_class.h"

START_TEST(size_class_table)
{
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    size_t b = size_class_size(c);
    ck_assert_uint_eq(b % 16, 0);
    if (c > 0)
      ck_assert_uint_gt(b, size_class_size(c - 1));
  }
  ck_assert_uint_eq(size_class_size(HAK_NUM_SMALL_CLASSES - 1), HAK_SMALL_MAX);
  ck_assert_uint_eq(size_class_size(HAK_NUM_CLASSES - 1), HAK_MEDIUM_MAX);
  for (size_t p = 16; p <= HAK_MEDIUM_MAX; p *= 2)
    ck_assert_uint_eq(size_class_size(size_class_of(p)), p);
  /* Above 64 KiB, three classes per doubling: 80, 96, 128 KiB, and twice
   * that. */
  static const size_t above_64k[] = { 81920, 98304, 131072, 163840, 196608, 262144 };
  unsigned c64 = size_class_of(65536);
  ck_assert_uint_eq(HAK_NUM_CLASSES - 1 - c64, sizeof above_64k / sizeof above_64k[0]);
  for (unsigned i = 0; i < sizeof above_64k / sizeof above_64k[0]; i++)
    ck_assert_uint_eq(size_class_size(c64 + 1 + i), above_64k[i]);
}
END_TEST

START_TEST(size_class_lookup_is_smallest_fit)
{
  /* Plain tests in the loop, one assertion per failure: a million passing
   * ck_asserts would cost seconds. */
  for (size_t n = 0; n <= HAK_MEDIUM_MAX; n++) {
    unsigned c = size_class_of(n);
    size_t b = size_class_size(c);
    if (b < n || (c > 0 && size_class_size(c - 1) >= n))
      ck_abort_msg("size %zu: class %u (%zu B) is not the smallest fit", n, c, b);
    if (n <= HAK_TINY_MAX && size_class_of_tiny(n) != c)
      ck_abort_msg("size %zu: tiny table disagrees", n);
    if (n > HAK_TINY_MAX && n <= HAK_SMALL_MAX && size_class_of_small(n) != c)
      ck_abort_msg("size %zu: small table disagrees", n);
    /* malloc's small requests pop with tcache_alloc_small, which has no
     * medium test. */
    if (n <= HAK_SMALL_MAX && size_class_is_medium(c))
      ck_abort_msg("size %zu: a medium class", n);
    /* The 16-byte minimum dictates the waste of tiny requests; from 48 B
     * on it stays within 25 % of the block, from 64 B to 64 KiB under
     * 20 % (above, three classes per doubling). */
    if (n >= 48 && (b - n) * 4 > b)
      ck_abort_msg("size %zu: waste over 25 %% in %zu B", n, b);
    if (n > 64 && n <= 65536 && (b - n) * 5 >= b)
      ck_abort_msg("size %zu: waste 20 %% or more in %zu B", n, b);
  }
}
END_TEST

/* Every size up to the largest class at every alignment up to a slab
 * slot (64 KiB) has a class, the smallest whose block size is a multiple
 * of the alignment: the medium classes included, so that a 64 KiB page
 * aligned to 64 KiB comes from a slab. */
START_TEST(size_class_aligned)
{
  for (size_t align = 32; align <= HAK_SLAB_SIZE; align *= 2)
    for (size_t n = 1; n <= HAK_MEDIUM_MAX; n = n * 3 + 1) {
      int c = size_class_for_aligned(n, align);
      ck_assert_int_ge(c, 0);
      ck_assert_uint_ge(size_class_size((unsigned)c), n);
      ck_assert_uint_eq(size_class_size((unsigned)c) % align, 0);
      for (int d = c - 1; d >= 0 && size_class_size((unsigned)d) >= n; d--)
        ck_assert_uint_ne(size_class_size((unsigned)d) % align, 0);
    }
  ck_assert_int_eq(size_class_for_aligned(HAK_SLAB_SIZE, HAK_SLAB_SIZE),
                   (int)size_class_of(HAK_SLAB_SIZE));
  ck_assert_int_eq(size_class_for_aligned(HAK_MEDIUM_MAX, HAK_SLAB_SIZE),
                   HAK_NUM_CLASSES - 1);
  ck_assert_int_eq(size_class_for_aligned(HAK_MEDIUM_MAX + 1, 64), -1);
  ck_assert_int_eq(size_class_for_aligned(64, HAK_SLAB_SIZE * 2), -1);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("size_class");
  TCase *t = tcase_create("size_class");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, size_class_table);
  tcase_add_test(t, size_class_lookup_is_smallest_fit);
  tcase_add_test(t, size_class_aligned);
  suite_add_tcase(s, t);
  return check_run(s);
}
