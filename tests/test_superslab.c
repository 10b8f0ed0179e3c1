/* SuperSlabs and the address registry (superslab.c): every address of a
 * SuperSlab, and none outside it, maps to it; its slabs by address;
 * nothing left after it is destroyed; the run of slots a slab of each
 * class spans in a SuperSlab of each size. */
#include <check.h>
#include "test_util.h"

#include "superslab.h"

#include <sys/mman.h>

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

/* A new SuperSlab keeps one page of its header slot resident: the slab
 * descriptors' page, which its own fields share (superslab.h); and a
 * pointer into that slot reads, as a slab descriptor, as the header slot
 * no thread owns. */
START_TEST(header_is_one_page)
{
  for (unsigned lg = HAK_SS_LG_MIN; lg <= HAK_SS_LG_MAX; lg++) {
    struct superslab *ss = superslab_create(lg);
    ck_assert_ptr_nonnull(ss);
    unsigned char vec[HAK_SLAB_SIZE / HAK_PAGE_SIZE];
    ck_assert_int_eq(mincore(ss, HAK_SLAB_SIZE, vec), 0);
    unsigned resident = 0;
    for (size_t i = 0; i < sizeof vec; i++)
      resident += vec[i] & 1;
    ck_assert_uint_eq(resident, 1);
    ck_assert(vec[0] & 1);
    uintptr_t entry = (uintptr_t)ss | REGISTRY_TAG_SUPERSLAB;
    const struct slab *s = superslab_slab_of(entry, (uintptr_t)ss + HAK_SLAB_SIZE - 16);
    ck_assert_ptr_eq(s, &ss->slabs[0]);
    ck_assert_uint_eq(s->state, SLAB_HEADER);
    ck_assert_uint_eq(s->index, 0);
    ck_assert_uint_eq(s->cls, 0);
    ck_assert_uint_eq(s->head_offset, 0);
    uint64_t owner = atomic_load_explicit(&s->owner, memory_order_relaxed);
    ck_assert_uint_ne(owner, HAK_NO_OWNER - 1);  /* the free key under check = 1 */
    ck_assert_uint_ne(owner & ~SLAB_OWNER_MEDIUM, 0);
    ck_assert_uint_gt(owner & ~SLAB_OWNER_MEDIUM, (uint64_t)1 << 40);  /* no thread's id */
    ck_assert_uint_eq(ss->magic, SUPERSLAB_MAGIC);
    superslab_destroy(ss);
  }
}
END_TEST

/* A medium slab's run holds two to eight whole blocks and no slot they
 * leave empty; it fits beside the header of a SuperSlab of every size,
 * and fills its slots exactly where the SuperSlab holds the whole run
 * (superslab_lg 20 and 21). */
START_TEST(span_slots_fit_every_superslab)
{
  for (unsigned lg = HAK_SS_LG_MIN; lg <= HAK_SS_LG_MAX; lg++) {
    unsigned nslabs = 1u << (lg - HAK_SLAB_SHIFT);
    for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
      unsigned k = superslab_span_slots(c, nslabs);
      size_t bs = size_class_size(c), span = (size_t)k << HAK_SLAB_SHIFT;
      size_t blocks = span / bs;
      ck_assert_uint_ge(k, 1);
      ck_assert_uint_le(k, nslabs - 1);
      ck_assert_uint_ge(blocks, 1);
      /* The last slot holds a block's start or end: none is wasted whole. */
      ck_assert_uint_gt(blocks * bs, span - HAK_SLAB_SIZE);
      if (!size_class_is_medium(c)) {
        ck_assert_uint_eq(k, 1);
        continue;
      }
      ck_assert_uint_le(k, HAK_MEDIUM_SLOTS_MAX);
      if (size_class_slots(c) < nslabs) {
        ck_assert_uint_eq(k, size_class_slots(c));
        ck_assert_uint_ge(k, 3);
        ck_assert_uint_eq(blocks * bs, span);
        ck_assert_uint_ge(blocks, 2);
      }
    }
  }
}
END_TEST

int main(void)
{
  Suite *s = suite_create("superslab");
  TCase *t = tcase_create("registry");
  tcase_add_test(t, registry_bounds);
  tcase_add_test(t, header_is_one_page);
  tcase_add_test(t, span_slots_fit_every_superslab);
  suite_add_tcase(s, t);
  return check_run(s);
}
