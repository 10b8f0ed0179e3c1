/* The kernel's limit on a process's mappings (vm.max_map_count): with the
 * process a few dozen VMAs short of it, thousands of large blocks and of
 * new SuperSlabs are all granted, a realloc that grows or shrinks them
 * keeps their bytes, and freeing some in between (ranges the kernel will
 * not unmap, as that would split a merged VMA) loses or corrupts nothing.
 * The same workload runs on the C library's malloc, which must pass it
 * too, so that the test asks of hakmem no more than glibc gives.
 *
 * No sysctl: the test takes the limit as it is and consumes most of it
 * with its own pages of alternating protection (each a VMA of its own). */
#include <check.h>
#include "test_util.h"
#include "proc_maps.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hakmem.h"
#include "large.h"
#include "os.h"
#include "os_limit.h"
#include "superslab.h"

/* VMAs left free for the workload: each guarded mapping takes one. */
#define HEADROOM 48
#define ROUNDS 3000
#define SMALL_PER_ROUND 3
#define SMALL_SIZE (16 * KiB)
#define LIVE_MAX (ROUNDS * (1 + SMALL_PER_ROUND))

struct heap {
  const char *name;
  void *(*alloc)(size_t);
  void *(*resize)(void *, size_t);
  void (*release)(void *);
  int (*check)(void *); /* the heap's check of a large block (0: sound), or NULL */
};

static void *libc_alloc(size_t n) { return malloc(n); }
static void *libc_resize(void *p, size_t n) { return realloc(p, n); }
static void libc_release(void *p) { free(p); }

/* Header, ownership, registry and VMAs of a large block (large.c); a
 * block realloc shrank into a SuperSlab passes. */
static int hakmem_check_large(void *p)
{
  uintptr_t e = registry_lookup((uintptr_t)p);
  if (!e)
    return -1;
  return registry_is_superslab(e) ? 0 : large_check_invariants((struct large_hdr *)e);
}

static const struct heap heap_libc = { "glibc", libc_alloc, libc_resize, libc_release, NULL };
static const struct heap heap_hakmem = { "hakmem", hak_malloc, hak_realloc, hak_free, hakmem_check_large };

/* Reads a small /proc file into buf (no stdio: hakmem may be the heap). */
static size_t read_proc(const char *path, char *buf, size_t cap)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ck_assert_msg(fd >= 0, "%s: errno %d", path, errno);
  size_t n = 0;
  ssize_t r;
  while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
    n += (size_t)r;
  close(fd);
  buf[n] = 0;
  return n;
}

/* The process's VMAs (proc_maps.h). */
static long map_count(void)
{
  long n = proc_maps_lines();
  ck_assert_int_ge(n, 0);
  return n;
}

/* Leaves the process HEADROOM VMAs short of the limit: one reservation,
 * every other page of which is made PROT_NONE (each adds two VMAs). */
static void consume_map_count(void)
{
  char text[64];
  read_proc("/proc/sys/vm/max_map_count", text, sizeof text);
  long max = strtol(text, NULL, 10);
  ck_assert_int_gt(max, 4 * HEADROOM);
  long now = map_count(), splits = (max - HEADROOM - now) / 2;
  ck_assert_int_gt(splits, 0);
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *r = mmap(NULL, (size_t)(2 * splits + 1) * page, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ck_assert(r != MAP_FAILED);
  for (long i = 0; i < splits; i++)
    ck_assert_msg(mprotect(r + (2 * i + 1) * page, page, PROT_NONE) == 0, "split %ld: errno %d", i, errno);
  long left = max - map_count();
  ck_assert_msg(left >= HEADROOM - 2 && left <= HEADROOM + 2, "%ld VMAs left", left);
}

struct block {
  unsigned char *p;
  size_t size;
};

static void stamp(const struct block *b, unsigned char tag)
{
  b->p[0] = tag;
  b->p[b->size / 2] = tag;
  b->p[b->size - 1] = tag;
}

static bool stamped(const struct block *b, unsigned char tag)
{
  return b->p[0] == tag && b->p[b->size / 2] == tag && b->p[b->size - 1] == tag;
}

static uint64_t rng_next(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Large blocks of 300 KiB to 2.3 MiB and 16 KiB blocks (a new SuperSlab
 * every hundred or so), a quarter of them freed as the run goes and a
 * tenth of the large ones grown or shrunk by realloc: every request must
 * be granted and every live block keep its bytes. */
static void run_at_limit(const struct heap *h)
{
  static struct block live[LIVE_MAX];
  size_t n = 0;
  uint64_t rng = 0x9e3779b97f4a7c15u;
  consume_map_count();
  for (int round = 0; round < ROUNDS; round++) {
    size_t size = 300 * KiB + (size_t)(rng_next(&rng) % (2 * MiB));
    struct block b = { h->alloc(size), size };
    ck_assert_msg(b.p, "%s: round %d: malloc(%zu) failed, errno %d", h->name, round, size, errno);
    stamp(&b, (unsigned char)n);
    live[n++] = b;
    for (int i = 0; i < SMALL_PER_ROUND; i++) {
      struct block s = { h->alloc(SMALL_SIZE), SMALL_SIZE };
      ck_assert_msg(s.p, "%s: round %d: malloc(%zu) failed, errno %d", h->name, round, SMALL_SIZE, errno);
      stamp(&s, (unsigned char)n);
      live[n++] = s;
    }
    uint64_t pick = rng_next(&rng);
    if (pick % 4 == 0) {
      /* Free one: its slot takes the last block, stamped again. */
      size_t i = (size_t)(pick >> 8) % n;
      ck_assert(stamped(&live[i], (unsigned char)i));
      h->release(live[i].p);
      live[i] = live[--n];
      if (i < n) {
        ck_assert(stamped(&live[i], (unsigned char)n));
        stamp(&live[i], (unsigned char)i);
      }
    } else if (pick % 10 == 1) {
      size_t i = (size_t)(pick >> 8) % n;
      struct block *g = &live[i];
      if (g->size <= SMALL_SIZE)
        continue;
      ck_assert(stamped(g, (unsigned char)i));
      size_t to = pick % 20 < 10 ? g->size * 2 : g->size / 2;
      unsigned char *q = h->resize(g->p, to);
      ck_assert_msg(q, "%s: round %d: realloc(%zu) failed, errno %d", h->name, round, to, errno);
      g->p = q;
      ck_assert(q[0] == (unsigned char)i && (to < g->size || q[g->size - 1] == (unsigned char)i));
      g->size = to;
      stamp(g, (unsigned char)i);
    }
  }
  for (size_t i = 0; i < n; i++) {
    /* Those placed without a guard too (one in 64: each check reads the
     * process's whole map). */
    if (h->check && live[i].size > SMALL_SIZE && i % 64 == 0)
      ck_assert_msg(h->check(live[i].p) == 0, "%s: block %zu: check %d", h->name, i, h->check(live[i].p));
    ck_assert_msg(stamped(&live[i], (unsigned char)i), "%s: block %zu lost its bytes", h->name, i);
    h->release(live[i].p);
  }
}

START_TEST(glibc_grants_every_request_at_the_limit)
{
#if defined(__SANITIZE_ADDRESS__)
  return; /* malloc is the sanitizer's, which maps memory of its own */
#endif
  run_at_limit(&heap_libc);
}
END_TEST

START_TEST(hakmem_grants_every_request_at_the_limit)
{
#if defined(__SANITIZE_ADDRESS__)
  return; /* the sanitizer maps memory of its own as the test runs */
#endif
  hak_free(hak_malloc(1));
  run_at_limit(&heap_hakmem);
  /* The limit was reached: mappings went without a guard. */
  ck_assert_uint_gt(atomic_load(&os_counters.unguarded), 0);
  ck_assert_int_eq(hakmem_check_heap(), 0);
  /* And the heap goes on: everything freed, a new round is granted. */
  void *p[64];
  for (int i = 0; i < 64; i++)
    ck_assert((p[i] = hak_malloc(i % 2 ? 1 * MiB : 20 * KiB)) != NULL);
  for (int i = 0; i < 64; i++)
    hak_free(p[i]);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* At the limit a new run of mappings starts at the hint cursor; where
 * another mapping holds the cursor (another library's, or a run placed
 * after an earlier one, above the cursor), it starts at the first free
 * place after that mapping, in the ownership map's leaves hakmem has,
 * rather than failing or at a random address whose leaf finds no place
 * to merge. */
START_TEST(placement_at_the_limit_looks_past_an_occupied_cursor)
{
#if defined(__SANITIZE_ADDRESS__)
  return; /* the sanitizer maps memory of its own as the test runs */
#endif
  const uintptr_t region = (uintptr_t)4 << 30; /* an ownership-map leaf's */
  const size_t foreign_size = 32 * MiB, page = (size_t)sysconf(_SC_PAGESIZE);
  void *kept[8];
  int nkept = 0;
  hak_free(hak_malloc(1));
  /* The cursor well inside a region of 4 GiB hakmem has a leaf for, so
   * that the foreign mapping and the place after it stay in it: the
   * region of the last mapping (the gap after one can cross into the
   * next region, whose leaf no mapping has made, and at the limit a new
   * leaf may find no place to merge). */
  do {
    ck_assert_int_lt(nkept, 8);
    ck_assert((kept[nkept++] = hak_malloc(8 * MiB)) != NULL);
  } while ((os_hint_peek() & (region - 1)) > region - 4 * foreign_size ||
           os_hint_peek() / region != (uintptr_t)kept[nkept - 1] / region);
  consume_map_count();
  uintptr_t at = hak_align_up(os_hint_peek(), page);
  char *foreign = mmap((void *)at, foreign_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE,
                       -1, 0);
  ck_assert_msg(foreign == (char *)at, "foreign mapping at %#lx: errno %d", (unsigned long)at, errno);
  /* The rest of the map: lone pages of alternating protection (none
   * merges with the next) until the kernel refuses, then one given back,
   * so that hakmem's usual placement fails (its over-map needs two). */
  static void *fill[4 * HEADROOM];
  size_t nfill = 0;
  while (nfill < sizeof fill / sizeof fill[0]) {
    void *q = mmap(NULL, page, nfill % 2 ? PROT_READ : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (q == MAP_FAILED)
      break;
    fill[nfill++] = q;
  }
  ck_assert_msg(nfill >= 2 && nfill < sizeof fill / sizeof fill[0], "%zu pages filled the map", nfill);
  ck_assert_int_eq(munmap(fill[nfill - 2], page), 0); /* between two of the other protection */
  fill[nfill - 2] = NULL;
  void *p = hak_malloc(1 * MiB);
  ck_assert_msg(p, "malloc at the limit failed, errno %d", errno);
  ck_assert_msg((char *)p >= foreign + foreign_size && (char *)p < foreign + foreign_size + 8 * MiB,
                "placed at %p, not after the mapping at the cursor [%p, %p)", p, (void *)foreign,
                (void *)(foreign + foreign_size));
  memset(p, 0x5a, 1 * MiB);
  hak_free(p);
  for (size_t i = 0; i < nfill; i++)
    if (fill[i])
      munmap(fill[i], page);
  munmap(foreign, foreign_size);
  while (nkept > 0)
    hak_free(kept[--nkept]);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("maplimit");
  TCase *t = tcase_create("maplimit");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, glibc_grants_every_request_at_the_limit);
  tcase_add_test(t, hakmem_grants_every_request_at_the_limit);
  tcase_add_test(t, placement_at_the_limit_looks_past_an_occupied_cursor);
  suite_add_tcase(s, t);
  return check_run(s);
}
