/* hakmemctl stats --pid and hakmemctl top: a running process's heap, read
 * from outside without stopping it.
 *
 * The process needs nothing but libhakmem loaded.  We find the library in
 * /proc/PID/maps, the hakmem_live_stats symbol in the mapped file's
 * dynamic symbol table, and read the block (src/live_stats.h) and what it
 * points to with process_vm_readv, which the kernel allows under the same
 * rule as ptrace: the same user (or CAP_SYS_PTRACE) and whatever Yama's
 * ptrace_scope adds.  Counters are read as they are; bytes in use come
 * from a walk of the registry and the slab descriptors done without the
 * allocator's locks, so they are a momentary estimate (exact when the
 * program is not allocating meanwhile).  The snapshot is rendered by the
 * library's own report code (src/report.c), so the report has one format
 * from inside and from outside. */
#include "hakmemctl_monitor.h"
#include "config.h"
#include "live_reader.h"
#include "live_stats.h"
#include "report.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the snapshot ---- */

static const char *const phase_names[] = { "OFF", "LEARN", "FROZEN", "CANARY" };

/* The figures a counter of the report is read from outside. */
struct counter_source {
  const struct live_view *view;
  const struct live_heap *heap;   /* NULL: the heap walk failed */
};

/* A counter of the report: the slab figures from the heap walk, the rest
 * from the live entry of that name; false (not listed) if absent. */
static bool counter_from_live(const struct report_counter_def *c, const void *source,
                              uint64_t *value)
{
  const struct counter_source *s = source;
  const struct { const char *name; size_t offset; } walked[] = {
    { "malloc_calls", offsetof(struct live_heap, allocs) },
    { "bigcache_bytes", offsetof(struct live_heap, bigcache) },
    { "superslabs_live", offsetof(struct live_heap, superslabs) },
    { "superslabs_empty", offsetof(struct live_heap, superslabs_empty) },
  };
  for (size_t i = 0; i < sizeof walked / sizeof walked[0]; i++)
    if (strcmp(c->name, walked[i].name) == 0) {
      if (!s->heap)
        return false;
      memcpy(value, (const char *)s->heap + walked[i].offset, sizeof *value);
      return true;
    }
  return live_counter(s->view, c->name, value);
}

static void snapshot_learner(const struct live_view *v, struct report_data *d)
{
  static const char *const decisions[] = { "bigcache_max_mb", "superslab_keep", NULL };
  for (int k = 0; decisions[k] && d->nlearn < REPORT_LEARN_MAX; k++) {
    char name[HAKMEM_LIVE_NAME_MAX];
    int32_t phase, value;
    snprintf(name, sizeof name, "learn.%s.phase", decisions[k]);
    if (!live_counter_i32(v, name, &phase) || phase <= 0 || phase > 3)
      continue;
    struct report_learn *l = &d->learn[d->nlearn++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", decisions[k]);
    snprintf(l->phase, sizeof l->phase, "%s", phase_names[phase]);
    snprintf(name, sizeof name, "learn.%s.value", decisions[k]);
    if (live_counter_i32(v, name, &value))
      l->value = value;
    snprintf(name, sizeof name, "learn.%s.epochs", decisions[k]);
    live_counter(v, name, &l->epochs);
    snprintf(name, sizeof name, "learn.%s.transitions", decisions[k]);
    live_counter(v, name, &l->transitions);
    snprintf(name, sizeof name, "learn.%s.events", decisions[k]);
    live_counter(v, name, &l->events);
  }
}

/* Fills d from the process v describes (probed already). */
static void snapshot(const struct live_view *v, struct report_data *d)
{
  memset(d, 0, sizeof *d);
  d->pid = v->pid;
  d->time = time(NULL);
  d->os_calls_per_s = -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/comm", (int)v->pid);
  FILE *f = fopen(path, "re");
  if (f) {
    if (fgets(d->program, sizeof d->program, f))
      d->program[strcspn(d->program, "\n")] = '\0';
    fclose(f);
  }
  snprintf(d->version, sizeof d->version, "%s", v->header.library_version);
  int32_t mode;
  if (live_counter_i32(v, "mode", &mode) && mode >= 0 && mode < HAK_MODE_COUNT)
    snprintf(d->mode, sizeof d->mode, "%s", config_mode_words[mode]);
  live_text(v, "mode_source", d->mode_source, sizeof d->mode_source);

  struct live_heap t;
  d->have_heap = live_walk_heap(v, &t, d);
  if (d->have_heap) {
    d->small_in_use = t.in_use;
    d->slab_free = t.free;
    d->have_bigcache = true;
    d->bigcache_bytes = t.bigcache;
    d->superslabs = t.superslabs;
    d->superslabs_empty = t.superslabs_empty;
  } else {
    d->nclasses = 0;
  }
  const struct live_entry *refills = live_entry_find(v, "refills", LIVE_U64);
  if (refills && refills->count <= REPORT_CLASS_MAX && d->have_heap) {
    uint64_t r[REPORT_CLASS_MAX];
    if (live_read_mem(v->pid, refills->value, r, refills->count * 8) == 0)
      for (unsigned c = 0; c < refills->count && c < d->nclasses; c++)
        d->classes[c].refills = r[c];
  }
  live_counter(v, "large_bytes", &d->large_in_use);
  live_counter(v, "mapped_bytes", &d->mapped);
  uint64_t calls[4] = { 0 };
  live_counter(v, "os_mmap", &calls[0]);
  live_counter(v, "os_munmap", &calls[1]);
  live_counter(v, "os_madvise", &calls[2]);
  live_counter(v, "os_mremap", &calls[3]);
  d->os_calls = calls[0] + calls[1] + calls[2] + calls[3];
  d->have_resident = report_read_resident(v->pid, &d->resident, &d->peak_resident);
  snapshot_learner(v, d);
  struct counter_source src = { v, d->have_heap ? &t : NULL };
  report_add_counters(d, REPORT_ALL, counter_from_live, &src);
}

static void print_report(const struct report_data *d, bool json)
{
  static char out[1 << 16];
  struct diag_buf b = DIAG_BUF(out);
  if (json)
    report_json(&b, d);
  else
    report_text(&b, d);
  fputs(out, stdout);
  fflush(stdout);
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* OS calls per second between two readings of a process's count, or -1
 * (no rate) when the count went down: the pid now runs a new image (an
 * exec restarts the count) or, in top, another process (a reused pid).
 * The unsigned difference would be about 2^64 calls. */
static double calls_rate(uint64_t cur, uint64_t prev, double seconds)
{
  return cur >= prev && seconds > 0 ? (double)(cur - prev) / seconds : -1;
}

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig)
{
  (void)sig;
  stop_requested = 1;
}

/* Sleeps s seconds, waking early on SIGINT/SIGTERM. */
static void pause_for(double s)
{
  struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
  while (!stop_requested && nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

static bool parse_seconds(const char *s, double *out)
{
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || v < 0 || v > 86400)
    return false;
  *out = v;
  return true;
}

static bool parse_pid(const char *s, pid_t *out)
{
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v <= 0 || v > 0x7fffffff)
    return false;
  *out = (pid_t)v;
  return true;
}

bool monitor_stats_wanted(int argc, char **argv)
{
  for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
    if (strcmp(argv[i], "--pid") == 0 || strncmp(argv[i], "--pid=", 6) == 0)
      return true;
  return false;
}

static void monitor_usage(void)
{
  fputs("usage: hakmemctl stats --pid PID [--watch SECONDS] [--count N] [--json]\n"
        "       hakmemctl top [--once] [--delay SECONDS] [--json]\n",
        stderr);
}

int monitor_stats(int argc, char **argv)
{
  pid_t pid = 0;
  double watch = 0;
  long count = -1;
  bool json = false;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--pid") == 0 && i + 1 < argc) {
      if (!parse_pid(argv[++i], &pid))
        goto bad;
    } else if (strncmp(a, "--pid=", 6) == 0) {
      if (!parse_pid(a + 6, &pid))
        goto bad;
    } else if (strcmp(a, "--watch") == 0 && i + 1 < argc) {
      if (!parse_seconds(argv[++i], &watch) || watch <= 0)
        goto bad;
    } else if (strcmp(a, "--count") == 0 && i + 1 < argc) {
      char *end;
      count = strtol(argv[++i], &end, 10);
      if (*end || count <= 0)
        goto bad;
    } else if (strcmp(a, "--json") == 0) {
      json = true;
    } else {
      goto bad;
    }
  }
  if (!pid)
    goto bad;
  signal(SIGINT, on_stop);
  signal(SIGTERM, on_stop);
  static struct live_view v;
  static struct report_data d;
  uint64_t prev_calls = 0;
  double prev_t = 0;
  bool had_gap = false;  /* the previous tick had no reading */
  for (long n = 0; !stop_requested;) {
    enum probe_status st = live_probe(pid, &v);
    if (st == PROBE_OK) {
      snapshot(&v, &d);
      /* An execve begun during the reading leaves it half read from the
       * old image: no reading this tick. */
      if (!live_block_unchanged(&v))
        st = PROBE_NOT_STARTED;
    }
    if (st != PROBE_OK) {
      /* The process ending while watched is how a watch ends.  Once the
       * process has been read, any other failure may be an execve under
       * way: between it and the new program's start-up the process has
       * no libhakmem, or one not yet relocated, and its maps, opened on
       * the old image, read empty (as a refusal does).  Say so once and
       * watch on; the process ending or Ctrl-C ends the watch. */
      if (n == 0 || watch <= 0 || st == PROBE_NO_PROCESS) {
        live_probe_message(pid, st, &v);
        return n > 0 && st == PROBE_NO_PROCESS ? 0 : 1;
      }
      if (!had_gap) {
        live_probe_message(pid, st, &v);
        fprintf(stderr, "hakmemctl: process %d: no reading now (it may be starting a new "
                "program); watching on\n", (int)pid);
      }
      had_gap = true;
      pause_for(watch);
      continue;
    }
    double t = now_s();
    /* No rate across a gap: the counts may be a new image's. */
    if (n > 0 && !had_gap && t > prev_t)
      d.os_calls_per_s = calls_rate(d.os_calls, prev_calls, t - prev_t);
    prev_calls = d.os_calls;
    prev_t = t;
    had_gap = false;
    if (n > 0 && !json)
      putchar('\n');
    print_report(&d, json);
    n++;
    if (watch <= 0 || (count > 0 && n >= count))
      break;
    pause_for(watch);
  }
  return 0;
bad:
  monitor_usage();
  return 2;
}

/* ---- top ---- */

struct top_row {
  pid_t pid;
  char program[64];
  char mode[16];
  uint64_t resident, in_use, held, peak, calls;
  double calls_per_s;
  bool have_heap;
};

static int row_cmp(const void *a, const void *b)
{
  const struct top_row *x = a, *y = b;
  if (x->resident != y->resident)
    return x->resident < y->resident ? 1 : -1;
  return x->pid - y->pid;
}

struct top_scan {
  struct top_row *rows;
  size_t n, cap;
  /* Processes whose memory we may not read: another user's (we are not
   * root), or refused by ptrace's rules although they are ours or we are
   * root (see denied_reason). */
  unsigned other_user, refused;
};

/* Why a process's maps or memory were refused.  A kernel thread or a
 * zombie has no address space at all (empty maps, no exe link): not a
 * refusal, and left out.  Otherwise: another user's process when we are
 * not root; else ptrace's rules refused it (Yama's ptrace_scope, a
 * non-dumpable process, no CAP_SYS_PTRACE or another user namespace for
 * root) -- a process of another PID namespace is not in our /proc. */
enum denied_reason { DENIED_NO_MEMORY, DENIED_OTHER_USER, DENIED_REFUSED };

static enum denied_reason denied_reason(pid_t pid)
{
  char path[64], target[16];
  snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
  if (readlink(path, target, sizeof target) < 0 && (errno == ENOENT || errno == ESRCH))
    return DENIED_NO_MEMORY;
  struct stat st;
  snprintf(path, sizeof path, "/proc/%d", (int)pid);
  if (geteuid() != 0 && stat(path, &st) == 0 && st.st_uid != geteuid())
    return DENIED_OTHER_USER;
  return DENIED_REFUSED;
}

/* Every process with libhakmem loaded that we may read. */
static void top_scan(struct top_scan *s)
{
  static struct live_view v;
  static struct report_data d;
  s->n = 0;
  s->other_user = s->refused = 0;
  DIR *dir = opendir("/proc");
  if (!dir)
    return;
  struct dirent *de;
  while ((de = readdir(dir))) {
    pid_t pid;
    if (!isdigit((unsigned char)de->d_name[0]) || !parse_pid(de->d_name, &pid) ||
        pid == getpid())
      continue;
    enum probe_status st = live_probe(pid, &v);
    if (st == PROBE_DENIED) {
      enum denied_reason why = denied_reason(pid);
      s->other_user += why == DENIED_OTHER_USER;
      s->refused += why == DENIED_REFUSED;
      continue;
    }
    if (st != PROBE_OK)
      continue;
    snapshot(&v, &d);
    if (s->n == s->cap) {
      size_t cap = s->cap ? s->cap * 2 : 64;
      struct top_row *r = realloc(s->rows, cap * sizeof *r);
      if (!r)
        break;
      s->rows = r;
      s->cap = cap;
    }
    struct top_row *r = &s->rows[s->n++];
    *r = (struct top_row){ .pid = pid, .resident = d.resident, .in_use = report_in_use(&d),
                           .held = report_held(&d), .peak = d.peak_resident,
                           .calls = d.os_calls, .calls_per_s = -1, .have_heap = d.have_heap };
    snprintf(r->program, sizeof r->program, "%s", d.program);
    snprintf(r->mode, sizeof r->mode, "%s", d.mode[0] ? d.mode : "?");
  }
  closedir(dir);
}

static void bytes_cell(char *out, size_t size, uint64_t v, bool known)
{
  if (!known) {
    snprintf(out, size, "-");
    return;
  }
  struct diag_buf b = { .buf = out, .size = size };
  out[0] = '\0';
  report_put_bytes(&b, v);
}

static void top_print(const struct top_scan *s, bool json, bool clear)
{
  if (json) {
    for (size_t i = 0; i < s->n; i++) {
      const struct top_row *r = &s->rows[i];
      char buf[256];
      struct diag_buf b = DIAG_BUF(buf);
      buf[0] = '\0';
      report_put_json_string(&b, r->program);
      printf("{\"pid\":%d,\"program\":%s,\"mode\":\"%s\",\"resident\":%llu,", (int)r->pid, buf,
             r->mode, (unsigned long long)r->resident);
      if (r->have_heap)
        printf("\"in_use\":%llu,\"held\":%llu,", (unsigned long long)r->in_use,
               (unsigned long long)r->held);
      printf("\"peak_resident\":%llu,\"os_calls\":%llu", (unsigned long long)r->peak,
             (unsigned long long)r->calls);
      if (r->calls_per_s >= 0)
        printf(",\"os_calls_per_s\":%.1f", r->calls_per_s);
      printf("}\n");
    }
    fflush(stdout);
    return;
  }
  if (clear)
    fputs("\033[H\033[2J", stdout);
  char when[32];
  time_t now = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&now));
  printf("hakmemctl top - %s - %zu process%s on libhakmem", when, s->n, s->n == 1 ? "" : "es");
  unsigned unreadable = s->other_user + s->refused;
  if (unreadable) {
    printf(" (%u other%s not readable: ", unreadable, unreadable == 1 ? "" : "s");
    if (s->other_user)
      printf("%u another user's%s", s->other_user, s->refused ? ", " : "");
    if (s->refused && geteuid() == 0)
      printf("%u refused to root: no CAP_SYS_PTRACE, another user namespace or "
             "yama ptrace_scope 3", s->refused);
    else if (s->refused)
      printf("%u refused by ptrace rules: yama ptrace_scope or not dumpable", s->refused);
    printf("; see ptrace(2))");
  }
  printf("\n%7s  %-16s %-9s %10s %10s %10s %10s %10s\n", "PID", "PROGRAM", "MODE", "RESIDENT",
         "IN USE", "HELD", "PEAK", "OS CALLS/S");
  for (size_t i = 0; i < s->n; i++) {
    const struct top_row *r = &s->rows[i];
    char res[24], use[24], held[24], peak[24], rate[24];
    bytes_cell(res, sizeof res, r->resident, true);
    bytes_cell(use, sizeof use, r->in_use, r->have_heap);
    bytes_cell(held, sizeof held, r->held, r->have_heap);
    bytes_cell(peak, sizeof peak, r->peak, true);
    if (r->calls_per_s >= 0)
      snprintf(rate, sizeof rate, "%.0f", r->calls_per_s);
    else
      snprintf(rate, sizeof rate, "-");
    printf("%7d  %-16.16s %-9s %10s %10s %10s %10s %10s\n", (int)r->pid, r->program, r->mode,
           res, use, held, peak, rate);
  }
  fflush(stdout);
}

int monitor_top(int argc, char **argv)
{
  bool once = false, json = false;
  double delay = 2;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--once") == 0)
      once = true;
    else if (strcmp(argv[i], "--json") == 0)
      json = true;
    else if ((strcmp(argv[i], "--delay") == 0 || strcmp(argv[i], "-d") == 0) && i + 1 < argc) {
      if (!parse_seconds(argv[++i], &delay))
        goto bad;
    } else {
      goto bad;
    }
  }
  if (once && delay > 1)
    delay = 1;
  signal(SIGINT, on_stop);
  signal(SIGTERM, on_stop);
  struct top_scan prev = { 0 }, cur = { 0 };
  double prev_t = 0;
  bool clear = !once && !json && isatty(STDOUT_FILENO);
  top_scan(&prev);
  prev_t = now_s();
  /* Rates need two samples: the first table comes after one delay. */
  while (!stop_requested) {
    if (delay > 0)
      pause_for(delay);
    if (stop_requested)
      break;
    top_scan(&cur);
    double t = now_s();
    for (size_t i = 0; i < cur.n; i++)
      for (size_t j = 0; j < prev.n; j++)
        if (prev.rows[j].pid == cur.rows[i].pid && t > prev_t && delay > 0) {
          cur.rows[i].calls_per_s = calls_rate(cur.rows[i].calls, prev.rows[j].calls, t - prev_t);
          break;
        }
    qsort(cur.rows, cur.n, sizeof cur.rows[0], row_cmp);
    top_print(&cur, json, clear);
    if (once)
      break;
    struct top_scan tmp = prev;
    prev = cur;
    cur = tmp;
    prev_t = t;
  }
  free(prev.rows);
  free(cur.rows);
  return 0;
bad:
  monitor_usage();
  return 2;
}
