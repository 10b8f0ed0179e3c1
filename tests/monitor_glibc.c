/* glibc's introspection calls answered by hakmem (tests/monitor_reports.sh
 * runs it):
 *
 *   monitor_glibc XMLFILE
 *
 * writes malloc_info's XML to XMLFILE and mallinfo2's totals, taken just
 * before and checked unchanged just after, to stdout as "name value"
 * lines, for the script to compare with the XML.  Checks itself that
 * malloc_info refuses options other than 0 and that mallopt maps
 * M_TRIM_THRESHOLD onto BigCache's bound (a freed large block is kept
 * or not as the threshold says) and answers the other parameters as
 * hakmem(3) documents.  Exit status 0 when every check held. */
#include "hakmem.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what)
{
  if (!ok) {
    fprintf(stderr, "monitor_glibc: FAIL: %s\n", what);
    failures++;
  }
}

static uint64_t bigcache_bytes(void)
{
  hak_stats_t st;
  hakmem_stats_get(&st);
  return st.bigcache_bytes;
}

int main(int argc, char **argv)
{
  if (argc != 2) {
    fprintf(stderr, "usage: monitor_glibc XMLFILE\n");
    return 2;
  }
  /* A heap with free small blocks of several classes and live large ones. */
  static void *p[4000];
  for (int i = 0; i < 4000; i++) {
    p[i] = malloc(16 + (size_t)(i % 64) * 40);
    memset(p[i], 1, 16);
  }
  for (int i = 0; i < 4000; i += 2)
    free(p[i]);
  void *large1 = malloc(1 << 20), *large2 = malloc(3 << 20);
  check(large1 && large2, "large allocations");

  FILE *f = fopen(argv[1], "w");
  if (!f) {
    perror(argv[1]);
    return 2;
  }
  /* The stream's buffer is allocated at its first write: before the
   * snapshot, so that the figures hold still across malloc_info. */
  fputc('\n', f);
  fflush(f);
  struct mallinfo2 a = mallinfo2();
  int rc = malloc_info(0, f);
  struct mallinfo2 b = mallinfo2();
  check(rc == 0, "malloc_info(0, f) returned 0");
  check(fclose(f) == 0, "the XML file was written");
  check(a.arena == b.arena && a.fordblks == b.fordblks && a.uordblks == b.uordblks &&
        a.hblks == b.hblks && a.hblkhd == b.hblkhd,
        "mallinfo2 did not change across malloc_info");
  printf("arena %zu\nhblks %zu\nhblkhd %zu\nuordblks %zu\nfordblks %zu\n", a.arena, a.hblks,
         a.hblkhd, a.uordblks, a.fordblks);

  errno = 0;
  check(malloc_info(1, stderr) == -1 && errno == EINVAL, "malloc_info(1, f) fails with EINVAL");

  /* M_TRIM_THRESHOLD 0: nothing freed is kept; then 64 MiB: a freed large
   * block stays in BigCache. */
  check(mallopt(M_TRIM_THRESHOLD, 0) == 1, "mallopt(M_TRIM_THRESHOLD, 0) returns 1");
  free(large1);
  check(bigcache_bytes() == 0, "M_TRIM_THRESHOLD 0: a freed large block was not kept");
  check(mallopt(M_TRIM_THRESHOLD, 64 << 20) == 1, "mallopt(M_TRIM_THRESHOLD, 64 MiB) returns 1");
  free(large2);
  check(bigcache_bytes() > 0, "M_TRIM_THRESHOLD 64 MiB: a freed large block was kept");
  check(mallopt(M_TRIM_THRESHOLD, -1) == 0, "mallopt(M_TRIM_THRESHOLD, -1) returns 0");

  check(mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1, "mallopt(M_MMAP_THRESHOLD, 1 MiB) returns 1");
  check(mallopt(M_MMAP_THRESHOLD, 64 << 20) == 0, "mallopt(M_MMAP_THRESHOLD, 64 MiB) returns 0");
  check(mallopt(M_ARENA_MAX, 4) == 1, "mallopt(M_ARENA_MAX, 4) returns 1");
  check(mallopt(M_ARENA_TEST, 2) == 1, "mallopt(M_ARENA_TEST, 2) returns 1");
  check(mallopt(M_MMAP_MAX, 0) == 0, "mallopt(M_MMAP_MAX, 0) returns 0");
  check(mallopt(M_MMAP_MAX, 65536) == 1, "mallopt(M_MMAP_MAX, 65536) returns 1");
  check(mallopt(M_MXFAST, 64) == 0, "mallopt(M_MXFAST, 64) returns 0");
  check(mallopt(M_TOP_PAD, 4096) == 0, "mallopt(M_TOP_PAD, 4096) returns 0");
  check(mallopt(M_PERTURB, 0x55) == 0, "mallopt(M_PERTURB, 0x55) returns 0");
  check(mallopt(M_CHECK_ACTION, 3) == 0, "mallopt(M_CHECK_ACTION, 3) returns 0");
  check(mallopt(12345, 1) == 0, "mallopt(unknown, 1) returns 0");
  /* Still a working heap. */
  void *q = malloc(100);
  check(q != NULL, "malloc after mallopt");
  free(q);
  return failures ? 1 : 0;
}
