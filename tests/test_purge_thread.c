/* The purge thread in a program's way: a system call the kernel grants
 * only to a single-threaded process (unshare, setns), and the thread's
 * first start from a free glibc makes holding the lock of its stack
 * cache.  Each scenario runs in a fresh process, this program run again
 * with the scenario's name, linked to libhakmem as a program is; the
 * test kills it at a deadline, so that a hang fails instead of hanging
 * make check (a start deadlocked in pthread_create has every signal
 * blocked: only SIGKILL ends it). */
#include "test_util.h"
#include "hakmem.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Exit statuses of a scenario. */
#define SCENARIO_SKIP 77

static void pause_ms(long ms)
{
  struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* The threads of this process, as a sandbox counts them. */
static int task_count(void)
{
  DIR *d = opendir("/proc/self/task");
  if (!d)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

/* 20 MB of 100 KB blocks, written and freed: memory for the purge. */
static void heap_freed(void)
{
  enum { N = 200, SIZE = 100000 };
  void *v[N];
  for (int i = 0; i < N; i++) {
    v[i] = malloc(SIZE);
    memset(v[i], 1, SIZE);
  }
  for (int i = 0; i < N; i++)
    free(v[i]);
}

/* Waits up to 10 s for the purge thread to be there (a second task). */
static bool purge_thread_seen(int own_threads)
{
  for (int i = 0; i < 1000; i++) {
    if (task_count() == own_threads + 1)
      return true;
    pause_ms(10);
  }
  return false;
}

/* Whether a child of this process, which has no purge thread, may make
 * the call: the kernel or a container may forbid it to anyone. */
static bool call_allowed_alone(int (*call)(void))
{
  pid_t pid = fork();
  if (pid == 0)
    _exit(call() == 0 ? 0 : 1);
  int status;
  return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
}

static int unshare_user(void)
{
  return unshare(CLONE_NEWUSER);
}

static int setns_own_mount(void)
{
  int fd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  int rc = setns(fd, CLONE_NEWNS);
  close(fd);
  return rc;
}

/* After the call, the next allocations start the thread again and memory
 * still goes back by time. */
static int purge_works_again(void)
{
  hak_stats_t a = stats_now();
  heap_freed();
  hak_stats_t s = stats_now();
  for (int i = 0; i < 1000 && s.purge_decommit == a.purge_decommit; i++) {
    pause_ms(10);
    s = stats_now();
  }
  if (s.purge_threads == a.purge_threads) {
    fprintf(stderr, "the purge thread was not started again\n");
    return 1;
  }
  if (s.purge_decommit == a.purge_decommit) {
    fprintf(stderr, "nothing purged after the call\n");
    return 1;
  }
  return 0;
}

/* A single-threaded program calls, once hakmem has started its purge
 * thread; the call succeeds as it does under glibc. */
static int scenario_single_threaded_call(const char *name, int (*call)(void))
{
  heap_freed();
  if (!purge_thread_seen(1)) {
    fprintf(stderr, "%s: the purge thread did not start\n", name);
    return 1;
  }
  if (!call_allowed_alone(call)) {
    printf("%s: refused to a single-threaded process here; not tested\n", name);
    return SCENARIO_SKIP;
  }
  if (call() != 0) {
    fprintf(stderr, "%s: %s\n", name, strerror(errno));
    return 1;
  }
  return purge_works_again();
}

static int scenario_unshare(void)
{
  return scenario_single_threaded_call("unshare(CLONE_NEWUSER)", unshare_user);
}

static int scenario_setns(void)
{
  return scenario_single_threaded_call("setns(CLONE_NEWNS)", setns_own_mount);
}

static int hold_pipe[2];

static void *blocked_reader(void *arg)
{
  char c;
  while (read(hold_pipe[0], &c, 1) < 0 && errno == EINTR)
    ;
  return arg;
}

/* A program with a thread of its own gets EINVAL, as under glibc, at
 * once: stopping the purge thread changes nothing for it, and must not
 * wait long or for ever. */
static int scenario_threaded_unshare(void)
{
  pthread_t t;
  if (pipe(hold_pipe) != 0 || pthread_create(&t, NULL, blocked_reader, NULL) != 0)
    return 1;
  heap_freed();
  if (!purge_thread_seen(2)) {
    fprintf(stderr, "the purge thread did not start\n");
    return 1;
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  errno = 0;
  int rc = unshare(CLONE_NEWUSER);
  int err = errno;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  if (write(hold_pipe[1], "x", 1) != 1 || pthread_join(t, NULL) != 0)
    return 1;
  if (rc != -1 || err != EINVAL) {
    fprintf(stderr, "unshare in a threaded program: %d, %s\n", rc, strerror(err));
    return 1;
  }
  /* The purge thread ends within a pass; the bound of the wait is 2 s. */
  if (ms > 1000) {
    fprintf(stderr, "unshare in a threaded program took %ld ms\n", ms);
    return 1;
  }
  return purge_works_again();
}

static void *nothing(void *arg)
{
  return arg;
}

/* Joins threads of 16 MiB stacks: glibc caches their stacks, and past
 * its 40 MiB it frees the TLS of the oldest, holding the cache's lock,
 * in the thread that joins.  This process's first kick of the purge is
 * such a free, of a block the joining thread allocated: no allocation
 * after it has left the thread cache before. */
static void *join_big_stacks(void *arg)
{
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 16 << 20);
  for (int round = 0; round < 4; round++) {
    pthread_t t[6];
    for (int i = 0; i < 6; i++)
      if (pthread_create(&t[i], &attr, nothing, NULL) != 0)
        return (void *)1;
    for (int i = 0; i < 6; i++)
      pthread_join(t[i], NULL);
  }
  pthread_attr_destroy(&attr);
  return arg;
}

/* The first start of the purge thread from that free waited for ever
 * for the lock its own thread held.  The thread starts at a later
 * allocation's slow path instead, and purges. */
static int scenario_stack_cache(void)
{
  pthread_t j;
  void *res;
  if (pthread_create(&j, NULL, join_big_stacks, NULL) != 0 || pthread_join(j, &res) != 0 ||
      res != NULL)
    return 1;
  return purge_works_again();
}

static const struct scenario {
  const char *name;
  int (*run)(void);
} scenarios[] = {
  { "unshare", scenario_unshare },
  { "setns", scenario_setns },
  { "threaded-unshare", scenario_threaded_unshare },
  { "stack-cache", scenario_stack_cache },
};

/* Runs a scenario in a fresh process with a 50 ms purge delay; kills it
 * after 60 s. */
static void run_scenario(const char *name)
{
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    setenv("HAKMEM_PURGE_DELAY_MS", "50", 1);
    execl("/proc/self/exe", program_invocation_name, name, (char *)NULL);
    _exit(127);
  }
  int status = wait_deadline(pid, 60);
  if (status == -1)
    ck_abort_msg("%s: hung (killed after 60 s)", name);
  ck_assert_int_ge(status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == SCENARIO_SKIP)
    return;
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: %s %d", name,
                WIFSIGNALED(status) ? "killed by signal" : "exit status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

START_TEST(unshare_user_namespace_with_the_purge_thread)
{
  run_scenario("unshare");
}
END_TEST

START_TEST(setns_mount_namespace_with_the_purge_thread)
{
  run_scenario("setns");
}
END_TEST

START_TEST(unshare_in_a_threaded_program_fails_at_once)
{
  run_scenario("threaded-unshare");
}
END_TEST

START_TEST(first_start_not_from_a_free_in_the_stack_cache)
{
  run_scenario("stack-cache");
}
END_TEST

int main(int argc, char **argv)
{
  if (argc == 2) {
    for (unsigned i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
      if (strcmp(argv[1], scenarios[i].name) == 0)
        return scenarios[i].run();
    fprintf(stderr, "%s: no scenario %s\n", argv[0], argv[1]);
    return 2;
  }
  Suite *s = suite_create("purge_thread");
  TCase *t = tcase_create("purge_thread");
  tcase_set_timeout(t, 300);
  tcase_add_test(t, unshare_user_namespace_with_the_purge_thread);
  tcase_add_test(t, setns_mount_namespace_with_the_purge_thread);
  tcase_add_test(t, unshare_in_a_threaded_program_fails_at_once);
  tcase_add_test(t, first_start_not_from_a_free_in_the_stack_cache);
  suite_add_tcase(s, t);
  return check_run(s);
}
