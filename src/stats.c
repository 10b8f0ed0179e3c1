/* The top of the library's statistics (see stats.h): hakmem_stats_get,
 * the live-stats block hakmemctl reads from outside, the report's
 * snapshot and where it is written, and the library's constructor and
 * destructor.  Written with write(2) and formatted by diag.h's builder:
 * this code may run inside malloc_stats or at exit. */
#include "stats.h"
#include "config.h"
#include "counters.h"
#include "diag.h"
#include "init.h"
#include "bigcache.h"
#include "learn.h"
#include "os.h"
#include "prof.h"
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

void stats_collect(hak_stats_t *st)
{
  struct shared_pool_usage u;
  struct bigcache_usage b;
  shared_pool_usage(&u);
  bigcache_usage(&b);
  memset(st, 0, sizeof *st);
  st->size = sizeof *st;
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
}

/* The fields start after size; a caller's size counts whole fields only. */
#define STATS_FIELDS_START offsetof(hak_stats_t, malloc_calls)

int hakmem_stats_read(hak_stats_t *st)
{
  if (!st || st->size < sizeof st->size) {
    errno = EINVAL;
    return -1;
  }
  size_t want = st->size;
  hak_stats_t now;
  stats_collect(&now);
  size_t n = want < sizeof now ? want : sizeof now;
  if (n < STATS_FIELDS_START)
    n = sizeof st->size;
  else
    n = STATS_FIELDS_START + (n - STATS_FIELDS_START) / sizeof(uint64_t) * sizeof(uint64_t);
  /* Counters the library does not know read as zero (the caller's struct
   * is want bytes long); size says how many bytes were filled. */
  memcpy((char *)st + sizeof st->size, (char *)&now + sizeof st->size, n - sizeof st->size);
  memset((char *)st + n, 0, want - n);
  st->size = n;
  return 0;
}

/* hak_stats_t as 0.1.0 defined it: the same counters, in the same order,
 * without the size field.  Frozen: counters added later are not in it. */
#define STATS_0_1_0_COUNTERS 29
_Static_assert(offsetof(hak_stats_t, os_refused) + sizeof(uint64_t) - STATS_FIELDS_START ==
                 STATS_0_1_0_COUNTERS * sizeof(uint64_t),
               "0.1.0's counters are the first 29 after size, in its order");

/* The exported hakmem_stats_get is 0.1.0's, for programs built against
 * it; programs built against a later hakmem.h reach hakmem_stats_read
 * through that header's hakmem_stats_get macro. */
#undef hakmem_stats_get
HAK_EXPORT int hakmem_stats_get(void *stats_0_1_0);
int hakmem_stats_get(void *stats_0_1_0)
{
  hak_stats_t now;
  stats_collect(&now);
  memcpy(stats_0_1_0, (char *)&now + STATS_FIELDS_START, STATS_0_1_0_COUNTERS * sizeof(uint64_t));
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

static void copy_text(char *dst, size_t size, const char *src)
{
  size_t i = 0;
  for (; src && src[i] && i + 1 < size; i++)
    dst[i] = src[i];
  dst[i] = '\0';
}

/* A counter of the report, from a hak_stats_t: every one is there. */
static bool counter_from_stats(const struct report_counter_def *c, const void *stats,
                               uint64_t *value)
{
  memcpy(value, (const char *)stats + c->stats_offset, sizeof *value);
  return true;
}

/* Fills d from this process's own state; the sections choose the
 * counters listed at the end. */
static void stats_snapshot(struct report_data *d, unsigned sections)
{
  hak_stats_t st;
  struct shared_pool_usage u;
  struct bigcache_usage bc;
  stats_collect(&st);
  shared_pool_usage(&u);
  bigcache_usage(&bc);
  memset(d, 0, sizeof *d);
  copy_text(d->program, sizeof d->program, config_program_name());
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
  if (sections & REPORT_MAIN)
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
  report_add_counters(d, sections, counter_from_stats, &st);
}

/* The report is rendered whole into this buffer and written with as few
 * write calls as its length allows (one, up to the pipe or terminal
 * buffer), so that the program's own output never lands inside it.  The
 * flag serialises reports made by several threads at once. */
HAK_BSS_APART(report_out) static char report_out[65536];
static atomic_flag report_busy = ATOMIC_FLAG_INIT;

/* Renders the sections in the configured format and writes them to fd. */
static void stats_report_sections(int fd, unsigned sections)
{
  HAK_BSS_APART(report_data) static struct report_data d;
  while (atomic_flag_test_and_set_explicit(&report_busy, memory_order_acquire))
    sched_yield();
  stats_snapshot(&d, sections);
  struct diag_buf b = DIAG_BUF(report_out);
  if (hak_config.stats_format == HAK_STATS_JSON)
    report_json(&b, &d);
  else
    report_text(&b, &d);
  diag_write(fd, report_out, b.len);
  atomic_flag_clear_explicit(&report_busy, memory_order_release);
}

void stats_report(int fd)
{
  int saved = errno;
  stats_report_sections(fd, REPORT_ALL);
  errno = saved;
}

/* Sections of the report at exit, as the stats options ask; 0: none. */
static unsigned stats_exit_sections(void)
{
  return hak_config.stats ? REPORT_ALL
       : (hak_config.ss_os_stats ? REPORT_OS : 0) |
         (hak_config.shared_pool_stage_stats ? REPORT_POOL : 0) |
         (hak_config.ss_stats_dump ? REPORT_DUMP : 0);
}

HAK_STARTUP_TEXT void stats_prepare_exit_report(void)
{
  diag_prepare(hak_config.quiet, stats_exit_sections() != 0);
  config_source_format(0, live_mode_source, sizeof live_mode_source);
}

/* Whether the program's name matches stats_program: its executable's
 * basename or the name it was invoked as (argv[0]'s), as for [program]
 * sections. */
static bool stats_program_matches(void)
{
  if (!hak_config.stats_program[0])
    return true;
  if (config_program_name()[0] &&
      config_glob_match(hak_config.stats_program, config_program_name()))
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
  char path[40];
  struct diag_buf pb = DIAG_BUF(path);
  diag_put(&pb, "/proc/");
  diag_put_u64(&pb, (uint64_t)getppid());
  diag_put(&pb, "/environ");
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
  if (fd >= 0 && diag_fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
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

HAK_STARTUP_TEXT void stats_report_at_exit(void)
{
  unsigned sections = stats_exit_sections();
  if (!sections || !stats_program_matches() ||
      (hak_config.stats_scope == HAK_STATS_SCOPE_TOP && stats_inherited_scope()))
    return;
  int fd = -1;
  /* stats_file is never opened in secure execution. */
  if (hak_config.stats_file[0] && !config_secure)
    fd = stats_file_open(hak_config.stats_file);
  bool own = fd >= 0;
  if (!own)
    fd = diag_original_stderr();
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

/* The library's constructor: initialises it (if no malloc has yet) and
 * prepares what the live block and the exit report need.  It lives here,
 * at the top, because the report is above every layer init may call. */
__attribute__((constructor)) static void stats_constructor(void)
{
  hak_init();
  stats_prepare_exit_report();
}

/* The library's destructor: the profiler's last profile and leak report,
 * then the statistics report, then the learner's state file. */
__attribute__((destructor)) static void stats_destructor(void)
{
  prof_exit();
  stats_report_at_exit();
  learn_save_state();
}

const char *hakmem_version(void)
{
  return PACKAGE_VERSION;
}
