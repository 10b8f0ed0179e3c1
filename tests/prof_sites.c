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
 *   prof_sites wait N   like "two", then writes "ready" on stdout and
 *                       allocates and frees 4 KiB blocks for N seconds
 *                       (a process to profile by pid)
 *   prof_sites threads  four threads allocate from both sites and free
 *                       each other's blocks while the main thread forks
 *                       (the child allocates, frees and exits); all freed
 *
 * No stdio: the leak test counts what is live at exit, and stdio's
 * buffers would be. */
#include <pthread.h>
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

static int usage(void)
{
  static const char msg[] = "usage: prof_sites two|leak|clean|threads|wait SECONDS\n";
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
  } else if (strcmp(argv[1], "threads") == 0) {
    return threads();
  } else if (strcmp(argv[1], "wait") == 0 && argc > 2) {
    two_sites();
    static const char ready[] = "ready\n";
    (void)!write(1, ready, sizeof ready - 1);
    time_t end = time(NULL) + atoi(argv[2]);
    while (time(NULL) < end) {
      for (int i = 0; i < 256; i++)
        free(beta_site(4096));
      usleep(1000);
    }
  } else {
    return usage();
  }
  return 0;
}
