/* The statistics report: one snapshot of a process's heap (struct
 * report_data) rendered as text for people or as one JSON object.
 *
 * The library fills a snapshot from inside (stats.c: at exit, from
 * hakmem_stats_print and malloc_stats) and hakmemctl fills one from
 * outside (tools/hakmemctl_monitor.c: stats --pid, top); both render it
 * with this code, so the two reports have one format.  Nothing here
 * allocates or uses stdio: it runs inside the allocator, at exit, and
 * appends to a caller's fixed buffer with diag.h's text builder (output
 * that does not fit is cut, and the buffer says so).  It includes only
 * diag.h: no layer of the allocator, so hakmemctl compiles it too.  The snapshot belongs to its caller; no
 * function keeps state between calls. */
#ifndef HAKMEM_REPORT_H
#define HAKMEM_REPORT_H

#include "diag.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPORT_CLASS_MAX 64
#define REPORT_LEARN_MAX 4
#define REPORT_COUNTER_MAX 48

struct report_class {
  uint32_t block_size;
  uint64_t in_use_bytes;      /* blocks handed out and not freed */
  uint64_t free_bytes;        /* blocks cut from slabs and free */
  uint64_t allocs;            /* allocations served */
  uint64_t refills;           /* thread-cache refills */
};

#define REPORT_CANDIDATE_MAX 4

struct report_candidate {
  int64_t value;
  uint64_t rating, epochs, cost_ns;
  bool chosen;
};

struct report_learn {
  char name[32];              /* the option the learner sets */
  char phase[16];             /* LEARN, FROZEN, CANARY */
  int64_t value;
  uint64_t epochs, transitions, events, events_to_freeze;
  unsigned ncand;             /* 0 when read from outside */
  struct report_candidate cand[REPORT_CANDIDATE_MAX];
};

struct report_counter {
  const char *name;           /* static text: a hak_stats_t field's name */
  uint64_t value;
};

struct report_data {
  char program[64];
  int64_t pid;
  int64_t time;               /* seconds since the epoch; 0 = unknown */
  char version[32];           /* the library's */
  char mode[16];
  char mode_source[96];       /* as hakmemctl config prints it: default, env HAKMEM_MODE, ... */
  bool have_heap;             /* the slab walk succeeded: the in-use figures below are known */
  uint64_t small_in_use;      /* slab blocks in use */
  uint64_t slab_free;         /* slab blocks cut and free */
  uint64_t large_in_use;      /* mapping bytes of live large blocks */
  bool have_bigcache;
  uint64_t bigcache_bytes;    /* freed large mappings kept for reuse */
  uint64_t mapped;            /* bytes hakmem has mapped */
  uint64_t superslabs, superslabs_empty;
  bool have_resident;
  uint64_t resident, peak_resident;  /* the whole process's, from /proc */
  uint64_t os_calls;          /* mmap + munmap + madvise + mremap */
  double os_calls_per_s;      /* < 0: not measured */
  unsigned nclasses;
  struct report_class classes[REPORT_CLASS_MAX];
  unsigned nlearn;
  struct report_learn learn[REPORT_LEARN_MAX];
  unsigned ncounters;
  struct report_counter counters[REPORT_COUNTER_MAX];
};

/* Sections of a report: the library's report at exit lists those the
 * stats options ask for (stats: all; ss_os_stats, shared_pool_stage_stats
 * and ss_stats_dump: one each), hakmem_stats_print and hakmemctl all. */
enum report_section {
  REPORT_OS = 1,      /* OS calls and mapped bytes */
  REPORT_POOL = 2,    /* shared-pool stages and SuperSlabs */
  REPORT_DUMP = 4,    /* per-class table and SuperSlabs */
  REPORT_MAIN = 8,    /* the other counters and the learner */
  REPORT_ALL = 15,
};

/* One counter of the report: its name (a hak_stats_t field's, and the
 * live-stats entry's where the block has one), the sections that list
 * it, and where hak_stats_t holds it.  report_counters is the one list,
 * in the report's order, that the library and hakmemctl both fill from. */
struct report_counter_def {
  const char *name;
  unsigned sections;       /* enum report_section bits */
  size_t stats_offset;     /* offsetof(hak_stats_t, <name>) */
};
extern const struct report_counter_def report_counters[];
extern const unsigned report_counter_count;

/* Appends to d->counters, in order, each counter that sections list and
 * get finds (get returns false for a counter its source lacks). */
void report_add_counters(struct report_data *d, unsigned sections,
                         bool (*get)(const struct report_counter_def *c, const void *source,
                                     uint64_t *value),
                         const void *source);

void report_text(struct diag_buf *b, const struct report_data *d);
/* One JSON object on one line, ending in a newline. */
void report_json(struct diag_buf *b, const struct report_data *d);

/* Appenders of the report's own forms, with diag.h's text builder (the
 * one the report is written with), for callers' own output too. */
/* A byte count in human units: "812 B", "12.3 KiB", "1.5 GiB". */
void report_put_bytes(struct diag_buf *b, uint64_t v);
/* s as a JSON string, quotes included. */
void report_put_json_string(struct diag_buf *b, const char *s);

/* Resident and peak resident bytes of process pid (0 = this process) from
 * /proc (smaps_rollup, else statm; VmHWM in status).  Returns false if
 * neither could be read. */
bool report_read_resident(int64_t pid, uint64_t *resident, uint64_t *peak);

/* The report's derived figures. */
uint64_t report_in_use(const struct report_data *d);
/* Mapped bytes no live block occupies (free blocks, BigCache, slab space
 * not cut yet, SuperSlab headers). */
uint64_t report_held(const struct report_data *d);

#endif
