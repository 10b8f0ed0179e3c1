/* large_replace: multi-MiB buffers replaced in a loop, as a program that
 * decodes images or builds big responses does. working_set blocks of
 * 5..25 MiB (uniform) are live; each iteration frees one picked at random
 * and allocates a new one of a new random size in its place, and writes
 * all of it. An allocator that unmaps on free, or gives a cached
 * mapping's pages back at once, pays a page fault per 4 KiB on every
 * write; one that reuses a freed mapping, or part of a larger one, with
 * its pages, pays none. One operation = one free + one malloc + one
 * write of the whole block.
 *
 * usage: large_replace iterations [working_set=20] [seed=1]
 *
 * The result line also gives minflt, the minor page faults taken in the
 * loop (the initial blocks are faulted in before it). */
#include "bench.h"

#define USAGE "large_replace iterations [working_set=20] [seed=1]"
#define MIN_SIZE ((size_t)5 << 20)
#define MAX_SIZE ((size_t)25 << 20)
/* Sampled on readback: one byte per this many, plus the last. */
#define SAMPLE_STRIDE 65536

/* Writes every byte of the block with v (memset is what the kernel would
 * otherwise do for a fresh page: the cost difference is the fault). */
static void fill(unsigned char *p, size_t size, uint64_t v) { memset(p, (unsigned char)v, size); }

static uint64_t readback(const unsigned char *p, size_t size) {
  uint64_t sum = p[size - 1];
  for (size_t off = 0; off < size; off += SAMPLE_STRIDE) sum = sum * 31 + p[off];
  return sum;
}

static inline size_t initial_size(bench_rng_t *rng, const void *arg) {
  (void)arg;
  return bench_rng_range(rng, MIN_SIZE, MAX_SIZE);
}

static inline size_t pick_slot(bench_rng_t *rng, size_t n, uint64_t *draw) {
  (void)draw;
  return bench_rng_range(rng, 0, n - 1);
}

static inline bench_block_t new_block(bench_rng_t *rng, uint64_t draw, const void *arg) {
  (void)draw;
  size_t size = initial_size(rng, arg);
  return (bench_block_t){.size = size, .value = bench_rng_next(rng)};
}

static const bench_slots_ops_t ops = {
    .initial_size = initial_size,
    .pick_slot = pick_slot,
    .new_block = new_block,
    .write = fill,
    .read = readback,
};

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_MAX, USAGE);
  size_t ws = argc > 2 ? bench_arg_u64(argv[2], "working_set", 1, 1024, USAGE) : 20;
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;

  bench_rng_t rng;
  bench_rng_seed(&rng, seed);
  bench_slots_t slots;
  bench_slots_fill(&slots, ws, &rng, &ops, NULL);
  long flt0 = bench_minflt();
  double seconds = bench_slots_replace(&slots, iters, &rng, &ops);
  long flt = bench_minflt() - flt0;
  uint64_t sum = bench_slots_free(&slots, &ops);
  char extra[64];
  snprintf(extra, sizeof extra, " minflt=%ld", flt);
  bench_report_extra("large_replace", (double)iters, seconds, extra, sum);
  return 0;
}
