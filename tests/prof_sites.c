/* A program with known allocation sites, for the heap profiler's tests
 * (prof_sites.sh): run under libhakmem with prof = 1, its profile must
 * name the sites that hold the heap.
 *
 *   prof_sites two      alpha_site keeps 64 MiB in 4000-byte blocks,
 *                       beta_site 32 MiB in 100-byte blocks; both live
 *                       at exit (2:1 by bytes)
 *   prof_sites leak     leak_site leaves 20 blocks of 1000 bytes unfreed;
 *                       everything else is freed
 *   prof_sites clean    the same allocations, all freed
 *   prof_sites moved [leak]
 *                       2000 blocks of 1000 bytes from leak_site, each
 *                       moved by realloc to 3000 bytes, then to 300000
 *                       (a large block), then freed; with "leak", then
 *                       leak_site leaves 20 blocks of 1000 bytes unfreed
 *   prof_sites wait N [T]
 *                       like "two", then writes "ready" on stdout and
 *                       allocates and frees 4 KiB blocks for N seconds
 *                       (a process to profile by pid), in T threads
 *                       (default 1)
 *   prof_sites threads  four threads allocate from both sites and free
 *                       each other's blocks while the main thread forks
 *                       (the child allocates, frees and exits); all freed
 *   prof_sites deep     deep_site keeps 32 MiB in 2000-byte blocks, each
 *                       reached through deep_recurse (6 levels),
 *                       deep_aligned (a 64-byte aligned local: a realigned
 *                       frame) and deep_alloca (alloca: a frame whose
 *                       caller is found through rbp, not rsp)
 *   prof_sites signal   signal_site keeps 16 MiB in 4000-byte blocks,
 *                       allocated in a SIGUSR1 handler that signal_raiser
 *                       raises: the stack crosses a signal frame
 *
 * No stdio: the leak test counts what is live at exit, and stdio's
 * buffers would be. */
#include <alloca.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define ALPHA_BYTES (64u << 20)
#define ALPHA_SIZE 4000u
#define BETA_BYTES (32u << 20)
#define BETA_SIZE 100u

static void *alpha_blocks[ALPHA_BYTES / ALPHA_SIZE];
static void *beta_blocks[BETA_BYTES / BETA_SIZE];
static void *leak_blocks[20];
static void *volatile sink;
/* Keeps a local's address taken after a call (no tail call, a real frame). */
static volatile uintptr_t keep;

/* noinline, and the block is stored after the call so that the call is
 * not a tail call: the return address lies inside the site. */
__attribute__((noinline)) static void *alpha_site(size_t n)
{
  void *p = malloc(n);
  memset(p, 1, 16);
  sink = p;
  return p;
}

__attribute__((noinline)) static void *beta_site(size_t n)
{
  void *p = malloc(n);
  memset(p, 2, 16);
  sink = p;
  return p;
}

__attribute__((noinline)) static void *leak_site(size_t n)
{
  void *p = malloc(n);
  memset(p, 3, 16);
  sink = p;
  return p;
}

#define DEEP_SIZE 2000u
#define DEEP_BLOCKS ((32u << 20) / DEEP_SIZE)
static void *deep_blocks[DEEP_BLOCKS];

__attribute__((noinline)) static void *deep_site(size_t n)
{
  void *p = malloc(n);
  memset(p, 4, 16);
  sink = p;
  return p;
}

__attribute__((noinline)) static void *deep_alloca(size_t n, unsigned k)
{
  char *a = alloca(16 + k % 200);
  memset(a, 5, 16);
  keep = (uintptr_t)a;
  void *p = deep_site(n);
  keep = (uintptr_t)a;
  return p;
}

__attribute__((noinline)) static void *deep_aligned(size_t n, unsigned k)
{
  char buf[128] __attribute__((aligned(64)));
  memset(buf, 6, sizeof buf);
  keep = (uintptr_t)buf;
  void *p = deep_alloca(n, k);
  keep = (uintptr_t)buf;
  return p;
}

__attribute__((noinline)) static void *deep_recurse(size_t n, unsigned k, int depth)
{
  void *p = depth ? deep_recurse(n, k, depth - 1) : deep_aligned(n, k);
  keep = (uintptr_t)&depth;
  return p;
}

#define SIGNAL_SIZE 4000u
#define SIGNAL_BLOCKS ((16u << 20) / SIGNAL_SIZE)
#define SIGNAL_PER_RAISE 64u
static void *signal_blocks[SIGNAL_BLOCKS];
static unsigned signal_next;

__attribute__((noinline)) static void *signal_site(size_t n)
{
  void *p = malloc(n);
  memset(p, 7, 16);
  sink = p;
  return p;
}

/* malloc in a handler is safe here: the signal is raised synchronously,
 * outside any allocation. */
static void signal_handler(int sig)
{
  (void)sig;
  for (unsigned i = 0; i < SIGNAL_PER_RAISE && signal_next < SIGNAL_BLOCKS; i++)
    signal_blocks[signal_next++] = signal_site(SIGNAL_SIZE);
}

__attribute__((noinline)) static int signal_raiser(void)
{
  int rc = raise(SIGUSR1);
  keep = (uintptr_t)&rc;
  return rc;
}

static void two_sites(void)
{
  for (size_t i = 0; i < sizeof alpha_blocks / sizeof alpha_blocks[0]; i++)
    alpha_blocks[i] = alpha_site(ALPHA_SIZE);
  for (size_t i = 0; i < sizeof beta_blocks / sizeof beta_blocks[0]; i++)
    beta_blocks[i] = beta_site(BETA_SIZE);
}

static void free_sites(void)
{
  for (size_t i = 0; i < sizeof alpha_blocks / sizeof alpha_blocks[0]; i++)
    free(alpha_blocks[i]);
  for (size_t i = 0; i < sizeof beta_blocks / sizeof beta_blocks[0]; i++)
    free(beta_blocks[i]);
}

#define THREADS 4
#define PER_THREAD 20000
static void *_Atomic handoff[THREADS][PER_THREAD];

/* Allocates from both sites, frees its left neighbour's blocks. */
static void *thread_main(void *arg)
{
  unsigned me = (unsigned)(uintptr_t)arg, seed = me + 1;
  for (int i = 0; i < PER_THREAD; i++) {
    seed = seed * 1103515245u + 12345u;
    size_t n = 16 + (seed >> 8) % 5000;
    handoff[me][i] = i % 3 ? beta_site(n) : alpha_site(n);
    void *theirs = atomic_exchange(&handoff[(me + THREADS - 1) % THREADS][i / 2], NULL);
    free(theirs);
  }
  return NULL;
}

static int threads(void)
{
  pthread_t t[THREADS];
  for (unsigned i = 0; i < THREADS; i++)
    if (pthread_create(&t[i], NULL, thread_main, (void *)(uintptr_t)i) != 0)
      return 1;
  pid_t pid = fork();
  if (pid == 0) {
    for (int i = 0; i < 1000; i++)
      free(alpha_site(3000));
    exit(0);
  }
  int status = 1;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return 1;
  for (unsigned i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  for (unsigned i = 0; i < THREADS; i++)
    for (int k = 0; k < PER_THREAD; k++)
      free(atomic_exchange(&handoff[i][k], NULL));
  return 0;
}

static time_t wait_end;

/* prof_sites wait's loop: 4 KiB blocks from beta_site until wait_end. */
static void *wait_loop(void *arg)
{
  (void)arg;
  while (time(NULL) < wait_end) {
    for (int i = 0; i < 256; i++)
      free(beta_site(4096));
    usleep(1000);
  }
  return NULL;
}

static int usage(void)
{
  static const char msg[] = "usage: prof_sites two|leak|clean|moved [leak]|threads|deep|signal|wait SECONDS [THREADS]\n";
  (void)!write(2, msg, sizeof msg - 1);
  return 2;
}

int main(int argc, char **argv)
{
  if (argc < 2)
    return usage();
  if (strcmp(argv[1], "two") == 0) {
    two_sites();
  } else if (strcmp(argv[1], "leak") == 0 || strcmp(argv[1], "clean") == 0) {
    two_sites();
    for (int i = 0; i < 20; i++)
      leak_blocks[i] = leak_site(1000);
    free_sites();
    if (strcmp(argv[1], "clean") == 0)
      for (int i = 0; i < 20; i++)
        free(leak_blocks[i]);
    /* Forget the leaked pointers, as a real leak does. */
    memset(leak_blocks, 0, sizeof leak_blocks);
    sink = NULL;
  } else if (strcmp(argv[1], "moved") == 0) {
    for (int i = 0; i < 2000; i++) {
      void *p = leak_site(1000), *q = realloc(p, 3000), *r = q ? realloc(q, 300000) : NULL;
      if (!r)
        return 1;
      free(r);
    }
    if (argc > 2 && strcmp(argv[2], "leak") == 0)
      for (int i = 0; i < 20; i++)
        leak_blocks[i] = leak_site(1000);
    memset(leak_blocks, 0, sizeof leak_blocks);
    sink = NULL;
  } else if (strcmp(argv[1], "threads") == 0) {
    return threads();
  } else if (strcmp(argv[1], "deep") == 0) {
    for (unsigned i = 0; i < DEEP_BLOCKS; i++)
      deep_blocks[i] = deep_recurse(DEEP_SIZE, i, 6);
  } else if (strcmp(argv[1], "signal") == 0) {
    if (signal(SIGUSR1, signal_handler) == SIG_ERR)
      return 1;
    while (signal_next < SIGNAL_BLOCKS)
      if (signal_raiser() != 0)
        return 1;
  } else if (strcmp(argv[1], "wait") == 0 && argc > 2) {
    two_sites();
    static const char ready[] = "ready\n";
    (void)!write(1, ready, sizeof ready - 1);
    wait_end = time(NULL) + atoi(argv[2]);
    int n = argc > 3 ? atoi(argv[3]) : 1;
    pthread_t t[THREADS];
    if (n < 1 || n > THREADS)
      return usage();
    for (int i = 1; i < n; i++)
      if (pthread_create(&t[i], NULL, wait_loop, NULL) != 0)
        return 1;
    wait_loop(NULL);
    for (int i = 1; i < n; i++)
      pthread_join(t[i], NULL);
  } else {
    return usage();
  }
  return 0;
}
