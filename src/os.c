/* OS layer.  Aligned mappings are placed by hint in a region of their own
 * (as mimalloc does) so that one mmap usually suffices; when the kernel
 * refuses the hint, an over-sized mapping is trimmed to the alignment.
 *
 * Every mapping is followed by a guard: at least one page that nothing of
 * hakmem's is placed in, so that a linear overflow past a SuperSlab or a
 * large block faults instead of rewriting the next mapping's header.  A
 * mapping placed by hint has an unmapped gap after it, reserved in the
 * hint cursor; a mapping placed by the kernel (the over-map path) keeps a
 * PROT_NONE region after it, up to the next unit boundary, which the
 * kernel cannot hand to anyone else. */
#include "os.h"
#include "os_limit.h"
#include "diag.h"
#include "secret.h"

#include <errno.h>
#include <link.h>
#include <sys/mman.h>
#ifdef HAVE_VALGRIND_MEMCHECK_H
#include <valgrind/memcheck.h>
#endif

struct os_counters os_counters;

/* ---- the ownership map: which registry units os_map_aligned handed out ----
 * A bit per 512 KiB unit in a two-level table (one leaf per 4 GiB, mapped
 * on first use and never freed; a leaf is 8 KiB of address space).  tail
 * has a bit per unit too: set for the unit holding the first byte of a
 * PROT_NONE tail guard (a mapping placed by the kernel, or split).  split
 * has one per unit as well: set for the first unit of a mapping that
 * os_split cut off the one before it, for as long as that one's guard
 * still ends there; the two came from one VMA, so that os_join can give
 * the guard back and the kernel merges the three VMAs into one again.
 * pad, kept and bare are os_limit.c's, in use once the mapping-count
 * limit was met (os_limit.h). */
#define GUARD_L2_BITS OS_UNITS_LEAF_BITS
#define GUARD_WORDS OS_UNITS_LEAF_WORDS
struct guard_leaf {
  _Atomic uint64_t bits[GUARD_WORDS];
  _Atomic uint64_t tail[GUARD_WORDS];
  _Atomic uint64_t split[GUARD_WORDS];
  _Atomic uint64_t pad[GUARD_WORDS];
  _Atomic uint64_t kept[GUARD_WORDS];
  _Atomic uint64_t bare[GUARD_WORDS];
};
#define GUARD_LEAF_MAP_SIZE OS_UNITS_LEAF_MAP_SIZE
_Static_assert(sizeof(struct guard_leaf) <= OS_UNITS_LEAF_MAP_SIZE, "the leaf's mapping holds it");
HAK_BSS_APART(guard_l1) _Atomic(struct guard_leaf *) guard_l1[OS_UNITS_LEAVES];
_Static_assert(offsetof(struct guard_leaf, pad) == OS_UNITS_PAD * sizeof(uint64_t) * GUARD_WORDS &&
                   offsetof(struct guard_leaf, kept) == OS_UNITS_KEPT * sizeof(uint64_t) * GUARD_WORDS &&
                   offsetof(struct guard_leaf, bare) == OS_UNITS_BARE * sizeof(uint64_t) * GUARD_WORDS,
               "os_limit.c finds its maps at these offsets");

static struct guard_leaf *guard_leaf_get(uintptr_t a, bool create)
{
  _Atomic(struct guard_leaf *) *slot = &guard_l1[(a >> 32) & 0xffff];
  struct guard_leaf *leaf = atomic_load_explicit(slot, memory_order_acquire);
  if (leaf || !create)
    return leaf;
  struct guard_leaf *fresh = mmap(NULL, GUARD_LEAF_MAP_SIZE, PROT_READ | PROT_WRITE, OS_MAP_FLAGS, -1, 0);
  if (fresh == MAP_FAILED)
    return errno == ENOMEM && os_limit_make_leaf(a) ? atomic_load_explicit(slot, memory_order_acquire) : NULL;
  atomic_fetch_add_explicit(&os_counters.mmap_calls, 1, memory_order_relaxed);
  if (!atomic_compare_exchange_strong(slot, &leaf, fresh)) {
    munmap(fresh, GUARD_LEAF_MAP_SIZE);
    atomic_fetch_add_explicit(&os_counters.munmap_calls, 1, memory_order_relaxed);
    return leaf;
  }
  return fresh;
}

/* Bits [lo, hi) of one word (0 <= lo < hi <= 64). */
static uint64_t bit_span(unsigned lo, unsigned hi)
{
  uint64_t upto_hi = hi == 64 ? ~(uint64_t)0 : ((uint64_t)1 << hi) - 1;
  return upto_hi & ~(((uint64_t)1 << lo) - 1);
}

enum guard_op { GUARD_SET, GUARD_CLEAR, GUARD_ALL_SET, GUARD_NONE_SET };

/* Applies op to the ownership bits of units [first, last], a word at a
 * time (the cost is O(units / 64), not O(units)).  For the two tests,
 * returns whether every bit is set / no bit is set; for GUARD_SET, false
 * if a leaf could not be mapped (the bits set so far stay: the caller
 * clears the range). */
static bool guard_units(uintptr_t first, uintptr_t last, enum guard_op op)
{
  for (uintptr_t u = first; u <= last;) {
    struct guard_leaf *leaf = guard_leaf_get(u << HAK_UNIT_SHIFT, op == GUARD_SET);
    uintptr_t leaf_end = (u | ((1u << GUARD_L2_BITS) - 1)) + 1;
    uintptr_t stop = last + 1 < leaf_end ? last + 1 : leaf_end;
    if (!leaf) {
      if (op == GUARD_SET || op == GUARD_ALL_SET)
        return false;
      u = stop;
      continue;
    }
    while (u < stop) {
      size_t i = u & ((1u << GUARD_L2_BITS) - 1);
      unsigned lo = (unsigned)(i % 64);
      unsigned hi = stop - u < 64 - lo ? lo + (unsigned)(stop - u) : 64;
      uint64_t m = bit_span(lo, hi);
      _Atomic uint64_t *w = &leaf->bits[i / 64];
      switch (op) {
      case GUARD_SET: atomic_fetch_or_explicit(w, m, memory_order_relaxed); break;
      case GUARD_CLEAR: atomic_fetch_and_explicit(w, ~m, memory_order_relaxed); break;
      case GUARD_ALL_SET:
        if ((atomic_load_explicit(w, memory_order_relaxed) & m) != m)
          return false;
        break;
      case GUARD_NONE_SET:
        if (atomic_load_explicit(w, memory_order_relaxed) & m)
          return false;
        break;
      }
      u += hi - lo;
    }
  }
  return true;
}

static uintptr_t unit_of(uintptr_t a) { return a >> HAK_UNIT_SHIFT; }

/* Marks or clears the units of [addr, addr+size); false if a leaf could
 * not be mapped (marking only; nothing is left marked then). */
static bool guard_mark(uintptr_t addr, size_t size, bool on)
{
  uintptr_t first = unit_of(addr), last = unit_of(addr + size - 1);
  if (!on)
    return guard_units(first, last, GUARD_CLEAR);
  if (guard_units(first, last, GUARD_SET))
    return true;
  guard_units(first, last, GUARD_CLEAR);
  return false;
}

/* The tail-guard bit of the unit holding address a. */
static _Atomic uint64_t *tail_word(uintptr_t a, bool create, uint64_t *bit)
{
  struct guard_leaf *leaf = guard_leaf_get(a, create);
  size_t i = unit_of(a) & ((1u << GUARD_L2_BITS) - 1);
  *bit = (uint64_t)1 << (i % 64);
  if (!leaf)
    return NULL;
  /* A mapping ending on a unit boundary has a guard there only if the
   * unit is no mapping's and not kept: one placed at the mapping-count
   * limit can start right there, and the bit is then that one's (the
   * guard of a split it ends in). */
  if (!create && a % HAK_UNIT_SIZE == 0 && os_limit_seen() && os_limit_unit_taken(a))
    return NULL;
  return &leaf->tail[i / 64];
}

/* The split bit of the unit holding address a. */
static _Atomic uint64_t *split_word(uintptr_t a, bool create, uint64_t *bit)
{
  struct guard_leaf *leaf = guard_leaf_get(a, create);
  size_t i = unit_of(a) & ((1u << GUARD_L2_BITS) - 1);
  *bit = (uint64_t)1 << (i % 64);
  return leaf ? &leaf->split[i / 64] : NULL;
}

/* The mapping starting at start is no longer the rest of a split whose
 * head's guard ends there (it is unmapped or replaced, or the head's
 * guard moved or went). */
static void split_clear(uintptr_t start)
{
  uint64_t bit;
  _Atomic uint64_t *w = split_word(start, false, &bit);
  if (w)
    atomic_fetch_and_explicit(w, ~bit, memory_order_relaxed);
}

static bool tail_guard_test_and_clear(uintptr_t end)
{
  uint64_t bit;
  _Atomic uint64_t *w = tail_word(end, false, &bit);
  return w && (atomic_fetch_and_explicit(w, ~bit, memory_order_relaxed) & bit);
}

/* End of the PROT_NONE tail guard of a mapping ending at end: the next
 * unit boundary at least a page further. */
static uintptr_t tail_guard_end(uintptr_t end)
{
  return hak_align_up(end + HAK_PAGE_SIZE, HAK_UNIT_SIZE);
}

bool os_owns_range(const void *p, size_t size)
{
  uintptr_t addr = (uintptr_t)p;
  if (size == 0 || addr + size < addr || (addr + size) >> 48)
    return false;
  return guard_units(unit_of(addr), unit_of(addr + size - 1), GUARD_ALL_SET);
}

static bool os_refuse(const void *addr, size_t size, const char *what)
{
  if (os_owns_range(addr, size))
    return false;
  atomic_fetch_add_explicit(&os_counters.refused, 1, memory_order_relaxed);
  hak_warn(what);
  return true;
}

/* ---- placement ----
 * The hint cursor starts at a random page of [OS_HINT_LO, OS_HINT_START_HI)
 * (2^34 possible starts) and moves up by each mapping, its guard and a
 * random jitter of 0..OS_JITTER_UNITS-1 units.  A request that does not fit
 * between the cursor and OS_HINT_END draws a new random start; one that
 * cannot fit in the region at all gets hint 0 (the kernel chooses) and
 * leaves the cursor alone, so that no request resets placement to an
 * address known in advance. */
static _Atomic uintptr_t os_hint_next;
#define OS_HINT_START_HI ((uintptr_t)64 << 40)
#define OS_GUARD_SIZE    ((size_t)HAK_PAGE_SIZE)
#define OS_JITTER_UNITS  4u
/* The most address space left free after a mapping for it to grow into. */
#define OS_ROOM_MAX      ((size_t)64 << 20)
/* How far past a mapping's end the cursor can be after taking its hint. */
#define OS_HINT_REACH    (OS_GUARD_SIZE + OS_ROOM_MAX + OS_JITTER_UNITS * HAK_UNIT_SIZE)

static uintptr_t os_hint_random_start(void)
{
  uintptr_t pages = (OS_HINT_START_HI - OS_HINT_LO) / HAK_PAGE_SIZE;
  return OS_HINT_LO + (uintptr_t)(secret_random() % pages) * HAK_PAGE_SIZE;
}

static void *os_mmap(void *hint, size_t size, int flags)
{
  atomic_fetch_add_explicit(&os_counters.mmap_calls, 1, memory_order_relaxed);
  void *p = mmap(hint, size, PROT_READ | PROT_WRITE, OS_MAP_FLAGS | flags, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void os_munmap_raw(void *addr, size_t size)
{
  atomic_fetch_add_explicit(&os_counters.munmap_calls, 1, memory_order_relaxed);
  munmap(addr, size);
}

/* The first address at or above a that is phase past a multiple of align. */
uintptr_t os_align_phase(uintptr_t a, size_t align, size_t phase)
{
  uintptr_t p = hak_align_up(a, align) + phase;
  return p >= align && p - align >= a ? p - align : p;
}

/* An address for a mapping of size bytes at phase past a multiple of
 * align, with the guard, room bytes and jitter after it reserved; 0 if
 * the request cannot fit the region. */
static uintptr_t os_hint_take(size_t size, size_t align, size_t phase, size_t room)
{
  if (room > OS_ROOM_MAX)
    room = OS_ROOM_MAX;
  /* The alignment first: a larger one would wrap the subtraction below
   * and send the loop after a start that never comes. */
  const uintptr_t span = OS_HINT_END - OS_HINT_START_HI - OS_GUARD_SIZE - OS_ROOM_MAX -
                         OS_JITTER_UNITS * HAK_UNIT_SIZE;
  if (align >= span || size > span - align)
    return 0;
  /* Before hak_init (registry leaves of a very early free) the generator
   * must be seeded too; secret_init is idempotent. */
  secret_init();
  uintptr_t gap = OS_GUARD_SIZE + hak_align_up(room, HAK_PAGE_SIZE) +
                  (uintptr_t)(secret_random() % OS_JITTER_UNITS) * HAK_UNIT_SIZE;
  uintptr_t h = atomic_load_explicit(&os_hint_next, memory_order_relaxed);
  for (;;) {
    if (h == 0 || os_align_phase(h, align, phase) + size + gap > OS_HINT_END) {
      /* First use, or the region is used up: a new random start. */
      if (!atomic_compare_exchange_weak(&os_hint_next, &h, os_hint_random_start()))
        continue;
      h = atomic_load_explicit(&os_hint_next, memory_order_relaxed);
      continue;
    }
    uintptr_t a = os_align_phase(h, align, phase);
    if (atomic_compare_exchange_weak(&os_hint_next, &h, a + size + gap))
      return a;
  }
}

uintptr_t os_hint_peek(void)
{
  return atomic_load_explicit(&os_hint_next, memory_order_relaxed);
}

/* After a mapping grew in place to end: the cursor must not hand out its
 * new pages or their guard. */
void os_hint_skip(uintptr_t start, uintptr_t end)
{
  uintptr_t h = atomic_load_explicit(&os_hint_next, memory_order_relaxed);
  while (h > start && h < end + OS_GUARD_SIZE &&
         !atomic_compare_exchange_weak(&os_hint_next, &h, end + OS_GUARD_SIZE))
    ;
}

/* Unmaps [start, end); if the kernel refuses (at the mapping-count limit,
 * where the unmap would split a VMA), the range is kept (os_limit_keep). */
static void os_unmap_or_keep(uintptr_t start, uintptr_t end)
{
  atomic_fetch_add_explicit(&os_counters.munmap_calls, 1, memory_order_relaxed);
  if (HAK_UNLIKELY(munmap((void *)start, end - start) != 0))
    os_limit_keep(start, end);
}

/* After a hint met a mapping not ours: the space around the cursor is
 * likely taken further on too (a sanitizer's shadow, a virtual machine's
 * heap reservation), so the cursor moves to a new random start instead of
 * meeting it again on every later mapping. */
static void os_hint_redraw(uintptr_t missed, size_t size)
{
  uintptr_t h = atomic_load_explicit(&os_hint_next, memory_order_relaxed);
  /* Unless another thread moved the cursor elsewhere meanwhile. */
  while (h > missed && h - missed <= size + OS_HINT_REACH &&
         !atomic_compare_exchange_weak(&os_hint_next, &h, os_hint_random_start()))
    ;
}

HAK_NOINLINE void *os_map_raw(size_t size, size_t align, size_t phase, size_t room)
{
  uintptr_t hint = os_hint_take(size, align, phase, room);
  bool missed = false;
  if (hint) {
    /* MAP_FIXED_NOREPLACE: an occupied hint fails with EEXIST instead of
     * giving a mapping elsewhere to unmap again; kernels before 4.17
     * ignore the flag and may place it elsewhere. */
    void *p = os_mmap((void *)hint, size, MAP_FIXED_NOREPLACE);
    if (p && (uintptr_t)p == hint)
      return p;
    if (p)
      os_unmap_or_keep((uintptr_t)p, (uintptr_t)p + size);
    missed = p || errno == EEXIST;
    if (missed)
      atomic_fetch_add_explicit(&os_counters.hint_misses, 1, memory_order_relaxed);
  }
  /* Over-map, then trim the unaligned head and the tail beyond the guard;
   * the guard stays mapped PROT_NONE, as the kernel may place anything
   * right after a mapping it chose. */
  size_t extra = align + HAK_UNIT_SIZE + OS_GUARD_SIZE;
  if (size + extra < size)
    return NULL;
  char *raw = os_mmap(NULL, size + extra, 0);
  if (!raw)
    return NULL;
  char *aligned = (char *)os_align_phase((uintptr_t)raw, align, phase);
  char *guard_end = (char *)tail_guard_end((uintptr_t)aligned + size);
  uint64_t bit;
  _Atomic uint64_t *w = tail_word((uintptr_t)aligned + size, true, &bit);
  if (!w || mprotect(aligned + size, (size_t)(guard_end - (aligned + size)), PROT_NONE) != 0) {
    os_unmap_or_keep((uintptr_t)raw, (uintptr_t)raw + size + extra);
    return NULL;
  }
  atomic_fetch_or_explicit(w, bit, memory_order_relaxed);
  /* At the mapping-count limit these trims can be refused (the mapping
   * merged with a neighbour): what they leave is kept. */
  if (aligned > raw)
    os_unmap_or_keep((uintptr_t)raw, (uintptr_t)aligned);
  if (raw + size + extra > guard_end)
    os_unmap_or_keep((uintptr_t)guard_end, (uintptr_t)raw + size + extra);
  /* Only once the kernel's placement worked: at the mapping-count limit
   * the limit's placement starts from the cursor, in leaves hakmem has. */
  if (missed)
    os_hint_redraw(hint, size);
  return aligned;
}

/* Unmaps the tail guard after a mapping ending at end, if it has one. */
static void os_drop_tail_guard(uintptr_t end)
{
  if (tail_guard_test_and_clear(end)) {
    split_clear(tail_guard_end(end));
    os_munmap_raw((void *)end, tail_guard_end(end) - end);
  }
}

void *os_map_aligned(size_t size, size_t align)
{
  return os_map_aligned_room(size, align, 0, 0);
}

void *os_map_aligned_room(size_t size, size_t align, size_t phase, size_t room)
{
  int saved = errno;
  if (align < HAK_UNIT_SIZE)
    align = HAK_UNIT_SIZE;
  phase &= align - 1;
  void *p;
  if (os_limit_seen())
    p = os_limit_map_room(size, align, phase, room);
  else if (HAK_UNLIKELY(!(p = os_map_raw(size, align, phase, room))))
    p = os_limit_map(size, align, phase, false);
  if (p && !guard_mark((uintptr_t)p, size, true)) {
    uintptr_t end = (uintptr_t)p + size;
    uintptr_t stop = os_limit_seen() ? os_limit_unmapping(end) : end;
    os_drop_tail_guard(end);
    os_unmap_or_keep((uintptr_t)p, stop);
    p = NULL;
  }
  if (!p) {
    errno = ENOMEM;
    return NULL;
  }
  os_limit_granted();
  errno = saved;
  atomic_fetch_add_explicit(&os_counters.mapped_bytes, size, memory_order_relaxed);
  return p;
}

void os_unmap(void *addr, size_t size)
{
  int saved = errno;
  if (os_refuse(addr, size, "munmap refused: range not mapped by hakmem"))
    return;
  /* Every mapping starts on a unit boundary, so its last unit holds no
   * other mapping of ours: all its units stop being ours. */
  guard_mark((uintptr_t)addr, size, false);
  split_clear((uintptr_t)addr);
  atomic_fetch_sub_explicit(&os_counters.mapped_bytes, size, memory_order_relaxed);
  /* The guard first: a VMA of its own, its unmap is never refused for
   * the mapping count, while the mapping's may be (it merged with a
   * neighbour at the limit), and the range kept then has no guard. */
  uintptr_t end = (uintptr_t)addr + size;
  uintptr_t stop = os_limit_seen() ? os_limit_unmapping(end) : end;
  os_drop_tail_guard(end);
  os_unmap_or_keep((uintptr_t)addr, stop);
  os_limit_released();
  errno = saved;
}

static _Atomic bool decommit_disabled;

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
  int saved = errno;
  atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
  int err = madvise(addr, size, dontneed ? MADV_DONTNEED : MADV_FREE) == 0 ? 0 : errno;
  if (err == EINVAL && !dontneed) {
    /* Kernels before 4.5 lack MADV_FREE. */
    err = madvise(addr, size, MADV_DONTNEED) == 0 ? 0 : errno;
  }
  if (err == ENOMEM && !atomic_exchange(&decommit_disabled, true))
    hak_warn("madvise failed with ENOMEM: decommit is off, empty memory will be unmapped instead");
  errno = saved;
  return err;
}

int os_advise_huge(void *addr, size_t size, bool huge)
{
  if (os_refuse(addr, size, "madvise refused: range not mapped by hakmem"))
    return EINVAL;
  /* A mapping placed at the mapping-count limit keeps the flags of those
   * it merged with (advice would split their VMA). */
  if (!os_has_guard(addr, size))
    return EPERM;
  int saved = errno;
  atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
  int err = madvise(addr, size, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0 ? 0 : errno;
  errno = saved;
  return err;
}

bool os_advise_new_mapping(void *addr, size_t size, enum hak_thp thp)
{
  if (thp == HAK_THP_AUTO)
    return false;
  return os_advise_huge(addr, size, thp == HAK_THP_ON) == 0 && thp == HAK_THP_ON;
}

/* The library's ELF header, mapped with its first segment, the program
 * headers after it; GNU ld, gold, lld and mold define the symbol (weak:
 * a linker that does not leaves no advice). */
extern const char __ehdr_start[] __attribute__((weak)) HAK_HIDDEN;

void os_advise_rare_text(const void *from)
{
  /* An array of unknown size: the program headers follow the header. */
  const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)(const void *)__ehdr_start;
  if (!eh)
    return;
  const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
  /* The load bias: the header is at file offset 0, in the segment that
   * maps offset 0. */
  uintptr_t bias = 0;
  for (unsigned i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0)
      bias = (uintptr_t)eh - ph[i].p_vaddr;
  uintptr_t at = (uintptr_t)from;
  for (unsigned i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X))
      continue;
    uintptr_t lo = bias + ph[i].p_vaddr, hi = lo + ph[i].p_memsz;
    if (at < lo || at >= hi)
      continue;
    uintptr_t start = at & ~(uintptr_t)(HAK_PAGE_SIZE - 1);
    uintptr_t end = hak_align_up(hi, HAK_PAGE_SIZE);
    int saved = errno;
    atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
    (void)madvise((void *)start, end - start, MADV_RANDOM);
    errno = saved;
    return;
  }
}

/* Shrinks the mapping [a, a+old_size) to new_size by unmapping its tail
 * (which, unlike mremap, works across the seam of a mapping made of two
 * VMAs); a PROT_NONE tail guard moves to the new end.  Returns 0, or an
 * errno value with nothing changed. */
static int os_shrink(uintptr_t a, size_t old_size, size_t new_size)
{
  uintptr_t old_end = a + old_size, new_end = a + new_size;
  /* The tail's units stop being ours before the kernel frees them (see
   * os_move). */
  uintptr_t keep = hak_align_up(new_end, HAK_UNIT_SIZE);
  if (old_end > keep)
    guard_mark(keep, old_end - keep, false);
  uint64_t bit;
  _Atomic uint64_t *w = tail_word(old_end, false, &bit);
  if (w && (atomic_load_explicit(w, memory_order_relaxed) & bit)) {
    /* Turn the freed tail into the new guard first: the guard's range is
     * never unmapped, so nothing can be placed in it meanwhile. */
    uintptr_t old_guard_end = tail_guard_end(old_end), new_guard_end = tail_guard_end(new_end);
    uint64_t new_bit;
    _Atomic uint64_t *nw = tail_word(new_end, true, &new_bit);
    int err = !nw ? ENOMEM
            : mprotect((void *)new_end, new_guard_end - new_end, PROT_NONE) != 0 ? errno : 0;
    if (err) {
      if (old_end > keep)
        guard_mark(keep, old_end - keep, true);
      return err;
    }
    atomic_fetch_and_explicit(w, ~bit, memory_order_relaxed);
    atomic_fetch_or_explicit(nw, new_bit, memory_order_relaxed);
    if (old_guard_end > new_guard_end) {
      split_clear(old_guard_end);
      os_munmap_raw((void *)new_guard_end, old_guard_end - new_guard_end);
    }
  } else {
    /* Refused at the mapping-count limit (the unmap splits a VMA): the
     * mapping stays as it was. */
    uintptr_t to = os_limit_seen() ? os_limit_pad_end(old_end, false) : old_end;
    atomic_fetch_add_explicit(&os_counters.munmap_calls, 1, memory_order_relaxed);
    if (HAK_UNLIKELY(munmap((void *)new_end, to - new_end) != 0)) {
      int err = errno;
      if (old_end > keep)
        guard_mark(keep, old_end - keep, true);
      return err;
    }
    if (os_limit_seen())
      os_limit_unmapping(old_end); /* unmapped addresses follow it now */
  }
  atomic_fetch_sub_explicit(&os_counters.mapped_bytes, old_size - new_size, memory_order_relaxed);
  return 0;
}

int os_resize_in_place(void *old, size_t old_size, size_t new_size)
{
  if (os_refuse(old, old_size, "mremap refused: range not mapped by hakmem"))
    return EINVAL;
  uintptr_t a = (uintptr_t)old;
  if (new_size == old_size)
    return 0;
  int saved = errno;
  if (new_size < old_size) {
    int err = os_shrink(a, old_size, new_size);
    errno = saved;
    return err;
  }
  /* Growth must stay clear of the next hakmem mapping by a guard: every
   * unit after this mapping's last one up to the new end plus the guard
   * must be free of mappings of ours (each starts on a unit boundary). */
  uintptr_t last = unit_of(a + old_size - 1), reach = unit_of(a + new_size + OS_GUARD_SIZE - 1);
  if (new_size + OS_GUARD_SIZE < new_size || a + new_size + OS_GUARD_SIZE < a ||
      (reach > last && !guard_units(last + 1, reach, GUARD_NONE_SET)))
    return ENOMEM;
  /* A mapped PROT_NONE tail guard (a split head's, once the rest it was
   * split from has gone: the units checked free include the rest's
   * first) stands in the way of the growth: it is made part of the
   * mapping again (its VMA merges with the mapping's, which it was cut
   * from) and grown over, rather than the block moving to new addresses,
   * which makes the kernel flush the whole TLB.  If the two do not
   * merge (the guard of a mapping the kernel placed lacks the mapping's
   * huge page advice), or the growth fails, the guard is put back.  The
   * growth must reach past the guard: mremap to the same size succeeds
   * without looking at the VMAs, and only a growth fails (EFAULT) on a
   * range of two. */
  uintptr_t end = a + old_size, guard_end = tail_guard_end(end);
  size_t from = old_size;
  uint64_t bit;
  _Atomic uint64_t *w = tail_word(end, false, &bit);
  bool unguarded = false;
  /* A padded mapping's last unit is mapped to its end already: a growth
   * within it needs no call, and one beyond it grows the pad. */
  uintptr_t padded = os_limit_seen() ? os_limit_pad_end(end, false) : end;
  if (a + new_size <= padded) {
    if (a + new_size == padded)
      os_limit_pad_end(end, true);
    atomic_fetch_add_explicit(&os_counters.mapped_bytes, new_size - old_size, memory_order_relaxed);
    errno = saved;
    return 0;
  }
  if (padded > end)
    from = padded - a;
  else if (w && (atomic_load_explicit(w, memory_order_relaxed) & bit) && reach >= unit_of(guard_end) &&
           a + new_size > guard_end &&
           mprotect((void *)end, guard_end - end, PROT_READ | PROT_WRITE) == 0) {
    from = guard_end - a;
    unguarded = true;
  }
  atomic_fetch_add_explicit(&os_counters.mremap_calls, 1, memory_order_relaxed);
  void *p = mremap(old, from, new_size, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    if (unguarded && mprotect((void *)end, guard_end - end, PROT_NONE) != 0) {
      /* Refused at the mapping-count limit (it would split the entry the
       * guard merged into): the guard's pages stay the mapping's. */
      if (errno != ENOMEM)
        hak_fatal_pointer("mprotect: cannot put back a guard page", (void *)end);
      atomic_fetch_and_explicit(w, ~bit, memory_order_relaxed);
      split_clear(guard_end);
      os_limit_guard_lost(end, guard_end);
    }
    errno = saved;
    return err; /* the units after it may be another mapping's: leave them */
  }
  if (unguarded) {
    atomic_fetch_and_explicit(w, ~bit, memory_order_relaxed);
    split_clear(guard_end);
  } else if (padded > end) {
    os_limit_pad_end(end, true);
  }
  if (os_limit_seen())
    os_limit_bare(end, false); /* the growth left a guard's worth of free units */
  /* The units the growth reached, from the first after the old last
   * one: that one is marked, and a failed marking clears what it tried
   * to mark (the block would lose it, and os_unmap refuse the block). */
  uintptr_t grown = (last + 1) << HAK_UNIT_SHIFT;
  if (a + new_size > grown && !guard_mark(grown, a + new_size - grown, true)) {
    os_shrink(a, new_size, old_size);
    atomic_fetch_add_explicit(&os_counters.mapped_bytes, new_size - old_size, memory_order_relaxed);
    errno = saved;
    return ENOMEM;
  }
  os_hint_skip(a, a + new_size);
  atomic_fetch_add_explicit(&os_counters.mapped_bytes, new_size - old_size, memory_order_relaxed);
  errno = saved;
  return 0;
}

/* os_split and os_cut: joinable marks the rest as os_split's (so that
 * os_join may give the guard back); drop gives the guard's pages back
 * once it is PROT_NONE (after the mprotect, so that a refusal changes
 * nothing). */
static void *os_split_at(void *addr, size_t size, size_t head, bool joinable, bool drop)
{
  uintptr_t a = (uintptr_t)addr, head_end = a + head, rest = tail_guard_end(head_end);
  if (head == 0 || head % HAK_PAGE_SIZE || rest >= a + size ||
      os_refuse(addr, size, "mprotect refused: range not mapped by hakmem"))
    return NULL;
  int saved = errno;
  uint64_t bit, rest_bit = 0;
  _Atomic uint64_t *w = tail_word(head_end, true, &bit), *sw = NULL;
  if (joinable)
    sw = split_word(rest, true, &rest_bit);
  if (!w || (joinable && !sw)) {
    errno = saved;
    return NULL;
  }
  if (mprotect((void *)head_end, rest - head_end, PROT_NONE) != 0) {
    errno = saved;
    return NULL;
  }
  if (drop) {
    atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
    madvise((void *)head_end, rest - head_end, MADV_DONTNEED);
  }
  atomic_fetch_or_explicit(w, bit, memory_order_relaxed);
  if (joinable)
    atomic_fetch_or_explicit(sw, rest_bit, memory_order_relaxed);
  /* Units wholly inside the guard hold no mapping of ours any more. */
  uintptr_t first_free = unit_of(head_end - 1) + 1, rest_unit = unit_of(rest);
  if (rest_unit > first_free)
    guard_units(first_free, rest_unit - 1, GUARD_CLEAR);
  atomic_fetch_sub_explicit(&os_counters.mapped_bytes, rest - head_end, memory_order_relaxed);
  errno = saved;
  return (void *)rest;
}

void *os_split(void *addr, size_t size, size_t head)
{
  return os_split_at(addr, size, head, true, false);
}

void *os_cut(void *addr, size_t size, size_t head)
{
  return os_split_at(addr, size, head, false, tail_guard_end((uintptr_t)addr + head) -
                                                  ((uintptr_t)addr + head) > HAK_PAGE_SIZE);
}

void *os_split_next(const void *addr, size_t size)
{
  uintptr_t end = (uintptr_t)addr + size, n = tail_guard_end(end);
  uint64_t bit, next_bit;
  _Atomic uint64_t *w = tail_word(end, false, &bit), *sw = split_word(n, false, &next_bit);
  if (!w || !sw || !(atomic_load_explicit(w, memory_order_relaxed) & bit) ||
      !(atomic_load_explicit(sw, memory_order_relaxed) & next_bit))
    return NULL;
  return (void *)n;
}

bool os_is_split_rest(const void *addr)
{
  uint64_t bit;
  _Atomic uint64_t *w = split_word((uintptr_t)addr, false, &bit);
  return w && (atomic_load_explicit(w, memory_order_relaxed) & bit);
}

int os_join(void *addr, size_t size, void *next, size_t next_size, bool huge)
{
  uintptr_t a = (uintptr_t)addr, head_end = a + size, n = (uintptr_t)next;
  uint64_t bit, next_bit;
  _Atomic uint64_t *w = tail_word(head_end, false, &bit), *sw = split_word(n, false, &next_bit);
  if (size == 0 || size % HAK_PAGE_SIZE || n != tail_guard_end(head_end) || !w || !sw ||
      !(atomic_load_explicit(w, memory_order_relaxed) & bit) ||
      !(atomic_load_explicit(sw, memory_order_relaxed) & next_bit) ||
      os_refuse(addr, size, "mprotect refused: range not mapped by hakmem") ||
      os_refuse(next, next_size, "mprotect refused: range not mapped by hakmem"))
    return EINVAL;
  int saved = errno;
  /* The guard's units are ours again before it is readable (the leaves
   * exist: os_split cleared these bits). */
  uintptr_t first = unit_of(head_end - 1) + 1, next_unit = unit_of(n);
  if (next_unit > first)
    guard_units(first, next_unit - 1, GUARD_SET);
  if (mprotect((void *)head_end, n - head_end, PROT_READ | PROT_WRITE) != 0) {
    int err = errno;
    if (next_unit > first)
      guard_units(first, next_unit - 1, GUARD_CLEAR);
    errno = saved;
    return err;
  }
  /* If a part was advised for huge pages since the split, the whole is,
   * so that the three VMAs carry the same flags and merge (the guard kept
   * those of the mapping split).  It succeeded on that part, so it does
   * on the whole. */
  if (huge) {
    atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
    madvise(addr, n + next_size - a, MADV_HUGEPAGE);
  }
  atomic_fetch_and_explicit(w, ~bit, memory_order_relaxed);
  atomic_fetch_and_explicit(sw, ~next_bit, memory_order_relaxed);
  atomic_fetch_add_explicit(&os_counters.mapped_bytes, n - head_end, memory_order_relaxed);
  errno = saved;
  return 0;
}

/* Tells valgrind's memcheck that [addr, addr+size), the pages a growing
 * mremap(MREMAP_FIXED) added after the moved ones, is addressable and
 * defined (the kernel made it zero-filled, read-write memory).  memcheck
 * cannot tell by itself: its mremap wrapper takes the access of those
 * pages from the address-space segment that holds the source's place in
 * its table once the move has rewritten the table, not from the source
 * (do_mremap's MREMAP_FIXED case reads old_seg after
 * am_relocate_nooverlap_client; seen with valgrind 3.19, and the code is
 * the same in later releases).  When the source was a segment of its own
 * next to a PROT_NONE guard or free addresses, that place holds the guard
 * or the freed range, and every use of the grown part of the block was
 * reported as an invalid read or write.  Outside valgrind the request is
 * a few instructions that do nothing; without <valgrind/memcheck.h> at
 * build time, nothing. */
static void memcheck_grown_by_mremap(char *addr, size_t size)
{
#ifdef HAVE_VALGRIND_MEMCHECK_H
  (void)VALGRIND_MAKE_MEM_DEFINED(addr, size);
#else
  (void)addr;
  (void)size;
#endif
}

int os_move(void *old, size_t old_size, size_t seam, void *dest, size_t new_size)
{
  if (os_refuse(old, old_size, "mremap refused: range not mapped by hakmem") ||
      os_refuse(dest, new_size, "mremap refused: range not mapped by hakmem"))
    return EINVAL;
  /* At the mapping-count limit mremap refuses to move pages (within
   * three VMAs of it), after unmapping the destination: not tried. */
  if (os_limit_seen() && os_limit_no_move())
    return ENOMEM;
  int saved = errno, err = 0;
  char *o = old, *d = dest;
  /* Withdraw old's marks while its range is still mapped: once mremap
   * releases it the kernel may hand it to another thread's mapping, whose
   * marks must not be cleared after the fact. */
  guard_mark((uintptr_t)old, old_size, false);
  /* Neither range stays what a split left: dest's head becomes old's
   * VMA, and old's range is released. */
  split_clear((uintptr_t)old);
  split_clear((uintptr_t)dest);
  if (seam == 0 || seam >= old_size || seam >= new_size) {
    atomic_fetch_add_explicit(&os_counters.mremap_calls, 1, memory_order_relaxed);
    if (mremap(o, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, d) == MAP_FAILED)
      err = errno;
  } else {
    /* Two VMAs: one mremap each (mremap refuses a range spanning two).
     * The tail first, as it is the one that grows. */
    atomic_fetch_add_explicit(&os_counters.mremap_calls, 2, memory_order_relaxed);
    if (mremap(o + seam, old_size - seam, new_size - seam, MREMAP_MAYMOVE | MREMAP_FIXED, d + seam) == MAP_FAILED) {
      err = errno;
    } else if (mremap(o, seam, seam, MREMAP_MAYMOVE | MREMAP_FIXED, d) == MAP_FAILED) {
      err = errno;
      /* Put the tail back where it was: its range is still ours (its
       * units are marked, so no mapping of ours went there). */
      atomic_fetch_add_explicit(&os_counters.mremap_calls, 1, memory_order_relaxed);
      if (mremap(d + seam, new_size - seam, old_size - seam, MREMAP_MAYMOVE | MREMAP_FIXED, o + seam) == MAP_FAILED)
        hak_fatal_pointer("mremap: cannot put back a block's pages", old);
    }
  }
  if (err) {
    guard_mark((uintptr_t)old, old_size, true); /* the leaves exist: cannot fail */
    if (err == ENOMEM)
      os_limit_restore_dest(d, new_size);
    errno = saved;
    return err;
  }
  os_drop_tail_guard((uintptr_t)old + old_size);
  /* old's pad stays mapped, unused, if the kernel refuses its unmap (at
   * the mapping-count limit, when it merged with a neighbour). */
  if (os_limit_seen()) {
    uintptr_t old_end = (uintptr_t)old + old_size, old_pad_end = os_limit_unmapping(old_end);
    if (old_pad_end > old_end)
      os_munmap_raw((void *)old_end, old_pad_end - old_end);
  }
  if (new_size > old_size)
    memcheck_grown_by_mremap(d + old_size, new_size - old_size);
  /* dest's old pages were replaced; old's range is now unmapped. */
  atomic_fetch_sub_explicit(&os_counters.mapped_bytes, old_size, memory_order_relaxed);
  errno = saved;
  return 0;
}
