/* The files the library writes or reads on the program's behalf: the
 * statistics report never lands in a descriptor the program reused, and
 * stats_file, learn_state_file and the conf file are refused, with a
 * warning and without blocking, when they are not regular files.  Linked
 * against the allocator core (its hak_config and report are the library's
 * own); each test runs in its own process (CK_FORK), and a test that could
 * block is bounded by alarm(). */
#include "config.h"
#include "learn.h"
#include "learn_machine.h"
#include "stats.h"

#include <check.h>
#include "core_util.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A deadline for anything that might block on a FIFO: SIGALRM kills the
 * test's process, which Check reports as a failure. */
#define DEADLINE_S 10
/* Runs a statement that must not block: a FIFO it opens by mistake
 * would hang it, so SIGALRM ends the test at the deadline instead. */
#define WITHIN_DEADLINE(stmt) do { alarm(DEADLINE_S); stmt; alarm(0); } while (0)

static char dir[128];

/* A fresh private directory for the test's files. */
static void make_dir(void)
{
  const char *t = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/hakmem-files-XXXXXX", t && *t ? t : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  char p[512];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
  closedir(d);
  rmdir(dir);
}

static void path_in_dir(char *buf, size_t size, const char *name)
{
  snprintf(buf, size, "%s/%s", dir, name);
}

/* The whole of a file (at most 64 KiB), NUL-terminated. */
static const char *slurp(const char *path)
{
  static char buf[65536];
  int fd = open(path, O_RDONLY);
  ck_assert_msg(fd >= 0, "cannot open %s", path);
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  ck_assert_int_ge(n, 0);
  buf[n] = '\0';
  return buf;
}

static void write_file(const char *path, const char *text)
{
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
}

/* stderr goes to a file of the test directory from here on; returns its
 * path (the library's warnings and report land there). */
static const char *capture_stderr(void)
{
  static char err[200];
  path_in_dir(err, sizeof err, "stderr");
  int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
  close(fd);
  stats_prepare_exit_report(); /* this is the program's stderr now */
  return err;
}

/* ---- the exit report and the program's descriptors ---- */

enum close_what { CLOSE_NOTHING, CLOSE_ABOVE_2, CLOSE_ABOVE_1, CLOSE_ONLY_2 };
static const char data[] = "the program's data, and nothing else\n";

/* A child that behaves like a program with stats = 1: stderr is the file
 * err; it closes the descriptors what says, then opens data_path, which
 * takes the lowest free number, and duplicates it onto every number it
 * closed (so whatever the library kept there is now the program's file),
 * writes data and exits through the library's exit report.  stats_file is
 * set to a FIFO when fifo is given, so that a warning is due at exit too.
 * Returns the child's exit status. */
static int run_program(enum close_what what, const char *err, const char *data_path,
                       const char *fifo)
{
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid) {
    int status;
    alarm(DEADLINE_S);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    alarm(0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  /* The child: no Check calls from here (its descriptors are closed). */
  int e = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
  if (e < 0 || dup2(e, STDERR_FILENO) != STDERR_FILENO)
    _exit(90);
  close(e);
  hak_config.stats = 1;
  hak_config.quiet = 0;
  if (fifo)
    snprintf(hak_config.stats_file, sizeof hak_config.stats_file, "%s", fifo);
  stats_prepare_exit_report(); /* as init does at start-up */
  enum { MAXFD = 256 };
  bool closed[MAXFD] = { false };
  int lowest = what == CLOSE_ONLY_2 ? 2 : what == CLOSE_ABOVE_1 ? 2 : 3;
  int highest = what == CLOSE_ONLY_2 ? 2 : MAXFD - 1;
  if (what != CLOSE_NOTHING)
    for (int fd = lowest; fd <= highest; fd++)
      closed[fd] = close(fd) == 0;
  int d = open(data_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (d < 0)
    _exit(91);
  for (int fd = 0; fd < MAXFD; fd++)
    if (closed[fd] && fd != d && dup2(d, fd) != fd)
      _exit(92);
  if (write(d, data, sizeof data - 1) != (ssize_t)(sizeof data - 1))
    _exit(93);
  /* What the library's destructor does at exit; then out without the
   * test framework's or a sanitizer's own exit handlers, which would
   * write to the descriptors this child has taken over. */
  stats_report_at_exit();
  _exit(0);
}

static void check_report(enum close_what what, bool report_on_stderr, const char *fifo)
{
  make_dir();
  char err[200], data_path[200];
  path_in_dir(err, sizeof err, "stderr");
  path_in_dir(data_path, sizeof data_path, "data");
  ck_assert_int_eq(run_program(what, err, data_path, fifo), 0);
  ck_assert_str_eq(slurp(data_path), data);
  const char *e = slurp(err);
  if (report_on_stderr)
    ck_assert_msg(strstr(e, "hakmem: stats pid=") != NULL, "no report on stderr: '%s'", e);
  else
    ck_assert_msg(e[0] == '\0', "stderr got '%s'", e);
  remove_dir();
}

/* The FIFO at path is still there, neither replaced nor removed. */
static void assert_still_fifo(const char *path)
{
  struct stat st;
  ck_assert_int_eq(lstat(path, &st), 0);
  ck_assert(S_ISFIFO(st.st_mode));
}

/* Nothing closed: the report goes to stderr, as always. */
START_TEST(report_on_stderr)
{
  check_report(CLOSE_NOTHING, true, NULL);
}
END_TEST

/* Only stderr closed (as coreutils do): the copy taken at start-up still
 * is the original stderr, so the report is not lost ... */
START_TEST(report_after_stderr_closed)
{
  check_report(CLOSE_ONLY_2, true, NULL);
}
END_TEST

/* ... but descriptors >= 3 closed and reused: the copy's number now is the
 * program's file; the report goes to fd 2, still the original stderr. */
START_TEST(report_not_into_reused_copy)
{
  check_report(CLOSE_ABOVE_2, true, NULL);
}
END_TEST

/* Every descriptor >= 2 closed and reused: no descriptor is the original
 * stderr any more, so the report (and the warning about stats_file, a FIFO
 * here) is dropped. */
START_TEST(report_dropped_when_all_reused)
{
  check_report(CLOSE_ABOVE_1, false, NULL);
  make_dir();
  char fifo[200];
  path_in_dir(fifo, sizeof fifo, "fifo");
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  char err[200], data_path[200];
  path_in_dir(err, sizeof err, "stderr");
  path_in_dir(data_path, sizeof data_path, "data");
  ck_assert_int_eq(run_program(CLOSE_ABOVE_1, err, data_path, fifo), 0);
  ck_assert_str_eq(slurp(data_path), data);
  ck_assert_str_eq(slurp(err), "");
  remove_dir();
}
END_TEST

/* ---- stats_file ---- */

/* A FIFO, with or without a reader, or a symbolic link is refused with one
 * warning and the report goes to stderr; without O_NONBLOCK the open
 * would block at exit for want of a reader. */
START_TEST(stats_file_fifo_refused)
{
  make_dir();
  const char *err = capture_stderr();
  char fifo[200];
  path_in_dir(fifo, sizeof fifo, "fifo");
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  hak_config.stats = 1;
  hak_config.quiet = 0;
  snprintf(hak_config.stats_file, sizeof hak_config.stats_file, "%s", fifo);
  stats_prepare_exit_report();
  WITHIN_DEADLINE(stats_report_at_exit());
  const char *e = slurp(err);
  ck_assert_msg(strstr(e, "hakmem: stats_file is not a regular file (refused); report on stderr\n"
                          "hakmem: stats pid=") == e, "stderr: '%s'", e);
  /* With a reader the open succeeds: fstat refuses it, nothing is sent. */
  int reader = open(fifo, O_RDONLY | O_NONBLOCK);
  ck_assert_int_ge(reader, 0);
  ck_assert_int_eq(ftruncate(STDERR_FILENO, 0), 0);
  WITHIN_DEADLINE(stats_report_at_exit());
  e = slurp(err);
  ck_assert_msg(strstr(e, "hakmem: stats_file is not a regular file (refused); report on stderr\n"
                          "hakmem: stats pid=") == e, "stderr: '%s'", e);
  char c;
  ck_assert_int_le(read(reader, &c, 1), 0); /* EOF or EAGAIN: nothing was written */
  close(reader);
  /* A regular file gets the report, appended. */
  char report[200];
  path_in_dir(report, sizeof report, "report");
  write_file(report, "before\n");
  snprintf(hak_config.stats_file, sizeof hak_config.stats_file, "%s", report);
  stats_report_at_exit();
  ck_assert_msg(strncmp(slurp(report), "before\nhakmem: stats pid=", 25) == 0, "report: %s",
                slurp(report));
  /* A symbolic link to it is refused like the FIFO. */
  char link_path[200];
  path_in_dir(link_path, sizeof link_path, "link");
  ck_assert_int_eq(symlink(report, link_path), 0);
  write_file(report, "before\n");
  snprintf(hak_config.stats_file, sizeof hak_config.stats_file, "%s", link_path);
  ck_assert_int_eq(ftruncate(STDERR_FILENO, 0), 0);
  stats_report_at_exit();
  ck_assert_str_eq(slurp(report), "before\n");
  e = slurp(err);
  ck_assert_msg(strstr(e, "hakmem: stats_file is not a regular file (refused); report on stderr\n"
                          "hakmem: stats pid=") == e, "stderr: '%s'", e);
  hak_config.stats_file[0] = '\0';
  remove_dir();
}
END_TEST

/* ---- learn_state_file ---- */

/* Learning mode (evo_policy canary, BigCache of 128 MiB) with the state
 * file at state, through the loader; learn_init then reads the file. */
static void learning_config(const char *state)
{
  char file[300];
  snprintf(file, sizeof file, "HAKMEM_LEARN_STATE_FILE=%s", state);
  char *env[] = { "HAKMEM_MODE=learning", "HAKMEM_SUPERSLAB_KEEP=4", file, NULL };
  load_options(env);
  ck_assert_int_eq(hak_config.evo_policy, HAK_EVO_CANARY);
  ck_assert_int_eq(hak_config.bigcache_max_mb, 128);
}

static void learning_done(void)
{
  hak_config.evo_policy = HAK_EVO_FROZEN;
  hak_config.learn_state_file[0] = '\0';
  learn_init();
}

/* A FIFO as the state file: start-up (read) and exit (save) refuse it
 * instead of waiting for a writer, with one warning, and the FIFO stays. */
START_TEST(state_file_fifo_refused)
{
  make_dir();
  const char *err = capture_stderr();
  char fifo[200];
  path_in_dir(fifo, sizeof fifo, "state");
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  learning_config(fifo);
  WITHIN_DEADLINE(learn_init());
  ck_assert_int_eq(learn_decisions[LEARN_BIGCACHE_MAX_MB].phase, LEARN_PHASE_LEARN);
  const char *e = slurp(err);
  ck_assert_msg(strstr(e, "hakmem: learn_state_file is not a regular file (refused)\n") == e,
                "stderr: '%s'", e);
  learn_freeze_on(&learn_decisions[LEARN_BIGCACHE_MAX_MB], 2);
  ck_assert_int_eq(ftruncate(STDERR_FILENO, 0), 0);
  WITHIN_DEADLINE(learn_save_state());
  ck_assert_str_eq(slurp(err), "");
  assert_still_fifo(fifo);
  learning_done();
  remove_dir();
}
END_TEST

/* No state file at start-up, a FIFO in its place at exit: refused by the
 * save alone, with its warning. */
START_TEST(state_file_fifo_at_exit_refused)
{
  make_dir();
  const char *err = capture_stderr();
  char fifo[200];
  path_in_dir(fifo, sizeof fifo, "state");
  learning_config(fifo);
  learn_init();
  ck_assert_str_eq(slurp(err), "");
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  learn_freeze_on(&learn_decisions[LEARN_BIGCACHE_MAX_MB], 2);
  WITHIN_DEADLINE(learn_save_state());
  ck_assert_str_eq(slurp(err), "hakmem: learn_state_file is not a regular file (refused)\n");
  assert_still_fifo(fifo);
  learning_done();
  remove_dir();
}
END_TEST

/* The names the old code wrote through, path.PID, are planted: a symbolic
 * link and a hard link to a victim file.  The save must go through a fresh
 * file of its own (O_EXCL), leave the victim alone and succeed. */
START_TEST(state_file_save_ignores_planted_names)
{
  make_dir();
  const char *err = capture_stderr();
  char state[200], victim[200], planted[220];
  path_in_dir(state, sizeof state, "state");
  path_in_dir(victim, sizeof victim, "victim");
  write_file(victim, "victim\n");
  write_file(state, "other-program superslab_keep 32\n");
  learning_config(state);
  learn_init();
  learn_freeze_on(&learn_decisions[LEARN_BIGCACHE_MAX_MB], 2);
  snprintf(planted, sizeof planted, "%s.%ld", state, (long)getpid());
  ck_assert_int_eq(symlink(victim, planted), 0);
  learn_save_state();
  ck_assert_str_eq(slurp(victim), "victim\n");
  char want[256];
  snprintf(want, sizeof want, "other-program superslab_keep 32\n%s bigcache_max_mb 1024\n",
           program_invocation_short_name);
  ck_assert_str_eq(slurp(state), want);
  unlink(planted);
  ck_assert_int_eq(link(victim, planted), 0);
  learn_freeze_on(&learn_decisions[LEARN_BIGCACHE_MAX_MB], 0);
  learn_save_state();
  ck_assert_str_eq(slurp(victim), "victim\n");
  snprintf(want, sizeof want, "other-program superslab_keep 32\n%s bigcache_max_mb 16\n",
           program_invocation_short_name);
  ck_assert_str_eq(slurp(state), want);
  ck_assert_str_eq(slurp(err), "");
  unlink(planted);
  learning_done();
  remove_dir();
}
END_TEST

/* The number of entries of the test directory. */
static unsigned dir_entries(void)
{
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  unsigned n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

/* A save that fails half-way (the file size limit cuts the write) leaves
 * the old file as it was and no temporary behind. */
START_TEST(state_file_failed_save_keeps_old)
{
  make_dir();
  char state[200];
  path_in_dir(state, sizeof state, "state");
  write_file(state, "x y 1\n");
  learning_config(state);
  learn_init();
  learn_freeze_on(&learn_decisions[LEARN_BIGCACHE_MAX_MB], 2);
  /* stderr is a pipe, which the file size limit does not cut. */
  int p[2];
  ck_assert_int_eq(pipe(p), 0);
  ck_assert_int_eq(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
  close(p[1]);
  stats_prepare_exit_report();
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit rl = { .rlim_cur = 8, .rlim_max = RLIM_INFINITY };
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
  learn_save_state();
  rl.rlim_cur = RLIM_INFINITY;
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
  ck_assert_str_eq(slurp(state), "x y 1\n");
  ck_assert_uint_eq(dir_entries(), 1);
  char err[256];
  ssize_t n = read(p[0], err, sizeof err - 1);
  ck_assert_int_gt(n, 0);
  err[n] = '\0';
  ck_assert_str_eq(err, "hakmem: learn_state_file: cannot write the learned state\n");
  learning_done();
  remove_dir();
}
END_TEST

/* ---- the conf file ---- */

/* HAKMEM_CONF naming a FIFO, as init loads it: a warning, the defaults,
 * no wait for a writer. */
START_TEST(conf_fifo_refused)
{
  make_dir();
  const char *err = capture_stderr();
  char fifo[200], var[320];
  path_in_dir(fifo, sizeof fifo, "conf");
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  snprintf(var, sizeof var, "HAKMEM_CONF=%s", fifo);
  char *env[] = { var, "HAKMEM_THP=on", NULL };
  WITHIN_DEADLINE(config_load(env, false));
  ck_assert_int_eq(hak_config.thp, HAK_THP_ON);
  char want[400];
  snprintf(want, sizeof want, "hakmem: %s: not a regular file (ignored)\n", fifo);
  ck_assert_str_eq(slurp(err), want);
  remove_dir();
}
END_TEST

int main(void)
{
  Suite *s = suite_create("files");
  TCase *t = tcase_create("report");
  tcase_set_timeout(t, 2 * DEADLINE_S);
  tcase_add_test(t, report_on_stderr);
  tcase_add_test(t, report_after_stderr_closed);
  tcase_add_test(t, report_not_into_reused_copy);
  tcase_add_test(t, report_dropped_when_all_reused);
  tcase_add_test(t, stats_file_fifo_refused);
  suite_add_tcase(s, t);
  t = tcase_create("state");
  tcase_set_timeout(t, 2 * DEADLINE_S);
  tcase_add_test(t, state_file_fifo_refused);
  tcase_add_test(t, state_file_fifo_at_exit_refused);
  tcase_add_test(t, state_file_save_ignores_planted_names);
  tcase_add_test(t, state_file_failed_save_keeps_old);
  suite_add_tcase(s, t);
  t = tcase_create("conf");
  tcase_set_timeout(t, 2 * DEADLINE_S);
  tcase_add_test(t, conf_fifo_refused);
  suite_add_tcase(s, t);
  return check_run(s);
}
