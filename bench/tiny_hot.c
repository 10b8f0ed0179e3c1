/* tiny_hot: the allocator's fastest path. 16, 32 and 64 B blocks (in a
 * seeded random order) allocated and freed at once, one pair at a time; with
 * --batch N, N blocks allocated and then the same N freed in allocation
 * order, which exercises the thread cache's refill and flush.
 * One operation = one malloc + one free.
 *
 * usage: tiny_hot [--batch N] iterations [seed=1]
 *
 * Output name: tiny_hot, or tiny_hot_batch with --batch. */
#include "bench.h"

#define USAGE "tiny_hot [--batch N] iterations [seed=1]"

/* The size sequence is drawn once, so the measured loop pays a table load
 * instead of a PRNG step per operation. */
#define NSIZES 256
static size_t sizes[NSIZES];

static uint64_t run_pairs(uint64_t iters) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < iters; i++) {
    size_t sz = sizes[i % NSIZES];
    unsigned char *p = bench_xmalloc(sz);
    p[0] = (unsigned char)i;
    p[sz - 1] = (unsigned char)(i >> 8);
    bench_escape(p);
    sum += (uint64_t)p[0] + p[sz - 1];
    free(p);
  }
  return sum;
}

static uint64_t run_batch(uint64_t iters, size_t batch) {
  unsigned char **v = bench_xmalloc(batch * sizeof *v);
  uint64_t sum = 0;
  uint64_t k = 0;
  for (uint64_t done = 0; done < iters; done += batch) {
    size_t n = iters - done < batch ? (size_t)(iters - done) : batch;
    for (size_t j = 0; j < n; j++) {
      size_t sz = sizes[(k + j) % NSIZES];
      unsigned char *p = bench_xmalloc(sz);
      p[0] = (unsigned char)j;
      p[sz - 1] = (unsigned char)(j >> 8);
      v[j] = p;
    }
    bench_escape(v);
    for (size_t j = 0; j < n; j++) {
      size_t sz = sizes[(k + j) % NSIZES];
      sum += (uint64_t)v[j][0] + v[j][sz - 1];
      free(v[j]);
    }
    k += n;
  }
  free(v);
  return sum;
}

int main(int argc, char **argv) {
  size_t batch = 0;
  int a = 1;
  if (argc > 2 && strcmp(argv[1], "--batch") == 0) {
    batch = bench_arg_u64(argv[2], "batch", 1, 1u << 24, USAGE);
    a = 3;
  }
  if (argc - a < 1 || argc - a > 2) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[a], "iterations", 1, UINT64_MAX, USAGE);
  uint64_t seed = argc - a > 1 ? bench_arg_u64(argv[a + 1], "seed", 0, UINT64_MAX, USAGE) : 1;

  bench_rng_t rng;
  bench_rng_seed(&rng, seed);
  for (size_t i = 0; i < NSIZES; i++) sizes[i] = (size_t)16 << bench_rng_range(&rng, 0, 2);

  double t0 = bench_now();
  uint64_t sum = batch ? run_batch(iters, batch) : run_pairs(iters);
  double t1 = bench_now();
  bench_report(batch ? "tiny_hot_batch" : "tiny_hot", (double)iters, t1 - t0, sum);
  return 0;
}
