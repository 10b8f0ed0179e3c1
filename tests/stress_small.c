/* A small multithreaded workload on libhakmem, for tests/valgrind_stress.sh
 * to run under memcheck: four threads allocate through every entry point,
 * hand blocks to each other through a queue and check their contents.
 * Exits 0 if every check held, 1 otherwise (with a message on stderr).
 * Small on purpose: valgrind runs it one thread at a time, about fifty
 * times slower than natively. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

enum { NTHREADS = 4, OPS = 20000, QCAP = 256 };

static atomic_int failures;

#define CHECK(cond, ...)                                      \
  do {                                                        \
    if (!(cond)) {                                            \
      fprintf(stderr, "stress_small: " __VA_ARGS__);          \
      fputc('\n', stderr);                                    \
      atomic_fetch_add(&failures, 1);                         \
    }                                                         \
  } while (0)

static size_t opaque(size_t n)
{
  volatile size_t v = n;
  return v;
}

static uint64_t rng_next(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static size_t random_size(uint64_t *rng)
{
  uint64_t r = rng_next(rng);
  switch (r % 64) {
  case 0: return (size_t)(r >> 8) % (2u << 20) + 300000; /* large */
  case 1: case 2: case 3: return (size_t)(r >> 8) % 262144 + 1;
  default: return (size_t)(r >> 8) % 1100 + 1;
  }
}

static unsigned char tag(const void *p, size_t n)
{
  uintptr_t x = (uintptr_t)p ^ n;
  return (unsigned char)(x ^ (x >> 8) ^ (x >> 16) ^ 0x5A);
}

/* The first and last 64 bytes (all of a small block) carry the tag. */
static void mark(unsigned char *p, size_t n)
{
  size_t head = n < 64 ? n : 64;
  memset(p, tag(p, n), head);
  if (n > 64)
    memset(p + n - (n - 64 < 64 ? n - 64 : 64), tag(p, n), n - 64 < 64 ? n - 64 : 64);
}

static int marked(const unsigned char *p, size_t n)
{
  size_t head = n < 64 ? n : 64;
  for (size_t i = 0; i < head; i++)
    if (p[i] != tag(p, n))
      return 0;
  size_t tail = n > 64 ? (n - 64 < 64 ? n - 64 : 64) : 0;
  for (size_t i = n - tail; i < n; i++)
    if (p[i] != tag(p, n))
      return 0;
  return 1;
}

struct item {
  unsigned char *p;
  size_t n;
};

static struct {
  pthread_mutex_t lock;
  struct item buf[QCAP];
  unsigned head, count;
} queue = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int push(struct item it)
{
  int ok = 0;
  pthread_mutex_lock(&queue.lock);
  if (queue.count < QCAP) {
    queue.buf[(queue.head + queue.count++) % QCAP] = it;
    ok = 1;
  }
  pthread_mutex_unlock(&queue.lock);
  return ok;
}

static int pop(struct item *it)
{
  int ok = 0;
  pthread_mutex_lock(&queue.lock);
  if (queue.count) {
    *it = queue.buf[queue.head];
    queue.head = (queue.head + 1) % QCAP;
    queue.count--;
    ok = 1;
  }
  pthread_mutex_unlock(&queue.lock);
  return ok;
}

static void check_free(struct item it)
{
  CHECK(marked(it.p, it.n), "block %p of %zu bytes corrupted", (void *)it.p, it.n);
  free(it.p);
}

/* A new block from one of the entry points, checked and marked. */
static struct item allocate(uint64_t *rng)
{
  struct item it = { NULL, random_size(rng) };
  void *p = NULL;
  switch (rng_next(rng) % 5) {
  case 0:
    p = calloc(1, opaque(it.n));
    if (p)
      for (size_t i = 0; i < it.n; i += 97)
        CHECK(((unsigned char *)p)[i] == 0, "calloc(%zu) not zeroed at %zu", it.n, i);
    break;
  case 1:
    CHECK(posix_memalign(&p, 64, opaque(it.n)) == 0, "posix_memalign(64, %zu) failed", it.n);
    CHECK((uintptr_t)p % 64 == 0, "posix_memalign(64) gave %p", p);
    break;
  case 2:
    p = aligned_alloc(4096, opaque(it.n));
    CHECK((uintptr_t)p % 4096 == 0, "aligned_alloc(4096) gave %p", p);
    break;
  default:
    p = malloc(opaque(it.n));
    break;
  }
  CHECK(p != NULL, "allocation of %zu bytes failed", it.n);
  if (!p)
    return it;
  CHECK(malloc_usable_size(p) >= it.n, "usable size %zu < %zu", malloc_usable_size(p), it.n);
  it.p = p;
  mark(it.p, it.n);
  return it;
}

static void *worker(void *arg)
{
  uint64_t rng = 0x2545F4914F6CDD1Dull * ((uintptr_t)arg + 1);
  struct item mine[32] = { { 0 } };
  for (int op = 0; op < OPS; op++) {
    unsigned r = (unsigned)(rng_next(&rng) % 8);
    struct item it;
    if (r < 3) {
      it = allocate(&rng);
      if (it.p && !push(it))
        check_free(it);
    } else if (r < 5) {
      if (pop(&it))
        check_free(it);
    } else {
      struct item *s = &mine[rng_next(&rng) % 32];
      if (s->p && r == 7) {
        size_t n = random_size(&rng);
        CHECK(marked(s->p, s->n), "block corrupted before realloc");
        unsigned char t = s->p[0];
        unsigned char *q = realloc(s->p, opaque(n));
        CHECK(q != NULL, "realloc to %zu failed", n);
        if (!q)
          continue;
        CHECK(q[0] == t, "realloc lost the contents");
        s->p = q;
        s->n = n;
        mark(q, n);
      } else if (s->p) {
        check_free(*s);
        s->p = NULL;
      } else {
        *s = allocate(&rng);
      }
    }
  }
  for (int i = 0; i < 32; i++)
    if (mine[i].p)
      check_free(mine[i]);
  return NULL;
}

int main(void)
{
  /* The allocator is hakmem: malloc counts in its statistics, and
   * hak_malloc_usable_size (which aborts on a foreign pointer) knows the
   * block. */
  hak_stats_t a, b;
  hakmem_stats_get(&a);
  void *p = malloc(opaque(100));
  hakmem_stats_get(&b);
  if (!p || b.malloc_calls <= a.malloc_calls || hak_malloc_usable_size(p) != malloc_usable_size(p)) {
    fprintf(stderr, "stress_small: malloc is not hakmem's\n");
    return 1;
  }
  free(p);

  pthread_t t[NTHREADS];
  for (int i = 0; i < NTHREADS; i++)
    if (pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i) != 0) {
      fprintf(stderr, "stress_small: pthread_create failed\n");
      return 1;
    }
  for (int i = 0; i < NTHREADS; i++)
    pthread_join(t[i], NULL);
  struct item it;
  while (pop(&it))
    check_free(it);
  hakmem_stats_get(&b);
  CHECK(b.remote_frees > a.remote_frees, "no cross-thread free happened");
  if (atomic_load(&failures)) {
    fprintf(stderr, "stress_small: %d checks failed\n", atomic_load(&failures));
    return 1;
  }
  printf("stress_small: %d threads x %d operations, %llu allocations by hakmem\n", NTHREADS, OPS,
         (unsigned long long)(b.malloc_calls - a.malloc_calls + b.large_allocs - a.large_allocs));
  return 0;
}
