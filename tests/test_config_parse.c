/* The value parsers (config_parse.c) and the environment as init reads it
 * (config_load): booleans, bounded integers, bad values falling back to
 * the default, secure execution ignoring the environment.  tests/
 * test_config.c tests the loader as a whole. */
#include <check.h>
#include "test_util.h"

#include "config.h"

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

int main(void)
{
  Suite *s = suite_create("config_parse");
  TCase *t = tcase_create("config_parse");
  tcase_add_test(t, config_values);
  tcase_add_test(t, config_environment);
  suite_add_tcase(s, t);
  return check_run(s);
}
