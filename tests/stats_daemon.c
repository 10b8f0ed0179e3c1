/* A small daemon for tests/monitor_live.sh: it allocates, records what
 * hakmem says about itself, and waits to be read from outside; then does
 * it again with more memory, so that the reader sees the figures move.
 *
 *   stats_daemon DIR PHASES [exec]
 *
 * In phase k (1..PHASES) it allocates k times a fixed set of small blocks
 * and one large block, then writes DIR/phase.k ("name value" lines: the
 * hak_stats_t counters and mallinfo2's totals, taken after the last
 * allocation), creates DIR/ready.k, and waits for DIR/go.k.  Between the
 * snapshot and go.k it does not allocate (the files are written with
 * write(2), never stdio), so an outside reader sees exactly the state it
 * recorded.  It gives up after five minutes without go.k (exit 3), so a
 * failed test leaves no process behind.  With "exec", after the last
 * go.k it runs itself again as "stats_daemon DIR/after 1": the same pid
 * with a new image, whose counts start again from zero. */
#include "hakmem.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static void put(int fd, const char *name, unsigned long long v)
{
  char line[96];
  int n = snprintf(line, sizeof line, "%s %llu\n", name, v);
  if (write(fd, line, (size_t)n) != n)
    exit(4);
}

static void path_of(char *buf, size_t size, const char *dir, const char *what, int k)
{
  snprintf(buf, size, "%s/%s.%d", dir, what, k);
}

int main(int argc, char **argv)
{
  if (argc != 3 && !(argc == 4 && strcmp(argv[3], "exec") == 0)) {
    fprintf(stderr, "usage: stats_daemon DIR PHASES [exec]\n");
    return 2;
  }
  const char *dir = argv[1];
  int phases = atoi(argv[2]);
  /* Under Yama's ptrace_scope 1 only ancestors may read a process, and
   * hakmemctl is the test script's other child: allow any reader (it
   * fails harmlessly without Yama). */
  prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  static void *keep[100000];
  size_t nkeep = 0;
  for (int k = 1; k <= phases; k++) {
    /* Small blocks of several classes and one large block (above the
     * largest class), all kept. */
    for (int i = 0; i < 3000 && nkeep < sizeof keep / sizeof keep[0]; i++) {
      size_t size = 16 + (size_t)(i % 40) * 24;
      char *p = malloc(size);
      if (!p)
        return 1;
      memset(p, k, size);
      keep[nkeep++] = p;
    }
    char *big = malloc((size_t)k << 20);
    if (!big)
      return 1;
    memset(big, k, (size_t)k << 20);
    keep[nkeep++] = big;

    hak_stats_t st;
    hakmem_stats_get(&st);
    struct mallinfo2 mi = mallinfo2();
    char path[4096], tmp[sizeof path + 4];   /* path and ".tmp" */
    path_of(path, sizeof path, dir, "phase", k);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
      return 1;
    put(fd, "pid", (unsigned long long)getpid());
    put(fd, "malloc_calls", st.malloc_calls);
    put(fd, "refills", st.refills);
    put(fd, "large_allocs", st.large_allocs);
    put(fd, "large_bytes", st.large_bytes);
    put(fd, "bigcache_bytes", st.bigcache_bytes);
    put(fd, "mapped_bytes", st.mapped_bytes);
    put(fd, "superslabs_live", st.superslabs_live);
    put(fd, "superslabs_empty", st.superslabs_empty);
    put(fd, "os_mmap", st.os_mmap);
    put(fd, "os_munmap", st.os_munmap);
    put(fd, "os_madvise", st.os_madvise);
    put(fd, "uordblks", mi.uordblks);
    put(fd, "fordblks", mi.fordblks);
    close(fd);
    if (rename(tmp, path) != 0)
      return 1;
    path_of(path, sizeof path, dir, "ready", k);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
      return 1;
    close(fd);

    path_of(path, sizeof path, dir, "go", k);
    struct timespec tick = { 0, 20 * 1000 * 1000 };
    int waited = 0;
    while (access(path, F_OK) != 0) {
      if (++waited > 15000)
        return 3;
      nanosleep(&tick, NULL);
    }
  }
  if (argc == 4) {
    char after[4096];
    snprintf(after, sizeof after, "%s/after", dir);
    execl("/proc/self/exe", argv[0], after, "1", (char *)NULL);
    return 1;
  }
  return 0;
}
