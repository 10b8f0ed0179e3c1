/* Statistics: the counters, the live-stats block hakmemctl reads from
 * outside, the report (rendered by report.c) and the error lines, all
 * written with write(2) and formatted by hand: this code may run inside
 * malloc or at exit. */
#include "stats.h"
#include "config.h"
#include "bigcache.h"
#include "learn.h"
#include "os.h"
#include "live_stats.h"
#include "report.h"
#include "shared_pool.h"
#include "superslab.h"
#include "hakmem.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

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

/* ---- the live-stats block (live_stats.h) ----
 *
 * Constant after load except the mode's source text, written once by
 * stats_prepare_exit_report at initialisation.  Every entry points at a
 * counter or structure the allocator keeps for itself. */
static char live_mode_source[96];

#define LIVE_ADDR(p) ((uint64_t)(uintptr_t)(p))
#define LIVE_C(n, v) { .name = n, .kind = LIVE_CONST, .count = 1, .value = (uint64_t)(v) }
#define LIVE_CTR(n, p) { .name = n, .kind = LIVE_U64, .count = 1, .value = LIVE_ADDR(p) }
#define LIVE_HC(f) LIVE_CTR(#f, &hak_counters.f)
#define LIVE_OS(n, f) LIVE_CTR(n, &os_counters.f)
#define LIVE_LEARN(id, n)                                                                   \
  { .name = "learn." n ".phase", .kind = LIVE_I32, .count = 1,                              \
    .value = LIVE_ADDR(&learn_decisions[id].phase) },                                      \
  { .name = "learn." n ".value", .kind = LIVE_I32, .count = 1,                              \
    .value = LIVE_ADDR(&learn_decisions[id].value) },                                      \
  { .name = "learn." n ".epochs", .kind = LIVE_U64, .count = 1,                             \
    .value = LIVE_ADDR(&learn_decisions[id].epochs) },                                     \
  { .name = "learn." n ".transitions", .kind = LIVE_U64, .count = 1,                        \
    .value = LIVE_ADDR(&learn_decisions[id].transitions) },                                \
  { .name = "learn." n ".events", .kind = LIVE_U64, .count = 1,                             \
    .value = LIVE_ADDR(&learn_decisions[id].events) }

_Static_assert(sizeof(enum learn_phase) == 4 && sizeof learn_decisions[0].value == 4,
               "live entries of kind LIVE_I32");
_Static_assert(sizeof size_class_block[0] == 4, "class sizes are read as 32-bit words");
_Static_assert(LEARN_PHASE_OFF == 0 && LEARN_PHASE_LEARN == 1 && LEARN_PHASE_FROZEN == 2 &&
               LEARN_PHASE_CANARY == 3, "learner phase numbers are part of the live format");

#define LIVE_ENTRIES                                                                        \
  LIVE_C("format.counters", 1),                                                             \
  { .name = "mode", .kind = LIVE_I32, .count = 1, .value = LIVE_ADDR(&hak_config.mode) },   \
  { .name = "mode_source", .kind = LIVE_TEXT, .count = sizeof live_mode_source,             \
    .value = LIVE_ADDR(live_mode_source) },                                                 \
  { .name = "refills", .kind = LIVE_U64, .count = HAK_NUM_CLASSES,                          \
    .value = LIVE_ADDR(hak_counters.refills) },                                             \
  LIVE_HC(remote_frees), LIVE_HC(remote_drains), LIVE_HC(slabs_emptied),                    \
  LIVE_HC(pool_reuse_empty), LIVE_HC(pool_claim_unused), LIVE_HC(pool_new_superslab),       \
  LIVE_HC(pool_adopt), LIVE_HC(superslabs_unmapped), LIVE_HC(large_allocs),                 \
  LIVE_HC(large_frees), LIVE_HC(bigcache_hits), LIVE_HC(bigcache_misses),                   \
  LIVE_HC(lean_decommit), LIVE_HC(lean_retire), LIVE_HC(purge_decommit),                    \
  LIVE_HC(prewarm_bytes), LIVE_HC(purge_threads),                                           \
  LIVE_CTR("large_bytes", &hak_counters.large_live_bytes),                                  \
  LIVE_OS("os_mmap", mmap_calls), LIVE_OS("os_munmap", munmap_calls),                       \
  LIVE_OS("os_madvise", madvise_calls), LIVE_OS("os_mremap", mremap_calls),                 \
  LIVE_OS("os_refused", refused), LIVE_OS("mapped_bytes", mapped_bytes),                    \
  LIVE_LEARN(LEARN_BIGCACHE_MAX_MB, "bigcache_max_mb"),                                     \
  LIVE_LEARN(LEARN_SUPERSLAB_KEEP, "superslab_keep"),                                       \
  { .name = "class.block_size", .kind = LIVE_I32, .count = HAK_NUM_CLASSES,                 \
    .value = LIVE_ADDR(size_class_block) },                                                 \
  { .name = "registry.l1", .kind = LIVE_U64, .count = 1u << REGISTRY_L1_BITS,               \
    .value = LIVE_ADDR(registry_l1) },                                                      \
  LIVE_C("registry.empty_leaf", LIVE_ADDR(&registry_empty_leaf)),                           \
  LIVE_C("registry.l2_entries", 1u << REGISTRY_L2_BITS),                                    \
  LIVE_C("registry.unit_shift", HAK_UNIT_SHIFT),                                            \
  LIVE_C("registry.tag_superslab", REGISTRY_TAG_SUPERSLAB),                                 \
  LIVE_C("superslab.magic", SUPERSLAB_MAGIC),                                               \
  LIVE_C("superslab.size_max", (uint64_t)1 << HAK_SS_LG_MAX),                               \
  LIVE_C("superslab.off_magic", offsetof(struct superslab, magic)),                         \
  LIVE_C("superslab.off_lg", offsetof(struct superslab, lg)),                               \
  LIVE_C("superslab.off_nslabs", offsetof(struct superslab, nslabs)),                       \
  LIVE_C("superslab.off_empty_kept", offsetof(struct superslab, empty_kept)),               \
  LIVE_C("superslab.header_size", sizeof(struct superslab)),                                \
  LIVE_C("slab.size", sizeof(struct slab)),                                                 \
  LIVE_C("slab.off_used", offsetof(struct slab, used)),                                     \
  LIVE_C("slab.off_carved", offsetof(struct slab, carved)),                                 \
  LIVE_C("slab.width_used", sizeof(((struct slab *)0)->used)),                              \
  LIVE_C("slab.width_carved", sizeof(((struct slab *)0)->carved)),                          \
  LIVE_C("slab.off_cls", offsetof(struct slab, cls)),                                       \
  LIVE_C("slab.off_state", offsetof(struct slab, state)),                                   \
  LIVE_C("slab.off_allocs", offsetof(struct slab, allocs)),                                 \
  LIVE_C("slab.state_unused", SLAB_UNUSED),                                                 \
  LIVE_C("slab.state_header", SLAB_HEADER),                                                 \
  LIVE_C("slab.state_span_tail", SLAB_SPAN_TAIL),                                           \
  LIVE_C("large.magic", LARGE_MAGIC),                                                       \
  LIVE_C("large.off_magic", offsetof(struct large_hdr, magic)),                             \
  LIVE_C("large.off_map_size", offsetof(struct large_hdr, map_size)),                       \
  LIVE_C("large.off_state", offsetof(struct large_hdr, state)),                             \
  LIVE_C("large.state_cached", LARGE_CACHED)

_Static_assert((sizeof(((struct slab *)0)->used) == 2 || sizeof(((struct slab *)0)->used) == 4) &&
               (sizeof(((struct slab *)0)->carved) == 2 || sizeof(((struct slab *)0)->carved) == 4) &&
               sizeof(((struct slab *)0)->cls) == 1 && sizeof(((struct slab *)0)->state) == 1 &&
               sizeof(((struct slab *)0)->allocs) == 8,
               "the live format reads used and carved as 16- or 32-bit (slab.width_*), cls and state as 8-bit words");
_Static_assert(sizeof(((struct superslab *)0)->lg) == 4 &&
               sizeof(((struct superslab *)0)->nslabs) == 4 &&
               sizeof(((struct superslab *)0)->empty_kept) == 1 &&
               sizeof(((struct large_hdr *)0)->state) == 4,
               "the live format's word sizes");

#define LIVE_ENTRY_COUNT (sizeof (struct live_entry[]){ LIVE_ENTRIES } / sizeof(struct live_entry))

struct live_block {
  struct live_header header;
  struct live_entry entries[LIVE_ENTRY_COUNT];
};

HAK_EXPORT __attribute__((used)) const struct live_block hakmem_live_stats = {
  .header = { .magic = HAKMEM_LIVE_MAGIC, .version = HAKMEM_LIVE_VERSION,
              .entry_size = sizeof(struct live_entry), .entry_count = LIVE_ENTRY_COUNT,
              .header_size = sizeof(struct live_header), .library_version = PACKAGE_VERSION },
  .entries = { LIVE_ENTRIES },
};

/* ---- the report ---- */

/* Sections of the report, chosen by stats (all), ss_os_stats,
 * shared_pool_stage_stats and ss_stats_dump. */
enum { REPORT_OS = 1, REPORT_POOL = 2, REPORT_DUMP = 4, REPORT_ALL = 7 };

static void copy_text(char *dst, size_t size, const char *src)
{
  size_t i = 0;
  for (; src && src[i] && i + 1 < size; i++)
    dst[i] = src[i];
  dst[i] = '\0';
}

static void add_counter(struct report_data *d, const char *name, uint64_t v)
{
  if (d->ncounters < REPORT_COUNTER_MAX)
    d->counters[d->ncounters++] = (struct report_counter){ name, v };
}

/* Fills d from this process's own state; the sections choose the
 * counters listed at the end. */
static void stats_snapshot(struct report_data *d, unsigned sections)
{
  hak_stats_t st;
  struct shared_pool_usage u;
  struct bigcache_usage bc;
  hakmem_stats_get(&st);
  shared_pool_usage(&u);
  bigcache_usage(&bc);
  memset(d, 0, sizeof *d);
  copy_text(d->program, sizeof d->program, program_invocation_short_name);
  d->pid = getpid();
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  d->time = now.tv_sec;
  copy_text(d->version, sizeof d->version, PACKAGE_VERSION);
  copy_text(d->mode, sizeof d->mode, config_mode_words[hak_config.mode]);
  copy_text(d->mode_source, sizeof d->mode_source, live_mode_source);
  d->have_heap = true;
  d->small_in_use = u.in_use_bytes;
  d->slab_free = u.free_bytes;
  d->large_in_use = st.large_bytes;
  d->have_bigcache = true;
  d->bigcache_bytes = bc.bytes;
  d->mapped = st.mapped_bytes;
  d->superslabs = u.superslabs_live;
  d->superslabs_empty = u.superslabs_empty;
  d->have_resident = report_read_resident(0, &d->resident, &d->peak_resident);
  d->os_calls = st.os_mmap + st.os_munmap + st.os_madvise + st.os_mremap;
  d->os_calls_per_s = -1;
  if (sections & REPORT_DUMP) {
    d->nclasses = HAK_NUM_CLASSES < REPORT_CLASS_MAX ? HAK_NUM_CLASSES : REPORT_CLASS_MAX;
    for (unsigned c = 0; c < d->nclasses; c++)
      d->classes[c] = (struct report_class){
        .block_size = (uint32_t)size_class_size(c), .in_use_bytes = u.in_use_class[c],
        .free_bytes = u.free_class[c], .allocs = u.allocs[c],
        .refills = atomic_load_explicit(&hak_counters.refills[c], memory_order_relaxed) };
  }
  if (sections == REPORT_ALL)
    for (unsigned k = 0; k < LEARN_DECISION_COUNT && d->nlearn < REPORT_LEARN_MAX; k++) {
      const struct learn_decision *ld = &learn_decisions[k];
      if (ld->phase == LEARN_PHASE_OFF)
        continue;
      struct report_learn *l = &d->learn[d->nlearn++];
      copy_text(l->name, sizeof l->name, ld->name);
      copy_text(l->phase, sizeof l->phase, learn_phase_name(ld->phase));
      l->value = ld->value;
      l->epochs = ld->epochs;
      l->transitions = ld->transitions;
      l->events = ld->events;
      l->events_to_freeze = ld->events_to_freeze;
      for (unsigned i = 0; i < ld->ncand && l->ncand < REPORT_CANDIDATE_MAX; i++) {
        const struct learn_candidate *c = &ld->cand[i];
        l->cand[l->ncand++] = (struct report_candidate){
          .value = c->value, .rating = c->rating > 0 ? (uint64_t)(c->rating + 0.5) : 0,
          .epochs = c->epochs, .cost_ns = c->cost > 0 ? (uint64_t)(c->cost + 0.5) : 0,
          .chosen = i == ld->best && ld->phase != LEARN_PHASE_LEARN };
      }
    }
#define R(f) add_counter(d, #f, st.f)
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
}

/* The report is rendered whole into this buffer and written with as few
 * write calls as its length allows (one, up to the pipe or terminal
 * buffer), so that the program's own output never lands inside it.  The
 * flag serialises reports made by several threads at once. */
static char report_out[65536];
static atomic_flag report_busy = ATOMIC_FLAG_INIT;

/* Renders the sections in the configured format and writes them to fd. */
static void stats_report_sections(int fd, unsigned sections)
{
  static struct report_data d;
  while (atomic_flag_test_and_set_explicit(&report_busy, memory_order_acquire))
    sched_yield();
  stats_snapshot(&d, sections);
  struct report_buf b = { .buf = report_out, .size = sizeof report_out };
  if (hak_config.stats_format == HAK_STATS_JSON)
    report_json(&b, &d);
  else
    report_text(&b, &d);
  size_t off = 0;
  while (off < b.len) {
    ssize_t n = write(fd, report_out + off, b.len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  atomic_flag_clear_explicit(&report_busy, memory_order_release);
}

void stats_report(int fd)
{
  int saved = errno;
  stats_report_sections(fd, REPORT_ALL);
  errno = saved;
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
  config_source_format(0, live_mode_source, sizeof live_mode_source);
}

/* Whether the program's name matches stats_program: its executable's
 * basename or the name it was invoked as (argv[0]'s), as for [program]
 * sections. */
static bool stats_program_matches(void)
{
  if (!hak_config.stats_program[0])
    return true;
  if (program_invocation_short_name &&
      config_glob_match(hak_config.stats_program, program_invocation_short_name))
    return true;
  char exe[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return false;
  exe[n] = '\0';
  const char *base = strrchr(exe, '/');
  return config_glob_match(hak_config.stats_program, base ? base + 1 : exe);
}

/* stats_scope = top: whether the parent's environment (as it was when the
 * parent started) holds our own HAKMEM_STATS_SCOPE entry, that is, whether
 * we inherited the request from a process that reports itself.  Read in
 * pieces through a fixed buffer, matching entry by entry. */
static bool stats_inherited_scope(void)
{
  static const char want[] = "HAKMEM_STATS_SCOPE=";
  const char *mine = NULL;
  for (char **e = environ; e && *e; e++)
    if (strncmp(*e, want, sizeof want - 1) == 0)
      mine = *e;
  if (!mine)
    return false; /* set by the conf file: every process is a top one */
  char path[40] = "/proc/";
  size_t len = strlen(path);
  char digits[24];
  int nd = 0;
  for (unsigned long p = (unsigned long)getppid(); nd == 0 || p; p /= 10)
    digits[nd++] = (char)('0' + p % 10);
  while (nd)
    path[len++] = digits[--nd];
  memcpy(path + len, "/environ", sizeof "/environ");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  char buf[4096];
  size_t pos = 0;          /* characters of the current entry matched */
  bool matching = true;    /* the current entry matches mine so far */
  bool found = false;
  ssize_t n;
  while (!found && (n = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < n; i++) {
      char c = buf[i];
      if (c == '\0') {
        if (matching && mine[pos] == '\0') {
          found = true;
          break;
        }
        pos = 0;
        matching = true;
      } else if (matching && mine[pos] == c) {
        pos++;
      } else {
        matching = false;
      }
    }
  close(fd);
  return found;
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
  if (!sections || !stats_program_matches() ||
      (hak_config.stats_scope == HAK_STATS_SCOPE_TOP && stats_inherited_scope()))
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
