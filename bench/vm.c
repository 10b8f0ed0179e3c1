/* vm: large blocks, where the allocator meets the kernel. Each iteration
 * frees the block in a random slot and allocates a new one there, touching
 * one byte per 4 KiB page. By default blocks are 2 MiB and the working set is
 * one slot (a plain alloc/touch/free loop: an allocator that unmaps on free
 * pays an mmap, munmap and 512 page faults every time); with --mixed, sizes
 * are log-uniform from 64 KiB to 8 MiB and the working set is 4 slots.
 * One operation = one free + one malloc.
 *
 * usage: vm [--mixed] iterations [working_set=1|4] [seed=1]
 *
 * Output name: vm, or vm_mixed with --mixed. */
#include "bench.h"

#define USAGE "vm [--mixed] iterations [working_set=1|4] [seed=1]"
#define PAGE 4096
#define PLAIN_SIZE ((size_t)2 << 20)

static size_t pick_size(bench_rng_t *rng, bool mixed) {
  if (!mixed) return PLAIN_SIZE;
  /* 64 KiB << k for k in 0..6 is the octave, then uniform inside it:
   * 64 KiB .. 8 MiB with as many small blocks as large ones. */
  size_t base = (size_t)65536 << bench_rng_range(rng, 0, 6);
  return base + bench_rng_range(rng, 0, base);
}

static inline size_t initial_size(bench_rng_t *rng, const void *mixed) {
  return pick_size(rng, *(const bool *)mixed);
}

static inline size_t pick_slot(bench_rng_t *rng, size_t n, uint64_t *draw) {
  (void)draw;
  return bench_rng_range(rng, 0, n - 1);
}

static inline bench_block_t new_block(bench_rng_t *rng, uint64_t draw, const void *mixed) {
  (void)draw;
  size_t size = pick_size(rng, *(const bool *)mixed);
  return (bench_block_t){.size = size, .value = bench_rng_next(rng)};
}

static const bench_slots_ops_t ops = {
    .initial_size = initial_size,
    .pick_slot = pick_slot,
    .new_block = new_block,
    .write = bench_touch_pages,
    .read = bench_readback_pages,
};

int main(int argc, char **argv) {
  bool mixed = argc > 1 && strcmp(argv[1], "--mixed") == 0;
  int a = mixed ? 2 : 1;
  if (argc - a < 1 || argc - a > 3) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[a], "iterations", 1, UINT64_MAX, USAGE);
  size_t ws = argc - a > 1 ? bench_arg_u64(argv[a + 1], "working_set", 1, 4096, USAGE)
                           : (mixed ? 4 : 1);
  uint64_t seed = argc - a > 2 ? bench_arg_u64(argv[a + 2], "seed", 0, UINT64_MAX, USAGE) : 1;

  bench_rng_t rng;
  bench_rng_seed(&rng, seed);
  bench_slots_t slots;
  bench_slots_fill(&slots, ws, &rng, &ops, &mixed);
  double seconds = bench_slots_replace(&slots, iters, &rng, &ops);
  uint64_t sum = bench_slots_free(&slots, &ops);
  bench_report(mixed ? "vm_mixed" : "vm", (double)iters, seconds, sum);
  return 0;
}
