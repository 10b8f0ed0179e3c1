/* larson: a server-style workload (after Larson and Krishnan). T threads each
 * work on an array of slots, replacing the block in a random slot with a new
 * block of random size, working_set times per round. Between rounds the
 * arrays move on by one thread, so most blocks are freed by a thread other
 * than the one that allocated them. One operation = one free + one malloc.
 *
 * usage: larson iterations [working_set=1000] [seed=1] [threads=2] [min_size=16] [max_size=1024]
 *
 * iterations is per thread, rounded up to whole rounds of working_set
 * operations. The arrays move only at a barrier, so which thread touches
 * which block, and the checksum, depend on the seed alone. */
#include <pthread.h>

#include "bench.h"

#define USAGE \
  "larson iterations [working_set=1000] [seed=1] [threads=2] [min_size=16] [max_size=1024]"

typedef struct {
  unsigned char **slot;
  size_t *size;
} array_t;

typedef struct {
  bench_thread_t th; /* first: bench_threads_join reads it */
  unsigned id;
} worker_t;

static struct {
  unsigned nthreads;
  size_t ws, min_size, max_size;
  uint64_t rounds, seed;
  array_t *arrays;
  pthread_barrier_t round; /* after the initial fill and after each round */
} g;

static void *worker(void *arg) {
  worker_t *w = arg;
  bench_rng_t rng;
  bench_rng_seed(&rng, g.seed * 1024 + w->id);
  uint64_t sum = 0;

  array_t *own = &g.arrays[w->id];
  for (size_t i = 0; i < g.ws; i++) {
    own->size[i] = bench_rng_range(&rng, g.min_size, g.max_size);
    own->slot[i] = bench_xmalloc(own->size[i]);
    bench_touch(own->slot[i], own->size[i], bench_rng_next(&rng));
  }
  pthread_barrier_wait(&g.round);
  w->th.t_start = bench_now(); /* the initial fill is not timed */

  for (uint64_t r = 0; r < g.rounds; r++) {
    array_t *a = &g.arrays[(w->id + r) % g.nthreads];
    for (size_t n = 0; n < g.ws; n++) {
      uint64_t x = bench_rng_next(&rng);
      size_t i = (size_t)(((unsigned __int128)x * g.ws) >> 64);
      sum += bench_readback(a->slot[i], a->size[i]);
      free(a->slot[i]);
      size_t sz = bench_rng_range(&rng, g.min_size, g.max_size);
      a->slot[i] = bench_xmalloc(sz);
      a->size[i] = sz;
      bench_touch(a->slot[i], sz, x);
    }
    pthread_barrier_wait(&g.round);
  }
  w->th.t_end = bench_now();
  w->th.sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 7) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_MAX, USAGE);
  g.ws = argc > 2 ? bench_arg_u64(argv[2], "working_set", 1, 1u << 24, USAGE) : 1000;
  g.seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;
  g.nthreads = argc > 4 ? (unsigned)bench_arg_u64(argv[4], "threads", 1, 1024, USAGE) : 2;
  g.min_size = argc > 5 ? bench_arg_u64(argv[5], "min_size", 8, 1u << 30, USAGE) : 16;
  g.max_size = argc > 6 ? bench_arg_u64(argv[6], "max_size", g.min_size, 1u << 30, USAGE) : 1024;
  g.rounds = (iters + g.ws - 1) / g.ws;

  g.arrays = bench_xmalloc(g.nthreads * sizeof *g.arrays);
  for (unsigned t = 0; t < g.nthreads; t++) {
    g.arrays[t].slot = bench_xmalloc(g.ws * sizeof *g.arrays[t].slot);
    g.arrays[t].size = bench_xmalloc(g.ws * sizeof *g.arrays[t].size);
  }
  worker_t *w = bench_xmalloc(g.nthreads * sizeof *w);
  pthread_barrier_init(&g.round, NULL, g.nthreads);
  for (unsigned t = 0; t < g.nthreads; t++) {
    w[t] = (worker_t){.id = t};
    bench_thread_start(&w[t].th, worker, &w[t]);
  }
  double seconds;
  uint64_t sum = bench_threads_join(w, sizeof *w, g.nthreads, &seconds);

  for (unsigned t = 0; t < g.nthreads; t++) {
    for (size_t i = 0; i < g.ws; i++) {
      sum += bench_readback(g.arrays[t].slot[i], g.arrays[t].size[i]);
      free(g.arrays[t].slot[i]);
    }
    free(g.arrays[t].slot);
    free(g.arrays[t].size);
  }
  free(g.arrays);
  free(w);
  pthread_barrier_destroy(&g.round);
  bench_report("larson", (double)g.rounds * g.ws * g.nthreads, seconds, sum);
  return 0;
}
