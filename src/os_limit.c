/* The OS layer at the kernel's mapping-count limit (see os_limit.h).
 *
 * The kernel grants an mmap while the process has at most
 * vm.max_map_count entries in its map, so the last one it grants takes
 * the count one past the limit, where it refuses every mmap, even one it
 * would merge with a neighbour; munmap, mprotect and madvise are refused
 * when they would split an entry, and mremap will not move pages within
 * three of the limit.  A decommit, and the unmap of a whole entry, still
 * work.
 *
 * A mapping is placed here in one of two ways: carved from kept units
 * (ranges whose unmap the kernel refused, their pages given back), at no
 * call at all; or mapped right after the end of the last one placed here
 * (os_limit_packed), one mmap whose entry the kernel merges with that
 * one's, while a page of the reserve is unmapped so that the count is not
 * past the limit.  Such a mapping is mapped to the end of its last unit
 * (the pad bit), so that the next one can follow it, and has no guard
 * (the bare bit). */
#include "os_limit.h"
#include "os.h"
#include "diag.h"
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

_Atomic unsigned os_limit_state;

/* Placement at the limit is one thread at a time, and once the limit was
 * met so is every mapping os.c makes: an entry given back is for the
 * placement that gave it, not for another thread's mmap.  The lock holds
 * the process id of its holder, so that a child forked while a thread of
 * its parent held it takes it over; a thread that holds it may enter
 * again (a leaf made while it maps). */
static _Atomic long limit_lock;
static _Thread_local bool limit_mine;

static bool limit_try(long me)
{
  long cur = 0;
  if (atomic_compare_exchange_weak(&limit_lock, &cur, me))
    return true;
  return cur != 0 && cur != me && atomic_compare_exchange_strong(&limit_lock, &cur, me);
}

static bool limit_enter(void)
{
  if (limit_mine)
    return false;
  long me = (long)getpid();
  while (!limit_try(me))
    sched_yield();
  limit_mine = true;
  return true;
}

static void limit_leave(bool entered)
{
  if (!entered)
    return;
  limit_mine = false;
  atomic_store_explicit(&limit_lock, 0, memory_order_release);
}

static uintptr_t unit_of(uintptr_t a) { return a >> HAK_UNIT_SHIFT; }

/* Bits [lo, hi) of one word (0 <= lo < hi <= 64). */
static uint64_t bit_span(unsigned lo, unsigned hi)
{
  uint64_t upto_hi = hi == 64 ? ~(uint64_t)0 : ((uint64_t)1 << hi) - 1;
  return upto_hi & ~(((uint64_t)1 << lo) - 1);
}

/* The words of map which in leaf number leaf; NULL if it has no leaf. */
static _Atomic uint64_t *os_units_leaf(size_t leaf, enum os_units which)
{
  char *l = (char *)atomic_load_explicit(&guard_l1[leaf % OS_UNITS_LEAVES], memory_order_acquire);
  return l ? (_Atomic uint64_t *)(l + (size_t)which * OS_UNITS_LEAF_WORDS * sizeof(uint64_t)) : NULL;
}

/* The word and bit of the unit holding a in map which; NULL if it has no
 * leaf (every unit of a mapping, kept or not, has one). */
static _Atomic uint64_t *os_units_word(uintptr_t a, enum os_units which, uint64_t *bit)
{
  size_t i = (a >> HAK_UNIT_SHIFT) & ((1u << OS_UNITS_LEAF_BITS) - 1);
  *bit = (uint64_t)1 << (i % 64);
  _Atomic uint64_t *words = os_units_leaf((a >> 32) & 0xffff, which);
  return words ? &words[i / 64] : NULL;
}

static bool unit_has(uintptr_t a, enum os_units which)
{
  uint64_t bit;
  _Atomic uint64_t *w = os_units_word(a, which, &bit);
  return w && (atomic_load_explicit(w, memory_order_relaxed) & bit);
}

static void unit_set(uintptr_t a, enum os_units which, bool on)
{
  uint64_t bit;
  _Atomic uint64_t *w = os_units_word(a, which, &bit);
  if (!w)
    return;
  if (on)
    atomic_fetch_or_explicit(w, bit, memory_order_relaxed);
  else if (atomic_load_explicit(w, memory_order_relaxed) & bit)
    atomic_fetch_and_explicit(w, ~bit, memory_order_relaxed);
}

/* ---- pad and bare ---- */

uintptr_t os_limit_pad_end(uintptr_t end, bool clear)
{
  if (end % HAK_UNIT_SIZE == 0 || !unit_has(end, OS_UNITS_PAD))
    return end;
  if (clear)
    unit_set(end, OS_UNITS_PAD, false);
  return hak_align_up(end, HAK_UNIT_SIZE);
}

bool os_limit_unit_taken(uintptr_t a)
{
  return unit_has(a, OS_UNITS_OWNED) || unit_has(a, OS_UNITS_KEPT);
}

uintptr_t os_limit_unmapping(uintptr_t end)
{
  os_limit_bare(end, false);
  return os_limit_pad_end(end, true);
}

/* Records that the last unit of the mapping ending at end is mapped to
 * its end. */
static void pad_set(uintptr_t end)
{
  if (end % HAK_UNIT_SIZE)
    unit_set(end, OS_UNITS_PAD, true);
}

void os_limit_bare(uintptr_t end, bool bare)
{
  unit_set(end - 1, OS_UNITS_BARE, bare);
}

HAK_COMMON_TEXT bool os_has_guard(const void *addr, size_t size)
{
  return !os_limit_seen() || !unit_has((uintptr_t)addr + size - 1, OS_UNITS_BARE);
}

/* ---- kept units ----
 * The units of ranges whose unmap the kernel refused: mapped read-write,
 * decommitted, not hakmem's in the ownership map, their kept bits set.
 * A run of them is claimed by clearing its bits, word by word, each word
 * only if all its bits in the run were set, so that two threads never
 * take the same unit and no lock is held across a fork. */
static _Atomic size_t kept_leaf; /* where the last units were kept */
static _Atomic size_t kept_units_now;

/* Sets (claim false) or claims (true) the kept bits of units [first,
 * last], all in one leaf.  A claim returns false, the bits as they were,
 * if one was not set. */
static bool kept_units(uintptr_t first, uintptr_t last, bool claim)
{
  _Atomic uint64_t *words = os_units_leaf(first >> OS_UNITS_LEAF_BITS, OS_UNITS_KEPT);
  if (!words || (first >> OS_UNITS_LEAF_BITS) != (last >> OS_UNITS_LEAF_BITS))
    return false;
  for (uintptr_t u = first; u <= last;) {
    size_t i = u & ((1u << OS_UNITS_LEAF_BITS) - 1);
    unsigned lo = (unsigned)(i % 64);
    unsigned hi = last + 1 - u < 64 - lo ? lo + (unsigned)(last + 1 - u) : 64;
    uint64_t m = bit_span(lo, hi);
    _Atomic uint64_t *w = &words[i / 64];
    if (!claim) {
      atomic_fetch_or_explicit(w, m, memory_order_relaxed);
    } else {
      uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
      do {
        if ((old & m) != m) {
          if (u > first)
            kept_units(first, u - 1, false); /* give back what was taken */
          return false;
        }
      } while (!atomic_compare_exchange_weak(w, &old, old & ~m));
    }
    u += hi - lo;
  }
  return true;
}

/* Keeps the whole units of [start, end) for reuse; the part of a unit at
 * either end stays mapped and unused (its pages given back). */
static void keep_units(uintptr_t start, uintptr_t end)
{
  uintptr_t first = unit_of(hak_align_up(start, HAK_UNIT_SIZE)), stop = unit_of(end);
  while (first < stop) {
    uintptr_t leaf_end = (first | ((1u << OS_UNITS_LEAF_BITS) - 1)) + 1;
    uintptr_t last = (stop < leaf_end ? stop : leaf_end) - 1;
    if (kept_units(first, last, false)) {
      atomic_fetch_add_explicit(&kept_units_now, last + 1 - first, memory_order_relaxed);
      atomic_fetch_add_explicit(&os_counters.kept, last + 1 - first, memory_order_relaxed);
      atomic_store_explicit(&kept_leaf, first >> OS_UNITS_LEAF_BITS, memory_order_relaxed);
    }
    first = last + 1;
  }
}

void os_limit_keep(uintptr_t start, uintptr_t end)
{
  int saved = errno;
  atomic_fetch_or_explicit(&os_limit_state, OS_LIMIT_SEEN, memory_order_relaxed);
  atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
  madvise((void *)start, end - start, MADV_DONTNEED);
  keep_units(start, end);
  errno = saved;
}

void os_limit_guard_lost(uintptr_t end, uintptr_t guard_end)
{
  uintptr_t unit_end = hak_align_up(end, HAK_UNIT_SIZE);
  atomic_fetch_or_explicit(&os_limit_state, OS_LIMIT_SEEN, memory_order_relaxed);
  pad_set(end);
  os_limit_bare(end, true);
  if (guard_end > unit_end)
    os_limit_keep(unit_end, guard_end);
}

/* A mapping of size bytes at phase past a multiple of align made of kept
 * units (its pages read as zero), the rest of its last unit padded.  NULL
 * if no run of them fits. */
static void *take_kept(size_t size, size_t align, size_t phase)
{
  if (!atomic_load_explicit(&kept_units_now, memory_order_relaxed) ||
      size > ((size_t)1 << 32) - HAK_UNIT_SIZE)
    return NULL;
  uintptr_t units = hak_align_up(size, HAK_UNIT_SIZE) >> HAK_UNIT_SHIFT;
  size_t from = atomic_load_explicit(&kept_leaf, memory_order_relaxed);
  for (size_t n = 0; n < OS_UNITS_LEAVES; n++) {
    size_t li = (from + n) % OS_UNITS_LEAVES;
    _Atomic uint64_t *words = os_units_leaf(li, OS_UNITS_KEPT);
    for (size_t wi = 0; words && wi < OS_UNITS_LEAF_WORDS; wi++) {
      for (uint64_t w = atomic_load_explicit(&words[wi], memory_order_relaxed); w; w &= w - 1) {
        uintptr_t u = ((uintptr_t)li << OS_UNITS_LEAF_BITS) | (wi * 64 + (unsigned)__builtin_ctzll(w));
        uintptr_t a = u << HAK_UNIT_SHIFT;
        if (os_align_phase(a, align, phase) != a || !kept_units(u, u + units - 1, true))
          continue;
        atomic_fetch_sub_explicit(&kept_units_now, units, memory_order_relaxed);
        atomic_fetch_sub_explicit(&os_counters.kept, units, memory_order_relaxed);
        atomic_store_explicit(&kept_leaf, li, memory_order_relaxed);
        pad_set(a + size);
        os_limit_bare(a + size, true);
        return (void *)a;
      }
    }
  }
  return NULL;
}

/* ---- the reserve ---- */

/* A page that cannot merge with anything: PROT_NONE, not accounted, at a
 * random address of the hint region.  Returns its address, or 0 with
 * errno set (ENOMEM: the mapping count or the address space limit). */
/* A random page of the hint region (where os.c places mappings). */
static uintptr_t random_address(void)
{
  secret_init();
  return OS_HINT_LO + (uintptr_t)(secret_random() % ((OS_HINT_END - OS_HINT_LO) / HAK_PAGE_SIZE)) * HAK_PAGE_SIZE;
}

static uintptr_t map_lone_page(void)
{
  for (int tries = 0; tries < 4; tries++) {
    uintptr_t at = random_address();
    atomic_fetch_add_explicit(&os_counters.mmap_calls, 1, memory_order_relaxed);
    void *p = mmap((void *)at, HAK_PAGE_SIZE, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != MAP_FAILED)
      return (uintptr_t)p;
    if (errno != EEXIST)
      return 0;
  }
  return 0;
}

/* Lone pages, each an entry of the map to give back at the limit, one at
 * a time, so that a merged mapping can be placed; each is taken again
 * after.  More than one, as another thread's or library's mapping may
 * take the entry given back before the merged one is placed.  Mapped
 * only once the process is near the limit (OS_LIMIT_NEAR). */
#define RESERVE_PAGES 4
static _Atomic uintptr_t reserve[RESERVE_PAGES];
static _Atomic unsigned reserve_held;

/* Maps one page of the reserve into an empty slot; false if the kernel
 * refuses it (true if the reserve is whole). */
static bool reserve_take_one(void)
{
  for (unsigned i = 0; i < RESERVE_PAGES; i++) {
    if (atomic_load_explicit(&reserve[i], memory_order_relaxed))
      continue;
    uintptr_t p = map_lone_page(), none = 0;
    if (!p)
      return false;
    if (atomic_compare_exchange_strong(&reserve[i], &none, p)) {
      atomic_fetch_add_explicit(&reserve_held, 1, memory_order_relaxed);
      return true;
    }
    os_munmap_raw((void *)p, HAK_PAGE_SIZE);
  }
  return true;
}

/* Maps the reserve's missing pages while the kernel grants them. */
static void reserve_take(void)
{
  int saved = errno;
  while (atomic_load_explicit(&reserve_held, memory_order_relaxed) < RESERVE_PAGES && reserve_take_one())
    ;
  errno = saved;
}

/* Unmaps one page of the reserve; false if none is left. */
static bool reserve_give(void)
{
  for (unsigned i = 0; i < RESERVE_PAGES; i++) {
    uintptr_t r = atomic_exchange(&reserve[i], 0);
    if (r) {
      atomic_fetch_sub_explicit(&reserve_held, 1, memory_order_relaxed);
      os_munmap_raw((void *)r, HAK_PAGE_SIZE);
      return true;
    }
  }
  return false;
}

/* Whether the process is near the limit is looked at when hakmem's live
 * mappings first pass 16, 32, 64 and so on (a high-water mark: a process
 * that keeps a few never looks again): near once the process's map is
 * three quarters full, read from /proc/self/maps (a line an entry).  Or
 * once the limit is met.  A process that never gets near makes no call
 * for it beyond those reads. */
_Atomic size_t os_limit_mappings;
_Atomic size_t os_limit_watch = 16;

static void near_set(void)
{
  atomic_fetch_or_explicit(&os_limit_state, OS_LIMIT_NEAR, memory_order_relaxed);
  atomic_store_explicit(&os_limit_watch, 0, memory_order_relaxed);
}

/* The lines of a /proc file, or -1 if it cannot be read (or another
 * thread is reading one).  The buffer is static: a thread's stack may be
 * small. */
HAK_BSS_APART(proc_buf) static char proc_buf[16384];
static _Atomic bool proc_busy;

static long proc_lines_locked(const char *path, char *first, size_t first_size)
{
  char *buf = proc_buf;
  long lines = 0;
  size_t copied = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t r;
  while ((r = read(fd, buf, sizeof proc_buf)) > 0) {
    for (ssize_t i = 0; i < r; i++) {
      lines += buf[i] == '\n';
      if (copied + 1 < first_size)
        first[copied++] = buf[i];
    }
  }
  close(fd);
  if (first_size)
    first[copied] = 0;
  return r < 0 ? -1 : lines;
}

/* Takes proc_buf for a read of a /proc file; false if another thread
 * has it.  Never waits: a thread that fork, or a cancellation at read (a
 * cancellation point, hence disabled until proc_give), stopped in the
 * middle would leave every later caller spinning. */
static bool proc_take(int *cancel)
{
  if (atomic_exchange_explicit(&proc_busy, true, memory_order_acquire))
    return false;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, cancel);
  return true;
}

static void proc_give(int cancel)
{
  pthread_setcancelstate(cancel, NULL);
  atomic_store_explicit(&proc_busy, false, memory_order_release);
}

static long proc_lines(const char *path, char *first, size_t first_size)
{
  int cancel;
  if (!proc_take(&cancel))
    return -1;
  long lines = proc_lines_locked(path, first, first_size);
  proc_give(cancel);
  return lines;
}

/* How many entries the process's map has left before it is three
 * quarters full (0: it is). */
static long map_count_left(void)
{
  char text[24];
  int saved = errno;
  long max = proc_lines("/proc/sys/vm/max_map_count", text, sizeof text) < 0 ? 0 : strtol(text, NULL, 10);
  long entries = proc_lines("/proc/self/maps", NULL, 0);
  errno = saved;
  if (max <= 0 || entries < 0)
    return 1 << 20;
  return entries >= max - max / 4 ? 0 : max - max / 4 - entries;
}

void os_limit_granted_slow(size_t n)
{
  size_t watch = atomic_load_explicit(&os_limit_watch, memory_order_relaxed);
  if (watch) {
    /* The next look: when the mappings have doubled, or before hakmem's
     * own could fill the map to three quarters (each takes an entry). */
    if (n < watch || !atomic_compare_exchange_strong(&os_limit_watch, &watch, 2 * n))
      return;
    long left = map_count_left();
    if (left > 0) {
      size_t next = n + (size_t)(left / 2 > 0 ? left / 2 : 1);
      if (next < 2 * n)
        atomic_compare_exchange_strong(&os_limit_watch, &(size_t){ 2 * n }, next);
      return;
    }
    near_set();
  }
  if (atomic_load_explicit(&reserve_held, memory_order_relaxed) < RESERVE_PAGES)
    reserve_take();
}

void os_limit_released_slow(void)
{
  /* The entry freed goes to the reserve first, unless a placement is
   * under way (it may have given one back to use). */
  if (atomic_load_explicit(&reserve_held, memory_order_relaxed) < RESERVE_PAGES && !limit_mine &&
      limit_try((long)getpid())) {
    limit_mine = true;
    reserve_take();
    limit_leave(true);
  }
}

/* ---- placement at the limit ---- */

/* Makes the ownership map's leaf for address a at the limit: placed right
 * before or after the run of leaves an existing one is in (all are
 * read-write, never advised), so that the kernel merges the entries.
 * False if none has room. */
static bool leaf_merged(uintptr_t a)
{
  if (os_units_leaf((a >> 32) & 0xffff, OS_UNITS_OWNED))
    return true;
  /* The leaves of the 64 regions of 4 GiB either side first (mappings
   * are placed upwards from the hint cursor, so their leaves are close),
   * then every other. */
  size_t mid = (a >> 32) & 0xffff;
  for (size_t j = 1; j <= 2 * 64 + OS_UNITS_LEAVES; j++) {
    size_t i = j <= 64 ? mid - j : j <= 2 * 64 ? mid + (j - 64) : j - 2 * 64 - 1;
    if (i >= OS_UNITS_LEAVES)
      continue;
    char *near = (char *)os_units_leaf(i, OS_UNITS_OWNED);
    for (int step = 1; near && step <= 2 * 64; step++) {
      /* Down, then up, past the leaves already there. */
      ptrdiff_t k = step <= 64 ? -step : step - 64;
      char *at = near + k * (ptrdiff_t)OS_UNITS_LEAF_MAP_SIZE;
      atomic_fetch_add_explicit(&os_counters.mmap_calls, 1, memory_order_relaxed);
      void *fresh = mmap(at, OS_UNITS_LEAF_MAP_SIZE, PROT_READ | PROT_WRITE, OS_MAP_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
      if (fresh == MAP_FAILED) {
        if (errno != EEXIST)
          step = step <= 64 ? 64 : 2 * 64; /* free but not next to one: this way ends */
        continue;
      }
      struct guard_leaf *none = NULL;
      if (fresh == at &&
          atomic_compare_exchange_strong(&guard_l1[(a >> 32) & 0xffff], &none, (struct guard_leaf *)fresh))
        return true;
      /* Another thread made it, or a kernel before 4.17 placed it
       * elsewhere: if the unmap is refused the pages stay, unused. */
      os_munmap_raw(fresh, OS_UNITS_LEAF_MAP_SIZE);
      return os_units_leaf((a >> 32) & 0xffff, OS_UNITS_OWNED) != NULL;
    }
  }
  return false;
}

/* Where a mapping placed at the limit may start: the ends of the last
 * ones placed there.  Each is mapped to the end of its last unit, so
 * that the next one, placed right after it, makes one entry with it: all
 * are fresh anonymous mappings with the same flags (none is given huge
 * page advice, see os_advise_huge).  An entry may be stale, and is
 * checked before use. */
#define PACK_ENDS 16
static _Atomic uintptr_t pack_ends[PACK_ENDS];
static _Atomic unsigned pack_next;

static void pack_note(uintptr_t end)
{
  unsigned i = atomic_fetch_add_explicit(&pack_next, 1, memory_order_relaxed) % PACK_ENDS;
  atomic_store_explicit(&pack_ends[i], end, memory_order_relaxed);
}

/* Whether the unit before the unit boundary at is mapped by hakmem: a
 * mapping's or kept. */
static bool mapped_before(uintptr_t at)
{
  return unit_has(at - 1, OS_UNITS_OWNED) || unit_has(at - 1, OS_UNITS_KEPT);
}

/* Where a run placed at from ends: the mapping of size bytes at phase
 * past a multiple of align, and the rest of its last unit; 0 if it does
 * not fit the hint region. */
static uintptr_t packed_end(uintptr_t from, size_t size, size_t align, size_t phase)
{
  uintptr_t a = os_align_phase(from, align, phase);
  if (a < from || a + size < a || a + size > OS_HINT_END)
    return 0;
  return hak_align_up(a + size, HAK_UNIT_SIZE);
}

/* The first unit boundary at or above from, and a page or more past a
 * mapping of hakmem's that has a guard, where a run for size, align and
 * phase fits between the process's mappings, read from
 * /proc/self/maps (its lines are in address order); 0 if it cannot be
 * read (or another thread is reading a /proc file) or no place fits. */
static uintptr_t free_place_after(uintptr_t from, size_t size, size_t align, size_t phase)
{
  int cancel;
  if (!proc_take(&cancel))
    return 0;
  int saved = errno;
  from = hak_align_up(from, HAK_UNIT_SIZE);
  uintptr_t end = packed_end(from, size, align, phase), range[2] = { 0, 0 };
  unsigned field = 0; /* 0, 1: a line's start and end address; 2: the rest of it */
  bool found = false;
  ssize_t r = -1;
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  while (fd >= 0 && end && !found && (r = read(fd, proc_buf, sizeof proc_buf)) > 0) {
    for (ssize_t i = 0; i < r && end && !found; i++) {
      char c = proc_buf[i];
      if (c == '\n') {
        field = 0;
        range[0] = range[1] = 0;
      } else if (field == 0 && c == '-') {
        field = 1;
      } else if (field == 1 && c == ' ') {
        field = 2;
        if (range[0] >= end) {
          found = true; /* the place before this mapping is free */
        } else if (range[1] > from) {
          /* A mapping of hakmem's with a guard keeps it: placed by hint,
           * the guard is the unmapped space after it.  After a bare one
           * (or kept units) the run merges and takes no entry. */
          bool guarded = unit_has(range[1] - 1, OS_UNITS_OWNED) && !unit_has(range[1] - 1, OS_UNITS_BARE);
          from = hak_align_up(range[1] + (guarded ? HAK_PAGE_SIZE : 0), HAK_UNIT_SIZE);
          end = from ? packed_end(from, size, align, phase) : 0;
        }
      } else if (field < 2) {
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
        range[field] = range[field] << 4 | (d & 15);
      }
    }
  }
  if (fd >= 0)
    close(fd);
  errno = saved;
  proc_give(cancel);
  /* Past the last line (r == 0) everything is free. */
  return end && (found || r == 0) ? from : 0;
}

/* A mapping of size bytes at phase past a multiple of align placed right
 * after the last one placed here, so that the kernel merges the two
 * entries: one mmap maps the units skipped to reach the alignment (kept
 * for later), the new mapping and the rest of its last unit.  If no
 * recent end can take it, a new run starts at the hint cursor, which
 * takes the entry the reserve gave back; if a mapping is there (a
 * foreign one, or a run placed after a recent end above the cursor), at
 * the first free place after it, and the cursor moves past the run.
 * Then at a random unit of the region (two tries: its ownership-map leaf
 * may find no place to merge).  NULL if that fails too. */
static void *map_packed(size_t size, size_t align, size_t phase)
{
  unsigned newest = atomic_load_explicit(&pack_next, memory_order_relaxed);
  uintptr_t hint = 0, cursor = 0; /* cursor: the hint, once a mapping was found there */
  for (unsigned k = 0; k < PACK_ENDS + 4; k++) {
    _Atomic uintptr_t *slot = NULL;
    uintptr_t from;
    if (k < PACK_ENDS) {
      slot = &pack_ends[(newest - 1 - k) % PACK_ENDS];
      from = atomic_load_explicit(slot, memory_order_relaxed);
      if (from == 0 || !mapped_before(from))
        continue;
    } else if (k == PACK_ENDS) {
      hint = os_hint_peek();
      if (!(from = hak_align_up(hint, HAK_UNIT_SIZE)))
        continue;
    } else if (k == PACK_ENDS + 1) {
      if (!cursor || !(from = free_place_after(cursor, size, align, phase)))
        continue;
    } else {
      from = hak_align_up(random_address(), HAK_UNIT_SIZE);
    }
    uintptr_t a = os_align_phase(from, align, phase), to = packed_end(from, size, align, phase);
    if (!to)
      continue;
    /* The ownership map's leaves first (a new one costs no entry either). */
    if (!leaf_merged(from) || !leaf_merged(to - 1))
      continue;
    atomic_fetch_add_explicit(&os_counters.mmap_calls, 1, memory_order_relaxed);
    void *p = mmap((void *)from, to - from, PROT_READ | PROT_WRITE, OS_MAP_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p == MAP_FAILED) {
      if (k == PACK_ENDS && errno == EEXIST)
        cursor = hint;
      continue;
    }
    if ((uintptr_t)p != from) { /* a kernel before 4.17 took it as a hint */
      os_munmap_raw(p, to - from);
      continue;
    }
    /* Merged, it took no entry, and the reserve's page can be taken back;
     * otherwise (the mapping before it was moved or advised since) it
     * took the entry the reserve gave back: it goes. */
    if (slot && !reserve_take_one()) {
      os_munmap_raw(p, to - from);
      continue;
    }
    if (slot)
      atomic_compare_exchange_strong(slot, &from, 0);
    keep_units(from, a); /* the units skipped for the alignment */
    pad_set(a + size);
    os_limit_bare(a + size, true);
    pack_note(to);
    /* The cursor may stand at from, or before the mappings skipped. */
    os_hint_skip((k == PACK_ENDS + 1 ? cursor : from) - 1, to);
    return (void *)a;
  }
  return NULL;
}

bool os_limit_make_leaf(uintptr_t a)
{
  int saved = errno;
  bool made = false;
  near_set();
  bool entered = limit_enter();
  if (reserve_give()) {
    made = leaf_merged(a);
    reserve_take();
  }
  limit_leave(entered);
  errno = saved;
  return made;
}

/* Whether a mapping was refused for the mapping count rather than for
 * memory: four lone pages are not all granted.  The usual placement's
 * over-map needs three entries (the mapping, then two splits for its
 * guard, each refused from the limit on), so it fails for the count when
 * the process is within three of the limit; the kernel grants an mmap up
 * to one past it, so four lone pages are all granted only below that. */
/* Under an address-space limit (RLIMIT_AS) the pages can be refused too:
 * the count is then read from /proc/self/maps (slow with 65 000 entries:
 * not without such a limit). */
static bool map_count_reached(void)
{
  uintptr_t pages[4];
  int n = 0, err = 0;
  while (n < 4 && (pages[n] = map_lone_page()) != 0)
    n++;
  if (n < 4)
    err = errno;
  while (n > 0)
    os_munmap_raw((void *)pages[--n], HAK_PAGE_SIZE);
  if (err != ENOMEM)
    return false;
  struct rlimit as;
  if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur == RLIM_INFINITY)
    return true;
  char text[24];
  long max = proc_lines("/proc/sys/vm/max_map_count", text, sizeof text) < 0 ? 0 : strtol(text, NULL, 10);
  long entries = proc_lines("/proc/self/maps", NULL, 0);
  return max > 0 && entries >= max - 4;
}

/* Once the limit is met, this many mappings are placed here before the
 * usual placement is tried again (each of its refused calls costs, and a
 * mapping it places at the limit takes the entry another thread's reserve
 * page gave back). */
#define LIMIT_STAY 64
static _Atomic unsigned limit_stay;

void *os_limit_map_room(size_t size, size_t align, size_t phase, size_t room)
{
  void *p = NULL;
  bool entered = limit_enter();
  /* An entry freed since goes to the reserve before the mapping takes it. */
  if (atomic_load_explicit(&reserve_held, memory_order_relaxed) < RESERVE_PAGES &&
      (atomic_load_explicit(&os_limit_state, memory_order_relaxed) & OS_LIMIT_NEAR))
    reserve_take();
  unsigned stay = atomic_load_explicit(&limit_stay, memory_order_relaxed);
  if (stay) {
    atomic_compare_exchange_strong(&limit_stay, &stay, stay - 1);
    p = os_limit_map(size, align, phase, true);
  }
  if (!p && !(p = os_map_raw(size, align, phase, room)))
    p = os_limit_map(size, align, phase, false);
  limit_leave(entered);
  return p;
}

bool os_limit_no_move(void)
{
  return atomic_load_explicit(&limit_stay, memory_order_relaxed) != 0;
}

void *os_limit_map(size_t size, size_t align, size_t phase, bool known)
{
  int saved = errno;
  void *p = NULL;
  /* A request no mapping can hold failed for its size. */
  if (size > OS_HINT_END - OS_HINT_LO || align > OS_HINT_END - OS_HINT_LO)
    return NULL;
  bool entered = limit_enter();
  if (known || map_count_reached()) {
    atomic_fetch_or_explicit(&os_limit_state, OS_LIMIT_SEEN, memory_order_relaxed);
    near_set();
    p = take_kept(size, align, phase);
    /* The reserve is taken only once the limit is near: the first time
     * here it is empty, and a placement may still work if the caller's
     * reclaim, or another thread's unmap, made room. */
    if (!p && atomic_load_explicit(&reserve_held, memory_order_relaxed) < RESERVE_PAGES) {
      reserve_take();
      if (!atomic_load_explicit(&reserve_held, memory_order_relaxed))
        p = map_packed(size, align, phase);
    }
    /* A reserve page at a time, in case another program's mapping takes
     * the entry it gives back. */
    while (!p && reserve_give())
      p = map_packed(size, align, phase);
    reserve_take();
    if (!known)
      atomic_store_explicit(&limit_stay, LIMIT_STAY, memory_order_relaxed);
  }
  limit_leave(entered);
  if (p)
    atomic_fetch_add_explicit(&os_counters.unguarded, 1, memory_order_relaxed);
  errno = saved;
  return p;
}

void os_limit_restore_dest(char *d, size_t size)
{
  int saved = errno;
  atomic_fetch_add_explicit(&os_counters.madvise_calls, 1, memory_order_relaxed);
  if (madvise(d, size, MADV_NORMAL) != 0) {
    /* Some of it is gone: map what is free (what is not stays). */
    for (size_t off = 0; off < size; off += HAK_PAGE_SIZE) {
      atomic_fetch_add_explicit(&os_counters.mmap_calls, 1, memory_order_relaxed);
      void *p = mmap(d + off, HAK_PAGE_SIZE, PROT_READ | PROT_WRITE, OS_MAP_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == MAP_FAILED && errno != EEXIST)
        hak_fatal_pointer("mremap: the kernel unmapped the destination of a refused move", d + off);
    }
  }
  errno = saved;
}
