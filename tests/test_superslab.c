/* SuperSlabs and the address registry (superslab.c): every address of a
 * SuperSlab, and none outside it, maps to it; its slabs by address;
 * nothing left after it is destroyed. */
#include <check.h>
#include "test_util.h"

#include "superslab.h"

START_TEST(registry_bounds)
{
  struct superslab *ss = superslab_create(HAK_SS_LG_DEFAULT);
  ck_assert_ptr_nonnull(ss);
  uintptr_t base = (uintptr_t)ss, size = (uintptr_t)1 << HAK_SS_LG_DEFAULT;
  uintptr_t entry = base | REGISTRY_TAG_SUPERSLAB;
  ck_assert_uint_eq(registry_lookup(base), entry);
  ck_assert_uint_eq(registry_lookup(base + size / 2 + 17), entry);
  ck_assert_uint_eq(registry_lookup(base + size - 1), entry);
  ck_assert_uint_ne(registry_lookup(base - 1), entry);
  ck_assert_uint_ne(registry_lookup(base + size), entry);
  ck_assert_ptr_eq(superslab_slab_of(entry, base + 5 * HAK_SLAB_SIZE + 100), &ss->slabs[5]);
  int on_stack;
  ck_assert_uint_eq(registry_lookup((uintptr_t)&on_stack), 0);
  ck_assert_uint_eq(registry_lookup((uintptr_t)&registry_l1), 0);
  ck_assert_uint_eq(registry_lookup(~(uintptr_t)0), 0);
  superslab_destroy(ss);
  ck_assert_uint_eq(registry_lookup(base), 0);
  ck_assert_uint_eq(registry_lookup(base + size - 1), 0);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("superslab");
  TCase *t = tcase_create("registry");
  tcase_add_test(t, registry_bounds);
  suite_add_tcase(s, t);
  return check_run(s);
}
