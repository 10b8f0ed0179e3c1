/* The end of every Check test program: runs the suite (each test in a
 * forked child, Check's default) and turns the result into the exit
 * status automake's harness reads. */
#ifndef HAKMEM_TESTS_CHECK_RUN_H
#define HAKMEM_TESTS_CHECK_RUN_H

#include <check.h>
#include <stdlib.h>

static inline int check_run(Suite *s)
{
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
