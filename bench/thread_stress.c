/* thread_stress: threads that come and go, with cross-thread frees and a
 * wide mix of sizes. Each round starts T threads; each works on an array of
 * working_set slots, replacing the block in a random slot with a new block,
 * ops_per_round times. Of the blocks it replaces, 1 in 4 is not freed but
 * handed on through an exchange array shared by all threads (1024 slots
 * under one mutex, 16 blocks per locking): the block put into an exchange
 * slot takes out the one that was there, mostly another thread's, and that
 * one is freed. Then the threads exit with their arrays full and the
 * exchange holding more; in the next round each array goes to the thread
 * one id lower, which frees its blocks as it replaces them. Sizes: 15 in 16
 * blocks 16..1024 B, the rest 1..64 KiB, and 1 in 16384 a large block of
 * 256 KiB..4 MiB. One operation = one malloc + one free.
 *
 * usage: thread_stress iterations [working_set=1000] [seed=1] [threads=2] [rounds=10]
 *
 * iterations is per thread, spread evenly over the rounds (rounded up).
 * The time runs from the first thread's creation to the last one's join,
 * so it includes creating and ending the threads (and whatever the
 * allocator does when a thread ends). The result line also gives minflt,
 * the minor page faults during that time. Every block is read back once,
 * before its free, whoever frees it, and a thread's sequence of sizes and
 * values does not depend on what it gets from the exchange: so the
 * checksum, a sum over all blocks, depends on the arguments alone. */
#include <pthread.h>

#include "bench.h"

#define USAGE "thread_stress iterations [working_set=1000] [seed=1] [threads=2] [rounds=10]"
#define PAGE 4096
#define SMALL_MIN 16
#define SMALL_MAX 1024
#define MEDIUM_ONE_IN 16
#define MEDIUM_MIN 1025
#define MEDIUM_MAX (64 * 1024)
#define LARGE_ONE_IN 16384
#define LARGE_MIN (256 * 1024)
#define LARGE_MAX (4 * 1024 * 1024)
#define SHARE_ONE_IN 4
#define EXCHANGE_SLOTS 1024
#define BATCH 16

typedef struct {
  bench_thread_t th; /* first: bench_threads_join reads it */
  unsigned id;
} worker_t;

static struct {
  unsigned nthreads;
  size_t ws;
  uint64_t ops_per_round, seed, round;
  unsigned char ***arrays; /* per thread id: ws slots */
  pthread_mutex_t lock;    /* guards exchange */
  unsigned char **exchange;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A block holds a value in its first 8 bytes and its size in the next 4
 * (whoever frees it learns its size there), a byte derived from the value
 * at each further 4 KiB boundary, so a large block is faulted in
 * throughout, and the value's low byte at its end. */
static unsigned char *block_new(size_t size, uint64_t v) {
  unsigned char *p = bench_xmalloc(size);
  uint32_t sz = (uint32_t)size;
  memcpy(p, &v, 8);
  memcpy(p + 8, &sz, 4);
  for (size_t off = PAGE; off < size; off += PAGE) p[off] = (unsigned char)((v >> 8) + off / PAGE);
  p[size - 1] = (unsigned char)v;
  return p;
}

/* The block's checksum; frees it. */
static uint64_t block_free(unsigned char *p) {
  uint64_t v;
  uint32_t sz;
  memcpy(&v, p, 8);
  memcpy(&sz, p + 8, 4);
  uint64_t sum = v ^ sz ^ ((uint64_t)p[sz - 1] << 56);
  for (size_t off = PAGE; off < sz; off += PAGE) sum += (uint64_t)p[off] << (off / PAGE % 48);
  free(p);
  return sum;
}

static size_t pick_size(bench_rng_t *rng) {
  uint64_t x = bench_rng_next(rng);
  if (x % LARGE_ONE_IN == 0) return bench_rng_range(rng, LARGE_MIN, LARGE_MAX);
  if ((x >> 32) % MEDIUM_ONE_IN == 0) return bench_rng_range(rng, MEDIUM_MIN, MEDIUM_MAX);
  return bench_rng_range(rng, SMALL_MIN, SMALL_MAX);
}

/* Puts n blocks into random exchange slots under one locking and frees
 * what they displace, outside the lock. */
static uint64_t exchange(bench_rng_t *rng, unsigned char **out, size_t n) {
  size_t pos[BATCH];
  unsigned char *got[BATCH];
  for (size_t j = 0; j < n; j++)
    pos[j] = (size_t)(((unsigned __int128)bench_rng_next(rng) * EXCHANGE_SLOTS) >> 64);
  pthread_mutex_lock(&g.lock);
  for (size_t j = 0; j < n; j++) {
    got[j] = g.exchange[pos[j]];
    g.exchange[pos[j]] = out[j];
  }
  pthread_mutex_unlock(&g.lock);
  uint64_t sum = 0;
  for (size_t j = 0; j < n; j++)
    if (got[j]) sum += block_free(got[j]);
  return sum;
}

static void *worker(void *arg) {
  worker_t *w = arg;
  bench_rng_t rng;
  bench_rng_seed(&rng, (g.seed << 32) + (g.round << 10) + w->id);
  unsigned char **slot = g.arrays[(w->id + g.round) % g.nthreads];
  unsigned char *out[BATCH];
  size_t nout = 0;
  uint64_t sum = 0;
  w->th.t_start = bench_now();
  for (uint64_t n = 0; n < g.ops_per_round; n++) {
    uint64_t r = bench_rng_next(&rng);
    size_t i = (size_t)(((unsigned __int128)r * g.ws) >> 64);
    if (slot[i]) {
      if ((r & 0xffff) % SHARE_ONE_IN == 0) {
        out[nout++] = slot[i];
        if (nout == BATCH) {
          sum += exchange(&rng, out, nout);
          nout = 0;
        }
      } else {
        sum += block_free(slot[i]);
      }
    }
    size_t size = pick_size(&rng);
    slot[i] = block_new(size, bench_rng_next(&rng));
  }
  if (nout) sum += exchange(&rng, out, nout);
  w->th.t_end = bench_now();
  w->th.sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 6) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_MAX / 1024, USAGE);
  g.ws = argc > 2 ? bench_arg_u64(argv[2], "working_set", 1, 1u << 24, USAGE) : 1000;
  g.seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;
  g.nthreads = argc > 4 ? (unsigned)bench_arg_u64(argv[4], "threads", 1, 1024, USAGE) : 2;
  uint64_t rounds = argc > 5 ? bench_arg_u64(argv[5], "rounds", 1, 1u << 20, USAGE) : 10;
  g.ops_per_round = (iters + rounds - 1) / rounds;

  g.arrays = bench_xmalloc(g.nthreads * sizeof *g.arrays);
  for (unsigned t = 0; t < g.nthreads; t++) {
    g.arrays[t] = bench_xmalloc(g.ws * sizeof *g.arrays[t]);
    memset(g.arrays[t], 0, g.ws * sizeof *g.arrays[t]);
  }
  g.exchange = bench_xmalloc(EXCHANGE_SLOTS * sizeof *g.exchange);
  memset(g.exchange, 0, EXCHANGE_SLOTS * sizeof *g.exchange);
  worker_t *w = bench_xmalloc(g.nthreads * sizeof *w);

  uint64_t sum = 0;
  long flt0 = bench_minflt();
  double t0 = bench_now();
  for (g.round = 0; g.round < rounds; g.round++) {
    for (unsigned t = 0; t < g.nthreads; t++) {
      w[t] = (worker_t){.id = t};
      bench_thread_start(&w[t].th, worker, &w[t]);
    }
    double seconds;
    sum += bench_threads_join(w, sizeof *w, g.nthreads, &seconds);
  }
  double t1 = bench_now();
  long minflt = bench_minflt() - flt0;

  for (unsigned t = 0; t < g.nthreads; t++) {
    for (size_t i = 0; i < g.ws; i++)
      if (g.arrays[t][i]) sum += block_free(g.arrays[t][i]);
    free(g.arrays[t]);
  }
  for (size_t i = 0; i < EXCHANGE_SLOTS; i++)
    if (g.exchange[i]) sum += block_free(g.exchange[i]);
  free(g.arrays);
  free(g.exchange);
  free(w);
  char extra[48];
  snprintf(extra, sizeof extra, " minflt=%ld", minflt);
  bench_report_extra("thread_stress", (double)g.ops_per_round * g.nthreads * rounds, t1 - t0,
                     extra, sum);
  return 0;
}
