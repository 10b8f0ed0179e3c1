/* What the Check test programs share: their main (check_run), a way to
 * hide a size from the compiler, and a snapshot of hakmem's counters. */
#ifndef HAKMEM_TESTS_TEST_UTIL_H
#define HAKMEM_TESTS_TEST_UTIL_H

#include <check.h>
#include <stddef.h>
#include <stdlib.h>

#include "hakmem.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Runs the suite (each test in a forked child, Check's default) and turns
 * the result into the exit status automake's harness reads. */
static inline int check_run(Suite *s)
{
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Hides a constant from the compiler, which would otherwise warn about
 * (or fold) calls such as malloc(SIZE_MAX). */
static inline size_t opaque(size_t n)
{
  volatile size_t v = n;
  return v;
}

/* hakmem's counters now.  Check is called only on failure: a passing
 * ck_assert records a mark point, which allocates, and test_stress reads
 * the counters in a child whose memory is exhausted. */
static inline hak_stats_t stats_now(void)
{
  hak_stats_t st;
  if (hakmem_stats_get(&st) != 0)
    ck_abort_msg("hakmem_stats_get failed");
  return st;
}

#endif
