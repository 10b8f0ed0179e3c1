/* Transparent huge page advice (os.c, thp = on/off): a SuperSlab and a
 * large block are advised MADV_HUGEPAGE, or MADV_NOHUGEPAGE, as the
 * kernel's VmFlags show.  A kernel without THP has nothing to show: the
 * program then exits 77, which automake's harness reports as SKIP. */
#include <check.h>
#include "test_util.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "superslab.h"

#define THP_SYSFS "/sys/kernel/mm/transparent_hugepage/enabled"

static void start(void)
{
  hak_free(hak_malloc(1));
}

/* VmFlags of the mapping containing p, from /proc/self/smaps. */
static void vmflags_of(const void *p, char *out, size_t cap)
{
  FILE *f = fopen("/proc/self/smaps", "r");
  ck_assert_ptr_nonnull(f);
  char line[512];
  bool in = false;
  out[0] = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
      continue;
    }
    if (in && strncmp(line, "VmFlags:", 8) == 0) {
      snprintf(out, cap, "%s", line + 8);
      break;
    }
  }
  fclose(f);
}

START_TEST(thp_advice_is_applied)
{
  start();
  char flags[512];
  hak_config.thp = HAK_THP_ON;
  struct superslab *on = superslab_create(21);
  ck_assert_ptr_nonnull(on);
  vmflags_of(on, flags, sizeof flags);
  ck_assert_msg(strstr(flags, " hg") != NULL, "VmFlags:%s", flags);
  void *big = hak_malloc(4 << 20);
  vmflags_of(big, flags, sizeof flags);
  ck_assert_msg(strstr(flags, " hg") != NULL, "VmFlags:%s", flags);
  hak_free(big);
  hak_config.thp = HAK_THP_OFF;
  struct superslab *off = superslab_create(21);
  ck_assert_ptr_nonnull(off);
  vmflags_of(off, flags, sizeof flags);
  ck_assert_msg(strstr(flags, " nh") != NULL, "VmFlags:%s", flags);
  superslab_destroy(on);
  superslab_destroy(off);
}
END_TEST

int main(void)
{
  if (access(THP_SYSFS, R_OK) != 0) {
    printf("test_thp: SKIP: no transparent huge pages here (%s)\n", THP_SYSFS);
    return 77;
  }
  Suite *s = suite_create("thp");
  TCase *t = tcase_create("thp");
  tcase_add_test(t, thp_advice_is_applied);
  suite_add_tcase(s, t);
  return check_run(s);
}
