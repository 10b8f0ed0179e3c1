/* Transparent huge page advice (os.c, thp = on/off): a SuperSlab and a
 * large block are advised MADV_HUGEPAGE, or MADV_NOHUGEPAGE, as the
 * kernel's VmFlags show; the advice comes before the mapping's first
 * write, which on a system whose THP setting is "always" would otherwise
 * fault in a whole huge page (this program is linked with
 * -Wl,--wrap=madvise, tests/unit.mk: __wrap_madvise below sees whether the
 * first page was resident when the advice came, whatever the system's
 * setting).  A kernel without THP has nothing to show: the program then
 * exits 77, which automake's harness reports as SKIP. */
#include <check.h>
#include "test_util.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "config.h"
#include "superslab.h"

#define THP_SYSFS "/sys/kernel/mm/transparent_hugepage/enabled"

/* The last huge page advice: its range, and whether the range's first
 * page was resident when it came. */
static void *_Atomic advised_at;
static _Atomic size_t advised_len;
static _Atomic bool advised_resident;

int __real_madvise(void *addr, size_t len, int advice);
int __wrap_madvise(void *addr, size_t len, int advice);

int __wrap_madvise(void *addr, size_t len, int advice)
{
  if (advice == MADV_HUGEPAGE || advice == MADV_NOHUGEPAGE) {
    unsigned char vec = 0;
    atomic_store(&advised_resident, mincore(addr, 1, &vec) == 0 && (vec & 1));
    atomic_store(&advised_len, len);
    atomic_store(&advised_at, addr);
  }
  return __real_madvise(addr, len, advice);
}

/* Whether the last advice covered p with the first page of its range not
 * yet resident. */
static bool advised_before_written(const void *p)
{
  uintptr_t a = (uintptr_t)atomic_load(&advised_at);
  return a && (uintptr_t)p >= a && (uintptr_t)p < a + atomic_load(&advised_len) &&
         !atomic_load(&advised_resident);
}

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

START_TEST(advice_comes_before_the_first_write)
{
  start();
  /* Both blocks stay live until the end: a freed one would be cached and
   * serve the next request, already written. */
  void *big[2];
  for (int on = 0; on < 2; on++) {
    hak_config.thp = on ? HAK_THP_ON : HAK_THP_OFF;
    atomic_store(&advised_at, NULL);
    struct superslab *ss = superslab_create(21);
    ck_assert_ptr_nonnull(ss);
    ck_assert_msg(advised_before_written(ss), "thp=%d: SuperSlab header written before the advice", on);
    atomic_store(&advised_at, NULL);
    big[on] = hak_malloc(4 << 20);
    ck_assert_ptr_nonnull(big[on]);
    ck_assert_msg(advised_before_written(big[on]), "thp=%d: large header written before the advice", on);
    superslab_destroy(ss);
  }
  hak_free(big[0]);
  hak_free(big[1]);
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
  tcase_add_test(t, advice_comes_before_the_first_write);
  suite_add_tcase(s, t);
  return check_run(s);
}
