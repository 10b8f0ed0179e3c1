/* Helpers shared by the benchmark programs: a seeded PRNG, timing, argument
 * parsing, the timed loop of a working set of blocks replaced at random,
 * and the one result line every program prints.
 *
 * The programs use only the standard malloc API; the allocator under test
 * comes in by LD_PRELOAD. Everything here is static so that each program
 * stays a single translation unit and the compiler can inline the PRNG into
 * the measured loops. */
#ifndef HAKMEM_BENCH_H
#define HAKMEM_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* xorshift64*: a few instructions per number, so the PRNG does not dominate
 * a loop whose allocation costs a few nanoseconds. Seeded through splitmix64
 * so that seeds 0, 1, 2... give unrelated streams (and never the all-zero
 * state xorshift cannot leave). */
typedef struct {
  uint64_t s;
} bench_rng_t;

static inline void bench_rng_seed(bench_rng_t *r, uint64_t seed) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  r->s = z ? z : 0x2545f4914f6cdd1dULL;
}

static inline uint64_t bench_rng_next(bench_rng_t *r) {
  uint64_t x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [lo, hi], by multiply-shift (no division in the hot loop). */
static inline size_t bench_rng_range(bench_rng_t *r, size_t lo, size_t hi) {
  uint64_t span = (uint64_t)(hi - lo) + 1;
  return lo + (size_t)(((unsigned __int128)bench_rng_next(r) * span) >> 64);
}

/* Marks a block of at least 8 bytes: a value in its first word and the
 * value's low byte at its end. That faults the block in, and reading it back
 * before the free catches two live blocks that overlap (the checksum
 * changes). */
static inline void bench_touch(unsigned char *p, size_t size, uint64_t v) {
  memcpy(p, &v, sizeof v);
  p[size - 1] = (unsigned char)v;
}

static inline uint64_t bench_readback(const unsigned char *p, size_t size) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v ^ ((uint64_t)p[size - 1] << 56);
}

/* One byte per 4 KiB page, each page its own value, and the last byte:
 * every page of the block is faulted in; read back before the free. */
static inline void bench_touch_pages(unsigned char *p, size_t size, uint64_t v) {
  for (size_t off = 0; off < size; off += 4096) p[off] = (unsigned char)(v + off / 4096);
  p[size - 1] = (unsigned char)v;
}

static inline uint64_t bench_readback_pages(const unsigned char *p, size_t size) {
  uint64_t sum = p[size - 1];
  for (size_t off = 0; off < size; off += 4096) sum = sum * 31 + p[off];
  return sum;
}

/* What a benchmark thread reports to the main thread: its checksum and when
 * its timed part began and ended.  Multi-threaded programs put one at the
 * head of their worker struct. */
typedef struct {
  pthread_t tid;
  uint64_t sum;
  double t_start, t_end;
} bench_thread_t;

/* Starts fn(arg) in th's thread, or ends the program with status 1. */
static inline void bench_thread_start(bench_thread_t *th, void *(*fn)(void *), void *arg) {
  int e = pthread_create(&th->tid, NULL, fn, arg);
  if (e) {
    fprintf(stderr, "pthread_create: %s\n", strerror(e));
    exit(1);
  }
}

/* Joins the n threads of w (stride bytes apart) and returns their summed
 * checksums.  The run lasts from the first thread's start to the last
 * one's end, as the threads stamp them: the main thread may be scheduled
 * late when there are more threads than cores; *seconds receives it. */
static inline uint64_t bench_threads_join(void *w, size_t stride, unsigned n, double *seconds) {
  uint64_t sum = 0;
  double t0 = 1e300, t1 = 0;
  for (unsigned i = 0; i < n; i++) {
    bench_thread_t *th = (bench_thread_t *)((char *)w + i * stride);
    pthread_join(th->tid, NULL);
    sum += th->sum;
    t0 = th->t_start < t0 ? th->t_start : t0;
    t1 = th->t_end > t1 ? th->t_end : t1;
  }
  *seconds = t1 - t0;
  return sum;
}

/* Makes the compiler assume the block is read and written by unknown code,
 * so that a malloc/touch/free sequence cannot be folded away at -O2. */
static inline void bench_escape(void *p) { __asm__ volatile("" : : "g"(p) : "memory"); }

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Peak resident set size of this program: VmHWM, the high-water mark of the
 * address space it got at exec. getrusage's ru_maxrss is the fallback only,
 * because it also keeps the peak of the address space before exec: started
 * by vfork from a 15 MB Python harness, a 1.5 MB program reports 15 MB.
 * Read with open/read into a stack buffer, so that measuring allocates
 * nothing. */
static inline long bench_peak_rss_kb(void) {
  char buf[4096];
  int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0) {
      buf[n] = '\0';
      const char *p = strstr(buf, "\nVmHWM:");
      if (p) return strtol(p + 7, NULL, 10);
    }
  }
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return ru.ru_maxrss;
}

/* Out of memory ends the run: a benchmark that silently skipped work would
 * report a speed it did not earn. */
static inline void *bench_xmalloc(size_t size) {
  void *p = malloc(size);
  if (!p) {
    fprintf(stderr, "malloc(%zu) failed: %s\n", size, strerror(errno));
    exit(1);
  }
  return p;
}

static inline void bench_usage(const char *usage) {
  fprintf(stderr, "usage: %s\n", usage);
  exit(2);
}

/* A positive decimal integer argument within [min, max], or the usage
 * message and exit status 2. */
static inline uint64_t bench_arg_u64(const char *s, const char *name, uint64_t min, uint64_t max,
                                     const char *usage) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v < min || v > max) {
    fprintf(stderr, "bad %s '%s' (expected an integer in %" PRIu64 "..%" PRIu64 ")\n", name, s,
            min, max);
    bench_usage(usage);
  }
  return v;
}

/* Minor page faults of the whole process so far (every thread's, including
 * those that have exited): a difference of two readings is what a part of
 * the run paid for faulting fresh pages in. */
static inline long bench_minflt(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return ru.ru_minflt;
}

/* A working set of live blocks replaced at random, the timed loop of
 * random_mixed, vm and large_replace: each operation picks a slot, reads
 * its block back, frees it and puts a new block there, written with a new
 * value. The program says, in a bench_slots_ops_t, how big its blocks are,
 * which slot a replacement takes and how a block is written and read back.
 * Pass a static const table of static inline functions: the helpers are
 * inlined into main and the calls through the table into the loop (GCC at
 * -O2 leaves a plain static function out of line), so the loop costs what
 * it costs written out by hand. The slot is picked before the free and the
 * new block after it: what stays live across free() decides the loop's
 * register spills, which bench/callgrind-ops counts. */
typedef struct {
  size_t size;    /* the new block's size */
  uint64_t value; /* written into it */
} bench_block_t;

typedef struct {
  /* Size of each block of the initial fill (its value is the next number). */
  size_t (*initial_size)(bench_rng_t *rng, const void *arg);
  /* The slot of the next replacement among n; *draw may keep a number
   * drawn here for new_block. */
  size_t (*pick_slot)(bench_rng_t *rng, size_t n, uint64_t *draw);
  /* The block that replaces it. The draws from rng are the program's own,
   * so its checksum does not depend on this helper. */
  bench_block_t (*new_block)(bench_rng_t *rng, uint64_t draw, const void *arg);
  void (*write)(unsigned char *p, size_t size, uint64_t value);
  /* What a block adds to the checksum before its free. */
  uint64_t (*read)(const unsigned char *p, size_t size);
} bench_slots_ops_t;

typedef struct {
  unsigned char **block;
  size_t *size;
  size_t n;
  uint64_t sum;    /* what the blocks freed so far read back */
  const void *arg; /* passed to initial_size and new_block */
} bench_slots_t;

/* Allocates n slots and their initial blocks (not timed). */
static inline void bench_slots_fill(bench_slots_t *s, size_t n, bench_rng_t *rng,
                                    const bench_slots_ops_t *ops, const void *arg) {
  /* The casts keep this header valid C++ (cxx_objects.cc includes it). */
  s->block = (unsigned char **)bench_xmalloc(n * sizeof *s->block);
  s->size = (size_t *)bench_xmalloc(n * sizeof *s->size);
  s->n = n;
  s->sum = 0;
  s->arg = arg;
  for (size_t i = 0; i < n; i++) {
    s->size[i] = ops->initial_size(rng, arg);
    s->block[i] = (unsigned char *)bench_xmalloc(s->size[i]);
    ops->write(s->block[i], s->size[i], bench_rng_next(rng));
  }
}

/* The timed loop: iters replacements; returns the seconds they took. */
static inline double bench_slots_replace(bench_slots_t *s, uint64_t iters, bench_rng_t *rng,
                                         const bench_slots_ops_t *ops) {
  double t0 = bench_now();
  for (uint64_t it = 0; it < iters; it++) {
    uint64_t draw = 0;
    size_t i = ops->pick_slot(rng, s->n, &draw);
    s->sum += ops->read(s->block[i], s->size[i]);
    free(s->block[i]);
    bench_block_t b = ops->new_block(rng, draw, s->arg);
    unsigned char *p = (unsigned char *)bench_xmalloc(b.size);
    ops->write(p, b.size, b.value);
    s->block[i] = p;
    s->size[i] = b.size;
  }
  return bench_now() - t0;
}

/* Reads back and frees every block and the slots; returns the checksum. */
static inline uint64_t bench_slots_free(bench_slots_t *s, const bench_slots_ops_t *ops) {
  for (size_t i = 0; i < s->n; i++) {
    s->sum += ops->read(s->block[i], s->size[i]);
    free(s->block[i]);
  }
  free(s->block);
  free(s->size);
  return s->sum;
}

/* The result line, the only thing a program prints on stdout:
 *   <name> ops/s=<float> peak_rss_kb=<int> [<key>=<number>...] checksum=<hex>
 * extra is "" or more " key=value" fields (lower-case keys), which
 * bench/compare keeps and bench-smoke.sh can check. */
static inline void bench_report_extra(const char *name, double ops, double seconds,
                                      const char *extra, uint64_t checksum) {
  printf("%s ops/s=%.1f peak_rss_kb=%ld%s checksum=%016" PRIx64 "\n", name,
         seconds > 0 ? ops / seconds : 0.0, bench_peak_rss_kb(), extra, checksum);
}

static inline void bench_report(const char *name, double ops, double seconds, uint64_t checksum) {
  bench_report_extra(name, ops, seconds, "", checksum);
}

#endif
