/* cache_thrash: active false sharing (after Hoard's cache-thrash). Each of T
 * threads repeatedly allocates a small object, writes and reads every byte
 * of it many times, and frees it. An allocator that gives objects on one
 * cache line to different threads makes those writes bounce the line
 * between cores, and the run slows down by a large factor; otherwise the
 * time is flat. One operation = one malloc + free and its writes.
 *
 * usage: cache_thrash iterations [object_size=8] [seed=1] [threads=2]
 *
 * iterations is per thread. */
#include <pthread.h>

#include "bench.h"

#define USAGE "cache_thrash iterations [object_size=8] [seed=1] [threads=2]"
#define PASSES 32 /* write passes over each object: the part that false sharing slows */

typedef struct {
  bench_thread_t th; /* first: bench_threads_join reads it */
  uint64_t iters;
  size_t objsize;
  uint64_t seed;
  pthread_barrier_t *start;
} worker_t;

static void *worker(void *arg) {
  worker_t *w = arg;
  bench_rng_t rng;
  bench_rng_seed(&rng, w->seed);
  uint64_t sum = 0;
  pthread_barrier_wait(w->start);
  w->th.t_start = bench_now();
  for (uint64_t i = 0; i < w->iters; i++) {
    /* volatile: every pass really stores to and loads from the object */
    volatile unsigned char *p = bench_xmalloc(w->objsize);
    unsigned char v = (unsigned char)bench_rng_next(&rng);
    for (int pass = 0; pass < PASSES; pass++)
      for (size_t k = 0; k < w->objsize; k++) {
        p[k] = (unsigned char)(v + pass + k);
        sum += p[k];
      }
    free((void *)p);
  }
  w->th.t_end = bench_now();
  w->th.sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 5) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_MAX, USAGE);
  size_t objsize = argc > 2 ? bench_arg_u64(argv[2], "object_size", 1, 1u << 20, USAGE) : 8;
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;
  unsigned nthreads = argc > 4 ? (unsigned)bench_arg_u64(argv[4], "threads", 1, 1024, USAGE) : 2;

  worker_t *w = bench_xmalloc(nthreads * sizeof *w);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, nthreads);
  for (unsigned t = 0; t < nthreads; t++) {
    w[t] = (worker_t){.iters = iters, .objsize = objsize, .seed = seed * 1024 + t, .start = &start};
    bench_thread_start(&w[t].th, worker, &w[t]);
  }
  double seconds;
  uint64_t sum = bench_threads_join(w, sizeof *w, nthreads, &seconds);
  pthread_barrier_destroy(&start);
  free(w);
  bench_report("cache_thrash", (double)iters * nthreads, seconds, sum);
  return 0;
}
