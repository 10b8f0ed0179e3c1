/* What the Check test programs share: their main (check_run), a case run
 * in a fresh process with options in its environment, a way to hide a
 * size from the compiler, a snapshot of hakmem's counters, the resident
 * set, children that must die of a signal (an abort with a given
 * message, a fault), and children that run out of address space. */
#ifndef HAKMEM_TESTS_TEST_UTIL_H
#define HAKMEM_TESTS_TEST_UTIL_H

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Runs the suite and turns the result into the exit status automake's
 * harness reads.  Each test runs in a forked child whatever CK_FORK says
 * in the environment, so that no test sees what an earlier one left. */
static inline int check_run(Suite *s)
{
  SRunner *r = srunner_create(s);
  srunner_set_fork_status(r, CK_FORK);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* The variable that tells a test program it was started by
 * run_case_in_env: it then runs its fresh-process suite, of which
 * CK_RUN_CASE names the one test case. */
#define FRESH_CASE_VAR "HAKTEST_FRESH_CASE" /* not HAKMEM_: the loader would warn */

/* Whether this process was started by run_case_in_env (main then returns
 * check_run of its fresh-process suite). */
static inline bool fresh_case_requested(void)
{
  return getenv(FRESH_CASE_VAR) != NULL;
}

/* Runs the test case tcase of this program's fresh-process suite in a new
 * process, this program run again, with env's "NAME=value" entries
 * (NULL-terminated) added to its environment: hakmem's initialisation
 * loads them there as it loads a user's (HAKMEM_MODE=fast, say), presets
 * and everything init derives from the options included.  The case must
 * pass. */
static inline void run_case_in_env(const char *tcase, char *const env[])
{
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    ck_abort_msg("fork failed");
  if (pid == 0) {
    for (unsigned i = 0; env[i]; i++)
      putenv(env[i]);
    setenv(FRESH_CASE_VAR, tcase, 1);
    setenv("CK_RUN_CASE", tcase, 1);
    unsetenv("CK_RUN_SUITE");
    execl("/proc/self/exe", program_invocation_name, (char *)NULL);
    _exit(127);
  }
  int status;
  if (waitpid(pid, &status, 0) != pid)
    ck_abort_msg("waitpid failed");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    ck_abort_msg("%s in a fresh process: %s %d", tcase,
                 WIFSIGNALED(status) ? "killed by signal" : "exit status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

/* Hides a constant from the compiler, which would otherwise warn about
 * (or fold) calls such as malloc(SIZE_MAX). */
static inline size_t opaque(size_t n)
{
  volatile size_t v = n;
  return v;
}

/* hakmem's counters now.  Check is called only on failure: a passing
 * ck_assert records a mark point, which allocates, and test_stress reads
 * the counters in a child whose memory is exhausted. */
static inline hak_stats_t stats_now(void)
{
  hak_stats_t st;
  if (hakmem_stats_get(&st) != 0)
    ck_abort_msg("hakmem_stats_get failed");
  return st;
}

/* The process's resident set in KiB, from /proc/self/statm. */
static inline long rss_kb(void)
{
  long size, res;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    ck_abort_msg("cannot open /proc/self/statm");
  int n = fscanf(f, "%ld %ld", &size, &res);
  fclose(f);
  if (n != 2)
    ck_abort_msg("cannot read /proc/self/statm");
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Out of memory without harming the test program: the address space
 * limited (RLIMIT_AS) to what is mapped now plus slack bytes, in a child
 * (in_limited_child) whose limit dies with it.  The limit in force
 * before is kept for lift_limit. */
static inline struct rlimit *limit_before(void)
{
  static struct rlimit before;
  return &before;
}

static inline void limit_address_space(size_t slack)
{
  long pages = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f || fscanf(f, "%ld", &pages) != 1)
    _exit(100);
  fclose(f);
  getrlimit(RLIMIT_AS, limit_before());
  struct rlimit rl = *limit_before();
  rl.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + slack;
  if (setrlimit(RLIMIT_AS, &rl) != 0)
    _exit(101);
}

static inline void lift_limit(void)
{
  if (setrlimit(RLIMIT_AS, limit_before()) != 0)
    _exit(102);
}

/* Runs body in a child and returns its exit status: 0, or the number of
 * the step that failed (Check's own calls allocate, so the child reports
 * by status); a child still running after 60 s dies of SIGALRM. */
static inline int in_limited_child(int (*body)(void))
{
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    alarm(60);
    _exit(body());
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status), "the child died of signal %d", WTERMSIG(status));
  return WEXITSTATUS(status);
}

/* Forks a child for a misuse case: it leaves no core file, takes the
 * default action for SIGABRT, SIGSEGV and SIGBUS (the sanitizer build
 * installs handlers: the abort or the fault must kill the child), and
 * writes its stderr into a pipe.  Returns 0 in the child; in the parent
 * the child's pid, with *stderr_fd the pipe's read end. */
static inline pid_t fork_capturing_stderr(int *stderr_fd)
{
  int fds[2];
  if (pipe(fds) != 0)
    ck_abort_msg("pipe failed");
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    ck_abort_msg("fork failed");
  if (pid == 0) {
    struct rlimit no_core = { 0, 0 };
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGABRT, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    dup2(fds[1], 2);
    close(fds[0]);
    close(fds[1]);
    return 0;
  }
  close(fds[1]);
  *stderr_fd = fds[0];
  return pid;
}

/* Reads fd to its end (at most len - 1 bytes kept) into buf, a string;
 * closes fd. */
static inline void read_to_end(int fd, char *buf, size_t len)
{
  size_t n = 0;
  ssize_t r;
  while (n < len - 1 && (r = read(fd, buf + n, len - 1 - n)) > 0)
    n += (size_t)r;
  buf[n] = 0;
  close(fd);
}

/* Runs fn in a child (no core file) whose stderr is captured: the child
 * must die of SIGABRT after writing a "hakmem: " line containing needle.
 * what names the case in the failure message.  (tests/test_misuse.c has
 * a fuller harness, with a deadline, for cases that might hang.) */
static inline void expect_child_aborts(void (*fn)(void), const char *what, const char *needle)
{
  int fd;
  pid_t pid = fork_capturing_stderr(&fd);
  if (pid == 0) {
    fn();
    _exit(0);
  }
  char buf[4096];
  read_to_end(fd, buf, sizeof buf);
  int status;
  if (waitpid(pid, &status, 0) != pid)
    ck_abort_msg("waitpid failed");
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
    ck_abort_msg("%s: not aborted (%s %d); stderr: %s", what,
                 WIFSIGNALED(status) ? "signal" : "exit status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), buf);
  if (!strstr(buf, "hakmem: ") || !strstr(buf, needle))
    ck_abort_msg("%s: aborted, but stderr does not say \"%s\": %s", what, needle, buf);
}

/* Waits for child pid for at most seconds; kills it (SIGKILL: a child
 * hung inside hakmem may have every signal blocked) and returns -1 if it
 * does not finish, -2 if waitpid fails.  Otherwise returns its wait
 * status. */
static inline int wait_deadline(pid_t pid, int seconds)
{
  struct timespec start, now, nap = { 0, 5 * 1000 * 1000 };
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return status;
    if (r < 0 && errno != EINTR)
      return -2;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > seconds) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    nanosleep(&nap, NULL);
  }
}

#endif
