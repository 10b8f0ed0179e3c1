/* OS layer.  Aligned mappings are placed by hint in a region of their own
 * (as mimalloc does) so that one mmap usually suffices; when the kernel
 * refuses the hint, an over-sized mapping is trimmed to the alignment. */
#include "os.h"

#include <errno.h>
#include <sys/auxv.h>
#include <sys/mman.h>

struct os_counters os_counters;

/* ---- the guard: which registry units os_map_aligned handed out ----
 * A bit per 512 KiB unit in a two-level table (one leaf per 4 GiB, mapped
 * on first use and never freed). */
#define GUARD_L2_BITS (32 - HAK_UNIT_SHIFT)
struct guard_leaf {
  _Atomic uint64_t bits[(1u << GUARD_L2_BITS) / 64];
};
static _Atomic(struct guard_leaf *) guard_l1[1u << 16];

static struct guard_leaf *guard_leaf_get(uintptr_t a, bool create)
{
  _Atomic(struct guard_leaf *) *slot = &guard_l1[(a >> 32) & 0xffff];
  struct guard_leaf *leaf = atomic_load_explicit(slot, memory_order_acquire);
  if (leaf || !create)
    return leaf;
  struct guard_leaf *fresh = mmap(NULL, sizeof *fresh, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (fresh == MAP_FAILED)
    return NULL;
  atomic_fetch_add_explicit(&os_counters.mmap_calls, 1, memory_order_relaxed);
  if (!atomic_compare_exchange_strong(slot, &leaf, fresh)) {
    munmap(fresh, sizeof *fresh);
    atomic_fetch_add_explicit(&os_counters.munmap_calls, 1, memory_order_relaxed);
    return leaf;
  }
  return fresh;
}

/* Marks or clears the units of [addr, addr+size); false if a leaf could
 * not be mapped (marking only). */
static bool guard_mark(uintptr_t addr, size_t size, bool on)
{
  uintptr_t first = addr >> HAK_UNIT_SHIFT;
  uintptr_t last = (addr + size - 1) >> HAK_UNIT_SHIFT;
  for (uintptr_t u = first; u <= last; u++) {
    struct guard_leaf *leaf = guard_leaf_get(u << HAK_UNIT_SHIFT, on);
    if (!leaf)
      return !on;
    size_t i = u & ((1u << GUARD_L2_BITS) - 1);
    if (on)
      atomic_fetch_or_explicit(&leaf->bits[i / 64], (uint64_t)1 << (i % 64), memory_order_relaxed);
    else
      atomic_fetch_and_explicit(&leaf->bits[i / 64], ~((uint64_t)1 << (i % 64)), memory_order_relaxed);
  }
  return true;
}

bool os_owns_range(const void *p, size_t size)
{
  uintptr_t addr = (uintptr_t)p;
  if (size == 0 || addr + size < addr || (addr + size) >> 48)
    return false;
  for (uintptr_t u = addr >> HAK_UNIT_SHIFT; u <= (addr + size - 1) >> HAK_UNIT_SHIFT; u++) {
    struct guard_leaf *leaf = guard_leaf_get(u << HAK_UNIT_SHIFT, false);
    size_t i = u & ((1u << GUARD_L2_BITS) - 1);
    if (!leaf || !(atomic_load_explicit(&leaf->bits[i / 64], memory_order_relaxed) >> (i % 64) & 1))
      return false;
  }
  return true;
}

static bool os_refuse(const void *addr, size_t size, const char *what)
{
  if (os_owns_range(addr, size))
    return false;
  atomic_fetch_add_explicit(&os_counters.refused, 1, memory_order_relaxed);
  hak_warn(what);
  return true;
}

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
  if (align < HAK_UNIT_SIZE)
    align = HAK_UNIT_SIZE;
  void *p = os_map_aligned_raw(size, align);
  if (p && !guard_mark((uintptr_t)p, size, true)) {
    os_munmap_raw(p, size);
    p = NULL;
  }
  if (!p) {
    errno = ENOMEM;
    return NULL;
  }
  atomic_fetch_add_explicit(&os_counters.mapped_bytes, size, memory_order_relaxed);
  return p;
}

void os_unmap(void *addr, size_t size)
{
  if (os_refuse(addr, size, "munmap refused: range not mapped by hakmem"))
    return;
  /* Every mapping starts on a unit boundary, so its last unit holds no
   * other mapping of ours: all its units stop being ours. */
  guard_mark((uintptr_t)addr, size, false);
  atomic_fetch_sub_explicit(&os_counters.mapped_bytes, size, memory_order_relaxed);
  os_munmap_raw(addr, size);
}

static _Atomic bool decommit_disabled;
static _Atomic int inject_decommit_error;

void os_inject_decommit_error(int err)
{
  atomic_store(&inject_decommit_error, err);
}

bool os_decommit_enabled(void)
{
  return !atomic_load_explicit(&decommit_disabled, memory_order_relaxed);
}

int os_decommit(void *addr, size_t size, bool dontneed)
{
  if (!os_decommit_enabled())
    return ENOMEM;
  if (os_refuse(addr, size, "madvise refused: range not mapped by hakmem"))
    return EINVAL;
  atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
  int err = atomic_exchange(&inject_decommit_error, 0);
  if (!err && madvise(addr, size, dontneed ? MADV_DONTNEED : MADV_FREE) != 0)
    err = errno;
  if (err == EINVAL && !dontneed) {
    /* Kernels before 4.5 lack MADV_FREE. */
    err = madvise(addr, size, MADV_DONTNEED) == 0 ? 0 : errno;
  }
  if (err == ENOMEM && !atomic_exchange(&decommit_disabled, true))
    hak_warn("madvise failed with ENOMEM: decommit is off, empty memory will be unmapped instead");
  return err;
}

int os_advise_huge(void *addr, size_t size, bool huge)
{
  if (os_refuse(addr, size, "madvise refused: range not mapped by hakmem"))
    return EINVAL;
  atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
  return madvise(addr, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0 ? 0 : errno;
}

int os_resize_in_place(void *old, size_t old_size, size_t new_size)
{
  if (os_refuse(old, old_size, "mremap refused: range not mapped by hakmem"))
    return EINVAL;
  uintptr_t a = (uintptr_t)old;
  atomic_fetch_add_explicit(&os_counters.mremap_calls, 1, memory_order_relaxed);
  void *p = mremap(old, old_size, new_size, 0);
  if (p == MAP_FAILED)
    return errno; /* the units after it may be another mapping's: leave them */
  if (new_size > old_size && !guard_mark(a + old_size, new_size - old_size, true)) {
    mremap(old, new_size, old_size, 0);
    return ENOMEM;
  }
  if (new_size < old_size) {
    uintptr_t keep = hak_align_up(a + new_size, HAK_UNIT_SIZE);
    if (a + old_size > keep)
      guard_mark(keep, a + old_size - keep, false);
  }
  if (new_size > old_size)
    atomic_fetch_add_explicit(&os_counters.mapped_bytes, new_size - old_size, memory_order_relaxed);
  else
    atomic_fetch_sub_explicit(&os_counters.mapped_bytes, old_size - new_size, memory_order_relaxed);
  return 0;
}

int os_move(void *old, size_t old_size, void *dest, size_t new_size)
{
  if (os_refuse(old, old_size, "mremap refused: range not mapped by hakmem") ||
      os_refuse(dest, new_size, "mremap refused: range not mapped by hakmem"))
    return EINVAL;
  atomic_fetch_add_explicit(&os_counters.mremap_calls, 1, memory_order_relaxed);
  void *p = mremap(old, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
  if (p == MAP_FAILED)
    return errno;
  guard_mark((uintptr_t)old, old_size, false);
  /* dest's old pages were replaced; old's range is now unmapped. */
  atomic_fetch_sub_explicit(&os_counters.mapped_bytes, old_size, memory_order_relaxed);
  return 0;
}
