/* random_mixed: a working set of slots holding blocks of random sizes
 * 16..1040 B; each iteration frees the block in a random slot and puts a new
 * block of a new random size there. One operation = one free + one malloc.
 *
 * usage: random_mixed iterations [working_set=400] [seed=1]
 *
 * Each block carries a value written at allocation and read back before its
 * free, so the loop cannot be optimised away and a corrupted block changes
 * the checksum (which is the same under every correct allocator). */
#include "bench.h"

#define USAGE "random_mixed iterations [working_set=400] [seed=1]"
#define MIN_SIZE 16
#define MAX_SIZE 1040

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_MAX, USAGE);
  size_t ws = argc > 2 ? bench_arg_u64(argv[2], "working_set", 1, 1u << 26, USAGE) : 400;
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;

  unsigned char **slot = bench_xmalloc(ws * sizeof *slot);
  size_t *size = bench_xmalloc(ws * sizeof *size);
  bench_rng_t rng;
  bench_rng_seed(&rng, seed);
  uint64_t sum = 0;

  for (size_t i = 0; i < ws; i++) {
    size[i] = bench_rng_range(&rng, MIN_SIZE, MAX_SIZE);
    slot[i] = bench_xmalloc(size[i]);
    bench_touch(slot[i], size[i], bench_rng_next(&rng));
  }

  double t0 = bench_now();
  for (uint64_t it = 0; it < iters; it++) {
    uint64_t r = bench_rng_next(&rng);
    size_t i = (size_t)(((unsigned __int128)r * ws) >> 64);
    sum += bench_readback(slot[i], size[i]);
    free(slot[i]);
    size_t sz = MIN_SIZE + (size_t)((r & 0xffffffffu) % (MAX_SIZE - MIN_SIZE + 1));
    unsigned char *p = bench_xmalloc(sz);
    bench_touch(p, sz, r);
    slot[i] = p;
    size[i] = sz;
  }
  double t1 = bench_now();

  for (size_t i = 0; i < ws; i++) {
    sum += bench_readback(slot[i], size[i]);
    free(slot[i]);
  }
  free(slot);
  free(size);
  bench_report("random_mixed", (double)iters, t1 - t0, sum);
  return 0;
}
