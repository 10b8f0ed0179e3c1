/* check = 1: canaries, trailers and free-block fill; see checkmode.h. */
#include "checkmode.h"
#include "config.h"
#include "diag.h"
#include "size_class.h"

#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

/* What check = 1 costs is mostly not the bytes but the branches on their
 * number: sizes are random in most programs, and every test of a run's
 * length ("under 16 bytes?", "under 64?", a loop's exit) is mispredicted
 * often, at about 15 cycles each.  So the loops below are built to have
 * one data-dependent branch, their exit:
 *
 * - A comparison of [a, b) reads whole aligned vectors, from the one
 *   holding a to the one holding b's last byte, and masks the bytes
 *   outside [a, b) in the first and the last (masks loaded from
 *   mask_edges at an offset, no branch).  An aligned load never crosses a
 *   page, and each holds at least one byte of the block, so it never
 *   faults; the bytes it reads outside the block (a neighbour's) are
 *   masked off, never used.
 * - A fill of [p, p+n), n a multiple of 16, stores whole vectors only
 *   inside the run (a neighbour may be written by another thread at the
 *   same time): the first and last unaligned, overlapping those between,
 *   which are aligned; runs shorter than a vector take 16-byte stores.
 *   The aligned ones go in pairs, two vectors per turn of the loop (the
 *   loop's add, compare and branch paid once per two), and the one a pair
 *   may leave, the last aligned vector, is stored again after the loop
 *   whatever the count, with no branch on it (when there are none, the
 *   store repeats the first vector).
 *
 * - The comparison of a freed block at malloc reads it with the very
 *   vectors the fill stored (filled_run_name): a load that straddles a
 *   store still in flight waits for it.
 *
 * The loops exist once per vector width, compiled for the target that
 * has it: CHECK_BYTE_LOOPS(name, bytes, attributes) defines
 * filled_range_name, filled_run_name and fill_name, and uses
 * is_zero_name, the width's test of a whole vector (one ptest with AVX2
 * and AVX-512, where folding the lanes takes eight instructions).  A
 * difference is fatal, so the comparisons OR them all and test once at
 * the end. */

/* 64 bytes of 0, 64 of 0xff, 64 of 0: the W bytes at 64 - k have 0xff
 * from lane k on, those at 128 - j up to lane j (0 <= k, j <= W <= 64). */
static const unsigned char mask_edges[192] __attribute__((aligned(64))) = {
  [64 ... 127] = 0xff,
};

/* The vector a pair of the loops below may leave, the last aligned one
 * before end, or, when there is none (end - w falls before p), the first
 * one again, at p: inside the run either way, and no branch. */
static inline const unsigned char *odd_vector(const unsigned char *p, const unsigned char *end, uintptr_t w)
{
  uintptr_t last = (uintptr_t)end - w;
  /* A select GCC would make a branch, mispredicted as often as not. */
  uintptr_t before = -(uintptr_t)(last < (uintptr_t)p);
  __asm__("" : "+r"(before));
  return (const unsigned char *)(last ^ ((last ^ (uintptr_t)p) & before));
}

/* A width's vector, the same at an aligned address, and at any. */
#define CHECK_VECTOR_TYPES(name, bytes)                                                            \
  typedef uint64_t vec_##name __attribute__((vector_size(bytes)));                                 \
  typedef uint64_t vec_at_##name __attribute__((vector_size(bytes), may_alias));                  \
  typedef uint64_t vec_any_##name __attribute__((vector_size(bytes), aligned(1), may_alias));

#define CHECK_BYTE_LOOPS(name, bytes, attributes)                                                  \
  /* Lanes k and up of the mask, and lanes below j. */                                             \
  attributes static inline vec_##name from_lane_##name(uintptr_t k)                                \
  {                                                                                                \
    return *(const vec_any_##name *)(mask_edges + 64 - k);                                         \
  }                                                                                                \
  attributes static inline vec_##name below_lane_##name(uintptr_t j)                               \
  {                                                                                                \
    return *(const vec_any_##name *)(mask_edges + 128 - j);                                        \
  }                                                                                                \
                                                                                                   \
  attributes static inline __attribute__((always_inline)) bool filled_range_##name(               \
      const unsigned char *a, const unsigned char *b)                                            \
  {                                                                                                \
    const uintptr_t w = (bytes);                                                                   \
    const vec_##name fill = (vec_##name){ 0 } + CHECK_FILL_WORD;                                   \
    uintptr_t first = (uintptr_t)a & -w, last = ((uintptr_t)b - 1) & -w;                          \
    /* The edges' lanes: first's from a on and below b (capped at w); */                           \
    /* last's from a (when a lies in it) and below b.  With a == b both */                         \
    /* masks are empty. */                                                                         \
    uintptr_t first_end = (uintptr_t)b - first < w ? (uintptr_t)b - first : w;                    \
    uintptr_t last_from = (uintptr_t)a > last ? (uintptr_t)a - last : 0;                           \
    vec_##name m_first = from_lane_##name((uintptr_t)a - first) & below_lane_##name(first_end);    \
    vec_##name m_last = from_lane_##name(last_from) & below_lane_##name((uintptr_t)b - last);      \
    /* The vector after first, when it lies before last (else last again, */                       \
    /* masked off): no branch for a range of up to three vectors. */                               \
    uintptr_t mid = first + w < last ? first + w : last;                                           \
    vec_##name m_mid = from_lane_##name(first + w < last ? 0 : w);                                 \
    vec_##name diff = ((*(const vec_at_##name *)first ^ fill) & m_first) |                            \
                      ((*(const vec_at_##name *)last ^ fill) & m_last) |                              \
                      ((*(const vec_at_##name *)mid ^ fill) & m_mid);                                 \
    for (uintptr_t c = first + 2 * w; c < last; c += w)                                            \
      diff |= *(const vec_at_##name *)c ^ fill;                                                       \
    return is_zero_##name(diff);                                                                   \
  }                                                                                                \
  /* The same, out of line, for callers compiled for another target. */                           \
  attributes static bool filled_range_call_##name(const unsigned char *a, const unsigned char *b) \
  {                                                                                                \
    return filled_range_##name(a, b);                                                              \
  }                                                                                                \
                                                                                                   \
  /* Whether [p, p+n), n a multiple of 16, holds the fill, read with the */                       \
  /* very vectors fill_name stores (see check_hand_out). */                                        \
  attributes static bool filled_run_##name(const unsigned char *p, size_t n)                       \
  {                                                                                                \
    const vec_##name fill = (vec_##name){ 0 } + CHECK_FILL_WORD;                                   \
    if (n < (bytes)) {                                                                             \
      const check_vec fill16 = { CHECK_FILL_WORD, CHECK_FILL_WORD };                               \
      check_vec diff16 = { 0, 0 };                                                                 \
      for (size_t i = 0; i < n; i += 16) {                                                         \
        check_vec v;                                                                               \
        memcpy(&v, p + i, sizeof v);                                                               \
        diff16 |= v ^ fill16;                                                                      \
      }                                                                                            \
      return (diff16[0] | diff16[1]) == 0;                                                         \
    }                                                                                              \
    vec_##name diff = (*(const vec_any_##name *)p ^ fill) |                                        \
                      (*(const vec_any_##name *)(p + n - (bytes)) ^ fill);                         \
    const vec_at_##name *q = (const vec_at_##name *)(((uintptr_t)p + (bytes)) & -(uintptr_t)(bytes)); \
    const vec_at_##name *end = (const vec_at_##name *)(((uintptr_t)p + n) & -(uintptr_t)(bytes));  \
    for (const vec_at_##name *stop = end - 1; q < stop; q += 2)                                    \
      diff |= (q[0] ^ fill) | (q[1] ^ fill);                                                       \
    diff |= *(const vec_any_##name *)odd_vector(p, (const unsigned char *)end, (bytes)) ^ fill;     \
    return is_zero_##name(diff);                                                                   \
  }                                                                                                \
                                                                                                   \
  attributes static void fill_##name(unsigned char *p, size_t n)                                   \
  {                                                                                                \
    const vec_##name fill = (vec_##name){ 0 } + CHECK_FILL_WORD;                                   \
    if (n < (bytes)) {                                                                             \
      const check_vec fill16 = { CHECK_FILL_WORD, CHECK_FILL_WORD };                               \
      for (size_t i = 0; i < n; i += 16) {                                                         \
        /* Hides i from GCC, which would make the loop a memset call. */                           \
        __asm__("" : "+r"(i));                                                                     \
        memcpy(p + i, &fill16, sizeof fill16);                                                     \
      }                                                                                            \
      return;                                                                                      \
    }                                                                                              \
    *(vec_any_##name *)p = fill;                                                                   \
    *(vec_any_##name *)(p + n - (bytes)) = fill;                                                   \
    vec_at_##name *q = (vec_at_##name *)(((uintptr_t)p + (bytes)) & -(uintptr_t)(bytes));          \
    vec_at_##name *end = (vec_at_##name *)(((uintptr_t)p + n) & -(uintptr_t)(bytes));              \
    for (vec_at_##name *stop = end - 1; q < stop; q += 2) {                                        \
      __asm__("" : "+r"(q));                                                                       \
      q[0] = fill;                                                                                 \
      q[1] = fill;                                                                                 \
    }                                                                                              \
    *(vec_any_##name *)odd_vector(p, (const unsigned char *)end, (bytes)) = fill;                   \
  }

CHECK_VECTOR_TYPES(sse2, 16)
static inline bool is_zero_sse2(vec_sse2 d)
{
  return (d[0] | d[1]) == 0;
}
CHECK_BYTE_LOOPS(sse2, 16, )
#if defined(__x86_64__)
#define CHECK_HAVE_WIDE 1
CHECK_VECTOR_TYPES(avx2, 32)
__attribute__((target("avx2"))) static inline bool is_zero_avx2(vec_avx2 d)
{
  return _mm256_testz_si256((__m256i)d, (__m256i)d);
}
CHECK_BYTE_LOOPS(avx2, 32, __attribute__((target("avx2"))))
CHECK_VECTOR_TYPES(avx512, 64)
__attribute__((target("avx512f"))) static inline bool is_zero_avx512(vec_avx512 d)
{
  return _mm512_test_epi64_mask((__m512i)d, (__m512i)d) == 0;
}
CHECK_BYTE_LOOPS(avx512, 64, __attribute__((target("avx512f"))))
#else
#define CHECK_HAVE_WIDE 0
#define filled_range_avx2 filled_range_sse2
#define filled_range_call_avx2 filled_range_call_sse2
#define filled_run_avx2 filled_run_sse2
#define fill_avx2 fill_sse2
#define filled_range_avx512 filled_range_sse2
#define filled_range_call_avx512 filled_range_call_sse2
#define filled_run_avx512 filled_run_sse2
#define fill_avx512 fill_sse2
#endif

#if CHECK_HAVE_WIDE
/* Whether the CPU has the vectors of width and the kernel saves their
 * registers (xgetbv), read with cpuid directly: libgcc's
 * __builtin_cpu_supports would link its cpuid reader, whose constructor
 * runs in every process and whose helper lies at the end of the text,
 * among the rarely run code (doc/internals.md, "The library's own
 * memory").  Allocates nothing. */
static bool cpu_has_vectors(enum check_vectors width)
{
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX))
    return false;
  unsigned xcr0, xcr0_high;
  __asm__("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
  /* The SSE and AVX register state, then AVX-512's opmask and upper
   * halves: the kernel saves those the bits name. */
  if ((xcr0 & 0x6) != 0x6 || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
    return false;
  if (width == CHECK_VECTORS_AVX2)
    return b & bit_AVX2;
  return (b & bit_AVX512F) && (xcr0 & 0xe0) == 0xe0;
}
#endif

/* The width in use: written by check_configure at initialisation (or by a
 * test), read by every check.  A branch on it, always the same way, costs
 * less than an indirect call and leaves no writable code pointer. */
static enum check_vectors check_width = CHECK_VECTORS_SSE2;

bool check_use_vectors(enum check_vectors width)
{
  bool ok = width == CHECK_VECTORS_SSE2;
#if CHECK_HAVE_WIDE
  if (width != CHECK_VECTORS_SSE2)
    ok = cpu_has_vectors(width);
#endif
  if (ok)
    check_width = width;
  return ok;
}

/* Blocks of up to SMALL_BLOCK bytes (the classes of 16 to 80 bytes) take
 * 16-byte pieces in line instead of a call: one comparison per piece
 * costs less there than the wide loops' set-up.  The branch on the class
 * goes the same way for every block of a class.  (80 bytes is the class
 * of a 64-byte request, which needs room for its trailer.) */
#define SMALL_BLOCK 80

/* How many bytes from a block's start free fills and malloc compares,
 * the link and tag words included, in a block larger than
 * check_fill_whole; a block of up to check_fill_whole bytes is filled
 * whole.  SIZE_MAX both for whole blocks.  Blocks of up to SMALL_BLOCK
 * bytes are always filled whole: their four pieces in line cost the same
 * whatever the bound.  Written by check_configure at initialisation,
 * before any checked block exists (or by a test, between blocks), then
 * only read. */
static size_t check_fill_limit = SIZE_MAX, check_fill_whole = SIZE_MAX;

void check_bound_fill(size_t bytes)
{
  check_fill_limit = bytes == 0 ? SIZE_MAX : bytes < CHECK_FILL_MIN ? CHECK_FILL_MIN : (bytes + 15) & ~(size_t)15;
  check_fill_whole = check_fill_limit > SMALL_BLOCK ? check_fill_limit : SMALL_BLOCK;
}

void check_configure(void)
{
  if (!check_use_vectors(CHECK_VECTORS_AVX512))
    check_use_vectors(CHECK_VECTORS_AVX2);
  check_bound_fill((size_t)hak_config.check_fill_bytes);
}

/* The end of the filled run of a block of bs bytes: a multiple of 16,
 * bs or at least CHECK_FILL_MIN.  A select on values fixed per class. */
static inline size_t fill_end(size_t bs)
{
  return bs <= check_fill_whole ? bs : check_fill_limit;
}

/* Whether [a, b) holds CHECK_FILL; a <= b. */
static inline bool filled_range(const unsigned char *a, const unsigned char *b)
{
  if (check_width == CHECK_VECTORS_AVX512)
    return filled_range_call_avx512(a, b);
  if (check_width == CHECK_VECTORS_AVX2)
    return filled_range_call_avx2(a, b);
  return filled_range_call_sse2(a, b);
}

/* Whether [p, p+n), n a multiple of 16, holds CHECK_FILL, read exactly
 * as check_fill stores it. */
static inline bool filled_run(const unsigned char *p, size_t n)
{
  if (check_width == CHECK_VECTORS_AVX512)
    return filled_run_avx512(p, n);
  if (check_width == CHECK_VECTORS_AVX2)
    return filled_run_avx2(p, n);
  return filled_run_sse2(p, n);
}

bool check_is_filled(const unsigned char *p, size_t n)
{
  return filled_range(p, p + n);
}

bool check_run_is_filled(const unsigned char *p, size_t n)
{
  return filled_run(p, n);
}

void check_fill(unsigned char *p, size_t n)
{
  if (check_width == CHECK_VECTORS_AVX512)
    fill_avx512(p, n);
  else if (check_width == CHECK_VECTORS_AVX2)
    fill_avx2(p, n);
  else
    fill_sse2(p, n);
}

/* The first two words of a free block are its link and tag. */
#define FREE_WORDS (2 * sizeof(uintptr_t))

/* Blocks of up to SHORT_CANARY_BLOCK bytes (the classes 16 bytes apart)
 * have a canary of less than 16 bytes: a request of size bytes takes the
 * first class with room for size + CHECK_TRAILER, so bs - 20 < size
 * (unless it asked for an alignment).  Such a canary lies in the two
 * 16-byte pieces that end the block, which are compared
 * in line, each masked to the canary's lanes (mask_edges, loaded at an
 * offset: no branch on the size). */
#define SHORT_CANARY_BLOCK 128

static uint32_t *trailer(void *p, size_t bs)
{
  return (uint32_t *)((char *)p + bs - CHECK_TRAILER);
}

static uint32_t trailer_code(size_t size)
{
  return (uint32_t)size ^ (uint32_t)hak_secret_free_tag;
}

static inline check_vec load16(const unsigned char *p)
{
  check_vec v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* The offset of the piece at k, capped at the last piece, n - 16: the
 * pieces at 0, 16, 32 and 48 cover any run of up to 64 bytes, repeating
 * the last one where the run is shorter, with no branch. */
static inline size_t small_piece(size_t k, size_t n)
{
  return k < n - 16 ? k : n - 16;
}

/* [p, p+n) of a small block, n a multiple of 16, 16 <= n <= 64: the
 * pieces at 0, 16, 32 and 48 (small_piece), the very ones fill_small
 * stores. */
static inline bool filled_small(const unsigned char *p, size_t n)
{
  const check_vec fill = { CHECK_FILL_WORD, CHECK_FILL_WORD };
  check_vec diff = (load16(p) ^ fill) | (load16(p + small_piece(16, n)) ^ fill) |
                   (load16(p + small_piece(32, n)) ^ fill) | (load16(p + n - 16) ^ fill);
  return (diff[0] | diff[1]) == 0;
}

static inline void fill_small(unsigned char *p, size_t n)
{
  const check_vec fill = { CHECK_FILL_WORD, CHECK_FILL_WORD };
  memcpy(p, &fill, sizeof fill);
  memcpy(p + small_piece(16, n), &fill, sizeof fill);
  memcpy(p + small_piece(32, n), &fill, sizeof fill);
  memcpy(p + n - 16, &fill, sizeof fill);
}

/* [p, p+n), n a multiple of 16, 16 <= n <= 128: eight pieces, capped at
 * the last, with no branch on n. */
static inline void fill_pieces8(unsigned char *p, size_t n)
{
  const check_vec fill = { CHECK_FILL_WORD, CHECK_FILL_WORD };
#pragma GCC unroll 8
  for (size_t k = 0; k < 128; k += 16)
    memcpy(p + small_piece(k, n), &fill, sizeof fill);
}

/* Lanes k and up of 16 bytes, -48 <= k <= 64, and lanes below j,
 * 0 <= j <= 64. */
static inline check_vec from_lane16(ptrdiff_t k)
{
  check_vec v;
  memcpy(&v, mask_edges + 64 - k, sizeof v);
  return v;
}
static inline check_vec below_lane16(ptrdiff_t j)
{
  check_vec v;
  memcpy(&v, mask_edges + 128 - j, sizeof v);
  return v;
}

/* Whether the canary [size, bs - CHECK_TRAILER) of block p holds the
 * fill; bs <= SHORT_CANARY_BLOCK and bs - 32 <= size.  The last piece is
 * masked below size and at the trailer, the one before it (a block of
 * 16 bytes has none) below size. */
static inline bool canary_short(const unsigned char *p, size_t size, size_t bs)
{
  const check_vec fill = { CHECK_FILL_WORD, CHECK_FILL_WORD };
  ptrdiff_t last = (ptrdiff_t)bs - 16, from = (ptrdiff_t)size - last;
  check_vec diff = (load16(p + last) ^ fill) & from_lane16(from) & below_lane16(16 - CHECK_TRAILER);
  if (bs > 16)
    diff |= (load16(p + last - 16) ^ fill) & from_lane16(from + 16);
  return (diff[0] | diff[1]) == 0;
}

size_t check_block_size(const struct slab *s, const void *p)
{
  size_t bs = slab_block_size(s);
  uint32_t code;
  memcpy(&code, trailer((void *)(uintptr_t)p, bs), sizeof code);
  size_t size = code ^ (uint32_t)hak_secret_free_tag;
  if (size > bs - CHECK_TRAILER)
    hak_fatal_pointer("free(): heap overflow: the block's trailer was overwritten, at", p);
  return size;
}

/* check_hand_out and check_free_block for blocks of more than
 * SHORT_CANARY_BLOCK bytes, once per wide vector width, with that width's
 * loops in line (a call into them would save and restore the caller's
 * registers around every block).  CHECK_BLOCK_OPS(name, bytes,
 * attributes, store_canary) defines hand_out_name and free_block_name;
 * store_canary(p, from, bs) stores a canary of up to 128 bytes. */
#define CHECK_BLOCK_OPS(name, bytes, attributes, store_canary)                                     \
  attributes static void *hand_out_##name(unsigned char *p, size_t size, size_t bs)               \
  {                                                                                                \
    /* A head of up to 64 bytes past the link and tag words is read as */                         \
    /* whole vectors over those 64 bytes, as free_block_name stored them */                        \
    /* (a load that straddles a store still in flight waits for it), */                            \
    /* masked past the head. */                                                                    \
    const vec_##name fill = (vec_##name){ 0 } + CHECK_FILL_WORD;                                   \
    size_t end = fill_end(bs), n = end - FREE_WORDS;                                               \
    bool written;                                                                                  \
    if (n <= 64) {                                                                                 \
      vec_##name diff = (vec_##name){ 0 };                                                         \
      _Pragma("GCC unroll 4") for (size_t k = 0; k < 64; k += (bytes))                              \
      {                                                                                            \
        size_t lanes = n > k ? (n - k < (bytes) ? n - k : (bytes)) : 0;                            \
        diff |= (*(const vec_any_##name *)(p + FREE_WORDS + k) ^ fill) & below_lane_##name(lanes); \
      }                                                                                            \
      written = !is_zero_##name(diff);                                                             \
    } else {                                                                                       \
      written = !filled_run_##name(p + FREE_WORDS, n);                                             \
    }                                                                                              \
    if (written)                                                                                   \
      hak_fatal_pointer("malloc(): use after free: a freed block was written to, at", p);         \
    /* A block filled only up to end holds the last program's bytes */                            \
    /* after it: the new canary is stored, from the 16-byte piece */                               \
    /* holding the request's end (the program's bytes before it have no */                         \
    /* value to keep) to the block's end; in line (store_canary) up to */                          \
    /* 128 bytes, which covers the canary of every unaligned request of */                         \
    /* a class up to 1 KiB.  The first branch goes the same way for */                             \
    /* every block of a class. */                                                                  \
    if (end < bs) {                                                                                \
      size_t from = size & ~(size_t)15;                                                            \
      from = from > end ? from : end;                                                              \
      if (bs - from <= 128)                                                                        \
        store_canary(p, from, bs);                                                                 \
      else                                                                                         \
        fill_##name(p + from, bs - from);                                                          \
    }                                                                                              \
    /* The canary is the fill already there, except in the link and tag */                        \
    /* words, which the free list used: both are filled whatever the */                           \
    /* size (the program's part of them is its to write). */                                       \
    *(vec_any_sse2 *)p = (vec_sse2){ CHECK_FILL_WORD, CHECK_FILL_WORD };                           \
    uint32_t code = trailer_code(size);                                                            \
    memcpy(trailer(p, bs), &code, sizeof code);                                                    \
    return p;                                                                                      \
  }                                                                                                \
                                                                                                   \
  attributes static size_t free_block_##name(const struct slab *s, void *p)                        \
  {                                                                                                \
    size_t bs = slab_block_size(s);                                                                \
    size_t size = check_block_size(s, p);                                                          \
    unsigned char *b = p;                                                                          \
    /* With 64-byte vectors, a canary that ends at most 128 bytes before */                        \
    /* the block's end takes the block's last two 64-byte pieces, its */                            \
    /* last two lines in a class of a multiple of 64 bytes, in line: the */                         \
    /* last masked below size and at the trailer, the one before it */                             \
    /* masked below size, or, when the canary lies in the last piece, */                           \
    /* the last read again and masked off, so that no line outside the */                          \
    /* canary is read.  Other canaries (other widths, an aligned */                                \
    /* request's longer one) take the three-vector loop. */                                        \
    const unsigned char *lo = b + size;                                                            \
    bool intact;                                                                                   \
    if ((bytes) == 64 && bs - size <= 128) {                                                       \
      const vec_##name fill = (vec_##name){ 0 } + CHECK_FILL_WORD;                                 \
      const unsigned char *last = b + bs - 64;                                                     \
      /* All ones when the canary begins before the last piece: masks, */                          \
      /* not selects, which GCC would make a branch on the size. */                                \
      uintptr_t into_last = (uintptr_t)(lo - last);                                                \
      uintptr_t two = (uintptr_t)((intptr_t)into_last >> 63);                                      \
      __asm__("" : "+r"(two));                                                                     \
      const unsigned char *before = last - (64 & two);                                             \
      uintptr_t before_from = 64 + (into_last & two), last_from = into_last & ~two;                \
      vec_##name diff = ((*(const vec_any_##name *)before ^ fill) & from_lane_##name(before_from)) | \
                        ((*(const vec_any_##name *)last ^ fill) & from_lane_##name(last_from) &     \
                         below_lane_##name(64 - CHECK_TRAILER));                                   \
      intact = is_zero_##name(diff);                                                               \
    } else {                                                                                       \
      intact = filled_range_##name(lo, b + bs - CHECK_TRAILER);                                    \
    }                                                                                              \
    if (!intact)                                                                                   \
      hak_fatal_pointer("free(): heap overflow: bytes past the requested size were written, in", p); \
    /* Past the link and tag words up to fill_end, or, for a head of up */                        \
    /* to 64 bytes, those 64 bytes whatever the bound, in whole vectors */                         \
    /* (the block is free, and larger than that: what lies past the */                             \
    /* head is the last program's, or the canary, fill already), which */                         \
    /* hand_out_name reads back. */                                                                \
    size_t end = fill_end(bs);                                                                     \
    if (end - FREE_WORDS <= 64) {                                                                  \
      const vec_##name fill = (vec_##name){ 0 } + CHECK_FILL_WORD;                                 \
      _Pragma("GCC unroll 4") for (size_t k = 0; k < 64; k += (bytes))                              \
        *(vec_any_##name *)(b + FREE_WORDS + k) = fill;                                            \
    } else {                                                                                       \
      fill_##name(b + FREE_WORDS, end - FREE_WORDS);                                               \
    }                                                                                              \
    return size;                                                                                   \
  }

/* The blocks of up to SHORT_CANARY_BLOCK bytes, and every block when
 * the CPU has no wide vectors: there the wide vectors save nothing, and
 * their functions' set-up would cost the smallest blocks the most. */
static HAK_NOINLINE void *hand_out_generic(unsigned char *p, size_t size, size_t bs)
{
  /* Read with the vectors that filled it: a load that straddles a store
   * still in flight (the block freed just before, as in a malloc-free
   * loop) waits for it to reach the cache, and one that does not
   * straddle the link and tag words, just written by the free list, does
   * not wait for them either. */
  size_t end = fill_end(bs), n = end - FREE_WORDS;
  if (end <= SMALL_BLOCK ? n != 0 && !filled_small(p + FREE_WORDS, n) : !filled_run(p + FREE_WORDS, n))
    hak_fatal_pointer("malloc(): use after free: a freed block was written to, at", p);
  /* A block filled only up to end holds the last program's bytes after
   * it: the new canary is stored, from the 16-byte piece holding the
   * request's end (the program's bytes before it have no value to keep)
   * to the block's end: in line up to 128 bytes, which covers the canary
   * of every unaligned request of a class up to 1 KiB.  The first branch
   * goes the same way for every block of a class. */
  if (end < bs) {
    size_t from = size & ~(size_t)15;
    from = from > end ? from : end;
    if (bs - from <= 128)
      fill_pieces8(p + from, bs - from);
    else
      check_fill(p + from, bs - from);
  }
  /* The canary is the fill already there, except in the link and tag
   * words, which the free list used: both are filled whatever the size
   * (the program's part of them is its to write), which costs two stores
   * and no branch.  A block of 16 bytes has its trailer in the tag word,
   * written just after. */
  const check_vec fill16 = { CHECK_FILL_WORD, CHECK_FILL_WORD };
  memcpy(p, &fill16, sizeof fill16);
  uint32_t code = trailer_code(size);
  memcpy(trailer(p, bs), &code, sizeof code);
  return p;
}
static HAK_NOINLINE size_t free_block_generic(const struct slab *s, void *p)
{
  size_t bs = slab_block_size(s);
  size_t size = check_block_size(s, p);
  unsigned char *b = p;
  /* An aligned request may take a class well above its size: its canary
   * is longer, and takes the loop. */
  bool intact = (bs <= SHORT_CANARY_BLOCK) & (size + 32 >= bs)
                    ? canary_short(b, size, bs)
                    : filled_range(b + size, b + bs - CHECK_TRAILER);
  if (!intact)
    hak_fatal_pointer("free(): heap overflow: bytes past the requested size were written, in", p);
  /* Past the link and tag words (the free list's) up to fill_end: the
   * whole block, canary and trailer included, unless check_fill_bytes
   * bounds it.  The next malloc reads it with the same vectors
   * (check_hand_out), and the length is the class's, not the request's,
   * so the branches go the same way for every block of a class. */
  size_t end = fill_end(bs);
  if (end > SMALL_BLOCK)
    check_fill(b + FREE_WORDS, end - FREE_WORDS);
  else if (end > FREE_WORDS)
    fill_small(b + FREE_WORDS, end - FREE_WORDS);
  return size;
}

#if CHECK_HAVE_WIDE
/* A canary [from, bs) of up to 128 bytes, in 16-byte pieces. */
__attribute__((target("avx2"))) static inline void store_canary_avx2(unsigned char *p, size_t from, size_t bs)
{
  fill_pieces8(p + from, bs - from);
}

/* The same in two 64-byte stores, at from and at the block's last 64
 * bytes, or both there: with no branch on its length, and no line
 * outside the canary in a class of a multiple of 64 bytes.  What the
 * first may cover before from are the last program's bytes, of no value
 * to keep. */
__attribute__((target("avx512f"))) static inline void store_canary_avx512(unsigned char *p, size_t from,
                                                                          size_t bs)
{
  size_t last = bs - 64;
  __m512i fill = _mm512_set1_epi64((long long)CHECK_FILL_WORD);
  _mm512_storeu_si512(p + (from < last ? from : last), fill);
  _mm512_storeu_si512(p + last, fill);
}

CHECK_BLOCK_OPS(avx2, 32, __attribute__((target("avx2"))), store_canary_avx2)
CHECK_BLOCK_OPS(avx512, 64, __attribute__((target("avx512f"))), store_canary_avx512)
#endif

void *check_hand_out(unsigned char *p, size_t size, size_t bs)
{
#if CHECK_HAVE_WIDE
  if (bs > SHORT_CANARY_BLOCK && check_width == CHECK_VECTORS_AVX512)
    return hand_out_avx512(p, size, bs);
  if (bs > SHORT_CANARY_BLOCK && check_width == CHECK_VECTORS_AVX2)
    return hand_out_avx2(p, size, bs);
#endif
  return hand_out_generic(p, size, bs);
}

size_t check_free_block(const struct slab *s, void *p)
{
#if CHECK_HAVE_WIDE
  size_t bs = slab_block_size(s);
  if (bs > SHORT_CANARY_BLOCK && check_width == CHECK_VECTORS_AVX512)
    return free_block_avx512(s, p);
  if (bs > SHORT_CANARY_BLOCK && check_width == CHECK_VECTORS_AVX2)
    return free_block_avx2(s, p);
#endif
  return free_block_generic(s, p);
}

void check_fill_carved(const struct slab *s, uint32_t n)
{
  size_t bs = slab_block_size(s), end = fill_end(bs);
  unsigned char *p = s->free;
  for (uint32_t i = 0; i < n; i++, p += bs)
    check_fill(p + FREE_WORDS, end - FREE_WORDS);
}
