/* burst: a live heap that swings. Each burst allocates blocks of random
 * sizes 16 B..4 KiB until burst_kb KiB are live, touches each, then frees
 * them in allocation order except about 1 in 20, which survive until the
 * end of the next burst; then the next burst. The live heap thus goes from
 * about 5 % of burst_kb to about 105 % and back, every burst. An allocator
 * that hands its free memory back to the kernel as soon as a burst is freed
 * pays for it on the next one: mmap or madvise calls and a page fault per
 * page. One operation = one malloc + one free.
 *
 * usage: burst bursts [burst_kb=4096] [seed=1] [pause_us=0]
 *
 * With pause_us, the program sleeps that long (nanosleep) after each burst,
 * as an idle gap in which a time-based purge can run; the pauses are left
 * out of the ops/s, not out of the wall time. The result line also gives
 * minflt, the minor page faults taken during the bursts (after the first
 * one, which has to fault its memory in under any allocator). */
#include "bench.h"

#define USAGE "burst bursts [burst_kb=4096] [seed=1] [pause_us=0]"
#define MIN_SIZE 16
#define MAX_SIZE 4096
#define KEEP_ONE_IN 20

typedef struct {
  unsigned char **p;
  uint16_t *size; /* 4096 fits */
  size_t n;
} blocks_t;

static void pause_us(uint64_t us) {
  struct timespec ts = {.tv_sec = (time_t)(us / 1000000), .tv_nsec = (long)(us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* One burst: fill cur up to `bytes`, then free the previous burst's
 * survivors (in *keep) and all of cur but the new survivors, which replace
 * them in *keep. Returns the checksum of the blocks freed; adds the blocks
 * allocated to *ops. */
static uint64_t burst(bench_rng_t *rng, size_t bytes, blocks_t *cur, blocks_t *keep,
                      uint64_t *ops) {
  uint64_t sum = 0;
  size_t total = 0;
  cur->n = 0;
  while (total < bytes) {
    uint64_t r = bench_rng_next(rng);
    size_t sz = MIN_SIZE + (size_t)((r & 0xffffffffu) % (MAX_SIZE - MIN_SIZE + 1));
    unsigned char *p = bench_xmalloc(sz);
    bench_touch(p, sz, r);
    cur->p[cur->n] = p;
    cur->size[cur->n] = (uint16_t)sz;
    cur->n++;
    total += sz;
  }
  *ops += cur->n;

  for (size_t i = 0; i < keep->n; i++) {
    sum += bench_readback(keep->p[i], keep->size[i]);
    free(keep->p[i]);
  }
  keep->n = 0;
  for (size_t i = 0; i < cur->n; i++) {
    if (bench_rng_next(rng) % KEEP_ONE_IN == 0) {
      keep->p[keep->n] = cur->p[i];
      keep->size[keep->n] = cur->size[i];
      keep->n++;
      continue;
    }
    sum += bench_readback(cur->p[i], cur->size[i]);
    free(cur->p[i]);
  }
  return sum;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 5) bench_usage(USAGE);
  uint64_t bursts = bench_arg_u64(argv[1], "bursts", 1, UINT64_MAX, USAGE);
  size_t burst_kb = argc > 2 ? bench_arg_u64(argv[2], "burst_kb", 4, 1u << 22, USAGE) : 4096;
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;
  uint64_t pause_len = argc > 4 ? bench_arg_u64(argv[4], "pause_us", 0, 10000000, USAGE) : 0;

  size_t bytes = burst_kb * 1024;
  size_t cap = bytes / MIN_SIZE + 1; /* the most blocks a burst can take */
  blocks_t cur = {bench_xmalloc(cap * sizeof *cur.p), bench_xmalloc(cap * sizeof *cur.size), 0};
  blocks_t keep = {bench_xmalloc(cap * sizeof *keep.p), bench_xmalloc(cap * sizeof *keep.size), 0};
  bench_rng_t rng;
  bench_rng_seed(&rng, seed);
  uint64_t sum = 0, ops = 0;

  /* The first burst is timed like the others, but its faults are not
   * counted: every allocator has to fault in its first few MB. */
  double busy = 0;
  long flt0 = 0;
  for (uint64_t b = 0; b < bursts; b++) {
    if (b == 1) flt0 = bench_minflt();
    double t0 = bench_now();
    sum += burst(&rng, bytes, &cur, &keep, &ops);
    busy += bench_now() - t0;
    if (pause_len) pause_us(pause_len);
  }
  long minflt = bursts > 1 ? bench_minflt() - flt0 : 0;

  for (size_t i = 0; i < keep.n; i++) {
    sum += bench_readback(keep.p[i], keep.size[i]);
    free(keep.p[i]);
  }
  free(cur.p);
  free(cur.size);
  free(keep.p);
  free(keep.size);
  char extra[48];
  snprintf(extra, sizeof extra, " minflt=%ld", minflt);
  bench_report_extra("burst", (double)ops, busy, extra, sum);
  return 0;
}
