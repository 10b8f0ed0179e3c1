/* Sampled heap profiler: sampling, the stack and block tables, profile
 * files and the leak report; see prof.h. */
#include "prof.h"
#include "diag.h"
#include "locks.h"
#include "config.h"
#include "prof_unwind.h"
#include "os.h"
#include "secret.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h> /* rename(2) only: no stream is used */
#include <string.h>
#include <unistd.h>

bool prof_active;

HAK_EXPORT struct hakmem_prof_control hakmem_prof_control = { .magic = PROF_CONTROL_MAGIC };

/* Frames kept per stack, and taken (the library's own come first and are
 * dropped). */
#define PROF_DEPTH 32
#define PROF_CAPTURE (PROF_DEPTH + 16)
/* Distinct stacks; samples beyond are counted in prof_dropped. */
#define PROF_STACKS 16384u
#define PROF_STACK_SLOTS (2 * PROF_STACKS)
/* Counting filter of sampled addresses: one byte per slot. */
#define PROF_FILTER_SLOTS (1u << 18)
#define PROF_BLOCKS_INITIAL (1u << 15)

/* An interned stack.  hash, depth and frames are written once, under
 * prof_lock, and read under it.  The counters are atomics, updated
 * without the lock: a tagged sample from the stack its thread sampled
 * last and the free of a tagged block take no lock.  The live figures
 * are the differences (stack_counts). */
struct prof_stack {
  uint64_t hash;
  uint32_t depth;
  uint32_t unused;
  _Atomic uint64_t total_count, total_bytes;  /* every sampled block */
  _Atomic uint64_t freed_count, freed_bytes;  /* those freed since (release) */
  uintptr_t frames[PROF_DEPTH];
};

struct stack_counts {
  uint64_t live_count, live_bytes, total_count, total_bytes;
};

/* A stack's figures.  The freed counts are read first, with acquire: a
 * block's free comes after its record, so the totals read next include
 * every block whose free was counted, and no live figure goes below 0.
 * A record or free under way may show in one of a pair and not yet in
 * the other. */
static struct stack_counts stack_counts(const struct prof_stack *s)
{
  uint64_t fc = atomic_load_explicit(&s->freed_count, memory_order_acquire);
  uint64_t fb = atomic_load_explicit(&s->freed_bytes, memory_order_acquire);
  uint64_t tc = atomic_load_explicit(&s->total_count, memory_order_relaxed);
  uint64_t tb = atomic_load_explicit(&s->total_bytes, memory_order_relaxed);
  return (struct stack_counts){ tc - fc, tb - fb, tc, tb };
}

/* A sampled live block: addr 0 marks an empty slot. */
struct prof_block {
  uintptr_t addr;
  uint64_t size;
  uint32_t stack;
  uint32_t unused;
};

__thread struct prof_thread prof_self __attribute__((tls_model("initial-exec")));
bool prof_every_block;

static pthread_mutex_t prof_lock = LOCK_INITIALIZER;
static _Atomic bool prof_ready;
static uint64_t sample_bytes;         /* mean distance; 0 = every allocation */
static uint64_t interval_bytes;       /* 0 = no periodic profiles */
static _Atomic uint64_t allocated_bytes;   /* counted at each sample, with interval_bytes */
static _Atomic uint64_t next_interval_at;
static char prefix[256];
/* The library's own code: leading frames inside it are dropped. */
static uintptr_t self_text_lo, self_text_hi;

/* Lock-protected. */
static struct prof_stack *stacks;
static uint32_t stack_count;
static uint32_t *stack_slots;          /* index + 1; 0 = empty */
static struct prof_block *blocks;
static uint32_t block_mask;            /* capacity - 1 */
static uint32_t block_count;
static uint64_t prof_dropped;          /* samples lost: stack table or memory full */
static unsigned profile_seq;
static _Atomic uint8_t *filter;

/* Counts a sampled block of size bytes of stack id in, or out (freed). */
static void stack_count_in(uint32_t id, uint64_t size)
{
  atomic_fetch_add_explicit(&stacks[id].total_count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&stacks[id].total_bytes, size, memory_order_relaxed);
}

static void stack_count_out(uint32_t id, uint64_t size)
{
  atomic_fetch_add_explicit(&stacks[id].freed_count, 1, memory_order_release);
  atomic_fetch_add_explicit(&stacks[id].freed_bytes, size, memory_order_release);
}

/* ---- randomness ---- */

/* Natural logarithm of x in (0, 1]: exponent and an odd series in
 * (m-1)/(m+1) for the mantissa (error below 1e-9); no libm inside malloc. */
static double prof_log(double x)
{
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int e = (int)((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & ((1ull << 52) - 1)) | (1023ull << 52);
  double m;
  memcpy(&m, &bits, sizeof m);
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e++;
  }
  double t = (m - 1) / (m + 1), t2 = t * t;
  double ln_m = 2 * t * (1 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7 + t2 / 9))));
  return e * 0.6931471805599453 + ln_m;
}

/* The next sampling distance: exponential with mean sample_bytes, so that
 * sampling is a Poisson process over the bytes allocated. */
static int64_t prof_draw(struct prof_thread *t)
{
  if (sample_bytes == 0)
    return 0;
  if (t->rng == 0)
    t->rng = secret_random() | 1;
  /* xorshift64 */
  t->rng ^= t->rng << 13;
  t->rng ^= t->rng >> 7;
  t->rng ^= t->rng << 17;
  double u = (double)((t->rng >> 11) + 1) * (1.0 / 9007199254740992.0);
  double d = -prof_log(u) * (double)sample_bytes;
  return d < 1 ? 1 : (int64_t)d;
}

/* ---- tables (prof_lock held) ---- */

static uint64_t hash_addr(uintptr_t a)
{
  return secret_mix(a >> 4);
}

static _Atomic uint8_t *filter_slot(const void *p)
{
  return &filter[hash_addr((uintptr_t)p) & (PROF_FILTER_SLOTS - 1)];
}

static void *map_table(size_t bytes)
{
  return os_map_aligned(hak_align_up(bytes, HAK_PAGE_SIZE), HAK_PAGE_SIZE);
}

/* The stack frames[0..depth) in the table; its index, or -1 if full. */
static long stack_intern(const uintptr_t *frames, uint32_t depth)
{
  uint64_t h = 0x9e3779b97f4a7c15ull ^ depth;
  for (uint32_t i = 0; i < depth; i++)
    h = secret_mix(h ^ frames[i]);
  for (uint32_t k = (uint32_t)h & (PROF_STACK_SLOTS - 1);; k = (k + 1) & (PROF_STACK_SLOTS - 1)) {
    uint32_t id = stack_slots[k];
    if (id == 0) {
      if (stack_count == PROF_STACKS)
        return -1;
      struct prof_stack *s = &stacks[stack_count];
      s->hash = h;
      s->depth = depth;
      memcpy(s->frames, frames, depth * sizeof frames[0]);
      stack_slots[k] = ++stack_count;
      return stack_count - 1;
    }
    struct prof_stack *s = &stacks[id - 1];
    if (s->hash == h && s->depth == depth && memcmp(s->frames, frames, depth * sizeof frames[0]) == 0)
      return id - 1;
  }
}

/* Doubles the block table; false if no memory. */
static bool blocks_grow(void)
{
  uint32_t cap = block_mask + 1, ncap = cap * 2;
  struct prof_block *nb = map_table((size_t)ncap * sizeof *nb);
  if (!nb)
    return false;
  for (uint32_t i = 0; i < cap; i++) {
    if (!blocks[i].addr)
      continue;
    uint32_t k = (uint32_t)hash_addr(blocks[i].addr) & (ncap - 1);
    while (nb[k].addr)
      k = (k + 1) & (ncap - 1);
    nb[k] = blocks[i];
  }
  os_unmap(blocks, hak_align_up((size_t)cap * sizeof *blocks, HAK_PAGE_SIZE));
  blocks = nb;
  block_mask = ncap - 1;
  return true;
}

static bool block_insert(uintptr_t addr, uint64_t size, uint32_t stack)
{
  if (block_count + 1 > (block_mask + 1) / 2 && !blocks_grow())
    return false;
  uint32_t k = (uint32_t)hash_addr(addr) & block_mask;
  while (blocks[k].addr && blocks[k].addr != addr)
    k = (k + 1) & block_mask;
  if (!blocks[k].addr)
    block_count++;
  blocks[k] = (struct prof_block){ .addr = addr, .size = size, .stack = stack };
  return true;
}

/* Removes addr's entry (linear probing, backward-shift deletion); false
 * if it has none. */
static bool block_remove(uintptr_t addr, struct prof_block *out)
{
  uint32_t i = (uint32_t)hash_addr(addr) & block_mask;
  while (blocks[i].addr != addr) {
    if (!blocks[i].addr)
      return false;
    i = (i + 1) & block_mask;
  }
  *out = blocks[i];
  for (uint32_t j = i;;) {
    j = (j + 1) & block_mask;
    if (!blocks[j].addr)
      break;
    uint32_t home = (uint32_t)hash_addr(blocks[j].addr) & block_mask;
    /* Stays if its home lies cyclically in (i, j]. */
    if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
      continue;
    blocks[i] = blocks[j];
    i = j;
  }
  blocks[i].addr = 0;
  block_count--;
  return true;
}

/* ---- sampling ---- */

/* The record before a sampled large block (PROF_TAG_SIZE bytes). */
struct prof_tag {
  uint64_t size;
  uint32_t stack;
  uint32_t unused;
  uint64_t check;   /* prof_tag_check of the block, its size and stack */
  uint64_t unused2;
};
_Static_assert(sizeof(struct prof_tag) == PROF_TAG_SIZE, "prof tag size");

static struct prof_tag *prof_tag_of(const void *p)
{
  return (struct prof_tag *)((uintptr_t)p - PROF_TAG_SIZE);
}

/* Keyed by the large-header secret and the block's address, so that a
 * record copied elsewhere, or forged without the secret, does not verify. */
static uint64_t prof_tag_check(const void *p, uint64_t size, uint32_t stack)
{
  uint64_t x = secret_mix((uint64_t)(uintptr_t)p ^ hak_secret_large ^ 0x70726f667461670aull);
  return secret_mix(x ^ size ^ ((uint64_t)stack << 40));
}

/* Records the sample p in the tables, or, tagged, in the record before
 * it; nothing if the stack has a frame of the library's own further up.
 * A walk from a frame that repeats the thread's previous one (a sample
 * from the same place, as a loop's are) reuses that walk's stack: no
 * frame is looked up, hashed or compared, and, tagged, no lock taken. */
HAK_INLINE void prof_sample(void *p, size_t size, bool tagged, const struct prof_frame *from)
{
  struct prof_thread *t = &prof_self;
  void *raw[PROF_CAPTURE];
  bool repeated = false;
  int n = from ? prof_unwind_from(from, raw, PROF_CAPTURE, &repeated) : prof_unwind(raw, PROF_CAPTURE);
  long id;
  bool locked = false;
  if (repeated && t->last_stack && tagged) {
    id = (long)t->last_stack - 1;
  } else {
    if (from)
      t->last_stack = 0;
    if (n < 0)
      n = backtrace(raw, PROF_CAPTURE);
    int first = 0;
    while (first < n && (uintptr_t)raw[first] >= self_text_lo && (uintptr_t)raw[first] < self_text_hi)
      first++;
    uintptr_t frames[PROF_DEPTH];
    uint32_t depth = 0;
    for (int i = first; i < n && depth < PROF_DEPTH; i++) {
      /* Allocated on hakmem's own behalf (its purge thread's creation,
       * say): not the program's heap. */
      if ((uintptr_t)raw[i] >= self_text_lo && (uintptr_t)raw[i] < self_text_hi)
        return;
      frames[depth++] = (uintptr_t)raw[i];
    }
    lock_take(&prof_lock);
    locked = true;
    id = stack_intern(frames, depth);
    /* Only a walk from a frame has a memo to repeat (prof_unwind.h). */
    if (from && id >= 0)
      t->last_stack = (uint32_t)id + 1;
    if (id < 0 || (!tagged && !block_insert((uintptr_t)p, size, (uint32_t)id))) {
      prof_dropped++;
      lock_give(&prof_lock);
      return;
    }
  }
  stack_count_in((uint32_t)id, size);
  if (tagged) {
    *prof_tag_of(p) = (struct prof_tag){ .size = size, .stack = (uint32_t)id,
                                         .check = prof_tag_check(p, size, (uint32_t)id) };
  } else {
    _Atomic uint8_t *f = filter_slot(p);
    uint8_t c = atomic_load_explicit(f, memory_order_relaxed);
    if (c != UINT8_MAX)
      atomic_store_explicit(f, (uint8_t)(c + 1), memory_order_relaxed);
  }
  if (locked)
    lock_give(&prof_lock);
}

static void prof_dump(const char *what, bool answering);

bool prof_sample_slow(int64_t *countdown)
{
  struct prof_thread *t = &prof_self;
  if (t->busy)
    return false;
  if (HAK_UNLIKELY(t->rng == 0 && sample_bytes)) {
    /* The thread's first allocation: its countdown starts now (from 0 it
     * would sample every thread's first allocation). */
    t->drawn = prof_draw(t);
    *countdown += t->drawn;
    if (*countdown > 0)
      return false;
  }
  uint64_t counted = (uint64_t)(t->drawn - *countdown);
  t->drawn = *countdown = prof_draw(t);
  if (!atomic_load_explicit(&prof_ready, memory_order_acquire))
    return false;
  /* Only the periodic profiles read the total: without them, no locked
   * add on every sample. */
  if (interval_bytes)
    atomic_fetch_add_explicit(&allocated_bytes, counted, memory_order_relaxed);
  return true;
}

/* Records p as prof_sample does, then writes the profiles that are due. */
static void prof_record_as(void *p, size_t size, bool tagged, const struct prof_frame *from)
{
  struct prof_thread *t = &prof_self;
  t->busy = true;
  if (p)
    prof_sample(p, size, tagged, from);
  uint64_t total = atomic_load_explicit(&allocated_bytes, memory_order_relaxed);
  uint64_t at = atomic_load_explicit(&next_interval_at, memory_order_relaxed);
  if (interval_bytes && total >= at &&
      atomic_compare_exchange_strong(&next_interval_at, &at, total + interval_bytes))
    prof_dump(NULL, false);
  if (atomic_load_explicit(&hakmem_prof_control.requests, memory_order_relaxed) >
      atomic_load_explicit(&hakmem_prof_control.answered, memory_order_relaxed))
    prof_dump(NULL, true);
  t->busy = false;
}

void prof_record(void *p, size_t size)
{
  prof_record_as(p, size, false, NULL);
}

void prof_record_tagged(void *p, size_t size, const struct prof_frame *from)
{
  if (p)
    *prof_tag_of(p) = (struct prof_tag){ 0 };   /* until it is recorded */
  prof_record_as(p, size, true, from);
}

bool prof_forget_tagged(void *p)
{
  struct prof_tag *g = prof_tag_of(p), tag = *g;
  if (tag.check != prof_tag_check(p, tag.size, tag.stack))
    return false;
  *g = (struct prof_tag){ 0 };
  /* A record that verifies names a stack that was interned; the bound
   * keeps a forged one inside the table. */
  if (tag.stack < PROF_STACKS)
    stack_count_out(tag.stack, tag.size);
  return true;
}

void prof_before_free(const void *p)
{
  if (HAK_LIKELY(atomic_load_explicit(filter_slot(p), memory_order_relaxed) == 0))
    return;
  struct prof_block b;
  lock_take(&prof_lock);
  if (block_remove((uintptr_t)p, &b)) {
    stack_count_out(b.stack, b.size);
    _Atomic uint8_t *f = filter_slot(p);
    uint8_t c = atomic_load_explicit(f, memory_order_relaxed);
    if (c != UINT8_MAX)
      atomic_store_explicit(f, (uint8_t)(c - 1), memory_order_relaxed);
  }
  lock_give(&prof_lock);
}

/* ---- start-up ---- */

HAK_STARTUP_TEXT void prof_init(void)
{
  prof_active = hak_config.prof && !config_secure;
  sample_bytes = (uint64_t)hak_config.prof_sample_kb << 10;
  prof_every_block = prof_active && sample_bytes == 0;
  interval_bytes = (uint64_t)hak_config.prof_interval_mb << 20;
  atomic_store_explicit(&next_interval_at, interval_bytes, memory_order_relaxed);
  hakmem_prof_control.sample_bytes = sample_bytes;
  if (hak_config.prof_prefix[0]) {
    hak_concat(prefix, sizeof prefix, hak_config.prof_prefix, "");
  } else {
    const char *name = config_program_name();
    hak_concat(prefix, sizeof prefix, "/tmp/hakmem.", *name ? name : "program");
  }
  if (!prof_active)
    return;
  /* Before the first block is handed out: every free tests the filter. */
  stacks = map_table((size_t)PROF_STACKS * sizeof *stacks);
  stack_slots = map_table((size_t)PROF_STACK_SLOTS * sizeof *stack_slots);
  filter = map_table(PROF_FILTER_SLOTS);
  blocks = map_table((size_t)PROF_BLOCKS_INITIAL * sizeof *blocks);
  block_mask = PROF_BLOCKS_INITIAL - 1;
  if (!stacks || !stack_slots || !filter || !blocks) {
    hak_warn("prof: no memory for the profile tables; profiling off");
    prof_active = false;
  }
  hakmem_prof_control.active = prof_active;
}

/* dl_iterate_phdr callback: the executable segment holding prof_start. */
static int find_self_text(struct dl_phdr_info *info, size_t size, void *arg)
{
  (void)size;
  uintptr_t me = (uintptr_t)arg;
  for (unsigned i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
      continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
    if (me >= lo && me < hi) {
      self_text_lo = lo;
      self_text_hi = hi;
      return 1;
    }
  }
  return 0;
}

HAK_STARTUP_TEXT void prof_start(void)
{
  if (!prof_active)
    return;
  prof_unwind_start();
  dl_iterate_phdr(find_self_text, (void *)(uintptr_t)prof_start);
  atomic_store_explicit(&prof_ready, true, memory_order_release);
}

/* ---- profile files ---- */

/* A buffered writer on a file descriptor (under prof_lock, so static). */
HAK_BSS_APART(prof_out) static struct {
  int fd;
  int err;
  size_t n;
  char buf[8192];
} out;

static void out_flush(void)
{
  for (size_t off = 0; off < out.n && !out.err;) {
    ssize_t w = write(out.fd, out.buf + off, out.n - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      out.err = w < 0 ? errno : EIO;
    else
      off += (size_t)w;
  }
  out.n = 0;
}

static void out_bytes(const char *s, size_t n)
{
  while (n) {
    if (out.n == sizeof out.buf)
      out_flush();
    size_t k = sizeof out.buf - out.n < n ? sizeof out.buf - out.n : n;
    memcpy(out.buf + out.n, s, k);
    out.n += k;
    s += k;
    n -= k;
  }
}

static void out_str(const char *s)
{
  out_bytes(s, strlen(s));
}

/* v in decimal into buf (at least 21 bytes), right-aligned to width. */
static const char *fmt_u64(char *buf, uint64_t v, unsigned width)
{
  char tmp[24];
  unsigned n = 0;
  do
    tmp[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  unsigned k = 0;
  while (n + k < width && k < 20)
    buf[k++] = ' ';
  while (n)
    buf[k++] = tmp[--n];
  buf[k] = 0;
  return buf;
}

static void out_u64(uint64_t v, unsigned width)
{
  char b[48];
  out_str(fmt_u64(b, v, width));
}

static void out_hex(uintptr_t v)
{
  char b[19] = "0x";
  for (int i = 0; i < 16; i++)
    b[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
  b[18] = 0;
  out_str(b);
}

/* "N: B [M: C] @" as gperftools writes its buckets. */
static void out_counts(uint64_t n, uint64_t b, uint64_t m, uint64_t c)
{
  out_u64(n, 6);
  out_str(": ");
  out_u64(b, 8);
  out_str(" [");
  out_u64(m, 6);
  out_str(": ");
  out_u64(c, 8);
  out_str("] @");
}

/* Copies /proc/self/maps after the profile, for google-pprof to find the
 * objects the addresses belong to. */
static void out_maps(void)
{
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  char buf[4096];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    out_bytes(buf, (size_t)r);
  }
  close(fd);
}

static void out_profile(void)
{
  uint64_t n = 0, b = 0, m = 0, c = 0;
  for (uint32_t i = 0; i < stack_count; i++) {
    struct stack_counts k = stack_counts(&stacks[i]);
    n += k.live_count;
    b += k.live_bytes;
    m += k.total_count;
    c += k.total_bytes;
  }
  out_str("heap profile: ");
  out_counts(n, b, m, c);
  /* heap_v2/RATE: google-pprof scales each stack's figures by
   * 1 / (1 - exp(-average size / RATE)); heapprofile: taken as exact. */
  if (sample_bytes) {
    out_str(" heap_v2/");
    out_u64(sample_bytes, 0);
  } else {
    out_str(" heapprofile");
  }
  out_str("\n");
  for (uint32_t i = 0; i < stack_count; i++) {
    const struct prof_stack *s = &stacks[i];
    if (s->depth == 0)
      continue;
    struct stack_counts cnt = stack_counts(s);
    out_counts(cnt.live_count, cnt.live_bytes, cnt.total_count, cnt.total_bytes);
    for (uint32_t k = 0; k < s->depth; k++) {
      out_str(" ");
      out_hex(s->frames[k]);
    }
    out_str("\n");
  }
  out_str("\nMAPPED_LIBRARIES:\n");
  out_maps();
  out_flush();
}

/* Builds PREFIX.PID.WHAT.heap (WHAT NULL: the next sequence number). */
static void profile_path(char *path, size_t size, const char *what)
{
  char pid[24], seq[24];
  fmt_u64(pid, (uint64_t)getpid(), 0);
  if (!what) {
    fmt_u64(seq, 10000 + ++profile_seq, 0);
    what = seq + 1;   /* four digits, as gperftools numbers its files */
  }
  char a[320], b[320];
  hak_concat(a, sizeof a, prefix, ".");
  hak_concat(b, sizeof b, a, pid);
  hak_concat(a, sizeof a, b, ".");
  hak_concat(b, sizeof b, a, what);
  hak_concat(path, size, b, ".heap");
}

/* Writes the profile under prof_lock, to a fresh temporary file renamed
 * into place: a reader never sees half a profile, and a file or link
 * planted at the temporary name is refused, not followed.  what: "exit",
 * or NULL for the next numbered profile.  answering: the profile answers
 * hakmemctl's pending request, unless another thread answered it. */
static void prof_dump(const char *what, bool answering)
{
  char path[256], tmp[272];
  /* open, write and close are cancellation points, and malloc is not: a
   * thread cancelled in a dump would die holding prof_lock, and every
   * other thread would then hang at its next sample. */
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  lock_take(&prof_lock);
  /* Every thread that samples while a request is pending comes here: the
   * first answers it, the others find it answered.  Tested outside the
   * lock only, each would write a profile of its own, and one could
   * rewrite last_path while hakmemctl reads it. */
  uint64_t asked = atomic_load_explicit(&hakmem_prof_control.requests, memory_order_acquire);
  if (answering && asked <= atomic_load_explicit(&hakmem_prof_control.answered, memory_order_relaxed)) {
    lock_give(&prof_lock);
    pthread_setcancelstate(cancel_state, NULL);
    return;
  }
  profile_path(path, sizeof path, what);
  hak_concat(tmp, sizeof tmp, path, ".tmp");
  int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
  int fd = open(tmp, flags, 0600);
  if (fd < 0 && errno == EEXIST && unlink(tmp) == 0)
    fd = open(tmp, flags, 0600);
  int err = 0;
  if (fd < 0) {
    err = errno;
  } else {
    out.fd = fd;
    out.err = 0;
    out.n = 0;
    out_profile();
    err = out.err;
    if (close(fd) != 0 && !err)
      err = errno;
    if (!err && rename(tmp, path) != 0)
      err = errno;
    if (err)
      unlink(tmp);
  }
  hakmem_prof_control.last_error = err;
  if (!err)
    hak_concat(hakmem_prof_control.last_path, sizeof hakmem_prof_control.last_path, path, "");
  if (answering)
    atomic_store_explicit(&hakmem_prof_control.answered, asked, memory_order_release);
  lock_give(&prof_lock);
  if (err) {
    char msg[320];
    hak_warn(hak_concat(msg, sizeof msg, "prof: cannot write the profile ", path));
  }
  pthread_setcancelstate(cancel_state, NULL);
}

/* ---- exit ---- */

/* "sym+0xoff (object)" or "object+0xoff" for a return address. */
static void leak_frame(char *buf, size_t size, uintptr_t a)
{
  Dl_info di;
  char off[24];
  const char *obj = "?";
  uintptr_t base = 0;
  buf[0] = 0;
  if (dladdr((void *)a, &di) && di.dli_fname) {
    obj = strrchr(di.dli_fname, '/') ? strrchr(di.dli_fname, '/') + 1 : di.dli_fname;
    base = (uintptr_t)di.dli_fbase;
    if (di.dli_sname && di.dli_saddr) {
      base = (uintptr_t)di.dli_saddr;
      obj = di.dli_sname;
    }
  }
  char hex[19] = "0x";
  uintptr_t d = a - base;
  int k = 2;
  for (int sh = 60; sh >= 0; sh -= 4)
    if ((d >> sh) || k > 2 || sh == 0)
      hex[k++] = "0123456789abcdef"[(d >> sh) & 15];
  hex[k] = 0;
  hak_concat(off, sizeof off, "+", hex);
  hak_concat(buf, size, obj, off);
}

/* prof_leak = 1: one line per stack with blocks still live, most bytes
 * first (at most 20), and a total line; the sampled figures, exact with
 * prof_sample_kb = 0. */
static void prof_leak_report(const char *path)
{
  uint64_t n = 0, b = 0, stacks_live = 0;
  for (uint32_t i = 0; i < stack_count; i++) {
    struct stack_counts k = stack_counts(&stacks[i]);
    if (k.live_count) {
      stacks_live++;
      n += k.live_count;
      b += k.live_bytes;
    }
  }
  char line[1024], num[48], tmp[1024];
  if (n == 0) {
    hak_warn_at_exit(sample_bytes ? "leak report: no sampled block is still live at exit"
                                  : "leak report: no block is still live at exit");
    return;
  }
  hak_concat(line, sizeof line, "leak report: ", fmt_u64(num, n, 0));
  hak_concat(tmp, sizeof tmp, line, sample_bytes ? " sampled block(s), " : " block(s), ");
  hak_concat(line, sizeof line, tmp, fmt_u64(num, b, 0));
  hak_concat(tmp, sizeof tmp, line, " bytes never freed, from ");
  hak_concat(line, sizeof line, tmp, fmt_u64(num, stacks_live, 0));
  hak_concat(tmp, sizeof tmp, line, " stack(s); google-pprof --text PROGRAM ");
  hak_concat(line, sizeof line, tmp, path);
  hak_concat(tmp, sizeof tmp, line, " names them");
  hak_warn_at_exit(tmp);
  uint64_t shown_above = UINT64_MAX;
  uint32_t shown_index = UINT32_MAX;
  for (unsigned r = 0; r < 20; r++) {
    /* The next stack by live bytes, below the previous one in (bytes, index) order. */
    long best = -1;
    struct stack_counts best_k = { 0 };
    for (uint32_t i = 0; i < stack_count; i++) {
      struct stack_counts k = stack_counts(&stacks[i]);
      if (!k.live_count)
        continue;
      bool below = k.live_bytes < shown_above || (k.live_bytes == shown_above && i > shown_index);
      if (below && (best < 0 || k.live_bytes > best_k.live_bytes)) {
        best = i;
        best_k = k;
      }
    }
    if (best < 0)
      break;
    const struct prof_stack *s = &stacks[best];
    shown_above = best_k.live_bytes;
    shown_index = (uint32_t)best;
    hak_concat(line, sizeof line, "leak: ", fmt_u64(num, best_k.live_count, 0));
    hak_concat(tmp, sizeof tmp, line, best_k.live_count == 1 ? " block, " : " blocks, ");
    hak_concat(line, sizeof line, tmp, fmt_u64(num, best_k.live_bytes, 0));
    hak_concat(tmp, sizeof tmp, line, " bytes, allocated at");
    for (uint32_t k = 0; k < s->depth && k < 6; k++) {
      char frame[160];
      leak_frame(frame, sizeof frame, s->frames[k]);
      hak_concat(line, sizeof line, tmp, k ? " < " : " ");
      hak_concat(tmp, sizeof tmp, line, frame);
    }
    hak_warn_at_exit(tmp);
  }
}

HAK_STARTUP_TEXT void prof_exit(void)
{
  if (!prof_active || !atomic_load_explicit(&prof_ready, memory_order_acquire))
    return;
  prof_self.busy = true;
  prof_dump("exit", false);
  if (hak_config.prof_leak) {
    lock_take(&prof_lock);
    if (hakmem_prof_control.last_error == 0)
      prof_leak_report(hakmem_prof_control.last_path);
    else
      prof_leak_report("(no profile written)");
    lock_give(&prof_lock);
  }
  prof_self.busy = false;
}

/* ---- fork ---- */

void prof_prefork(void)
{
  if (prof_active)
    lock_hold(&prof_lock);
}

void prof_postfork_parent(void)
{
  if (prof_active)
    pthread_mutex_unlock(&prof_lock);
}

void prof_postfork_child(void)
{
  if (prof_active) {
    lock_reset(&prof_lock);
    prof_unwind_postfork_child();
  }
}
