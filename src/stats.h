/* Statistics, the top of the library: hakmem_stats_read (and 0.1.0's
 * hakmem_stats_get) and hakmem_stats_print, the live-stats block through which hakmemctl reads
 * a running process from outside, the report at exit, and the library's
 * constructor and destructor.
 *
 * This file reads every layer (the counters of counters.h and os.h, the
 * shared pool's and BigCache's usage, the learner's decisions, the
 * configuration) and no layer calls it: only override.c, above it, and
 * tests include this header.  The layers below count events in
 * counters.h and write messages with diag.h, both leaves.  A report is a
 * snapshot (struct report_data, filled here) rendered by report.c, which
 * hakmemctl shares, into one buffer (reports from several threads take
 * turns) and written whole.  The live-stats block (hakmem_live_stats,
 * format in live_stats.h) is constant after initialisation and points at
 * the counters; readers in other processes read them without any help
 * from this one. */
#ifndef HAKMEM_STATS_H
#define HAKMEM_STATS_H

#include "hakmem_internal.h"
#include "hakmem.h"

/* Fills the whole of *st (size included) from the counters and the
 * layers' usage: what hakmem_stats_read copies from, for the library's own
 * callers (the report, mallinfo2, malloc_info). */
void stats_collect(hak_stats_t *st);

/* Writes the full report, in the stats_format form, to fd; errno is kept. */
void stats_report(int fd);
/* The report at exit, as the stats options ask (and only in the programs
 * stats_program and stats_scope let report), to stats_file (if it is a
 * regular file) or to stderr as it was at start-up; dropped if the
 * program has closed stderr and reused its descriptor numbers. */
void stats_report_at_exit(void);
/* At start-up (the constructor; tests may call it again): records which
 * file stderr is, keeping a close-on-exec copy of it when a report is due
 * at exit (diag_prepare), and where the mode came from, for the reports
 * and the live block. */
void stats_prepare_exit_report(void);

#endif
