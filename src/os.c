/* OS layer.  Aligned mappings are placed by hint in a region of their own
 * (as mimalloc does) so that one mmap usually suffices; when the kernel
 * refuses the hint, an over-sized mapping is trimmed to the alignment. */
#include "os.h"

#include <errno.h>
#include <sys/auxv.h>
#include <sys/mman.h>

struct os_counters os_counters;

/* Next hint address.  Starts at 2 TiB plus a random offset; wraps at 30 TiB. */
static _Atomic uintptr_t os_hint_next;
#define OS_HINT_BASE ((uintptr_t)2 << 40)
#define OS_HINT_END  ((uintptr_t)30 << 40)

static void *os_mmap(void *hint, size_t size)
{
  atomic_fetch_add_explicit(&os_counters.mmap_calls, 1, memory_order_relaxed);
  void *p = mmap(hint, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void os_munmap_raw(void *addr, size_t size)
{
  atomic_fetch_add_explicit(&os_counters.munmap_calls, 1, memory_order_relaxed);
  munmap(addr, size);
}

static uintptr_t os_hint_take(size_t size, size_t align)
{
  uintptr_t h = atomic_load_explicit(&os_hint_next, memory_order_relaxed);
  if (h == 0) {
    /* Randomise the start within the first 1 TiB of the region. */
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    uintptr_t rnd = r ? ((uintptr_t)r[0] << 8 | r[1]) : 0;
    uintptr_t start = OS_HINT_BASE + (rnd << 24);
    atomic_compare_exchange_strong(&os_hint_next, &h, start);
    h = atomic_load_explicit(&os_hint_next, memory_order_relaxed);
  }
  size_t step = hak_align_up(size, align);
  for (;;) {
    uintptr_t a = hak_align_up(h, align);
    uintptr_t next = a + step;
    if (next > OS_HINT_END) {
      if (atomic_compare_exchange_weak(&os_hint_next, &h, OS_HINT_BASE))
        return 0;
      continue;
    }
    if (atomic_compare_exchange_weak(&os_hint_next, &h, next))
      return a;
  }
}

static void *os_map_aligned_raw(size_t size, size_t align)
{
  uintptr_t hint = os_hint_take(size, align);
  if (hint) {
    void *p = os_mmap((void *)hint, size);
    if (p && ((uintptr_t)p & (align - 1)) == 0)
      return p;
    if (p)
      os_munmap_raw(p, size);
  }
  /* Over-map, then trim the unaligned head and the tail. */
  if (size + align < size)
    return NULL;
  char *raw = os_mmap(NULL, size + align);
  if (!raw)
    return NULL;
  char *aligned = (char *)hak_align_up((uintptr_t)raw, align);
  size_t head = (size_t)(aligned - raw);
  if (head)
    os_munmap_raw(raw, head);
  if (align - head)
    os_munmap_raw(aligned + size, align - head);
  return aligned;
}

void *os_map_aligned(size_t size, size_t align)
{
  void *p = os_map_aligned_raw(size, align);
  if (!p) {
    errno = ENOMEM;
    return NULL;
  }
  atomic_fetch_add_explicit(&os_counters.mapped_bytes, size, memory_order_relaxed);
  return p;
}

void os_unmap(void *addr, size_t size)
{
  atomic_fetch_sub_explicit(&os_counters.mapped_bytes, size, memory_order_relaxed);
  os_munmap_raw(addr, size);
}

int os_decommit(void *addr, size_t size)
{
  atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
  return madvise(addr, size, MADV_DONTNEED) == 0 ? 0 : errno;
}

int os_resize_in_place(void *old, size_t old_size, size_t new_size)
{
  atomic_fetch_add_explicit(&os_counters.mremap_calls, 1, memory_order_relaxed);
  void *p = mremap(old, old_size, new_size, 0);
  if (p == MAP_FAILED)
    return errno;
  if (new_size > old_size)
    atomic_fetch_add_explicit(&os_counters.mapped_bytes, new_size - old_size, memory_order_relaxed);
  else
    atomic_fetch_sub_explicit(&os_counters.mapped_bytes, old_size - new_size, memory_order_relaxed);
  return 0;
}

int os_move(void *old, size_t old_size, void *dest, size_t new_size)
{
  atomic_fetch_add_explicit(&os_counters.mremap_calls, 1, memory_order_relaxed);
  void *p = mremap(old, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
  if (p == MAP_FAILED)
    return errno;
  /* dest's old pages were replaced; old's range is now unmapped. */
  atomic_fetch_sub_explicit(&os_counters.mapped_bytes, old_size, memory_order_relaxed);
  return 0;
}
