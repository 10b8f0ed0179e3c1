/* OS layer: the only code in libhakmem that calls mmap, munmap, madvise
 * and mremap.  Every call is counted.  Functions are thread-safe and never
 * allocate.  Mappings are private, anonymous, read-write. */
#ifndef HAKMEM_OS_H
#define HAKMEM_OS_H

#include "hakmem_internal.h"

struct os_counters {
  _Atomic uint64_t mmap_calls;
  _Atomic uint64_t munmap_calls;
  _Atomic uint64_t madvise_calls;
  _Atomic uint64_t mremap_calls;
  _Atomic uint64_t mapped_bytes;   /* currently mapped */
};
extern struct os_counters os_counters;

/* Maps size bytes (a multiple of the page size) aligned to align (a power
 * of two >= page size).  Returns NULL with errno = ENOMEM on failure. */
void *os_map_aligned(size_t size, size_t align);
/* Unmaps a range obtained from os_map_aligned (or a page-aligned part of one). */
void os_unmap(void *addr, size_t size);
/* Gives the pages' contents back to the OS; the range stays mapped and reads
 * as zero afterwards.  Returns 0 or an errno value. */
int os_decommit(void *addr, size_t size);
/* Grows or shrinks the mapping at old (old_size bytes) in place to new_size.
 * Returns 0 on success, an errno value if the neighbouring range is taken. */
int os_resize_in_place(void *old, size_t old_size, size_t new_size);
/* Moves the pages of [old, old+old_size) to dest, which must be a mapping of
 * at least new_size bytes obtained from os_map_aligned; no data is copied.
 * Returns 0 or an errno value (nothing changed then). */
int os_move(void *old, size_t old_size, void *dest, size_t new_size);

#endif
