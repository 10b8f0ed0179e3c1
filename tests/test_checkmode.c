/* check = 1's byte loops (checkmode.c) at every vector width the CPU has:
 * the comparison finds a wrong byte at every position of every run,
 * whatever its length and its alignment, and ignores the bytes around
 * the run (which its aligned loads read); the fill writes exactly its run,
 * and the comparison of a filled run (malloc's) finds every byte of it. */
#include <check.h>
#include "test_util.h"
#include <stdint.h>
#include <string.h>

#include "checkmode.h"

static const enum check_vectors widths[] = { CHECK_VECTORS_SSE2, CHECK_VECTORS_AVX2,
                                             CHECK_VECTORS_AVX512 };
#define NWIDTHS (sizeof widths / sizeof widths[0])

/* Room for runs up to MAX_RUN bytes at any offset in a 64-byte line, with
 * a line of margin on either side. */
#define MAX_RUN 300
static unsigned char buf[64 + 64 + MAX_RUN + 64] __attribute__((aligned(64)));

/* Every width the CPU has: SSE2 at least. */
START_TEST(baseline_width_is_always_there)
{
  ck_assert(check_use_vectors(CHECK_VECTORS_SSE2));
}
END_TEST

START_TEST(comparison_finds_every_byte)
{
  enum check_vectors w = widths[_i];
  if (!check_use_vectors(w))
    return; /* this CPU lacks the width: nothing to test */
  uint32_t wrong = 0, runs = 0;
  for (size_t off = 0; off < 64; off++)
    for (size_t n = 0; n <= MAX_RUN; n += n < 140 ? 1 : 7) {
      unsigned char *p = buf + 64 + off;
      /* The bytes around the run differ from the fill. */
      memset(buf, CHECK_FILL ^ 0x01, sizeof buf);
      memset(p, CHECK_FILL, n);
      wrong += !check_is_filled(p, n);
      for (size_t j = 0; j < n; j++) {
        p[j] = CHECK_FILL ^ 0x80;
        wrong += check_is_filled(p, n);
        p[j] = CHECK_FILL;
      }
      runs++;
    }
  ck_assert_msg(wrong == 0, "width %d: %u of %u runs misjudged", (int)w, wrong, runs);
  check_use_vectors(CHECK_VECTORS_SSE2);
}
END_TEST

START_TEST(fill_writes_exactly_its_run)
{
  enum check_vectors w = widths[_i];
  if (!check_use_vectors(w))
    return;
  uint32_t wrong = 0;
  for (size_t off = 0; off < 64; off += 16)
    for (size_t n = 0; n <= MAX_RUN - 16; n += 16) {
      unsigned char *p = buf + 64 + off;
      memset(buf, 0x5a, sizeof buf);
      check_fill(p, n);
      for (size_t i = 0; i < sizeof buf; i++) {
        bool inside = buf + i >= p && buf + i < p + n;
        wrong += buf[i] != (inside ? CHECK_FILL : 0x5a);
      }
    }
  ck_assert_msg(wrong == 0, "width %d: %u bytes wrong", (int)w, wrong);
  check_use_vectors(CHECK_VECTORS_SSE2);
}
END_TEST

/* The comparison malloc makes of a freed block, over the very vectors
 * the fill stored (two per turn of the loop, and the one a pair leaves):
 * every byte of every run counts, at every alignment of 16, and the bytes
 * around the run are never read as part of it. */
START_TEST(run_comparison_finds_every_byte)
{
  enum check_vectors w = widths[_i];
  if (!check_use_vectors(w))
    return;
  uint32_t wrong = 0, runs = 0;
  for (size_t off = 0; off < 64; off += 16)
    for (size_t n = 0; n <= MAX_RUN - 16; n += 16) {
      unsigned char *p = buf + 64 + off;
      memset(buf, CHECK_FILL ^ 0x01, sizeof buf);
      check_fill(p, n);
      wrong += !check_run_is_filled(p, n);
      for (size_t j = 0; j < n; j++) {
        p[j] = CHECK_FILL ^ 0x80;
        wrong += check_run_is_filled(p, n);
        p[j] = CHECK_FILL;
      }
      runs++;
    }
  ck_assert_msg(wrong == 0, "width %d: %u of %u runs misjudged", (int)w, wrong, runs);
  check_use_vectors(CHECK_VECTORS_SSE2);
}
END_TEST

/* check_configure takes the widest the CPU has, and the loops agree with
 * it: a last sanity pass at that width. */
START_TEST(configure_takes_a_supported_width)
{
  check_configure();
  memset(buf, CHECK_FILL, sizeof buf);
  ck_assert(check_is_filled(buf + 3, 250));
  buf[200] = 0;
  ck_assert(!check_is_filled(buf + 3, 250));
  ck_assert(check_is_filled(buf + 3, 197));
}
END_TEST

int main(void)
{
  Suite *s = suite_create("checkmode");
  TCase *t = tcase_create("bytes");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, baseline_width_is_always_there);
  tcase_add_loop_test(t, comparison_finds_every_byte, 0, NWIDTHS);
  tcase_add_loop_test(t, fill_writes_exactly_its_run, 0, NWIDTHS);
  tcase_add_loop_test(t, run_comparison_finds_every_byte, 0, NWIDTHS);
  tcase_add_test(t, configure_takes_a_supported_width);
  suite_add_tcase(s, t);
  return check_run(s);
}
