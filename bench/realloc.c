/* realloc: growing strings and vectors. Several vectors are grown in turn,
 * each by realloc to a random 1..1.5 times its size, from 16 B until it
 * passes 1 MiB, when it is freed and starts again at 16 B. Growing them in
 * turn interleaves their blocks, so in-place growth is not free: the
 * allocator has to find room, copy, or remap. One operation = one realloc.
 *
 * usage: realloc iterations [vectors=16] [seed=1]
 *
 * Each vector keeps a tag in its first 8 bytes, and the byte at its old end
 * is read after every realloc, so a realloc that loses data changes the
 * checksum. */
#include "bench.h"

#define USAGE "realloc iterations [vectors=16] [seed=1]"
#define START_SIZE 16
#define END_SIZE ((size_t)1 << 20)
#define PAGE 4096

typedef struct {
  unsigned char *p;
  size_t size;
  uint64_t tag;
} vec_t;

/* Writes one byte per page of the newly grown part and its last byte, as an
 * append would, without making the run a memset benchmark. */
static void fill_tail(vec_t *v, size_t from) {
  for (size_t off = from; off < v->size; off += PAGE) v->p[off] = (unsigned char)(v->tag + off);
  v->p[v->size - 1] = (unsigned char)(v->tag + v->size);
}

static void vec_start(vec_t *v, bench_rng_t *rng) {
  v->size = START_SIZE;
  v->tag = bench_rng_next(rng);
  v->p = bench_xmalloc(v->size);
  memcpy(v->p, &v->tag, sizeof v->tag);
  fill_tail(v, sizeof v->tag);
}

static uint64_t vec_check(const vec_t *v) {
  uint64_t tag;
  memcpy(&tag, v->p, sizeof tag);
  return tag ^ ((uint64_t)v->p[v->size - 1] << 56);
}

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_MAX, USAGE);
  size_t nvec = argc > 2 ? bench_arg_u64(argv[2], "vectors", 1, 1u << 20, USAGE) : 16;
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;

  vec_t *vec = bench_xmalloc(nvec * sizeof *vec);
  bench_rng_t rng;
  bench_rng_seed(&rng, seed);
  for (size_t i = 0; i < nvec; i++) vec_start(&vec[i], &rng);
  uint64_t sum = 0;

  double t0 = bench_now();
  for (uint64_t it = 0; it < iters; it++) {
    vec_t *v = &vec[it % nvec];
    if (v->size >= END_SIZE) {
      sum += vec_check(v);
      free(v->p);
      vec_start(v, &rng);
      continue;
    }
    size_t old = v->size;
    size_t grown = old + 1 + bench_rng_range(&rng, 0, old / 2);
    unsigned char *p = realloc(v->p, grown);
    if (!p) {
      fprintf(stderr, "realloc(%zu) failed\n", grown);
      return 1;
    }
    v->p = p;
    sum += vec_check(v); /* the old contents, after the move */
    v->size = grown;
    fill_tail(v, old);
  }
  double t1 = bench_now();

  for (size_t i = 0; i < nvec; i++) {
    sum += vec_check(&vec[i]);
    free(vec[i].p);
  }
  free(vec);
  bench_report("realloc", (double)iters, t1 - t0, sum);
  return 0;
}
