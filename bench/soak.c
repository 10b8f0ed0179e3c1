/* soak: a long run whose working set shifts, to see whether the allocator's
 * footprint creeps and its speed stays even. The live data is held at
 * working_set x 512 B; its blocks have log-uniform sizes in [lo, 8 lo], and
 * lo moves between 16 B and 512 B and back in a triangle wave, so the same
 * bytes are held by a shifting mix of many small or fewer large blocks (a
 * classic fragmentation pattern). Each operation frees a random live block
 * and allocates new blocks until the live data is back at its target: one
 * free and, on average, one malloc.
 *
 * usage: soak seconds [working_set=4000] [seed=1] [csv_path]
 *
 * The run is cut into epochs of 1 s (seconds/20 for runs under 20 s, at
 * least 0.2 s). At the end of each epoch the resident set size is read from
 * /proc/self/statm; csv_path, if given, receives "epoch,ops,rss_kb" rows.
 * The first 20% of the epochs are warm-up; over the rest (steady epochs):
 *   rss_drift_pct  = (rss at the last epoch - rss at the first steady
 *                     epoch) / rss at the first steady epoch, in percent;
 *   throughput_cv  = stddev / mean of the per-epoch operations per second.
 * The wave is timed so that exactly two periods separate those two samples,
 * both taken at the largest sizes: the same load, so any difference is
 * creep. Since the run is timed, the number of operations, and with it the
 * checksum, depends on the allocator's speed. */
#include <math.h>

#include "bench.h"

#define USAGE "soak seconds [working_set=4000] [seed=1] [csv_path]"
#define CHECK_EVERY 256 /* operations between clock reads */
#define MIN_LO 16       /* lo moves from MIN_LO ... */
#define LO_OCTAVES 5    /* ... to MIN_LO << LO_OCTAVES = 512 B */

typedef struct {
  uint64_t ops;
  long rss_kb;
  double seconds;
} epoch_t;

/* Current resident set size, from /proc/self/statm (open/read rather than
 * stdio, so that sampling does not allocate). */
static long rss_now_kb(void) {
  char buf[128];
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  char *p = strchr(buf, ' ');
  return p ? strtol(p + 1, NULL, 10) * (sysconf(_SC_PAGESIZE) / 1024) : 0;
}

static double arg_seconds(const char *s) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= 0.2 && v <= 1e6)) {
    fprintf(stderr, "bad seconds '%s' (expected a number from 0.2 to 1e6)\n", s);
    bench_usage(USAGE);
  }
  return v;
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 5) bench_usage(USAGE);
  double seconds = arg_seconds(argv[1]);
  size_t ws = argc > 2 ? bench_arg_u64(argv[2], "working_set", 1, 1u << 24, USAGE) : 4000;
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;
  /* Opened now so that a bad path fails before the run, not after it. */
  FILE *csv = NULL;
  if (argc > 4 && !(csv = fopen(argv[4], "w"))) {
    fprintf(stderr, "soak: %s: %s\n", argv[4], strerror(errno));
    return 1;
  }

  /* Whole epochs tile the run; the steady part starts at epoch s. */
  double want = seconds >= 20 ? 1.0 : fmax(seconds / 20, 0.2);
  size_t nep = (size_t)fmax(1, round(seconds / want));
  double elen = seconds / (double)nep;
  size_t s = (size_t)ceil(0.2 * (double)nep);
  if (s > nep - 1) s = nep - 1;
  /* Wave phase 0 (largest sizes) at the end of epoch s and at the end of
   * the run, with two periods in between. */
  double t_steady = (double)(s + 1) * elen;
  double period = nep - 1 > s ? (seconds - t_steady) / 2 : seconds;

  /* The live blocks are slot[0..n); a free moves the last one into the hole,
   * so a random live block is one index away. */
  size_t target = ws * 512, live = 0, n = 0, cap = target / MIN_LO + 1;
  epoch_t *ep = bench_xmalloc(nep * sizeof *ep);
  unsigned char **slot = bench_xmalloc(cap * sizeof *slot);
  uint32_t *size = bench_xmalloc(cap * sizeof *size);
  bench_rng_t rng;
  bench_rng_seed(&rng, seed);
  uint64_t sum = 0;
  size_t lo = MIN_LO;

  double t0 = bench_now(), tep = t0;
  uint64_t total = 0, ops = 0;
  for (size_t k = 0; k < nep;) {
    for (int j = 0; j < CHECK_EVERY; j++) {
      if (n > 0) {
        size_t i = bench_rng_range(&rng, 0, n - 1);
        sum += bench_readback(slot[i], size[i]);
        live -= size[i];
        free(slot[i]);
        n--;
        slot[i] = slot[n];
        size[i] = size[n];
      }
      while (live < target && n < cap) {
        uint64_t r = bench_rng_next(&rng);
        size_t base = lo << bench_rng_range(&rng, 0, 2); /* octave, then uniform in it */
        size_t sz = base + (size_t)(r & 0xffffffffu) % base;
        slot[n] = bench_xmalloc(sz);
        size[n] = (uint32_t)sz;
        bench_touch(slot[n], sz, r);
        live += sz;
        n++;
      }
    }
    ops += CHECK_EVERY;
    double t = bench_now();
    if (t - t0 >= (double)(k + 1) * elen) {
      ep[k++] = (epoch_t){.ops = ops, .rss_kb = rss_now_kb(), .seconds = t - tep};
      total += ops;
      ops = 0;
      tep = t;
    }
    double u = (t - t0 - t_steady) / period;
    double level = fabs(2 * (u - floor(u)) - 1);
    lo = (size_t)(MIN_LO * exp2(LO_OCTAVES * level));
  }
  double t1 = bench_now();

  for (size_t i = 0; i < n; i++) {
    sum += bench_readback(slot[i], size[i]);
    free(slot[i]);
  }
  free(slot);
  free(size);

  double mean = 0, var = 0;
  size_t nsteady = nep - s;
  for (size_t k = s; k < nep; k++) mean += (double)ep[k].ops / ep[k].seconds / (double)nsteady;
  for (size_t k = s; k < nep; k++) {
    double d = (double)ep[k].ops / ep[k].seconds - mean;
    var += d * d / (double)nsteady;
  }
  double drift = ep[s].rss_kb > 0
                     ? 100.0 * (double)(ep[nep - 1].rss_kb - ep[s].rss_kb) / (double)ep[s].rss_kb
                     : 0.0;

  if (csv) {
    fprintf(csv, "epoch,ops,rss_kb\n");
    for (size_t k = 0; k < nep; k++)
      fprintf(csv, "%zu,%" PRIu64 ",%ld\n", k, ep[k].ops, ep[k].rss_kb);
    if (fclose(csv) != 0) {
      fprintf(stderr, "soak: %s: %s\n", argv[4], strerror(errno));
      return 1;
    }
  }
  free(ep);
  printf("soak ops/s=%.1f peak_rss_kb=%ld rss_drift_pct=%.2f throughput_cv=%.4f checksum=%016" PRIx64
         "\n",
         (double)total / (t1 - t0), bench_peak_rss_kb(), drift,
         mean > 0 ? sqrt(var) / mean : 0.0, sum);
  return 0;
}
