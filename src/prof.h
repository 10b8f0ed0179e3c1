/* Sampled heap profiler (prof = 1): which call stacks hold the heap.
 *
 * Off by default, and then it costs the fast paths nothing: prof = 1
 * sends every malloc past the inline fast path's test, the way check = 1
 * does (alloc_fast_bound = 0), onto a second inline path in alloc.h that
 * counts the request's bytes down (prof_countdown_crossed: one
 * subtraction from memory and its branch) before the same pop; only an
 * allocation that crosses zero leaves it.  A sampled block is served as a
 * large block (alloc.c), so that only its free reaches the slow free path
 * where the profiler forgets it; every other free keeps its fast path.
 * Its record sits just before it, in the mapping (PROF_TAGGED_ALIGN).
 *
 * Sampling: each thread counts down the bytes it allocates from a
 * distance drawn from an exponential distribution of mean prof_sample_kb
 * KiB; the allocation that crosses zero is sampled, so a block of s bytes
 * is sampled with probability 1 - exp(-s / rate), which is what
 * google-pprof undoes when it reads a "heap_v2/rate" profile.
 * prof_sample_kb = 0 records every allocation (exact leak reports).
 * A sampled block's call stack is walked by prof_unwind (prof_unwind.h:
 * the CFI rules of each return address, cached, signal frames included),
 * or by backtrace(3) where that walk gives up (DWARF expressions); only
 * then is libgcc's unwinder loaded, by backtrace(3)'s first call, inside
 * that sample, with no lock of hakmem's held and the thread's busy flag
 * keeping the loader's own allocations out of the profile.  The stack
 * is interned in a table of stacks; the block's record (its stack and
 * size) goes before the block itself when alloc.c made room for it, and
 * otherwise into a table of sampled blocks, which a free looks up only
 * when a counting filter of sampled addresses says it may be there.  With prof_sample_kb = 0
 * blocks stay where they are and every free takes the slow path (the
 * thread free key matches no slab, as with check = 1).
 *
 * Profiles are written, in gperftools' heap profile text format, to
 * PREFIX.PID.SEQ.heap every prof_interval_mb MiB of allocation and on
 * request (hakmemctl profile --pid, through hakmem_prof_control), and to
 * PREFIX.PID.exit.heap at exit, where prof_leak = 1 also prints the
 * blocks still live grouped by stack.  PREFIX is prof_prefix or, if that
 * is empty, /tmp/hakmem.PROGRAM.
 *
 * Concurrency: the countdown (in the thread cache), the recursion
 * guard and the index of the thread's last stack are thread-local;
 * the two tables are guarded by one mutex, taken to intern a stack, to
 * insert or remove an untagged block, and to write a profile (held while
 * the file is written; fork takes it first, see init.c).  A stack's
 * counters are atomics: a tagged sample whose walk repeats the thread's
 * last one, and the free of a tagged block, take no lock.  Any sampling thread may answer hakmemctl's request: it
 * tests again under the lock that the request is pending, and sets
 * answered before releasing it, so one profile answers one request.
 * The filter's counters are relaxed atomics.  A record before a block
 * is written by the allocating thread and read and cleared by the
 * freeing one, handed over as the block is.  Nothing here calls malloc
 * or stdio; the tables live in mappings from os.c. */
#ifndef HAKMEM_PROF_H
#define HAKMEM_PROF_H

#include "hakmem_internal.h"
#include "prof_unwind.h"

/* True while profiling: prof = 1 outside secure execution, from
 * initialisation on.  Read by the slow-path hooks in alloc.c. */
extern HAK_HIDDEN bool prof_active;

/* The block hakmemctl profile --pid reads and writes in a running
 * process (process_vm_readv/writev, found through the dynamic symbol
 * table).  Versioned by magic; fields only ever added at the end. */
#define PROF_CONTROL_MAGIC "hakmem-prof-1"
struct hakmem_prof_control {
  char magic[16];             /* PROF_CONTROL_MAGIC, NUL-padded */
  _Atomic uint64_t requests;  /* hakmemctl adds one to ask for a profile */
  _Atomic uint64_t answered;  /* the process sets it to requests once written */
  uint32_t active;            /* prof_active */
  int32_t last_error;         /* 0, or the errno of the last failed write */
  uint64_t sample_bytes;      /* the mean sampling distance in bytes, 0 = all */
  char last_path[256];        /* the profile written last */
};

/* At initialisation, after the configuration (no allocation). */
void prof_init(void);
/* Once initialisation is over (malloc works): maps the stack walk's rule
 * table and locates the library's own code, then enables sampling. */
void prof_start(void);

/* prof_sample_kb = 0: every allocation is recorded, in place (blocks are
 * not made large), and every free goes through the slow path. */
extern HAK_HIDDEN bool prof_every_block;

/* The thread's byte countdown itself lives in its thread cache
 * (tcache_self.prof_countdown), which the profiled fast path reaches
 * through the same thread pointer as its slabs; the front door passes its
 * address to the functions below. */
struct prof_thread {
  int64_t drawn;         /* the distance the countdown started from */
  uint64_t rng;          /* 0 until the thread's first sample */
  uint32_t last_stack;   /* the stack of the last walk from a frame, index + 1; 0: none */
  bool busy;             /* inside the profiler: its own allocations are not sampled */
};
extern HAK_HIDDEN __thread struct prof_thread prof_self __attribute__((tls_model("initial-exec")));

/* The countdown crossed zero: whether to sample (not inside the profiler,
 * and sampling has started); draws the next distance. */
bool prof_sample_slow(int64_t *countdown);

/* Counts size bytes (at most HAK_TINY_MAX) down; true when the countdown
 * reaches zero, for prof_sample_slow to decide.  One subtraction from
 * memory and its branch: from C the compiler loads, subtracts, stores and
 * tests, which is three instructions more on every profiled malloc. */
HAK_INLINE bool prof_countdown_crossed(int64_t *countdown, size_t size)
{
#if defined(__x86_64__)
  /* Not an output operand: GCC 12 misplaces the label of an asm goto with
   * a "+m" output (the branch then lands in the next block). */
  __asm__ goto("subq %1, %0\n\tjle %l[crossed]" : : "m"(*countdown), "r"(size) : "cc", "memory" : crossed);
  return false;
crossed:
  return true;
#else
  *countdown -= (int64_t)size;
  return *countdown <= 0;
#endif
}

/* Counts an allocation of size bytes down; true if it is to be sampled.
 * Two instructions and a branch when it is not. */
HAK_INLINE bool prof_sample_due(int64_t *countdown, size_t size)
{
  *countdown -= (int64_t)size;
  if (HAK_LIKELY(*countdown > 0))
    return false;
  return prof_sample_slow(countdown);
}

/* Records p (size bytes as requested; NULL: nothing), a sampled block,
 * with its call stack; writes the profiles that are due. */
void prof_record(void *p, size_t size);
/* Before p, a live block, is freed or moved: drops it if it was sampled. */
void prof_before_free(const void *p);

/* A sampled block that alloc_sampled makes a large one starts at least
 * PROF_TAGGED_ALIGN bytes into its mapping, so that its record fits
 * between the large-block header and the block: the PROF_TAG_SIZE bytes
 * before the block hold its stack and size, sealed with a per-process
 * secret and the block's address.  Its free then reads that record, one
 * line beside the header the free reads anyway, instead of the counting
 * filter and the block table (a cache miss each, in tables that the
 * program's own working set evicts between two samples). */
#define PROF_TAGGED_ALIGN 128
#define PROF_TAG_SIZE 32
/* As prof_record, for p (NULL: nothing), a block with PROF_TAG_SIZE
 * bytes before it that are hakmem's, not the program's; from (NULL: the
 * whole stack) is where the walk starts, PROF_CALLER_FRAME of the
 * function the program called. */
void prof_record_tagged(void *p, size_t size, const struct prof_frame *from);

/* In a function of hakmem that the program called (directly, or through
 * tail calls only), the caller's frame, for prof_record_tagged: the walk
 * then skips hakmem's own frames, some 40 instructions each, instead of
 * walking them only to drop them.  __builtin_frame_address(0) makes the
 * function keep a frame pointer, whose saved value and return address sit
 * at the frame address and above it, as on every x86-64 frame that has
 * one.  Used elsewhere, the walk starts at a frame of hakmem's, which is
 * dropped as usual. */
#define PROF_CALLER_FRAME()                                                               \
  ({                                                                                      \
    uintptr_t *prof_fa_ = __builtin_frame_address(0);                                     \
    (struct prof_frame){ .ip = prof_fa_[1], .sp = (uintptr_t)(prof_fa_ + 2), .bp = prof_fa_[0] }; \
  })
/* Before p, a live large block at least PROF_TAGGED_ALIGN bytes into its
 * mapping, is freed or moved: if it carries a valid record, drops it,
 * clears the record and returns true; false otherwise (then
 * prof_before_free decides). */
bool prof_forget_tagged(void *p);

/* At exit: the exit profile and, with prof_leak = 1, the leak report. */
void prof_exit(void);

/* Fork handlers (see init.c for the order). */
void prof_prefork(void);
void prof_postfork_parent(void);
void prof_postfork_child(void);

#endif
