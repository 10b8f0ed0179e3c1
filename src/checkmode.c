/* check = 1: canaries, trailers and free-block fill; see checkmode.h. */
#include "checkmode.h"
#include "diag.h"
#include "size_class.h"

#include <string.h>

/* A page of CHECK_FILL to compare against (libc's memcmp is vectorised),
 * in read-only data: no initialisation, no test of it on every call. */
static const unsigned char fill_page[HAK_PAGE_SIZE] = { [0 ... HAK_PAGE_SIZE - 1] = CHECK_FILL };

/* Whether [p, p+n) holds CHECK_FILL, for runs of more than 64 bytes: a
 * page at a time. */
bool check_is_filled_long(const unsigned char *p, size_t n)
{
  for (size_t off = 0; off < n; off += sizeof fill_page) {
    size_t k = n - off < sizeof fill_page ? n - off : sizeof fill_page;
    if (memcmp(p + off, fill_page, k) != 0)
      return false;
  }
  return true;
}

/* The first two words of a free block are its link and tag. */
#define FREE_WORDS (2 * sizeof(uintptr_t))

static uint32_t *trailer(void *p, size_t bs)
{
  return (uint32_t *)((char *)p + bs - CHECK_TRAILER);
}

static uint32_t trailer_code(size_t size)
{
  return (uint32_t)size ^ (uint32_t)hak_secret_free_tag;
}

int check_class(size_t size, size_t align)
{
  size_t need = size + CHECK_TRAILER;
  return align <= HAK_MIN_ALIGN ? (int)size_class_of(need) : size_class_for_aligned(need, align);
}

void *check_hand_out(unsigned char *p, size_t size, size_t bs)
{
  if (!check_is_filled(p + FREE_WORDS, bs - FREE_WORDS))
    hak_fatal_pointer("malloc(): use after free: a freed block was written to, at", p);
  /* The canary is the fill already there, except in the link and tag
   * words, which the free list used. */
  size_t words_end = bs - CHECK_TRAILER < FREE_WORDS ? bs - CHECK_TRAILER : FREE_WORDS;
  if (size < words_end)
    memset(p + size, CHECK_FILL, words_end - size);
  uint32_t code = trailer_code(size);
  memcpy(trailer(p, bs), &code, sizeof code);
  return p;
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

void check_free_block(const struct slab *s, void *p)
{
  size_t bs = slab_block_size(s);
  size_t size = check_block_size(s, p);
  if (!check_is_filled((unsigned char *)p + size, bs - CHECK_TRAILER - size))
    hak_fatal_pointer("free(): heap overflow: bytes past the requested size were written, in", p);
  /* Past the request the fill is there already (just checked). */
  if (size > FREE_WORDS)
    memset((char *)p + FREE_WORDS, CHECK_FILL, size - FREE_WORDS);
  memset(trailer(p, bs), CHECK_FILL, CHECK_TRAILER);
}

void check_fill_carved(const struct slab *s, uint32_t n)
{
  size_t bs = slab_block_size(s);
  char *p = s->free;
  for (uint32_t i = 0; i < n; i++, p += bs)
    memset(p + FREE_WORDS, CHECK_FILL, bs - FREE_WORDS);
}
