/* What the Check test programs share: their main (check_run), a way to
 * hide a size from the compiler, a snapshot of hakmem's counters, the
 * resident set, and a child that must abort with a given message. */
#ifndef HAKMEM_TESTS_TEST_UTIL_H
#define HAKMEM_TESTS_TEST_UTIL_H

#include <check.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Runs the suite (each test in a forked child, Check's default) and turns
 * the result into the exit status automake's harness reads. */
static inline int check_run(Suite *s)
{
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
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

/* Forks a child for a misuse case: it leaves no core file, takes the
 * default action for SIGABRT (the sanitizer build installs handlers), and
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

#endif
