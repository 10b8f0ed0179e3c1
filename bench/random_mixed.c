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

static inline size_t initial_size(bench_rng_t *rng, const void *arg) {
  (void)arg;
  return bench_rng_range(rng, MIN_SIZE, MAX_SIZE);
}

/* One number per operation: it picks the slot (multiply-shift), its low
 * half the new size, and the whole of it is the new block's value. */
static inline size_t pick_slot(bench_rng_t *rng, size_t n, uint64_t *draw) {
  *draw = bench_rng_next(rng);
  return (size_t)(((unsigned __int128)*draw * n) >> 64);
}

static inline bench_block_t new_block(bench_rng_t *rng, uint64_t draw, const void *arg) {
  (void)rng, (void)arg;
  return (bench_block_t){
      .size = MIN_SIZE + (size_t)((draw & 0xffffffffu) % (MAX_SIZE - MIN_SIZE + 1)),
      .value = draw,
  };
}

static const bench_slots_ops_t ops = {
    .initial_size = initial_size,
    .pick_slot = pick_slot,
    .new_block = new_block,
    .write = bench_touch,
    .read = bench_readback,
};

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_MAX, USAGE);
  size_t ws = argc > 2 ? bench_arg_u64(argv[2], "working_set", 1, 1u << 26, USAGE) : 400;
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;

  bench_rng_t rng;
  bench_rng_seed(&rng, seed);
  bench_slots_t slots;
  bench_slots_fill(&slots, ws, &rng, &ops, NULL);
  double seconds = bench_slots_replace(&slots, iters, &rng, &ops);
  uint64_t sum = bench_slots_free(&slots, &ops);
  bench_report("random_mixed", (double)iters, seconds, sum);
  return 0;
}
