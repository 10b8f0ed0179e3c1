/* check = 1's byte loops (checkmode.c) at every vector width the CPU has:
 * the comparison finds a wrong byte at every position of every run,
 * whatever its length and its alignment, and ignores the bytes around
 * the run (which its aligned loads read); the fill writes exactly its run,
 * and the comparison of a filled run (malloc's) finds every byte of it. */
#include <check.h>
#include "test_util.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkmode.h"
#include "config.h"

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

/* With the fill bounded, malloc compares only a freed block's head and
 * leaves the program's old bytes after it alone, except where the new
 * canary goes: from the 16-byte piece holding the request's end to the
 * block's end, then the trailer. */
static unsigned char block[1024] __attribute__((aligned(64)));

/* Under a bound of `bound` bytes, block holds the program's old bytes
 * (0x5a) but the fill between its link and tag words and byte `filled`:
 * hands it out, which must not report a write after free. */
static void hand_out_filled_up_to(size_t bound, size_t filled)
{
  check_bound_fill(bound);
  memset(block, 0x5a, sizeof block);
  memset(block + 16, CHECK_FILL, filled - 16);
  ck_assert_ptr_eq(check_hand_out(block, 1000, sizeof block), block);
}

START_TEST(bounded_fill_compares_the_head_and_stores_the_canary)
{
  hand_out_filled_up_to(64, 64);
  unsigned stale = 0, canary = 0;
  for (size_t i = 64; i < 992; i++)
    stale += block[i] == 0x5a;
  for (size_t i = 992; i < 1020; i++)
    canary += block[i] == CHECK_FILL;
  ck_assert_uint_eq(stale, 992 - 64);
  ck_assert_uint_eq(canary, 1020 - 992);
  /* A bound under CHECK_FILL_MIN is CHECK_FILL_MIN; others are rounded up
   * to a multiple of 16: 40 compares the bytes up to 48. */
  hand_out_filled_up_to(1, CHECK_FILL_MIN);
  hand_out_filled_up_to(40, 48);
  check_bound_fill(0);
}
END_TEST

/* A small block under a bound larger than itself is compared whole. */
START_TEST(bound_above_the_block_compares_it_whole)
{
  hand_out_filled_up_to(4096, 1024);
  check_bound_fill(0);
}
END_TEST

static char warning[256];
static void keep_warning(void *ctx, const char *msg)
{
  (void)ctx;
  snprintf(warning, sizeof warning, "%s", msg);
}

/* HAKMEM_CHECK_FILL_BYTES: a byte count, 0 for the whole block; anything
 * else is refused with one line that gives the range. */
START_TEST(fill_bytes_option_parses_and_refuses)
{
  static const struct {
    const char *var;
    int value;
    const char *why;
  } cases[] = {
    { "HAKMEM_CHECK_FILL_BYTES=256", 256, NULL },
    { "HAKMEM_CHECK_FILL_BYTES=0", 0, NULL },
    { "HAKMEM_CHECK_FILL_BYTES=262144", 262144, NULL },
    { "HAKMEM_CHECK_FILL_BYTES=64k", -1, "expected an integer 0..262144" },
    { "HAKMEM_CHECK_FILL_BYTES=-16", -1, "out of range 0..262144" },
    { "HAKMEM_CHECK_FILL_BYTES=262145", -1, "out of range 0..262144" },
  };
  /* An empty conf file: the variable is the only source. */
  const char *dir = getenv("TMPDIR");
  char conf[256];
  snprintf(conf, sizeof conf, "%s/hakmem-conf-XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkstemp(conf);
  ck_assert_int_ge(fd, 0);
  fchmod(fd, 0644);
  close(fd);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *env[] = { (char *)cases[i].var, NULL };
    struct config_request rq = { .conf_path = conf, .program = "x",
                                 .envp = env, .warn = keep_warning };
    warning[0] = '\0';
    unsigned warnings = config_load_from(&rq);
    if (cases[i].why) {
      ck_assert_uint_eq(warnings, 1);
      ck_assert_msg(strstr(warning, cases[i].why) && strstr(warning, "HAKMEM_CHECK_FILL_BYTES"),
                    "%s: warned \"%s\"", cases[i].var, warning);
      ck_assert_int_eq(hak_config.check_fill_bytes, config_find("check_fill_bytes")->def);
    } else {
      ck_assert_msg(warnings == 0, "%s: warned \"%s\"", cases[i].var, warning);
      ck_assert_int_eq(hak_config.check_fill_bytes, cases[i].value);
    }
  }
  unlink(conf);
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
  tcase_add_test(t, bounded_fill_compares_the_head_and_stores_the_canary);
  tcase_add_test(t, bound_above_the_block_compares_it_whole);
  tcase_add_test(t, fill_bytes_option_parses_and_refuses);
  suite_add_tcase(s, t);
  return check_run(s);
}
