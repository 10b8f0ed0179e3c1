/* Statistics report and the error lines, written with write(2) and
 * formatted by hand: this code may run inside malloc or at exit. */
#include "stats.h"
#include "config.h"
#include "large.h"
#include "learn.h"
#include "os.h"
#include "shared_pool.h"
#include "hakmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct hak_counters hak_counters;

uint64_t hak_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A line buffer; appends silently stop at its end. */
struct line {
  char buf[256];
  size_t len;
};

static void line_str(struct line *l, const char *s)
{
  while (*s && l->len < sizeof l->buf - 1)
    l->buf[l->len++] = *s++;
}

static void line_u64(struct line *l, uint64_t v)
{
  char tmp[24];
  int i = (int)sizeof tmp;
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (i < (int)sizeof tmp && l->len < sizeof l->buf - 1)
    l->buf[l->len++] = tmp[i++];
}

static void line_hex(struct line *l, uintptr_t v)
{
  char tmp[20];
  int i = (int)sizeof tmp;
  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  line_str(l, "0x");
  while (i < (int)sizeof tmp && l->len < sizeof l->buf - 1)
    l->buf[l->len++] = tmp[i++];
}

static void line_write(struct line *l, int fd)
{
  l->buf[l->len++] = '\n';
  size_t off = 0;
  while (off < l->len) {
    ssize_t n = write(fd, l->buf + off, l->len - off);
    if (n <= 0)
      break;
    off += (size_t)n;
  }
}

/* ---- where the exit report goes ----
 *
 * Standard error as it was at start-up: a copy of it (taken when a report
 * is due at exit, since programs such as coreutils close stderr before
 * they exit) and the identity of the file it was.  A program may close
 * either descriptor and open its own files, which then get their numbers:
 * a descriptor is written to only while fstat still shows that identity,
 * else the line is dropped rather than appended to the program's data. */
struct fd_identity {
  dev_t dev;
  ino_t ino;
  int accmode;          /* O_ACCMODE bits: F_SETFL cannot change them */
  bool valid;
};
static struct fd_identity stderr_identity;
static int report_fd = -1;

static bool fd_identify(int fd, struct fd_identity *id)
{
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fstat(fd, &st) != 0)
    return false;
  *id = (struct fd_identity){ .dev = st.st_dev, .ino = st.st_ino, .accmode = fl & O_ACCMODE,
                              .valid = true };
  return true;
}

static bool fd_is_stderr(int fd)
{
  struct fd_identity now;
  return fd >= 0 && stderr_identity.valid && fd_identify(fd, &now) &&
         now.dev == stderr_identity.dev && now.ino == stderr_identity.ino &&
         now.accmode == stderr_identity.accmode;
}

/* The original stderr: our copy, else fd 2 if it still is that file;
 * -1 if neither is. */
static int original_stderr(void)
{
  if (!stderr_identity.valid)
    return STDERR_FILENO; /* not recorded yet */
  if (fd_is_stderr(report_fd))
    return report_fd;
  if (fd_is_stderr(STDERR_FILENO))
    return STDERR_FILENO;
  return -1;
}

static void warn_to(int fd, const char *msg)
{
  if (hak_config.quiet || fd < 0)
    return;
  struct line l = { .len = 0 };
  line_str(&l, "hakmem: ");
  line_str(&l, msg);
  line_write(&l, fd);
}

/* While the program runs, fd 2 is what it made stderr (a daemon's
 * dup2 of its log, say), so warnings follow it. */
void hak_warn(const char *msg)
{
  warn_to(STDERR_FILENO, msg);
}

void hak_warn_at_exit(const char *msg)
{
  warn_to(original_stderr(), msg);
}

void hak_warn_pointer(const char *what, const void *ptr)
{
  if (hak_config.quiet)
    return;
  struct line l = { .len = 0 };
  line_str(&l, "hakmem: ");
  line_str(&l, what);
  line_str(&l, " ");
  line_hex(&l, (uintptr_t)ptr);
  line_write(&l, STDERR_FILENO);
}

void hak_fatal_pointer(const char *what, const void *ptr)
{
  struct line l = { .len = 0 };
  line_str(&l, "hakmem: ");
  line_str(&l, what);
  line_str(&l, " ");
  line_hex(&l, (uintptr_t)ptr);
  line_write(&l, STDERR_FILENO);
  abort();
}

int hakmem_stats_get(hak_stats_t *st)
{
  struct shared_pool_usage u;
  struct bigcache_usage b;
  shared_pool_usage(&u);
  bigcache_usage(&b);
  memset(st, 0, sizeof *st);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    st->malloc_calls += u.allocs[c];
    st->refills += atomic_load_explicit(&hak_counters.refills[c], memory_order_relaxed);
  }
#define LOAD(f) atomic_load_explicit(&hak_counters.f, memory_order_relaxed)
  st->remote_frees = LOAD(remote_frees);
  st->remote_drains = LOAD(remote_drains);
  st->slabs_emptied = LOAD(slabs_emptied);
  st->pool_reuse_empty = LOAD(pool_reuse_empty);
  st->pool_claim_unused = LOAD(pool_claim_unused);
  st->pool_new_superslab = LOAD(pool_new_superslab);
  st->pool_adopt = LOAD(pool_adopt);
  st->superslabs_unmapped = LOAD(superslabs_unmapped);
  st->large_allocs = LOAD(large_allocs);
  st->large_frees = LOAD(large_frees);
  st->bigcache_hits = LOAD(bigcache_hits);
  st->bigcache_misses = LOAD(bigcache_misses);
  st->lean_decommit = LOAD(lean_decommit);
  st->lean_retire = LOAD(lean_retire);
  st->purge_decommit = LOAD(purge_decommit);
  st->purge_threads = LOAD(purge_threads);
  st->prewarm_bytes = LOAD(prewarm_bytes);
#undef LOAD
  st->os_refused = atomic_load_explicit(&os_counters.refused, memory_order_relaxed);
  st->superslabs_live = u.superslabs_live;
  st->superslabs_empty = u.superslabs_empty;
  st->os_mmap = atomic_load_explicit(&os_counters.mmap_calls, memory_order_relaxed);
  st->os_munmap = atomic_load_explicit(&os_counters.munmap_calls, memory_order_relaxed);
  st->os_madvise = atomic_load_explicit(&os_counters.madvise_calls, memory_order_relaxed);
  st->os_mremap = atomic_load_explicit(&os_counters.mremap_calls, memory_order_relaxed);
  st->mapped_bytes = atomic_load_explicit(&os_counters.mapped_bytes, memory_order_relaxed);
  st->bigcache_bytes = b.bytes;
  st->large_bytes = atomic_load_explicit(&hak_counters.large_live_bytes, memory_order_relaxed);
  return 0;
}

static void report_u64(int fd, const char *name, uint64_t v)
{
  struct line l = { .len = 0 };
  line_str(&l, "hakmem: ");
  line_str(&l, name);
  line_str(&l, " ");
  line_u64(&l, v);
  line_write(&l, fd);
}

/* Per learned decision: its phase and value, then each candidate's
 * rating, epochs and last cost (nanoseconds per event, memory included).
 * Read without the layers' locks: a momentary estimate. */
static void report_learning(int fd)
{
  for (unsigned k = 0; k < LEARN_DECISION_COUNT; k++) {
    const struct learn_decision *d = &learn_decisions[k];
    if (d->phase == LEARN_PHASE_OFF)
      continue;
    struct line l = { .len = 0 };
    line_str(&l, "hakmem: learn ");
    line_str(&l, d->name);
    line_str(&l, " phase ");
    line_str(&l, learn_phase_name(d->phase));
    line_str(&l, " value ");
    line_u64(&l, (uint64_t)d->value);
    line_str(&l, " epochs ");
    line_u64(&l, d->epochs);
    line_str(&l, " transitions ");
    line_u64(&l, d->transitions);
    line_str(&l, " events ");
    line_u64(&l, d->events);
    line_str(&l, " events_to_freeze ");
    line_u64(&l, d->events_to_freeze);
    line_write(&l, fd);
    for (unsigned i = 0; i < d->ncand; i++) {
      const struct learn_candidate *c = &d->cand[i];
      struct line cl = { .len = 0 };
      line_str(&cl, "hakmem: learn ");
      line_str(&cl, d->name);
      line_str(&cl, " candidate ");
      line_u64(&cl, (uint64_t)c->value);
      line_str(&cl, " rating ");
      line_u64(&cl, c->rating > 0 ? (uint64_t)(c->rating + 0.5) : 0);
      line_str(&cl, " epochs ");
      line_u64(&cl, c->epochs);
      line_str(&cl, " cost_ns ");
      line_u64(&cl, c->cost > 0 ? (uint64_t)(c->cost + 0.5) : 0);
      line_str(&cl, i == d->best && d->phase != LEARN_PHASE_LEARN ? " chosen" : "");
      line_write(&cl, fd);
    }
  }
}

/* Sections of the report, chosen by stats (all), ss_os_stats,
 * shared_pool_stage_stats and ss_stats_dump. */
enum { REPORT_OS = 1, REPORT_POOL = 2, REPORT_DUMP = 4, REPORT_ALL = 7 };

static void stats_report_sections(int fd, unsigned sections)
{
  hak_stats_t st;
  hakmem_stats_get(&st);
  struct line l = { .len = 0 };
  line_str(&l, "hakmem: stats pid=");
  line_u64(&l, (uint64_t)getpid());
  line_write(&l, fd);
#define R(f) report_u64(fd, #f, st.f)
  if (sections == REPORT_ALL) {
    R(malloc_calls); R(refills); R(remote_frees); R(remote_drains);
    R(slabs_emptied); R(large_allocs); R(large_frees); R(bigcache_hits);
    R(bigcache_misses); R(large_bytes); R(bigcache_bytes); R(lean_decommit);
    R(lean_retire); R(purge_decommit); R(purge_threads); R(prewarm_bytes);
  }
  if (sections & REPORT_POOL) {
    R(pool_reuse_empty); R(pool_claim_unused); R(pool_new_superslab); R(pool_adopt);
  }
  if (sections & (REPORT_POOL | REPORT_DUMP)) {
    R(superslabs_live); R(superslabs_empty); R(superslabs_unmapped);
  }
  if (sections & REPORT_OS) {
    R(os_mmap); R(os_munmap); R(os_madvise); R(os_mremap); R(os_refused); R(mapped_bytes);
  }
#undef R
  if (sections == REPORT_ALL)
    report_learning(fd);
  if (!(sections & REPORT_DUMP))
    return;
  /* Per class: block size, allocations, refills (classes never used are skipped). */
  struct shared_pool_usage u;
  shared_pool_usage(&u);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    uint64_t refills = atomic_load_explicit(&hak_counters.refills[c], memory_order_relaxed);
    if (!u.allocs[c] && !refills)
      continue;
    struct line cl = { .len = 0 };
    line_str(&cl, "hakmem: class ");
    line_u64(&cl, size_class_size(c));
    line_str(&cl, " allocs ");
    line_u64(&cl, u.allocs[c]);
    line_str(&cl, " refills ");
    line_u64(&cl, refills);
    line_write(&cl, fd);
  }
}

void stats_report(int fd)
{
  stats_report_sections(fd, REPORT_ALL);
}

void stats_prepare_exit_report(void)
{
  if (report_fd >= 0)
    close(report_fd);
  report_fd = -1;
  /* A stderr closed at start-up matches nothing: no line is trusted to fd 2. */
  struct fd_identity id = { .accmode = -1 };
  if (fd_identify(STDERR_FILENO, &id) &&
      (hak_config.stats || hak_config.ss_os_stats || hak_config.shared_pool_stage_stats ||
       hak_config.ss_stats_dump))
    report_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
  id.valid = true;
  stderr_identity = id;
}

/* stats_file, opened to append; -1 (warned) if it cannot be or is not a
 * regular file: a FIFO or device would block the exit or get the report. */
static int stats_file_open(const char *path)
{
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                O_NOCTTY, 0644);
  struct stat st;
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
    return fd;
  /* ENXIO: a FIFO without a reader (or a device without its device);
   * ELOOP: a symbolic link. */
  bool refused = fd >= 0 || errno == ENXIO || errno == ELOOP;
  if (fd >= 0)
    close(fd);
  hak_warn_at_exit(refused ? "stats_file is not a regular file (refused); report on stderr"
                           : "stats_file cannot be opened; report on stderr");
  return -1;
}

void stats_report_at_exit(void)
{
  unsigned sections = hak_config.stats ? REPORT_ALL
                    : (hak_config.ss_os_stats ? REPORT_OS : 0) |
                      (hak_config.shared_pool_stage_stats ? REPORT_POOL : 0) |
                      (hak_config.ss_stats_dump ? REPORT_DUMP : 0);
  if (!sections)
    return;
  int fd = -1;
  /* stats_file is never opened in secure execution. */
  if (hak_config.stats_file[0] && !config_secure)
    fd = stats_file_open(hak_config.stats_file);
  bool own = fd >= 0;
  if (!own)
    fd = original_stderr();
  if (fd < 0)
    return;
  stats_report_sections(fd, sections);
  if (own)
    close(fd);
}

void hakmem_stats_print(int fd)
{
  stats_report(fd);
}

const char *hakmem_version(void)
{
  return PACKAGE_VERSION;
}
