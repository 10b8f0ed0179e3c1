/* malloc from a dlopened library (its constructor and its functions) and
 * from a constructor that runs before main, with hakmem linked in: blocks
 * cross the boundary in both directions. */
#include <check.h>
#include "test_util.h"
#include <dlfcn.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

static char *before_main;

__attribute__((constructor(101))) static void early_constructor(void)
{
  before_main = malloc(32);
  strcpy(before_main, "before main");
}

START_TEST(constructor_allocation_is_hakmem)
{
  ck_assert_str_eq(before_main, "before main");
  ck_assert_uint_eq(malloc_usable_size(before_main), hak_malloc_usable_size(before_main));
  free(before_main);
}
END_TEST

START_TEST(dlopened_library_allocates_with_hakmem)
{
  const char *path = getenv("DLOPEN_LIB");
  ck_assert_ptr_nonnull(path);
  void *h = dlopen(path, RTLD_NOW);
  ck_assert_msg(h != NULL, "dlopen: %s", dlerror());
  char **early = dlsym(h, "dlopen_lib_early");
  char *(*dup)(const char *) = (char *(*)(const char *))dlsym(h, "dlopen_lib_dup");
  ck_assert_ptr_nonnull(early);
  ck_assert_ptr_nonnull(dup);
  ck_assert_str_eq(*early, "allocated in a dlopened constructor");
  /* Blocks allocated inside the library are hakmem's and free here. */
  ck_assert_uint_ge(hak_malloc_usable_size(*early), 64);
  free(*early);
  for (int i = 0; i < 1000; i++) {
    char *s = dup("copied by the library");
    ck_assert_str_eq(s, "copied by the library");
    ck_assert_uint_ge(hak_malloc_usable_size(s), 22);
    free(s);
  }
  ck_assert_int_eq(dlclose(h), 0);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("dlopen");
  TCase *t = tcase_create("dlopen");
  tcase_add_test(t, constructor_allocation_is_hakmem);
  tcase_add_test(t, dlopened_library_allocates_with_hakmem);
  suite_add_tcase(s, t);
  return check_run(s);
}
