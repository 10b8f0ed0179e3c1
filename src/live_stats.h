/* The live-stats block: how a process running libhakmem lets hakmemctl
 * read its counters from outside (hakmemctl stats --pid, hakmemctl top).
 *
 * The library exports one object, hakmem_live_stats, in its dynamic symbol
 * table.  A reader finds the library in /proc/PID/maps, the symbol in the
 * mapped file's .dynsym, and reads the block and the memory it points to
 * with process_vm_readv (the same permission as ptrace).  The library never
 * writes the block after start-up and does no work for readers: the
 * entries point at counters the allocator keeps anyway, so the block costs
 * nothing on any path.
 *
 * Compatibility: the block is a header and an array of named entries.  A
 * reader looks entries up by name and skips names it does not know; the
 * library adds entries and never changes the meaning of a name (a new
 * meaning is a new name).  So a newer hakmemctl reads an older library
 * (the entries it lacks are shown as absent) and an older one reads a
 * newer library.  version changes only if this header's own layout does;
 * readers refuse a version they do not know.
 *
 * Entries of kind LIVE_U64 and LIVE_I32 point at counters that other
 * threads update with relaxed atomics or plain stores: a reader sees each
 * word whole, but words are not a consistent snapshot with each other.
 * The layout entries (LIVE_CONST) describe the structures a reader walks
 * to sum the slabs' used counts: the registry, SuperSlab and slab
 * descriptors, large-block headers.  Those are read without the
 * allocator's locks, so that walk is a momentary estimate; a SuperSlab
 * unmapped during it makes the read fail or its magic mismatch, and the
 * reader skips it.
 *
 * This header is shared by the library (stats.c) and hakmemctl; it
 * includes nothing of the allocator's. */
#ifndef HAKMEM_LIVE_STATS_H
#define HAKMEM_LIVE_STATS_H

#include <stdint.h>

#define HAKMEM_LIVE_SYMBOL  "hakmem_live_stats"
#define HAKMEM_LIVE_MAGIC   0x4c4d454d4b414855ull  /* "UHAKMEML" read as bytes */
#define HAKMEM_LIVE_VERSION 1
#define HAKMEM_LIVE_NAME_MAX 40

enum live_kind {
  LIVE_CONST = 1,   /* value is the figure itself */
  LIVE_U64 = 2,     /* value is the address of count uint64_t words */
  LIVE_I32 = 3,     /* value is the address of count int32_t words */
  LIVE_TEXT = 4,    /* value is the address of a NUL-terminated text of at most count bytes */
};

struct live_entry {
  char name[HAKMEM_LIVE_NAME_MAX];
  uint32_t kind;    /* enum live_kind */
  uint32_t count;
  uint64_t value;
  uint64_t reserved;
};
_Static_assert(sizeof(struct live_entry) == 64, "live entry layout is part of the format");

struct live_header {
  uint64_t magic;        /* HAKMEM_LIVE_MAGIC */
  uint32_t version;      /* HAKMEM_LIVE_VERSION */
  uint32_t entry_size;   /* sizeof(struct live_entry) */
  uint32_t entry_count;  /* entries that follow the header */
  uint32_t header_size;  /* sizeof(struct live_header): entries start here */
  char library_version[32];
};
_Static_assert(sizeof(struct live_header) == 56, "live header layout is part of the format");

/* Limit a reader applies to entry_count (a corrupt block reads as garbage,
 * not as a huge allocation). */
#define HAKMEM_LIVE_MAX_ENTRIES 512

#endif
