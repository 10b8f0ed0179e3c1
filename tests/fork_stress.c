/* Fork from a multithreaded program while its threads allocate, and make
 * the child allocate a lot: the child of a fork inherits the heap as the
 * other threads left it, stopped anywhere, in the middle of any operation
 * of any layer.  Run with the library preloaded (tests/fork_stress.sh).
 *
 *   fork_stress FORKS THREADS SEED
 *
 * THREADS threads churn blocks of every size kind (tiny, small, medium,
 * large up to 4 MiB; malloc, calloc, realloc, the aligned calls), hand
 * blocks to each other, and end and are replaced every few thousand
 * operations (the exit flush).  The main thread forks FORKS times; each
 * child, under a deadline (alarm), checks the heap, checks and frees the
 * main thread's blocks, allocates and frees blocks of every kind with
 * their contents checked, calls malloc_trim, runs two threads of its
 * own, forks a grandchild that does the same, checks the heap again, and
 * ends with exit (reports at exit) or _exit.  A child that dies of a
 * signal, hangs, or finds a heap check or a block's contents wrong is a
 * failure; the last line counts them, and the status is 1 if any.
 * The library's hakmem_check_heap is found with dlsym, so the program
 * also runs on other allocators (the check is then skipped). */
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 8
#define SLOTS 256
#define MAILBOXES 64
#define CHILD_DEADLINE 20

static int (*check_heap)(void);
static atomic_int stop;
/* Set while a child runs: the threads wait, so that on a busy machine
 * the child gets the processor (what matters is where the fork stopped
 * them). */
static atomic_int child_running;
static _Atomic(void *) mailbox[MAILBOXES];

static uint64_t next_random(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return *s = x;
}

/* A size of one of the kinds: mostly tiny and small, some medium, a few
 * large up to 4 MiB. */
static size_t random_size(uint64_t *s)
{
  uint64_t r = next_random(s);
  unsigned kind = r % 100;
  r >>= 8;
  if (kind < 55)
    return 1 + r % 256;
  if (kind < 80)
    return 257 + r % 1800;
  if (kind < 99)
    return 2048 + r % (256 << 10);
  return (256 << 10) + r % (4 << 20);
}

/* Blocks carry their size and a byte derived from their address at both
 * ends, so that a block handed out twice or moved wrong shows. */
struct block {
  unsigned char *p;
  size_t size;
};

static unsigned char tag_of(const void *p, size_t size)
{
  uintptr_t a = (uintptr_t)p;
  return (unsigned char)(a ^ a >> 8 ^ a >> 16 ^ size ^ 0x5a);
}

static void mark(struct block *b)
{
  unsigned char t = tag_of(b->p, b->size);
  size_t n = b->size < 16 ? b->size : 16;
  memset(b->p, t, n);
  memset(b->p + b->size - n, t, n);
}

static int marked(const struct block *b)
{
  unsigned char t = tag_of(b->p, b->size);
  size_t n = b->size < 16 ? b->size : 16;
  for (size_t i = 0; i < n; i++)
    if (b->p[i] != t || b->p[b->size - 1 - i] != t)
      return 0;
  return 1;
}

/* One operation on slot i: replace, grow or shrink, or swap with a
 * mailbox.  Returns 0 if a block's contents or a calloc's zeros were
 * wrong.  Blocks from a mailbox carry their size in a header. */
static int churn_step(struct block *v, uint64_t *s, int use_mailbox)
{
  uint64_t r = next_random(s);
  struct block *b = &v[r % SLOTS];
  unsigned op = (r >> 16) % 100;
  int ok = 1;

  if (b->p && !marked(b))
    ok = 0;
  if (op < 12 && b->p) {
    size_t size = random_size(s);
    unsigned char *p = realloc(b->p, size);
    if (p) {
      size_t keep = size < b->size ? size : b->size;
      unsigned char t = tag_of(b->p, b->size);
      if (keep && p[0] != t)
        ok = 0;
      b->p = p;
      b->size = size;
      mark(b);
    }
    return ok;
  }
  if (op < 20 && use_mailbox && b->p) {
    /* Hand the block to whichever thread takes this mailbox next. */
    struct block *boxed = (struct block *)b->p;
    if (b->size >= sizeof *boxed + 32) {
      unsigned char *p = b->p;
      size_t size = b->size;
      boxed->p = p;
      boxed->size = size;
      void *got = atomic_exchange(&mailbox[(r >> 24) % MAILBOXES], p);
      b->p = NULL;
      if (got) {
        struct block *g = got;
        if (g->p != got)
          ok = 0;
        free(got);
      }
      return ok;
    }
  }
  free(b->p);
  b->p = NULL;
  size_t size = random_size(s);
  if (op < 30) {
    b->p = calloc(1, size);
    /* Its ends only: touching every page of a large block costs more
     * than the rest of the run. */
    for (size_t i = 0; b->p && i < size && i < 64; i++)
      if (b->p[i] || b->p[size - 1 - i])
        ok = 0;
  } else if (op < 36) {
    size_t align = (size_t)16 << (r >> 40) % 9;
    void *p = NULL;
    switch ((r >> 50) % 3) {
    case 0: if (posix_memalign(&p, align, size)) p = NULL; break;
    case 1: p = aligned_alloc(align, (size + align - 1) & ~(align - 1)); break;
    default: p = memalign(align, size); break;
    }
    if (p && (uintptr_t)p % align)
      ok = 0;
    b->p = p;
  } else {
    b->p = malloc(size);
  }
  if (b->p) {
    b->size = size;
    mark(b);
  }
  return ok;
}

static void free_all(struct block *v, int n)
{
  for (int i = 0; i < n; i++) {
    free(v[i].p);
    v[i].p = NULL;
  }
}

/* A parent thread's life: a few thousand operations, then its end (the
 * exit flush of its caches) while the others go on. */
static void *churn_life(void *arg)
{
  uint64_t *seed = arg;
  uint64_t s = *seed;
  struct block *v = calloc(SLOTS, sizeof *v);
  int lifetime = 2000 + (int)(next_random(&s) % 30000);

  if (!v)
    return NULL;
  for (int k = 0; k < lifetime && !atomic_load(&stop); k++) {
    while (atomic_load_explicit(&child_running, memory_order_relaxed))
      usleep(200);
    if (!churn_step(v, &s, 1)) {
      fprintf(stderr, "fork_stress: a parent thread's block was wrong\n");
      abort();
    }
  }
  /* Leave some blocks behind now and then: another thread or the
   * child frees them. */
  free_all(v, (s & 3) ? SLOTS : SLOTS / 2);
  free(v);
  *seed = s;
  return NULL;
}

static void *churn(void *arg)
{
  uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;

  while (!atomic_load(&stop)) {
    pthread_t t;
    if (pthread_create(&t, NULL, churn_life, &seed) != 0) {
      churn_life(&seed);
      continue;
    }
    pthread_join(t, NULL);
  }
  return NULL;
}

/* The child's work, also its threads' and its grandchild's: COUNT
 * operations on blocks of every kind, contents checked, all freed. */
static int child_churn(uint64_t seed, int count)
{
  struct block v[SLOTS];
  int ok = 1;

  memset(v, 0, sizeof v);
  for (int k = 0; k < count; k++)
    ok &= churn_step(v, &seed, 0);
  for (int i = 0; i < SLOTS; i++)
    if (v[i].p && !marked(&v[i]))
      ok = 0;
  free_all(v, SLOTS);
  return ok;
}

static void *child_thread(void *arg)
{
  return child_churn((uintptr_t)arg, 1000) ? arg : NULL;
}

static int heap_ok(void)
{
  return !check_heap || check_heap() == 0;
}

/* One line on what a failed grandchild did: its parent's status has
 * one bit for all of it. */
static void report_grandchild(int st)
{
  if (WIFSIGNALED(st))
    fprintf(stderr, "fork_stress: grandchild killed (signal %d)\n", WTERMSIG(st));
  else
    fprintf(stderr, "fork_stress: grandchild failed (%s%s%s)\n",
            WEXITSTATUS(st) & 1 ? "heap check after the fork " : "",
            WEXITSTATUS(st) & 2 ? "contents " : "",
            WEXITSTATUS(st) & 4 ? "heap check at the end" : "");
}

/* What each child (DEPTH 0) and grandchild (DEPTH 1) does; a bit per
 * kind of failure in the result. */
static int child_run(struct block *mine, int n_mine, uint64_t seed, int depth)
{
  int rc = 0;

  alarm(CHILD_DEADLINE);
  if (!heap_ok())
    rc |= 1;
  for (int i = 0; i < n_mine; i++)
    if (mine[i].p && !marked(&mine[i]))
      rc |= 2;
  if (!child_churn(seed, 3000))
    rc |= 2;
  if (depth == 0) {
    free_all(mine, n_mine);
    /* Blocks the parent's threads left in the mailboxes were whole
     * when put there. */
    for (int i = 0; i < MAILBOXES; i++)
      free(atomic_exchange(&mailbox[i], NULL));
  }
  malloc_trim(0);
  pthread_t t[2];
  int started = 0;
  for (; started < 2; started++)
    if (pthread_create(&t[started], NULL, child_thread,
                       (void *)(uintptr_t)(seed + 17 * (started + 1))) != 0)
      break;
  for (int i = 0; i < started; i++) {
    void *res;
    pthread_join(t[i], &res);
    if (!res)
      rc |= 2;
  }
  if (depth == 0) {
    pid_t pid = fork();
    if (pid == 0)
      _exit(child_run(NULL, 0, seed * 31 + 7, 1));
    if (pid > 0) {
      int st;
      while (waitpid(pid, &st, 0) < 0)
        ;
      if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        rc |= 8;
        report_grandchild(st);
      }
    }
  }
  if (!heap_ok())
    rc |= 4;
  return rc;
}

int main(int argc, char **argv)
{
  if (argc != 4) {
    fprintf(stderr, "usage: fork_stress FORKS THREADS SEED\n");
    return 2;
  }
  int forks = atoi(argv[1]);
  int threads = atoi(argv[2]);
  uint64_t seed = strtoull(argv[3], NULL, 10) | 1;
  if (forks < 1 || threads < 1 || threads > MAX_THREADS) {
    fprintf(stderr, "fork_stress: FORKS >= 1, THREADS 1 to %d\n", MAX_THREADS);
    return 2;
  }
  check_heap = (int (*)(void))dlsym(RTLD_DEFAULT, "hakmem_check_heap");

  pthread_t t[MAX_THREADS];
  for (int i = 0; i < threads; i++)
    if (pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(seed + (uint64_t)i)) != 0) {
      perror("fork_stress: pthread_create");
      return 2;
    }

  /* The forking thread's own blocks, which each child checks and frees. */
  struct block mine[64];
  uint64_t s = seed;
  for (int i = 0; i < 64; i++) {
    mine[i].size = random_size(&s);
    mine[i].p = malloc(mine[i].size);
    if (mine[i].p)
      mark(&mine[i]);
  }

  int killed = 0, hung = 0, heap_bad = 0, contents_bad = 0, grandchild_bad = 0;
  for (int r = 0; r < forks; r++) {
    /* Fork at a random moment of the threads' work. */
    struct timespec pause = {0, (long)(next_random(&s) % 2000000)};
    nanosleep(&pause, NULL);
    uint64_t child_seed = next_random(&s);
    pid_t pid = fork();
    atomic_store(&child_running, 1);
    if (pid < 0) {
      perror("fork_stress: fork");
      break;
    }
    if (pid == 0) {
      int rc = child_run(mine, 64, child_seed, 0);
      if (child_seed % 4 == 0)
        exit(rc);
      _exit(rc);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
      ;
    atomic_store(&child_running, 0);
    if (WIFSIGNALED(st)) {
      if (WTERMSIG(st) == SIGALRM)
        hung++;
      else
        killed++;
      fprintf(stderr, "fork_stress: fork %d: child %s (signal %d)\n", r,
              WTERMSIG(st) == SIGALRM ? "hung" : "killed", WTERMSIG(st));
    } else if (WEXITSTATUS(st)) {
      int rc = WEXITSTATUS(st);
      heap_bad += (rc & 5) != 0;
      contents_bad += (rc & 2) != 0;
      grandchild_bad += (rc & 8) != 0;
      fprintf(stderr, "fork_stress: fork %d: child failed (%s%s%s)\n", r,
              rc & 5 ? "heap check " : "", rc & 2 ? "contents " : "",
              rc & 8 ? "grandchild" : "");
    }
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < threads; i++)
    pthread_join(t[i], NULL);
  free_all(mine, 64);
  for (int i = 0; i < MAILBOXES; i++)
    free(atomic_exchange(&mailbox[i], NULL));

  int failed = killed + hung + heap_bad + contents_bad + grandchild_bad;
  printf("fork_stress: %d forks, %d threads: %d killed, %d hung, %d heap check failures, "
         "%d wrong contents, %d grandchild failures\n",
         forks, threads, killed, hung, heap_bad, contents_bad, grandchild_bad);
  return failed ? 1 : 0;
}
