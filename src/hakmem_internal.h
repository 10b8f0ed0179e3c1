/* Definitions shared by every layer of libhakmem: branch hints, export
 * control and the geometry of SuperSlabs and slabs.  No layer state and no
 * functions here (messages, the clock and the text builder are diag.h's);
 * it includes only libc headers. */
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
/* For a function that every process runs at start-up or exit but that
 * lives in a file of rarely run code (the config-file parser, the
 * learner, the statistics, diagnostics, the profiler): its code goes to
 * .text.startup, which the linker puts at the start of the text with the
 * other start-up code.  The rarely run files are linked last (Makefile.am),
 * so that the pages a small program runs are few and together: a read
 * fault maps the 64 KiB around it (fault-around), and a start-up
 * function among the rare code would bring their pages in with it. */
#define HAK_STARTUP_TEXT __attribute__((section(".text.startup.hakmem")))
/* The same place for a function of a rarely run file that the allocation
 * paths or the purge thread call in most programs (the clock, the
 * learner's event count, the profiler stash's purge test). */
#define HAK_COMMON_TEXT HAK_STARTUP_TEXT
/* The opposite: for a function of a file every process runs (the pool,
 * the thread caches) that only a rare event calls (the heap check, a fork
 * child's clean-up, malloc_info, verbose's start-up line, unshare and
 * setns).  The section's name matches none of the linker's
 * text patterns, so the linker places it after all of the text, beyond
 * the rarely run files, instead of in the first 64 KiB window among the
 * code every process runs. */
#define HAK_RARE_TEXT __attribute__((section(".text_rare_hakmem")))
/* For extern declarations of the library's own variables: -fvisibility
 * covers definitions only, and without this a fast path reaches each
 * variable through the GOT (one load more). */
#define HAK_HIDDEN      __attribute__((visibility("hidden")))

/* For a zero-initialised static object of a page or more that a running
 * program writes little of or nothing (the registry's level-1 tables,
 * file and report buffers): on x86-64 it goes to a section of its own in
 * .lbss, which the linker places after .bss, so that the small variables
 * every program writes share as few pages as possible (each page written
 * is 4 KiB of resident memory).  Pages of it only read stay the kernel's
 * zero page.  Elsewhere the assembler does not know .lbss (the object
 * would be stored in the file), so there it stays in .bss. */
#if defined(__x86_64__)
#define HAK_BSS_APART(name) __attribute__((section(".lbss." #name)))
#else
#define HAK_BSS_APART(name)
#endif

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

#endif
