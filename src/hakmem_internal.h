/* Definitions shared by every layer of libhakmem: branch hints, export
 * control and the geometry of SuperSlabs and slabs.  No layer state here. */
#ifndef HAKMEM_INTERNAL_H
#define HAKMEM_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HAK_LIKELY(x)   __builtin_expect(!!(x), 1)
#define HAK_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define HAK_EXPORT      __attribute__((visibility("default")))
#define HAK_NOINLINE    __attribute__((noinline))
#define HAK_COLD        __attribute__((cold, noinline))
#define HAK_INLINE      static inline __attribute__((always_inline))
/* For extern declarations of the library's own variables: -fvisibility
 * covers definitions only, and without this a fast path reaches each
 * variable through the GOT (one load more). */
#define HAK_HIDDEN      __attribute__((visibility("hidden")))

/* Every block is at least this aligned. */
#define HAK_MIN_ALIGN 16

/* A slab is 64 KiB, always aligned to its size. */
#define HAK_SLAB_SHIFT 16
#define HAK_SLAB_SIZE  ((size_t)1 << HAK_SLAB_SHIFT)

/* SuperSlabs are 2^superslab_lg bytes, aligned to their size; the
 * configurable range is 512 KiB .. 2 MiB. */
#define HAK_SS_LG_MIN 19
#define HAK_SS_LG_MAX 21
#define HAK_SS_LG_DEFAULT 21
#define HAK_SS_MAX_SLABS (1u << (HAK_SS_LG_MAX - HAK_SLAB_SHIFT))

/* The registry tracks address space in units of the smallest SuperSlab. */
#define HAK_UNIT_SHIFT HAK_SS_LG_MIN
#define HAK_UNIT_SIZE  ((size_t)1 << HAK_UNIT_SHIFT)

#define HAK_PAGE_SIZE 4096u

static inline size_t hak_align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }
static inline bool hak_is_pow2(size_t n) { return n != 0 && (n & (n - 1)) == 0; }

/* Thread identity: 0 means "this thread has not initialised its cache";
 * HAK_NO_OWNER marks slabs that no thread owns.  Neither is ever a real id. */
#define HAK_NO_OWNER UINT64_MAX

/* Joins a and b into buf (truncated to size - 1 bytes); returns buf.  For
 * messages built inside malloc, where stdio is off limits. */
static inline const char *hak_concat(char *buf, size_t size, const char *a, const char *b)
{
  size_t n = 0;
  for (const char *s = a; *s && n + 1 < size; s++)
    buf[n++] = *s;
  for (const char *s = b; *s && n + 1 < size; s++)
    buf[n++] = *s;
  buf[n] = 0;
  return buf;
}

/* Reports a fatal misuse (invalid or double free) on stderr and aborts. */
void hak_fatal_pointer(const char *what, const void *ptr) __attribute__((noreturn, cold));
/* One line on stderr, prefixed "hakmem: "; safe inside malloc (no stdio).
 * Nothing if quiet is set. */
void hak_warn(const char *msg);
/* One line "hakmem: <what> 0x<ptr>" on stderr (not fatal). */
void hak_warn_pointer(const char *what, const void *ptr);
/* The same at exit: on stderr only if it is still the file it was at
 * start-up (see stats_prepare_exit_report), else dropped, so that a line
 * never lands in a file the program opened on a descriptor it had closed. */
void hak_warn_at_exit(const char *msg);

#endif
