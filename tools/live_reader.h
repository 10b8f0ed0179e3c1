/* Reading a running process's live-stats block from outside, for
 * hakmemctl stats --pid and top (see src/live_stats.h for the block).
 *
 * The library is found in /proc/PID/maps, the block through the mapped
 * file's .dynsym, and everything is read with process_vm_readv, which the
 * kernel allows under ptrace's rule (the same user or CAP_SYS_PTRACE,
 * within Yama's ptrace_scope).  Entries are looked up by name; a missing
 * one reads as absent, so any version of the library with a block of
 * HAKMEM_LIVE_VERSION can be read.  Reads race with the process: each
 * word is whole, and the heap walk skips what changes under it.  Nothing
 * here keeps state between calls. */
#ifndef HAKMEMCTL_LIVE_READER_H
#define HAKMEMCTL_LIVE_READER_H

#include "live_stats.h"
#include "report.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Why a process could not be read; live_probe_message says it in words. */
enum probe_status {
  PROBE_OK,
  PROBE_NO_PROCESS,
  PROBE_DENIED,
  PROBE_NO_HAKMEM,
  PROBE_NO_SYMBOL,      /* the library has no live block (older than it) */
  PROBE_BAD_BLOCK,      /* magic or version not ours */
  PROBE_READ_FAILED,
  PROBE_NOT_STARTED,    /* mapped, not yet relocated: the process is loading a program */
};

/* One process's live block, as read. */
struct live_view {
  pid_t pid;
  char library[4096];
  uint64_t block;                 /* address of the block in the process */
  struct live_header header;
  unsigned nentries;
  struct live_entry entries[HAKMEM_LIVE_MAX_ENTRIES];
};

/* Whether name, a mapped file's base name, is libhakmem's, of any soname
 * version. */
bool live_is_library_name(const char *name);
/* Reads len bytes at addr of process pid; 0 or an errno value. */
int live_read_mem(pid_t pid, uint64_t addr, void *buf, size_t len);
/* Finds and reads the block of process pid into v. */
enum probe_status live_probe(pid_t pid, struct live_view *v);
/* Whether the block v was read from is still there, unchanged: false
 * once the process has begun an execve since live_probe. */
bool live_block_unchanged(const struct live_view *v);
/* Prints on stderr why process pid could not be read. */
void live_probe_message(pid_t pid, enum probe_status st, const struct live_view *v);

/* The entry of that name and kind, or NULL. */
const struct live_entry *live_entry_find(const struct live_view *v, const char *name,
                                         uint32_t kind);
/* A LIVE_CONST entry's value; false if absent. */
bool live_constant(const struct live_view *v, const char *name, uint64_t *out);
/* A LIVE_U64 entry's words, summed; false if absent or unreadable. */
bool live_counter(const struct live_view *v, const char *name, uint64_t *out);
/* A LIVE_I32 entry's first word; false if absent or unreadable. */
bool live_counter_i32(const struct live_view *v, const char *name, int32_t *out);
/* A LIVE_TEXT entry into out (size bytes, NUL-terminated); "" if absent. */
void live_text(const struct live_view *v, const char *name, char *out, size_t size);

/* The slabs' totals, from the heap walk. */
struct live_heap {
  uint64_t in_use, free, allocs, superslabs, superslabs_empty, bigcache;
};
/* Walks the registry: every SuperSlab's slabs once (totals in t, per
 * class in d->classes, d->nclasses set), every large header once (cached
 * ones into t->bigcache).  Returns false if the block lacks the layout
 * entries or the registry cannot be read. */
bool live_walk_heap(const struct live_view *v, struct live_heap *t, struct report_data *d);

#endif
