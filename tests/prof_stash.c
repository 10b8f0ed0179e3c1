/* The subject of tests/prof_stash.sh: the profiler's stash of sampled
 * slots, run with prof = 1 and a sample every KiB or so, under
 * LD_PRELOAD=libhakmem.so.0.  Usage: prof_stash reuse|double|trim|purge.
 * Prints one line per fact it checked; exits 1 on a failed check. */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* A sampled block of at most two pages less 128 bytes is served 128 bytes
 * into a mapping of two pages, with that usable size (prof_stash.h). */
#define SAMPLED_USABLE (2 * 4096 - 128)
#define REQUEST 3000

static int failed;

static void check(int ok, const char *what)
{
  printf("%s: %s\n", ok ? "ok" : "FAIL", what);
  if (!ok)
    failed = 1;
}

static int is_sampled(void *p)
{
  return malloc_usable_size(p) == SAMPLED_USABLE && ((uintptr_t)p & 4095) == 128;
}

/* A sampled block of REQUEST bytes: allocates until one is (freeing the
 * others); with a sample every KiB nearly every request of 3000 bytes is. */
static void *sampled_block(void)
{
  for (int i = 0; i < 100000; i++) {
    void *p = malloc(REQUEST);
    if (!p)
      break;
    memset(p, 0x5a, REQUEST);
    if (is_sampled(p))
      return p;
    free(p);
  }
  printf("FAIL: no sampled block (is prof = 1 with a small prof_sample_kb?)\n");
  exit(1);
}

/* Whether the page holding p is mapped (mincore fails with ENOMEM on an
 * address that is not). */
static int mapped(void *p)
{
  unsigned char vec;
  void *page = (void *)((uintptr_t)p & ~(uintptr_t)4095);
  return mincore(page, 4096, &vec) == 0 || errno != ENOMEM;
}

int main(int argc, char **argv)
{
  const char *mode = argc > 1 ? argv[1] : "";
  /* stdio's buffer, allocated at the first printf, would be sampled and
   * take the stashed slot: a static one instead. */
  static char outbuf[4096];
  setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
  if (strcmp(mode, "reuse") == 0) {
    /* Each sample's slot is the previous one's: 200 rounds. */
    void *first = sampled_block();
    free(first);
    int same = 1;
    for (int i = 0; i < 200; i++) {
      void *p = sampled_block();
      same &= p == first;
      free(p);
    }
    check(same, "every sampled block reuses the freed sample's slot");
  } else if (strcmp(mode, "double") == 0) {
    void *p = sampled_block();
    free(p);
    printf("freeing again\n");
    fflush(stdout);
    free(p);
    check(0, "a second free of a sampled block aborts");
  } else if (strcmp(mode, "trim") == 0) {
    void *p = sampled_block();
    free(p);
    check(mapped(p), "a freed sampled block's slot stays mapped (stashed)");
    malloc_trim(0);
    check(!mapped(p), "malloc_trim unmaps the stashed slot");
    void *q = sampled_block();
    check(mapped(q) && is_sampled(q), "the next sample gets a new slot");
    free(q);
  } else if (strcmp(mode, "purge") == 0) {
    /* With purge_delay_ms = 20, a stash no sample takes from is unmapped
     * by the purge thread within a few periods; waited for up to 60 s.
     * A free never starts the thread: the allocation of a large block
     * (not stashed) after the first round's frees does; it is kept to
     * the end, as BigCache would serve samples from it.  Two slots:
     * pthread_create's own allocation may be sampled and take one of
     * them for good.  The second free finds the stash's purge flag
     * raised and does not kick the purge; the second round's first
     * free, after the purge cleared the flag, must kick it again. */
    void *big = NULL;
    for (int round = 0; round < 2; round++) {
      void *p = sampled_block(), *q = sampled_block();
      free(p);
      free(q);
      if (round == 0)
        big = malloc(1 << 20);
      int gone = 0;
      for (int i = 0; i < 6000 && !gone; i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
        gone = !mapped(p) || !mapped(q);
      }
      check(gone, round == 0 ? "the purge thread unmaps an unused stash"
                             : "and again once the stash was used after its purge");
    }
    free(big);
  } else {
    fprintf(stderr, "usage: prof_stash reuse|double|trim|purge\n");
    return 2;
  }
  return failed;
}
