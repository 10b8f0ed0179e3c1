/* learn_bench: workloads for hakmem's learning mode, each with a different
 * best value of one learned knob, so that a run under HAKMEM_MODE=learning
 * can be set against the fixed values.
 *
 *   large-churn  each round allocates 64 blocks of 2..4 MiB (4 KiB
 *                multiples), touches every page, then frees them all: a
 *                large BigCache saves the mmap, munmap and page faults.
 *   small-burst  each round allocates 48 MiB as blocks of 64..512 B, touches
 *                each, then frees them all: keeping many free SuperSlabs
 *                saves unmapping, remapping and faulting them in again.
 *   bursty       as small-burst with 16 MiB rounds, each followed by a
 *                200 ms pause (nanosleep): memory kept over the pause only
 *                costs, so keeping few SuperSlabs should not lose.
 *   switch       the first half of the rounds is small-burst with one 1 MiB
 *                block allocated and freed at once every 2048 small blocks
 *                (any BigCache size serves it), the second half is
 *                large-churn: the workload changes under a frozen choice.
 *   steady       random replacement in a working set of 4000 blocks of
 *                16..1024 B, rounds * 10^6 times: nothing to learn, so it
 *                shows what learning costs.
 *
 * One operation = one malloc + one free (steady: one free + one malloc).
 * Besides the usual line, a second one gives the time of the last quarter
 * of the rounds (tail_s), when the learner has settled.
 *
 * usage: learn_bench WORKLOAD rounds [seed=1]
 *
 * Output name: learn_WORKLOAD, e.g. learn_large-churn. */
#include "bench.h"

#define USAGE "learn_bench large-churn|small-burst|bursty|switch|steady rounds [seed=1]"
#define PAGE 4096
#define MiB ((size_t)1 << 20)

#define CHURN_BLOCKS 64
#define CHURN_MIN (2 * MiB)
#define CHURN_MAX (4 * MiB)

#define SMALL_MIN 64
#define SMALL_MAX 512
#define BURST_BYTES (48 * MiB)
#define BURSTY_BYTES (16 * MiB)
#define BURSTY_PAUSE_NS 200000000L

#define SWITCH_LARGE_EVERY 2048
#define SWITCH_LARGE_SIZE MiB

#define STEADY_WS 4000
#define STEADY_MIN 16
#define STEADY_MAX 1024
#define STEADY_OPS_PER_ROUND 1000000

/* A large block allocated, touched and freed at once. */
static uint64_t large_once(bench_rng_t *rng, size_t size) {
  unsigned char *p = bench_xmalloc(size);
  bench_touch_pages(p, size, bench_rng_next(rng));
  uint64_t sum = bench_readback_pages(p, size);
  free(p);
  return sum;
}

/* One large-churn round: CHURN_BLOCKS blocks live together, then all freed. */
static uint64_t churn_round(bench_rng_t *rng, uint64_t *ops) {
  unsigned char *blk[CHURN_BLOCKS];
  size_t size[CHURN_BLOCKS];
  uint64_t sum = 0;
  for (size_t i = 0; i < CHURN_BLOCKS; i++) {
    size[i] = (bench_rng_range(rng, CHURN_MIN, CHURN_MAX) + PAGE - 1) & ~(size_t)(PAGE - 1);
    blk[i] = bench_xmalloc(size[i]);
    bench_touch_pages(blk[i], size[i], bench_rng_next(rng));
  }
  for (size_t i = 0; i < CHURN_BLOCKS; i++) {
    sum += bench_readback_pages(blk[i], size[i]);
    free(blk[i]);
  }
  *ops += CHURN_BLOCKS;
  return sum;
}

/* The live blocks of a burst; sized once for the largest burst. */
struct burst {
  unsigned char **p;
  uint16_t *size;
  size_t cap;
};

/* One burst: small blocks up to `bytes`, each touched, then all freed in
 * allocation order. With large_every, also a large block allocated and
 * freed at once after every large_every small ones. */
static uint64_t burst_round(bench_rng_t *rng, struct burst *b, size_t bytes, size_t large_every,
                            uint64_t *ops) {
  size_t n = 0, total = 0;
  uint64_t sum = 0;
  while (total < bytes && n < b->cap) {
    size_t sz = bench_rng_range(rng, SMALL_MIN, SMALL_MAX);
    unsigned char *p = bench_xmalloc(sz);
    bench_touch(p, sz, bench_rng_next(rng));
    b->p[n] = p;
    b->size[n] = (uint16_t)sz;
    n++;
    total += sz;
    if (large_every && n % large_every == 0) {
      sum += large_once(rng, SWITCH_LARGE_SIZE);
      (*ops)++;
    }
  }
  for (size_t i = 0; i < n; i++) {
    sum += bench_readback(b->p[i], b->size[i]);
    free(b->p[i]);
  }
  *ops += n;
  return sum;
}

static void pause_ns(long ns) {
  struct timespec ts = { .tv_sec = ns / 1000000000L, .tv_nsec = ns % 1000000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* random_mixed's loop: a free and a malloc of a new random size per
 * operation, in a working set that stays put. */
static uint64_t steady(bench_rng_t *rng, uint64_t iters) {
  unsigned char **slot = bench_xmalloc(STEADY_WS * sizeof *slot);
  size_t *size = bench_xmalloc(STEADY_WS * sizeof *size);
  uint64_t sum = 0;
  for (size_t i = 0; i < STEADY_WS; i++) {
    size[i] = bench_rng_range(rng, STEADY_MIN, STEADY_MAX);
    slot[i] = bench_xmalloc(size[i]);
    bench_touch(slot[i], size[i], bench_rng_next(rng));
  }
  for (uint64_t it = 0; it < iters; it++) {
    uint64_t r = bench_rng_next(rng);
    size_t i = (size_t)(((unsigned __int128)r * STEADY_WS) >> 64);
    sum += bench_readback(slot[i], size[i]);
    free(slot[i]);
    size_t sz = STEADY_MIN + (size_t)((r & 0xffffffffu) % (STEADY_MAX - STEADY_MIN + 1));
    slot[i] = bench_xmalloc(sz);
    bench_touch(slot[i], sz, r);
    size[i] = sz;
  }
  for (size_t i = 0; i < STEADY_WS; i++) {
    sum += bench_readback(slot[i], size[i]);
    free(slot[i]);
  }
  free(slot);
  free(size);
  return sum;
}

enum workload { LARGE_CHURN, SMALL_BURST, BURSTY, SWITCH, STEADY };
static const char *const workload_names[] = { "large-churn", "small-burst", "bursty", "switch",
                                              "steady" };

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) bench_usage(USAGE);
  int w = -1;
  for (int i = 0; i < (int)(sizeof workload_names / sizeof workload_names[0]); i++)
    if (strcmp(argv[1], workload_names[i]) == 0) w = i;
  if (w < 0) {
    fprintf(stderr, "unknown workload '%s'\n", argv[1]);
    bench_usage(USAGE);
  }
  uint64_t rounds = bench_arg_u64(argv[2], "rounds", 1, UINT64_MAX / STEADY_OPS_PER_ROUND, USAGE);
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;

  bench_rng_t rng;
  bench_rng_seed(&rng, seed);
  struct burst b = { NULL, NULL, 0 };
  if (w == SMALL_BURST || w == BURSTY || w == SWITCH) {
    b.cap = BURST_BYTES / SMALL_MIN + 1;
    b.p = bench_xmalloc(b.cap * sizeof *b.p);
    b.size = bench_xmalloc(b.cap * sizeof *b.size);
  }

  /* The last quarter of the rounds is also timed on its own: by then the
   * learner has settled, so it shows what the learned choice costs. */
  uint64_t sum = 0, ops = 0;
  uint64_t tail_from = rounds - rounds / 4;
  double t0 = bench_now(), t_tail = 0;
  if (w == STEADY) {
    ops = rounds * STEADY_OPS_PER_ROUND;
    sum = steady(&rng, ops);
  }
  for (uint64_t r = 0; w != STEADY && r < rounds; r++) {
    if (r == tail_from) t_tail = bench_now();
    switch ((enum workload)w) {
    case LARGE_CHURN:
      sum += churn_round(&rng, &ops);
      break;
    case SMALL_BURST:
      sum += burst_round(&rng, &b, BURST_BYTES, 0, &ops);
      break;
    case BURSTY:
      sum += burst_round(&rng, &b, BURSTY_BYTES, 0, &ops);
      pause_ns(BURSTY_PAUSE_NS);
      break;
    case SWITCH:
      if (r < rounds / 2)
        sum += burst_round(&rng, &b, BURST_BYTES, SWITCH_LARGE_EVERY, &ops);
      else
        sum += churn_round(&rng, &ops);
      break;
    case STEADY:
      break;
    }
  }
  double t1 = bench_now();

  free(b.p);
  free(b.size);
  char name[32];
  snprintf(name, sizeof name, "learn_%s", workload_names[w]);
  bench_report(name, (double)ops, t1 - t0, sum);
  if (w != STEADY && rounds >= 4)
    printf("tail: last %" PRIu64 " of %" PRIu64 " rounds tail_s=%.4f\n", rounds - tail_from, rounds,
           t1 - t_tail);
  return 0;
}
