/* A stand-in libhakmem.so.0 for tests/monitor_compat.sh: it exports only a
 * live-stats block, the way a library of another version would.  With
 * MONITOR_COMPAT_OLD the block has a few counters and an entry of a kind
 * and name no reader knows (an older or newer library: hakmemctl must
 * print what it finds and skip the rest); with MONITOR_COMPAT_FUTURE its
 * header has a version hakmemctl does not know (it must refuse it). */
#include "live_stats.h"

#include <stdint.h>

static int32_t mode = 1; /* fast */
static uint64_t mapped_bytes = 3u << 20;
static uint64_t os_mmap = 7;
static uint64_t large_bytes = 1u << 20;
static char mode_source[96] = "env HAKMEM_MODE";

#define ADDR(p) ((uint64_t)(uintptr_t)(p))

struct block {
  struct live_header header;
  struct live_entry entries[6];
};

__attribute__((visibility("default"), used)) const struct block hakmem_live_stats = {
  .header = { .magic = HAKMEM_LIVE_MAGIC,
#ifdef MONITOR_COMPAT_FUTURE
              .version = HAKMEM_LIVE_VERSION + 1,
#else
              .version = HAKMEM_LIVE_VERSION,
#endif
              .entry_size = sizeof(struct live_entry), .entry_count = 6,
              .header_size = sizeof(struct live_header), .library_version = "0.0.9" },
  .entries = {
    { .name = "mode", .kind = LIVE_I32, .count = 1, .value = ADDR(&mode) },
    { .name = "mode_source", .kind = LIVE_TEXT, .count = sizeof mode_source,
      .value = ADDR(mode_source) },
    { .name = "mapped_bytes", .kind = LIVE_U64, .count = 1, .value = ADDR(&mapped_bytes) },
    { .name = "os_mmap", .kind = LIVE_U64, .count = 1, .value = ADDR(&os_mmap) },
    { .name = "large_bytes", .kind = LIVE_U64, .count = 1, .value = ADDR(&large_bytes) },
    { .name = "a.future.figure", .kind = 99, .count = 1000000, .value = 42 },
  },
};
