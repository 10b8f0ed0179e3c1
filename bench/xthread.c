/* xthread: producer threads allocate blocks of random sizes 16..1024 B and
 * pass them through a bounded queue to consumer threads, which read and free
 * them: every free is a remote free. One operation = one malloc + one remote
 * free.
 *
 * usage: xthread iterations [queue_objects=4096] [seed=1] [threads=2]
 *
 * iterations is per producer. Of the threads (at least 2), half rounded up
 * produce and the rest consume. The queue is a mutex + condition variables
 * ring of batches of up to 64 blocks, so the lock is taken once per batch and
 * the allocator, not the queue, dominates. The checksum is a sum over all
 * blocks and so does not depend on which consumer got which batch.
 *
 * The peak resident set is mostly the queue at its fullest: a consumer
 * stalled for a fraction of a millisecond lets the producer fill it, so
 * the peak differs from run to run with any allocator. queue_peak, the
 * most blocks the queue held at once, is printed beside it. */
#include <pthread.h>

#include "bench.h"

#define USAGE "xthread iterations [queue_objects=4096] [seed=1] [threads=2]"
#define MAX_BATCH 64
#define MIN_SIZE 16
#define MAX_SIZE 1024

typedef struct {
  size_t n;
  unsigned char *p[MAX_BATCH];
} batch_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t not_full, not_empty;
  batch_t *ring;
  size_t cap, head, count, peak;
  unsigned producers_left;
  size_t batch;
  uint64_t iters, seed;
  pthread_barrier_t start;
} q = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .not_full = PTHREAD_COND_INITIALIZER,
       .not_empty = PTHREAD_COND_INITIALIZER};

typedef struct {
  bench_thread_t th; /* first: bench_threads_join reads it */
  unsigned id;
} worker_t;

static void queue_put(const batch_t *b) {
  pthread_mutex_lock(&q.lock);
  while (q.count == q.cap) pthread_cond_wait(&q.not_full, &q.lock);
  q.ring[(q.head + q.count) % q.cap] = *b;
  q.count++;
  if (q.count > q.peak) q.peak = q.count;
  pthread_cond_signal(&q.not_empty);
  pthread_mutex_unlock(&q.lock);
}

/* Returns false once the queue is empty and every producer has finished. */
static bool queue_get(batch_t *b) {
  pthread_mutex_lock(&q.lock);
  while (q.count == 0 && q.producers_left > 0) pthread_cond_wait(&q.not_empty, &q.lock);
  bool got = q.count > 0;
  if (got) {
    *b = q.ring[q.head];
    q.head = (q.head + 1) % q.cap;
    q.count--;
    pthread_cond_signal(&q.not_full);
  }
  pthread_mutex_unlock(&q.lock);
  return got;
}

static void producer_done(void) {
  pthread_mutex_lock(&q.lock);
  if (--q.producers_left == 0) pthread_cond_broadcast(&q.not_empty);
  pthread_mutex_unlock(&q.lock);
}

/* A block holds its value in its first 8 bytes, its size in the next 4 and
 * the value's low byte at its end (byte 15 of a 16-byte block), so the
 * consumer can check all of it. */
static void *producer(void *arg) {
  worker_t *w = arg;
  bench_rng_t rng;
  bench_rng_seed(&rng, q.seed * 1024 + w->id);
  batch_t b = {0};
  pthread_barrier_wait(&q.start);
  w->th.t_start = bench_now();
  for (uint64_t i = 0; i < q.iters; i++) {
    uint64_t v = bench_rng_next(&rng);
    uint32_t sz = (uint32_t)bench_rng_range(&rng, MIN_SIZE, MAX_SIZE);
    unsigned char *p = bench_xmalloc(sz);
    memcpy(p, &v, 8);
    memcpy(p + 8, &sz, 4);
    p[sz - 1] = (unsigned char)v;
    b.p[b.n++] = p;
    if (b.n == q.batch) {
      queue_put(&b);
      b.n = 0;
    }
  }
  if (b.n) queue_put(&b);
  producer_done();
  w->th.t_end = bench_now();
  return NULL;
}

static void *consumer(void *arg) {
  worker_t *w = arg;
  uint64_t sum = 0;
  batch_t b;
  pthread_barrier_wait(&q.start);
  w->th.t_start = bench_now();
  while (queue_get(&b)) {
    for (size_t j = 0; j < b.n; j++) {
      uint64_t v;
      uint32_t sz;
      memcpy(&v, b.p[j], 8);
      memcpy(&sz, b.p[j] + 8, 4);
      sum += v ^ sz ^ ((uint64_t)b.p[j][sz - 1] << 56);
      free(b.p[j]);
    }
  }
  w->th.t_end = bench_now();
  w->th.sum = sum;
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 5) bench_usage(USAGE);
  q.iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_MAX, USAGE);
  size_t qobjs = argc > 2 ? bench_arg_u64(argv[2], "queue_objects", 1, 1u << 24, USAGE) : 4096;
  q.seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;
  unsigned nthreads = argc > 4 ? (unsigned)bench_arg_u64(argv[4], "threads", 2, 1024, USAGE) : 2;
  unsigned nprod = (nthreads + 1) / 2;

  q.batch = qobjs < MAX_BATCH ? qobjs : MAX_BATCH;
  q.cap = qobjs / q.batch;
  q.ring = bench_xmalloc(q.cap * sizeof *q.ring);
  q.producers_left = nprod;
  pthread_barrier_init(&q.start, NULL, nthreads);

  worker_t *w = bench_xmalloc(nthreads * sizeof *w);
  for (unsigned t = 0; t < nthreads; t++) {
    w[t] = (worker_t){.id = t};
    bench_thread_start(&w[t].th, t < nprod ? producer : consumer, &w[t]);
  }
  double seconds;
  uint64_t sum = bench_threads_join(w, sizeof *w, nthreads, &seconds);
  pthread_barrier_destroy(&q.start);
  free(q.ring);
  free(w);
  char extra[48];
  snprintf(extra, sizeof extra, " queue_peak=%zu", q.peak * q.batch);
  bench_report_extra("xthread", (double)q.iters * nprod, seconds, extra, sum);
  return 0;
}
