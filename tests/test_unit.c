/* Unit tests of the allocator's layers, through their internal interfaces
 * (linked against libhakmem_core, which does not replace malloc). */
#include <check.h>
#include "test_util.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"
#include "alloc.h"
#include "checkmode.h"
#include "config.h"
#include "large.h"
#include "os.h"
#include "shared_pool.h"
#include "size_class.h"
#include "secret.h"
#include "slab.h"
#include "superslab.h"
#include "tcache.h"

/* ---- size classes ---- */

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
    /* The 16-byte minimum dictates the waste of tiny requests; from 48 B
     * on it stays within 25 % of the block, above 64 B under 20 %. */
    if (n >= 48 && (b - n) * 4 > b)
      ck_abort_msg("size %zu: waste over 25 %% in %zu B", n, b);
    if (n > 64 && (b - n) * 5 >= b)
      ck_abort_msg("size %zu: waste 20 %% or more in %zu B", n, b);
  }
}
END_TEST

START_TEST(size_class_aligned)
{
  for (size_t align = 32; align <= HAK_SMALL_MAX; align *= 2)
    for (size_t n = 1; n <= HAK_SMALL_MAX; n = n * 3 + 1) {
      int c = size_class_for_aligned(n, align);
      ck_assert_int_ge(c, 0);
      ck_assert_uint_ge(size_class_size((unsigned)c), n);
      ck_assert_uint_eq(size_class_size((unsigned)c) % align, 0);
    }
  ck_assert_int_eq(size_class_for_aligned(HAK_SMALL_MAX + 1, 64), -1);
  ck_assert_int_eq(size_class_for_aligned(64, HAK_SMALL_MAX * 2), -1);
}
END_TEST

/* ---- slab ---- */

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

/* slab_block_index, the free path's O(1) block test, against division:
 * for every class, every offset of the slab's span (a medium slab's 31
 * slots: slab_is_block) and at least of its first 64 KiB slot (the fast
 * path's offsets, which can pass the last block of a small slab). */
START_TEST(slab_block_index_exact)
{
  struct slab s = { 0 };
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    size_t bs = size_class_size(c);
    size_t span = size_class_is_medium(c) ? ((size_t)31 << HAK_SLAB_SHIFT) : HAK_SLAB_SIZE;
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

/* check_is_filled, whose short runs are compared with overlapping loads:
 * every length up to 200 bytes, at two alignments, finds a wrong byte at
 * every position and ignores the bytes just outside the run. */
START_TEST(check_fill_test_finds_every_byte)
{
  static unsigned char buf[256 + 32] __attribute__((aligned(16)));
  uint32_t wrong = 0;
  for (size_t align = 0; align < 2; align++)
    for (size_t n = 0; n <= 200; n++) {
      unsigned char *p = buf + 16 + align * 8;
      memset(buf, 0, sizeof buf);
      memset(p, CHECK_FILL, n);
      wrong += !check_is_filled(p, n);
      for (size_t j = 0; j < n; j++) {
        p[j] = CHECK_FILL ^ 0x40;
        wrong += check_is_filled(p, n);
        p[j] = CHECK_FILL;
      }
    }
  ck_assert_msg(wrong == 0, "%u runs misjudged", wrong);
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

/* ---- registry ---- */

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

START_TEST(registry_large_blocks)
{
  char *p = hak_malloc(400000);
  ck_assert_ptr_nonnull(p);
  uintptr_t e = registry_lookup((uintptr_t)p);
  ck_assert(e != 0 && !registry_is_superslab(e));
  struct large_hdr *h = large_from_entry(e, p);
  ck_assert_ptr_nonnull(h);
  ck_assert_ptr_eq(large_block(h), p);
  ck_assert_uint_ge(large_usable(h), 400000);
  ck_assert_ptr_eq(large_from_entry(e, p + 399999), h);
  ck_assert_ptr_null(large_from_entry(e, (char *)h + h->map_size));
  hak_free(p);
}
END_TEST

/* ---- thread cache and shared pool ---- */

static void *alloc_free_many(void *arg)
{
  size_t n = (size_t)(uintptr_t)arg;
  void **v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++)
    v[i] = hak_malloc(256);
  for (size_t i = 0; i < n; i++)
    hak_free(v[i]);
  free(v);
  return NULL;
}

START_TEST(pool_reuses_empty_slabs)
{
  hak_stats_t a = stats_now();
  /* 2000 blocks of 256 B span several slabs; all but the active one
   * become EMPTY on free and go back to the pool... */
  alloc_free_many((void *)(uintptr_t)2000);
  hak_stats_t b = stats_now();
  ck_assert_uint_gt(b.slabs_emptied, a.slabs_emptied);
  /* ...and the next round takes them back through stage 1. */
  alloc_free_many((void *)(uintptr_t)2000);
  hak_stats_t c = stats_now();
  ck_assert_uint_gt(c.pool_reuse_empty, b.pool_reuse_empty);
  ck_assert_uint_eq(c.pool_new_superslab, b.pool_new_superslab);
  ck_assert_uint_ge(c.malloc_calls - a.malloc_calls, 4000);
}
END_TEST

START_TEST(pool_stage2_claims_unused)
{
  hak_stats_t a = stats_now();
  void *p = hak_malloc(5000);
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.pool_claim_unused - a.pool_claim_unused +
                    b.pool_new_superslab - a.pool_new_superslab, 1);
  hak_free(p);
}
END_TEST

static void *leave_blocks(void *arg)
{
  void **out = arg;
  for (int i = 0; i < 64; i++)
    out[i] = hak_malloc(96);
  return NULL;
}

START_TEST(exited_thread_slabs_are_adopted)
{
  void *blocks[64];
  pthread_t t;
  hak_stats_t a = stats_now();
  ck_assert_int_eq(pthread_create(&t, NULL, leave_blocks, blocks), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* The thread's slab is an orphan now; our frees are remote pushes. */
  for (int i = 0; i < 64; i++)
    hak_free(blocks[i]);
  /* Our next allocations of the class adopt the slab and, once its local
   * list runs dry, collect the 64 blocks. */
  for (int i = 0; i < 64; i++)
    blocks[i] = hak_malloc(96);
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.pool_adopt - a.pool_adopt, 1);
  ck_assert_uint_eq(b.remote_frees - a.remote_frees, 64);
  for (int i = 0; i < 64; i++)
    hak_free(blocks[i]);
}
END_TEST

static void *free_remote(void *arg)
{
  void **v = arg;
  for (int i = 0; i < 1000; i++)
    hak_free(v[i]);
  return NULL;
}

START_TEST(remote_frees_are_drained)
{
  void *v[1000];
  for (int i = 0; i < 1000; i++)
    v[i] = hak_malloc(48);
  hak_stats_t a = stats_now();
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, free_remote, v), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  /* Allocating the class again drains the remote stacks. */
  for (int i = 0; i < 1000; i++)
    v[i] = hak_malloc(48);
  hak_stats_t b = stats_now();
  ck_assert_uint_ge(b.remote_drains - a.remote_drains, 1);
  ck_assert_uint_ge(b.remote_frees - a.remote_frees, 1);
  for (int i = 0; i < 1000; i++)
    hak_free(v[i]);
}
END_TEST

START_TEST(one_block_loop_stays_on_fast_path)
{
  void *p = hak_malloc(32);
  hak_free(p);
  hak_stats_t a = stats_now();
  for (int i = 0; i < 100000; i++) {
    p = hak_malloc(32);
    *(volatile char *)p = 1;
    hak_free(p);
  }
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.refills, a.refills);
  ck_assert_uint_eq(b.slabs_emptied, a.slabs_emptied);
  ck_assert_uint_ge(b.malloc_calls - a.malloc_calls, 100000);
}
END_TEST

static void *free_all(void *arg)
{
  void **v = arg;
  for (int i = 0; i < 20; i++)
    hak_free(v[i]);
  return NULL;
}

START_TEST(medium_blocks_span_a_superslab)
{
  void *v[40];
  hak_stats_t a = stats_now();
  for (int i = 0; i < 40; i++) {
    v[i] = hak_malloc(100000);
    ck_assert_ptr_nonnull(v[i]);
    ck_assert_uint_eq(hak_malloc_usable_size(v[i]), 114688);
    memset(v[i], i, 100000);
    uintptr_t e = registry_lookup((uintptr_t)v[i]);
    ck_assert(registry_is_superslab(e));
  }
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.large_allocs, a.large_allocs);
  /* 1984 KiB / 112 KiB = 17 blocks a slab: three slabs. */
  ck_assert_uint_eq(b.pool_new_superslab - a.pool_new_superslab +
                    b.pool_claim_unused - a.pool_claim_unused, 3);
  /* Half freed by another thread, half here, tail slots included. */
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, free_all, v), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
  for (int i = 20; i < 40; i++) {
    ck_assert_uint_eq(((unsigned char *)v[i])[99999], (unsigned char)i);
    hak_free(v[i]);
  }
  for (int i = 0; i < 40; i++)
    v[i] = hak_malloc(100000);
  hak_stats_t c = stats_now();
  ck_assert_uint_ge(c.remote_frees - b.remote_frees, 1);
  for (int i = 0; i < 40; i++)
    hak_free(v[i]);
  hak_stats_t d = stats_now();
  ck_assert_uint_gt(d.slabs_emptied, c.slabs_emptied);
}
END_TEST

/* ---- large blocks ---- */

START_TEST(bigcache_reuses_mappings)
{
  char *p = hak_malloc(3 << 20);
  memset(p, 0x5a, 3 << 20);
  hak_free(p);
  hak_stats_t a = stats_now();
  char *q = hak_malloc(3 << 20);
  hak_stats_t b = stats_now();
  ck_assert_uint_eq(b.bigcache_hits - a.bigcache_hits, 1);
  ck_assert_uint_eq(b.os_mmap, a.os_mmap);
  hak_free(q);
  /* calloc of a reused mapping is still zero. */
  unsigned char *z = hak_calloc(1, 3 << 20);
  for (size_t i = 0; i < (3u << 20); i += 4093)
    ck_assert_uint_eq(z[i], 0);
  hak_free(z);
}
END_TEST

START_TEST(large_realloc_moves_pages)
{
  size_t n = 1 << 20;
  unsigned char *p = hak_malloc(n);
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(i * 7);
  hak_stats_t a = stats_now();
  for (size_t m = 2 * n; m <= 64 * n; m *= 2) {
    p = hak_realloc(p, m);
    ck_assert_ptr_nonnull(p);
  }
  hak_stats_t b = stats_now();
  ck_assert_uint_gt(b.os_mremap, a.os_mremap);
  for (size_t i = 0; i < n; i++)
    ck_assert_uint_eq(p[i], (unsigned char)(i * 7));
  p = hak_realloc(p, 100);
  for (size_t i = 0; i < 100; i++)
    ck_assert_uint_eq(p[i], (unsigned char)(i * 7));
  ck_assert(registry_is_superslab(registry_lookup((uintptr_t)p)));
  hak_free(p);
}
END_TEST

/* Two large blocks grown in turn: a failed in-place growth must leave the
 * neighbour's mapping hakmem's. */
START_TEST(large_realloc_neighbours)
{
  char *p[2];
  size_t sz[2] = { 300000, 300000 };
  for (int i = 0; i < 2; i++)
    p[i] = hak_malloc(sz[i]);
  for (int step = 0; step < 20; step++)
    for (int i = 0; i < 2; i++) {
      size_t n = sz[i] + sz[i] / 4;
      p[i] = hak_realloc(p[i], n);
      ck_assert_ptr_nonnull(p[i]);
      p[i][n - 1] = (char)step;
      sz[i] = n;
    }
  for (int i = 0; i < 2; i++)
    hak_free(p[i]);
}
END_TEST

START_TEST(trim_returns_memory)
{
  alloc_free_many((void *)(uintptr_t)20000);
  void *big = hak_malloc(1 << 20);
  hak_free(big);
  hak_stats_t a = stats_now();
  ck_assert_int_eq(hak_trim(0), 1);
  hak_stats_t b = stats_now();
  ck_assert_uint_gt(b.os_madvise + b.os_munmap, a.os_madvise + a.os_munmap);
  ck_assert_uint_eq(b.bigcache_bytes, 0);
  ck_assert_uint_lt(b.mapped_bytes, a.mapped_bytes);
}
END_TEST

/* ---- bad pointers ---- */

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

START_TEST(free_into_header_slab_aborts)
{
  void *p = hak_malloc(40);
  uintptr_t ss = registry_lookup((uintptr_t)p) - REGISTRY_TAG_SUPERSLAB;
  hak_free((void *)(ss + 4096));
}
END_TEST

START_TEST(check_mode_catches_interior_pointer)
{
  hak_config.check = 1;
  char *p = hak_malloc(64);
  hak_free(p + 16);
}
END_TEST

/* ---- configuration ---- */

START_TEST(config_values)
{
  int v;
  const char *yes[] = { "1", "yes", "TRUE", "On" }, *no[] = { "0", "No", "false", "OFF" };
  for (int i = 0; i < 4; i++) {
    ck_assert(config_parse_bool(yes[i], &v) && v == 1);
    ck_assert(config_parse_bool(no[i], &v) && v == 0);
  }
  ck_assert(!config_parse_bool("maybe", &v));
  ck_assert(!config_parse_bool("", &v));
  ck_assert(config_parse_int("20", 19, 21, &v) && v == 20);
  ck_assert(!config_parse_int("22", 19, 21, &v));
  ck_assert(!config_parse_int("2O", 0, 100, &v));
  ck_assert(!config_parse_int("99999999999999", 0, 100, &v));
  ck_assert(!config_parse_int("-", -5, 5, &v));
  ck_assert(config_parse_int("-5", -5, 5, &v) && v == -5);
}
END_TEST

START_TEST(config_environment)
{
  char *env[] = { "HAKMEM_STATS=yes", "HAKMEM_SUPERSLAB_LG=19", "HAKMEM_BIGCACHE=maybe",
                  "HAKMEM_NO_SUCH_THING=1", "PATH=/bin", "HAKMEM_CHECK", NULL };
  config_load(env, false);
  ck_assert_int_eq(hak_config.stats, 1);
  ck_assert_int_eq(hak_config.superslab_lg, 19);
  ck_assert_int_eq(hak_config.bigcache, 1); /* bad value: default stands */
  ck_assert_int_eq(hak_config.check, 0);
  config_load(env, true); /* secure execution: environment ignored */
  ck_assert_int_eq(hak_config.stats, 0);
  ck_assert_int_eq(hak_config.superslab_lg, HAK_SS_LG_DEFAULT);
}
END_TEST

static Suite *unit_suite(void)
{
  Suite *s = suite_create("unit");
  TCase *t = tcase_create("size_class");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, size_class_table);
  tcase_add_test(t, size_class_lookup_is_smallest_fit);
  tcase_add_test(t, size_class_aligned);
  suite_add_tcase(s, t);

  t = tcase_create("slab_registry");
  tcase_add_test(t, slab_carve_and_drain);
  tcase_add_test(t, slab_block_index_exact);
  tcase_add_test(t, slab_list_end_fails_the_link_check);
  tcase_add_test(t, check_fill_test_finds_every_byte);
  tcase_add_test_raise_signal(t, slab_link_poison_is_fatal, SIGABRT);
  tcase_add_test(t, registry_bounds);
  tcase_add_test(t, registry_large_blocks);
  suite_add_tcase(s, t);

  t = tcase_create("pool");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, pool_reuses_empty_slabs);
  tcase_add_test(t, pool_stage2_claims_unused);
  tcase_add_test(t, exited_thread_slabs_are_adopted);
  tcase_add_test(t, remote_frees_are_drained);
  tcase_add_test(t, one_block_loop_stays_on_fast_path);
  tcase_add_test(t, medium_blocks_span_a_superslab);
  suite_add_tcase(s, t);

  t = tcase_create("large");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, bigcache_reuses_mappings);
  tcase_add_test(t, large_realloc_moves_pages);
  tcase_add_test(t, large_realloc_neighbours);
  tcase_add_test(t, trim_returns_memory);
  suite_add_tcase(s, t);

  t = tcase_create("bad_pointers");
  tcase_add_test_raise_signal(t, free_of_foreign_pointer_aborts, SIGABRT);
  tcase_add_test_raise_signal(t, double_free_aborts, SIGABRT);
  tcase_add_test_raise_signal(t, free_into_header_slab_aborts, SIGABRT);
  tcase_add_test_raise_signal(t, check_mode_catches_interior_pointer, SIGABRT);
  suite_add_tcase(s, t);

  t = tcase_create("config");
  tcase_add_test(t, config_values);
  tcase_add_test(t, config_environment);
  suite_add_tcase(s, t);
  return s;
}

int main(void)
{
  return check_run(unit_suite());
}
