/* The front door (alloc.c) and checked mode (checkmode.c): a free of a
 * pointer hakmem did not hand out, of a block twice (its last bytes just
 * written, or not), into a SuperSlab's
 * header slab, each aborts; check = 1's slow free path (its fill and
 * comparison loops are tests/test_checkmode's). */
#include <check.h>
#include "test_util.h"
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "checkmode.h"
#include "config.h"
#include "secret.h"
#include "superslab.h"

START_TEST(free_of_foreign_pointer_aborts)
{
  static char not_ours[64];
  hak_free(not_ours + 16);
}
END_TEST

START_TEST(double_free_aborts)
{
  void *p = hak_malloc(40);
  hak_free(p);
  hak_free(p);
}
END_TEST

/* A 16-byte block whose last bytes were just written with narrow stores
 * (the NUL of a string), as free's fast path reads only the tag's low
 * half: the second free still finds the tag. */
START_TEST(double_free_of_written_small_block_aborts)
{
  char *p = hak_malloc(opaque(16));
  memset(p, 'x', 15);
  p[15] = 0;
  hak_free(p);
  hak_free(p);
}
END_TEST

/* A live block that holds the free tag's low half where the tag goes,
 * but not the rest of it, is no double free: free's fast path sends it
 * to the slow path, which tests the whole tag and frees it, and the next
 * malloc of its class hands it out again. */
START_TEST(half_of_free_tag_in_live_block_frees)
{
  unsigned char *p = hak_malloc(opaque(16));
  uint32_t half = (uint32_t)slab_free_tag(p), other = ~(uint32_t)(slab_free_tag(p) >> 32);
  memcpy(p + sizeof(uintptr_t), &half, sizeof half);
  memcpy(p + sizeof(uintptr_t) + sizeof half, &other, sizeof other);
  hak_free(p);
  ck_assert_ptr_eq(hak_malloc(opaque(16)), p);
  hak_free(p);
}
END_TEST

/* free's fast path finds the slab from the address by the SuperSlab
 * size; a slab block it does not take (a SuperSlab of another size)
 * reaches alloc_free_generic with its registry entry, which frees it
 * as a slab block, not as a large one. */
START_TEST(generic_free_takes_slab_blocks)
{
  void *p = hak_malloc(opaque(40));
  uintptr_t e = registry_lookup((uintptr_t)p);
  ck_assert(registry_is_superslab(e));
  alloc_free_generic(p, e);
  ck_assert_ptr_eq(hak_malloc(opaque(40)), p);
  hak_free(p);
}
END_TEST

START_TEST(free_into_header_slab_aborts)
{
  void *p = hak_malloc(40);
  uintptr_t ss = registry_lookup((uintptr_t)p) - REGISTRY_TAG_SUPERSLAB;
  hak_free((void *)(ss + 4096));
}
END_TEST

/* check = 1, loaded at start-up (a fresh process): blocks carry their
 * canary, and every free takes the slow path, which still refuses an
 * interior pointer. */
START_TEST(check_mode_catches_interior_pointer)
{
  /* The first allocation starts the library (the core library has no
   * constructor: that is stats.c's, in libhakmem). */
  unsigned char *p = hak_malloc(opaque(40));
  ck_assert_int_eq(hak_config.check, 1);
  ck_assert_uint_eq(p[40], CHECK_FILL);
  hak_free(p + 16);
}
END_TEST

START_TEST(check_mode_case)
{
  char *env[] = { "HAKMEM_CHECK=1", NULL };
  run_case_in_env("check_mode", env);
}
END_TEST

/* free's fast path takes the slab descriptor from the address alone
 * (alloc_slab_of), for every SuperSlab size: it must be the one the
 * registry entry gives, in every slot that blocks of six classes, tiny
 * to medium, reach, and the blocks freed through it come back. */
START_TEST(slab_of_address_matches_registry)
{
  enum { N = 4096 };
  static void *blocks[N];
  const size_t sizes[] = { 16, 40, 200, 1024, 3000, 20000 };
  unsigned slots_seen = 0;
  uintptr_t last_slot = 0;
  for (unsigned i = 0; i < N; i++) {
    void *p = hak_malloc(opaque(sizes[i % 6]));
    ck_assert_ptr_nonnull(p);
    uintptr_t e = registry_lookup((uintptr_t)p);
    ck_assert(registry_is_superslab(e));
    struct slab *s;
    ck_assert(alloc_slab_of(e, p, &s));
    ck_assert_ptr_eq(s, superslab_slab_of(e, (uintptr_t)p));
    struct slab *other;
    ck_assert(!alloc_slab_of(e + ((uintptr_t)1 << hak_config.superslab_lg), p, &other));
    if (((uintptr_t)p >> HAK_SLAB_SHIFT) != last_slot)
      slots_seen++;
    last_slot = (uintptr_t)p >> HAK_SLAB_SHIFT;
    blocks[i] = p;
  }
  ck_assert_uint_gt(slots_seen, 8);
  for (unsigned i = N; i-- > 0;)
    hak_free(blocks[i]);
  ck_assert_ptr_eq(hak_malloc(opaque(sizes[0])), blocks[0]);
}
END_TEST

START_TEST(slab_of_address_case)
{
  char *lg19[] = { "HAKMEM_SUPERSLAB_LG=19", NULL };
  char *lg21[] = { "HAKMEM_SUPERSLAB_LG=21", NULL };
  run_case_in_env("slab_of_address", lg19);
  run_case_in_env("slab_of_address", lg21);
}
END_TEST

/* The cases run by run_case_in_env, each in a process of its own whose
 * environment sets the options. */
static Suite *fresh_suite(void)
{
  Suite *s = suite_create("alloc");
  TCase *t = tcase_create("check_mode");
  tcase_add_test_raise_signal(t, check_mode_catches_interior_pointer, SIGABRT);
  suite_add_tcase(s, t);
  t = tcase_create("slab_of_address");
  tcase_add_test(t, slab_of_address_matches_registry);
  suite_add_tcase(s, t);
  return s;
}

int main(void)
{
  if (fresh_case_requested())
    return check_run(fresh_suite());
  Suite *s = suite_create("alloc");
  TCase *t = tcase_create("checks");
  /* Two cases run this program again in fresh processes: under
   * AddressSanitizer on a loaded machine one of them took up to a second,
   * a quarter of Check's default limit of 4 s. */
  tcase_set_timeout(t, 60);
  tcase_add_test_raise_signal(t, free_of_foreign_pointer_aborts, SIGABRT);
  tcase_add_test_raise_signal(t, double_free_aborts, SIGABRT);
  tcase_add_test_raise_signal(t, double_free_of_written_small_block_aborts, SIGABRT);
  tcase_add_test(t, half_of_free_tag_in_live_block_frees);
  tcase_add_test(t, generic_free_takes_slab_blocks);
  tcase_add_test_raise_signal(t, free_into_header_slab_aborts, SIGABRT);
  tcase_add_test(t, check_mode_case);
  tcase_add_test(t, slab_of_address_matches_registry);
  tcase_add_test(t, slab_of_address_case);
  suite_add_tcase(s, t);
  return check_run(s);
}
