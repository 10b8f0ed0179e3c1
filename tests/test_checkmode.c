/* check = 1's byte loops (checkmode.c) at every vector width the CPU has:
 * the comparison finds a wrong byte at every position of every run,
 * whatever its length and its alignment, and ignores the bytes around
 * the run (which its aligned loads read); the fill writes exactly its run,
 * and the comparison of a filled run (malloc's) finds every byte of it. */
#include <check.h>
#include <signal.h>
#include "test_util.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkmode.h"
#include "slab.h"
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

/* Blocks of more than 128 bytes take bodies compiled for each vector
 * width: a canary of up to 128 bytes stored and compared as whole vectors
 * in line, and the head run, past the link and tag words, of 64 bytes.
 * Each case below prepares big as a freed block of one of these classes
 * under the default bound (the program's old bytes, 0x5a, with the head
 * filled) and hands it out with check_hand_out, as malloc does. */
static const unsigned canary_blocks[] = { 160, 640, 1024, 1280, 4096 };
#define NBLOCKS (sizeof canary_blocks / sizeof canary_blocks[0])
static unsigned char big[64 + 4096 + 64] __attribute__((aligned(64)));

static unsigned char *hand_out_big(struct slab *s, unsigned bs, size_t size)
{
  memset(s, 0, sizeof *s);
  s->cls = (uint8_t)size_class_of(bs);
  ck_assert_uint_eq(slab_block_size(s), bs);
  unsigned char *p = big + 64;
  check_bound_fill(64);
  memset(p, 0x5a, bs);
  memset(p + 16, CHECK_FILL, 64 - 16);
  ck_assert_ptr_eq(check_hand_out(p, size, bs), p);
  return p;
}

/* Every request of the class's last 200 sizes (canaries of 0 to 199
 * bytes, in whole vectors or in the loop): the canary is stored whole,
 * and nothing between the head and the 16-byte piece holding the
 * request's end or the block's last 64 bytes (which 64-byte vectors
 * store whole); the trailer records the size, and free accepts the
 * block, returns the size and fills its head for the next malloc. */
START_TEST(wide_bodies_store_every_canary_and_free_accepts_it)
{
  enum check_vectors w = widths[_i];
  if (!check_use_vectors(w))
    return; /* this CPU lacks the width: nothing to test */
  unsigned wrong = 0;
  for (size_t c = 0; c < NBLOCKS; c++) {
    unsigned bs = canary_blocks[c];
    for (size_t size = bs - CHECK_TRAILER - 199; size <= bs - CHECK_TRAILER; size++) {
      struct slab s;
      unsigned char *p = hand_out_big(&s, bs, size);
      size_t from = size & ~(size_t)15, kept = from < bs - 64 ? from : bs - 64;
      for (size_t i = 64; i < kept; i++)
        wrong += p[i] != 0x5a;
      for (size_t i = size; i < bs - CHECK_TRAILER; i++)
        wrong += p[i] != CHECK_FILL;
      wrong += check_block_size(&s, p) != size;
      wrong += check_free_block(&s, p) != size;
      for (size_t i = 16; i < 64; i++)
        wrong += p[i] != CHECK_FILL;
    }
  }
  ck_assert_msg(wrong == 0, "width %d: %u wrong", (int)w, wrong);
}
END_TEST

/* A write into the first or the last byte of a canary of 1, 60, 124 or
 * 200 bytes is caught at free (SIGABRT), at every width the CPU has (the
 * others: at SSE2's). */
#define CANARY_CASES 8
START_TEST(wide_bodies_catch_a_write_into_any_canary)
{
  int i = _i;
  enum check_vectors w = widths[i / (int)(NBLOCKS * CANARY_CASES)];
  unsigned bs = canary_blocks[i / CANARY_CASES % NBLOCKS];
  static const size_t canary_len[] = { 1, 60, 124, 200 };
  size_t len = canary_len[i % CANARY_CASES / 2];
  if (!check_use_vectors(w))
    ck_assert(check_use_vectors(CHECK_VECTORS_SSE2));
  size_t size = bs - CHECK_TRAILER - len;
  struct slab s;
  unsigned char *p = hand_out_big(&s, bs, size);
  p[i % 2 ? bs - CHECK_TRAILER - 1 : size] = 0x11;
  check_free_block(&s, p);
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
  tcase_add_loop_test(t, wide_bodies_store_every_canary_and_free_accepts_it, 0, NWIDTHS);
  tcase_add_loop_test_raise_signal(t, wide_bodies_catch_a_write_into_any_canary, SIGABRT, 0,
                                   (int)(NWIDTHS * NBLOCKS * CANARY_CASES));
  suite_add_tcase(s, t);
  return check_run(s);
}
