/* Symbol replacement: the standard allocation functions and glibc's
 * __libc_ aliases, each the same code as its hak_ counterpart.  malloc and
 * free inline the fast paths instead of calling hak_malloc, saving a jump
 * on every call.  Linked (-lhakmem) or preloaded, these definitions come
 * before glibc's in symbol lookup, so every malloc in the process is
 * hakmem's.  C++ operator new and delete are hakmem's too (cxx_operators.c).
 * glibc's introspection and tuning calls (malloc_stats, mallinfo,
 * mallinfo2, malloc_info, mallopt) are answered from hakmem's own state
 * and options, never glibc's.  unshare and setns end the purge thread for
 * the calls that the kernel grants only to a single-threaded process. */
#include "alloc.h"
#include "diag.h"
#include "config.h"
#include "hakmem.h"
#include "purge.h"
#include "report.h"
#include "shared_pool.h"
#include "stats.h"

#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HAK_ALIAS(name) __attribute__((alias(#name), copy(name), visibility("default")))

HAK_EXPORT void *malloc(size_t size)
{
  return alloc_malloc(size);
}

HAK_EXPORT void free(void *p)
{
  alloc_free(p);
}

void *__libc_malloc(size_t size) HAK_ALIAS(malloc);
void __libc_free(void *p) HAK_ALIAS(free);

HAK_EXPORT void *calloc(size_t n, size_t size) { return hak_calloc(n, size); }
HAK_EXPORT void *realloc(void *p, size_t size) { return hak_realloc(p, size); }
HAK_EXPORT void *reallocarray(void *p, size_t n, size_t size) { return hak_reallocarray(p, n, size); }
HAK_EXPORT int posix_memalign(void **memptr, size_t align, size_t size)
{
  return hak_posix_memalign(memptr, align, size);
}
HAK_EXPORT void *aligned_alloc(size_t align, size_t size) { return hak_aligned_alloc(align, size); }
HAK_EXPORT void *memalign(size_t align, size_t size) { return hak_memalign(align, size); }
HAK_EXPORT void *valloc(size_t size) { return hak_valloc(size); }
HAK_EXPORT void *pvalloc(size_t size) { return hak_pvalloc(size); }
HAK_EXPORT size_t malloc_usable_size(void *p) { return hak_malloc_usable_size(p); }
HAK_EXPORT int malloc_trim(size_t pad) { return hak_trim(pad); }
HAK_EXPORT void malloc_stats(void) { hakmem_stats_print(2); }

void *__libc_calloc(size_t n, size_t size) HAK_ALIAS(calloc);
void *__libc_realloc(void *p, size_t size) HAK_ALIAS(realloc);
void *__libc_memalign(size_t align, size_t size) HAK_ALIAS(memalign);
void *__libc_valloc(size_t size) HAK_ALIAS(valloc);
void *__libc_pvalloc(size_t size) HAK_ALIAS(pvalloc);

/* mallinfo2 from hakmem's own state: "arena" is SuperSlab memory, the
 * "hblk" fields are large blocks, uordblks/fordblks split small blocks
 * into in use and free.  u receives the pool's figures it came from. */
static struct mallinfo2 mallinfo_from(struct shared_pool_usage *u)
{
  hak_stats_t st;
  stats_collect(&st);
  shared_pool_usage(u);
  struct mallinfo2 mi = { 0 };
  mi.arena = u->superslab_bytes;
  mi.hblks = st.large_allocs - st.large_frees;
  mi.hblkhd = st.large_bytes;
  mi.uordblks = u->in_use_bytes + st.large_bytes;
  mi.fordblks = u->free_bytes;
  mi.keepcost = st.bigcache_bytes;
  return mi;
}

HAK_EXPORT struct mallinfo2 mallinfo2(void)
{
  struct shared_pool_usage u;
  return mallinfo_from(&u);
}

static void xml_attr(struct diag_buf *b, const char *name, uint64_t v)
{
  diag_put(b, " ");
  diag_put(b, name);
  diag_put(b, "=\"");
  diag_put_u64(b, v);
  diag_put(b, "\"");
}

static void xml_total(struct diag_buf *b, const char *elem, const char *type, bool with_count,
                      uint64_t count, uint64_t size)
{
  diag_put(b, "<");
  diag_put(b, elem);
  diag_put(b, " type=\"");
  diag_put(b, type);
  diag_put(b, "\"");
  if (with_count)
    xml_attr(b, "count", count);
  xml_attr(b, "size", size);
  diag_put(b, "/>\n");
}

/* glibc's malloc_info schema with hakmem's figures: one heap (the slab
 * pool), whose <sizes> list each class's free blocks; "rest" is every free
 * slab block (mallinfo2's fordblks), "mmap" the live large blocks (hblks,
 * hblkhd), "current" the SuperSlab memory (arena).  hakmem keeps no
 * high-water mark, so "max" is the current figure.  The snapshot is taken
 * before anything is written to fp, whose buffer may be allocated then. */
HAK_RARE_TEXT HAK_EXPORT int malloc_info(int options, FILE *fp)
{
  if (options != 0 || !fp) {
    errno = EINVAL;
    return -1;
  }
  struct shared_pool_usage u;
  struct mallinfo2 mi = mallinfo_from(&u);
  hak_stats_t st;
  stats_collect(&st);
  HAK_BSS_APART(xml) static char xml[16384];
  static atomic_flag busy = ATOMIC_FLAG_INIT;
  while (atomic_flag_test_and_set_explicit(&busy, memory_order_acquire))
    ;
  struct diag_buf b = { .buf = xml, .size = sizeof xml };
  xml[0] = '\0';
  uint64_t free_blocks = 0;
  diag_put(&b, "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n");
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    uint64_t size = size_class_size(c), count = u.free_class[c] / size;
    if (!count)
      continue;
    free_blocks += count;
    diag_put(&b, "<size");
    xml_attr(&b, "from", size);
    xml_attr(&b, "to", size);
    xml_attr(&b, "total", u.free_class[c]);
    xml_attr(&b, "count", count);
    diag_put(&b, "/>\n");
  }
  diag_put(&b, "</sizes>\n");
  xml_total(&b, "total", "fast", true, 0, 0);
  xml_total(&b, "total", "rest", true, free_blocks, mi.fordblks);
  xml_total(&b, "system", "current", false, 0, mi.arena);
  xml_total(&b, "system", "max", false, 0, mi.arena);
  xml_total(&b, "aspace", "total", false, 0, mi.arena);
  xml_total(&b, "aspace", "mprotect", false, 0, mi.arena);
  diag_put(&b, "</heap>\n");
  xml_total(&b, "total", "fast", true, 0, 0);
  xml_total(&b, "total", "rest", true, free_blocks, mi.fordblks);
  xml_total(&b, "total", "mmap", true, mi.hblks, mi.hblkhd);
  xml_total(&b, "system", "current", false, 0, mi.arena);
  xml_total(&b, "system", "max", false, 0, mi.arena);
  xml_total(&b, "aspace", "total", false, 0, st.mapped_bytes);
  xml_total(&b, "aspace", "mprotect", false, 0, st.mapped_bytes);
  diag_put(&b, "</malloc>\n");
  int rc = b.truncated || fputs(xml, fp) == EOF ? -1 : 0;
  atomic_flag_clear_explicit(&busy, memory_order_release);
  return rc;
}

/* glibc's tuning calls, mapped onto hakmem's options where one has the
 * same purpose; the table is in hakmem(3).  Returns 1 when the request
 * is applied or already holds, 0 (glibc's "error") otherwise. */
HAK_EXPORT int mallopt(int param, int value)
{
  switch (param) {
  case M_TRIM_THRESHOLD: {
    /* Free memory kept before it goes back to the OS: BigCache's bound,
     * rounded up to MiB (the small-block pool is bounded by time, see
     * purge_delay_ms).  Read under BigCache's lock at each decision. */
    if (value < 0)
      return 0;
    int mb = (int)(((unsigned)value + (1u << 20) - 1) >> 20);
    __atomic_store_n(&hak_config.bigcache_max_mb, mb, __ATOMIC_RELAXED);
    return 1;
  }
  case M_MMAP_THRESHOLD:
    /* Every block above the largest class (256 KiB) has its own mapping
     * and freed ones are reused through BigCache; the threshold is not
     * movable.  Values glibc accepts are accepted with no effect. */
    return value >= 0 && value <= 32 * 1024 * 1024;
  case M_MMAP_MAX:
    /* hakmem cannot stop mapping large blocks (value 0). */
    return value > 0;
  case M_ARENA_MAX:
  case M_ARENA_TEST:
    /* No arenas: each thread caches its own slabs from one shared pool. */
    return value > 0;
  default:
    /* M_MXFAST, M_TOP_PAD, M_CHECK_ACTION, M_PERTURB and the rest: no
     * counterpart (misuse checks are the check option). */
    return 0;
  }
}

static int clamp_int(size_t v) { return v > 0x7fffffff ? 0x7fffffff : (int)v; }

HAK_EXPORT struct mallinfo mallinfo(void)
{
  struct mallinfo2 m2 = mallinfo2();
  struct mallinfo mi = { 0 };
  mi.arena = clamp_int(m2.arena);
  mi.hblks = clamp_int(m2.hblks);
  mi.hblkhd = clamp_int(m2.hblkhd);
  mi.uordblks = clamp_int(m2.uordblks);
  mi.fordblks = clamp_int(m2.fordblks);
  mi.keepcost = clamp_int(m2.keepcost);
  return mi;
}

/* C23's sized frees, which glibc 2.36 does not define yet: programs built
 * against newer headers call them, and get hakmem's checks of the size. */
#include "alloc_sized.h"

void free_sized(void *p, size_t size);
void free_aligned_sized(void *p, size_t align, size_t size);

HAK_EXPORT void free_sized(void *p, size_t size)
{
  alloc_free_sized(p, size, 0, "free_sized()");
}

HAK_EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
  if (__builtin_expect(hak_config.check && p && !hak_is_pow2(align), 0))
    hak_fatal_pointer("free_aligned_sized(): alignment not a power of two, for", p);
  alloc_free_sized(p, size, align, "free_aligned_sized()");
}

/* The kernel refuses unshare of these, and setns into a user or mount
 * namespace, to a process with more than one thread (EINVAL): hakmem's
 * purge thread must not be the one that makes a single-threaded program
 * fail.  It is ended for the call and started again by a later
 * allocation (purge_stop).  A namespace file of any type (nstype 0) may
 * be either.  The calls are glibc's, made with syscall(2). */
#define SINGLE_THREAD_UNSHARE (CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM)
#define SINGLE_THREAD_SETNS (CLONE_NEWUSER | CLONE_NEWNS)

HAK_RARE_TEXT HAK_EXPORT int unshare(int flags)
{
  bool stop = flags & SINGLE_THREAD_UNSHARE;
  if (stop)
    purge_stop();
  int rc = (int)syscall(SYS_unshare, flags);
  if (stop)
    purge_stop_end();
  return rc;
}

HAK_RARE_TEXT HAK_EXPORT int setns(int fd, int nstype)
{
  bool stop = nstype == 0 || (nstype & SINGLE_THREAD_SETNS);
  if (stop)
    purge_stop();
  int rc = (int)syscall(SYS_setns, fd, nstype);
  if (stop)
    purge_stop_end();
  return rc;
}
