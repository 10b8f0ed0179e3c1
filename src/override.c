/* Symbol replacement: the standard allocation functions and glibc's
 * __libc_ aliases, each the same code as its hak_ counterpart.  malloc and
 * free inline the fast paths instead of calling hak_malloc, saving a jump
 * on every call.  Linked (-lhakmem) or preloaded, these definitions come
 * before glibc's in symbol lookup, so every malloc in the process is
 * hakmem's.  C++ operator new and delete are hakmem's too (cxx_operators.c). */
#include "alloc.h"
#include "hakmem.h"
#include "shared_pool.h"
#include "stats.h"

#include <malloc.h>
#include <stdlib.h>

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
 * into in use and free. */
HAK_EXPORT struct mallinfo2 mallinfo2(void)
{
  hak_stats_t st;
  struct shared_pool_usage u;
  hakmem_stats_get(&st);
  shared_pool_usage(&u);
  struct mallinfo2 mi = { 0 };
  mi.arena = u.superslab_bytes;
  mi.hblks = st.large_allocs - st.large_frees;
  mi.hblkhd = st.large_bytes;
  mi.uordblks = u.in_use_bytes + st.large_bytes;
  mi.fordblks = u.free_bytes;
  mi.keepcost = st.bigcache_bytes;
  return mi;
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
  if (__builtin_expect(p && !hak_is_pow2(align), 0))
    hak_fatal_pointer("free_aligned_sized(): alignment not a power of two, for", p);
  alloc_free_sized(p, size, align, "free_aligned_sized()");
}
