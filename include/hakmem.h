/* libhakmem: a general-purpose malloc with a selectable memory footprint.
 *
 * Linking with -lhakmem (or preloading libhakmem.so.0) replaces malloc,
 * free and the rest of the standard allocation functions.  The hak_
 * functions below are the same allocator under names of its own, for
 * programs that want to call it explicitly.  See hakmem(3).
 */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(HAKMEM_BUILD)
#define HAK_API __attribute__((visibility("default")))
#else
#define HAK_API
#endif

#define HAK_VERSION_MAJOR 0
#define HAK_VERSION_MINOR 1

HAK_API void *hak_malloc(size_t size);
HAK_API void  hak_free(void *ptr);
HAK_API void *hak_calloc(size_t nmemb, size_t size);
HAK_API void *hak_realloc(void *ptr, size_t size);
HAK_API void *hak_reallocarray(void *ptr, size_t nmemb, size_t size);
HAK_API int   hak_posix_memalign(void **memptr, size_t alignment, size_t size);
HAK_API void *hak_aligned_alloc(size_t alignment, size_t size);
HAK_API void *hak_memalign(size_t alignment, size_t size);
HAK_API void *hak_valloc(size_t size);
HAK_API void *hak_pvalloc(size_t size);
HAK_API size_t hak_malloc_usable_size(const void *ptr);

/* Returns free memory to the operating system; 1 if any was released. */
HAK_API int   hak_trim(size_t pad);

/* A snapshot of the allocator's counters (process-wide). */
typedef struct hak_stats {
  uint64_t malloc_calls;        /* allocations served from slabs (sizes up to 256 KiB, all threads) */
  uint64_t refills;             /* thread-cache refills from a slab */
  uint64_t remote_frees;        /* blocks freed by other threads, counted when the owner collects them */
  uint64_t remote_drains;       /* remote-free stacks collected by owners */
  uint64_t slabs_emptied;       /* slabs found EMPTY and returned to the pool */
  uint64_t pool_reuse_empty;    /* shared pool stage 1: EMPTY slab of the class reused */
  uint64_t pool_claim_unused;   /* shared pool stage 2: UNUSED slot claimed */
  uint64_t pool_new_superslab;  /* shared pool stage 3: new SuperSlab mapped */
  uint64_t pool_adopt;          /* slabs of exited threads adopted */
  uint64_t superslabs_live;     /* SuperSlabs currently mapped */
  uint64_t superslabs_empty;    /* of which fully empty and kept */
  uint64_t superslabs_unmapped; /* SuperSlabs returned to the OS */
  uint64_t large_allocs;        /* allocations served by direct mappings */
  uint64_t large_frees;
  uint64_t bigcache_hits;       /* large allocations served from BigCache */
  uint64_t bigcache_misses;
  uint64_t os_mmap;             /* system calls made by hakmem */
  uint64_t os_munmap;
  uint64_t os_madvise;
  uint64_t os_mremap;
  uint64_t mapped_bytes;        /* bytes currently mapped by hakmem */
  uint64_t large_bytes;         /* bytes in live large blocks (mapping size) */
  uint64_t bigcache_bytes;      /* bytes held by BigCache */
  uint64_t lean_decommit;       /* memory-lean mode: decommits of free SuperSlabs and slots */
  uint64_t lean_retire;         /* memory-lean mode: free SuperSlabs unmapped */
  uint64_t purge_decommit;      /* purge passes that gave memory back */
  uint64_t purge_threads;       /* times the purge thread was started */
  uint64_t prewarm_bytes;       /* bytes faulted in at start-up (prewarm) */
  uint64_t os_refused;          /* OS calls refused: range not hakmem's */
} hak_stats_t;

/* Fills *st; returns 0. */
HAK_API int   hakmem_stats_get(hak_stats_t *st);
/* Writes the human-readable report to file descriptor fd (2 = stderr). */
HAK_API void  hakmem_stats_print(int fd);
/* Walks the whole heap and checks its invariants: every slab's free list
 * and remote-free stack (links inside the slab, at block boundaries,
 * counts consistent, no cycle), every SuperSlab and large block header.
 * Returns 0 if the heap is sound; otherwise prints one line naming the
 * first problem on stderr and returns -1.  Takes the allocator's locks:
 * other threads may run, but blocks they free meanwhile may be missed. */
HAK_API int   hakmem_check_heap(void);
/* The library's version string, e.g. "0.1.0". */
HAK_API const char *hakmem_version(void);

#ifdef __cplusplus
}
#endif
#endif
