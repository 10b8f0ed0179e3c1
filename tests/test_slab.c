/* Slabs (slab.c): carving a page at a time, the remote stack and its
 * drain, the free path's block index, the end of a local list, encoded
 * links.  Slabs are formatted by hand in SuperSlabs made for the test. */
#include <check.h>
#include "test_util.h"
#include <signal.h>

#include "secret.h"
#include "size_class.h"
#include "slab.h"
#include "superslab.h"

START_TEST(slab_carve_and_drain)
{
  struct superslab *ss = superslab_create(HAK_SS_LG_DEFAULT);
  ck_assert_ptr_nonnull(ss);
  struct slab *s = &ss->slabs[3];
  slab_format(s, size_class_of(64), 64, HAK_SLAB_SIZE);
  ck_assert_uint_eq(s->capacity, HAK_SLAB_SIZE / 64);
  ck_assert_ptr_eq(slab_start(s), (char *)ss + 3 * HAK_SLAB_SIZE);
  /* Carving goes a page at a time. */
  ck_assert_uint_eq(slab_carve(s), HAK_PAGE_SIZE / 64);
  ck_assert_ptr_eq(s->free, slab_start(s));
  /* Take every block, then give three back through the remote stack. */
  void *blocks[HAK_SLAB_SIZE / 64];
  unsigned n = 0;
  for (;;) {
    if (slab_list_is_end(s->free) && !slab_carve(s))
      break;
    blocks[n++] = s->free;
    s->free = slab_link_next(s, s->free);
    s->used++;
  }
  ck_assert_uint_eq(n, s->capacity);
  ck_assert_uint_eq(s->used, s->capacity);
  ck_assert(!slab_has_room(s));
  slab_free_remote(s, blocks[0]);
  slab_free_remote(s, blocks[7]);
  slab_free_remote(s, blocks[100]);
  ck_assert(slab_has_room(s));
  ck_assert_uint_eq(slab_drain_remote(s), 3);
  ck_assert_uint_eq(s->used, s->capacity - 3);
  ck_assert_uint_eq(slab_drain_remote(s), 0);
  unsigned k = 0;
  for (void *p = s->free; !slab_list_is_end(p); p = slab_link_next(s, p))
    k++;
  ck_assert_uint_eq(k, 3);
  superslab_destroy(ss);
}
END_TEST

/* Every small class carves a page's worth of blocks at a time, but at
 * least SLAB_CARVE_MIN (blocks of 1-4 KiB would otherwise refill every
 * first or second malloc), except a slab's first carve, which then takes
 * the blocks that start in its first page (one at least), so that a
 * class used for a block or two touches one page, and the second, which
 * makes up SLAB_CARVE_MIN with it; never more than the slab holds. */
START_TEST(slab_carve_batch_per_class)
{
  struct superslab *ss = superslab_create(HAK_SS_LG_DEFAULT);
  ck_assert_ptr_nonnull(ss);
  for (unsigned c = 0; c < HAK_NUM_SMALL_CLASSES; c++) {
    size_t bs = size_class_size(c);
    struct slab *s = &ss->slabs[2];
    slab_format(s, c, (uint32_t)bs, HAK_SLAB_SIZE);
    uint32_t first = (uint32_t)(HAK_PAGE_SIZE / bs);
    if (first < SLAB_CARVE_MIN)
      first = (uint32_t)((HAK_PAGE_SIZE + bs - 1) / bs);
    if (first > s->capacity)
      first = s->capacity;
    ck_assert_msg(slab_carve(s) == first, "class %u (%zu B): first carve other than %u", c, bs, first);
    /* The last block carved starts in the first page. */
    ck_assert_uint_lt((first - 1) * bs, HAK_PAGE_SIZE);
    uint32_t k = 0;
    for (void *p = s->free; !slab_list_is_end(p); p = slab_link_next(s, p))
      k++;
    ck_assert_uint_eq(k, first);
    uint32_t next = (uint32_t)(HAK_PAGE_SIZE / bs);
    /* Then as many as make SLAB_CARVE_MIN with the first. */
    if (next < SLAB_CARVE_MIN)
      next = first < SLAB_CARVE_MIN ? SLAB_CARVE_MIN - first : SLAB_CARVE_MIN;
    if (next > s->capacity - first)
      next = s->capacity - first;
    ck_assert_msg(slab_carve(s) == next, "class %u (%zu B): second carve other than %u", c, bs, next);
    k = 0;
    for (void *p = s->free; !slab_list_is_end(p); p = slab_link_next(s, p))
      k++;
    ck_assert_uint_eq(k, first + next);
    /* From there, SLAB_CARVE_MIN at a time as before. */
    uint32_t left = s->capacity - s->carved;
    if (bs > HAK_PAGE_SIZE / SLAB_CARVE_MIN && left)
      ck_assert_uint_eq(slab_carve(s), left < SLAB_CARVE_MIN ? left : SLAB_CARVE_MIN);
  }
  superslab_destroy(ss);
}
END_TEST

/* slab_block_index, the free path's O(1) block test, against division:
 * for every class, every offset of the slab's span (a medium slab's five
 * to eight slots, or 31 with the largest classes cut to the whole
 * SuperSlab: slab_is_block) and at least of its first 64 KiB slot (the
 * fast path's offsets, which can pass the last block of a small slab). */
START_TEST(slab_block_index_exact)
{
  struct slab s = { 0 };
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    size_t bs = size_class_size(c);
    size_t span = size_class_is_medium(c) ? ((size_t)31 << HAK_SLAB_SHIFT) : HAK_SLAB_SIZE;
    ck_assert_uint_le((size_t)size_class_slots(c) << HAK_SLAB_SHIFT, span);
    slab_format(&s, c, (uint32_t)bs, span);
    s.carved = s.capacity;
    uint32_t wrong = 0, end = (uint32_t)span;
    for (uint32_t off = 0; off < end; off++) {
      uint32_t i = slab_block_index(&s, off);
      wrong += off % bs == 0 ? i != off / bs : i < s.capacity;
    }
    ck_assert_msg(wrong == 0, "class %u (%zu B): %u offsets misjudged", c, bs, wrong);
  }
}
END_TEST

/* The end of a local list, which an empty list's head is too, decodes
 * outside every slot, so that malloc's fast path, whose only branch is
 * the link check, leaves for the slow path instead of popping it. */
START_TEST(slab_list_end_fails_the_link_check)
{
  secret_init();
  void *end = SLAB_LIST_END;
  if (!hak_hardened) {
    ck_assert_ptr_null(end);
    return;
  }
  ck_assert_ptr_nonnull(end);
  ck_assert_uint_ge(((const uintptr_t *)end)[0] ^ hak_secret_list, HAK_SLAB_SIZE);
  ck_assert(slab_list_is_end(end) && slab_list_is_end(NULL));
  /* A formatted slab's list starts empty and ends there once carved. */
  struct superslab *ss = superslab_create(HAK_SS_LG_DEFAULT);
  ck_assert_ptr_nonnull(ss);
  struct slab *s = &ss->slabs[2];
  slab_format(s, size_class_of(1024), 1024, HAK_SLAB_SIZE);
  ck_assert_ptr_eq(s->free, end);
  uint32_t n = slab_carve(s), k = 0;
  void *p = s->free;
  for (; !slab_list_is_end(p); p = slab_link_next(s, p))
    k++;
  ck_assert_uint_eq(k, n);
  ck_assert_ptr_eq(p, end);
  superslab_destroy(ss);
}
END_TEST

/* A free block's link is stored encoded: a plain pointer written over it
 * (use after free) is caught when the list reaches it, never followed. */
START_TEST(slab_link_poison_is_fatal)
{
  struct superslab *ss = superslab_create(HAK_SS_LG_DEFAULT);
  ck_assert_ptr_nonnull(ss);
  secret_init();
  struct slab *s = &ss->slabs[2];
  slab_format(s, size_class_of(32), 32, HAK_SLAB_SIZE);
  slab_carve(s);
  void *p = s->free;
  static char target[64];
  ck_assert_ptr_ne(*(void **)p, (void *)(slab_start(s) + 32));
  *(void **)p = target;
  slab_link_next(s, p);
  ck_abort_msg("a poisoned link was followed");
}
END_TEST

/* A slot remembers the class it held before the current one, and no
 * class at all before its first format: a new SuperSlab's descriptors
 * are zero, which is class 0's number, not a class the slot held. */
START_TEST(slab_format_remembers_the_previous_class)
{
  struct superslab *ss = superslab_create(HAK_SS_LG_DEFAULT);
  ck_assert_ptr_nonnull(ss);
  struct slab *s = &ss->slabs[2];
  slab_format(s, 0, (uint32_t)size_class_size(0), HAK_SLAB_SIZE);
  ck_assert_uint_eq(s->prev_cls, SLAB_NO_CLASS);
  slab_format(s, 0, (uint32_t)size_class_size(0), HAK_SLAB_SIZE);
  ck_assert_uint_eq(s->prev_cls, SLAB_NO_CLASS);
  unsigned c = size_class_of(256);
  slab_format(s, c, (uint32_t)size_class_size(c), HAK_SLAB_SIZE);
  ck_assert_uint_eq(s->prev_cls, 0);
  slab_format(s, c, (uint32_t)size_class_size(c), HAK_SLAB_SIZE);
  ck_assert_uint_eq(s->prev_cls, 0);
  slab_format(s, 1, (uint32_t)size_class_size(1), HAK_SLAB_SIZE);
  ck_assert_uint_eq(s->prev_cls, c);
  superslab_destroy(ss);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("slab");
  TCase *t = tcase_create("slab");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, slab_carve_and_drain);
  tcase_add_test(t, slab_carve_batch_per_class);
  tcase_add_test(t, slab_block_index_exact);
  tcase_add_test(t, slab_list_end_fails_the_link_check);
  tcase_add_test(t, slab_format_remembers_the_previous_class);
  tcase_add_test_raise_signal(t, slab_link_poison_is_fatal, SIGABRT);
  suite_add_tcase(s, t);
  return check_run(s);
}
