/* Slab operations off the fast path: formatting, carving, remote drain. */
#include "slab.h"

void slab_format(struct slab *s, unsigned cls, uint32_t block_size, size_t span_bytes)
{
  s->free = NULL;
  s->used = 0;
  s->carved = 0;
  s->block_size = block_size;
  s->capacity = (uint16_t)(span_bytes / block_size);
  s->cls = (uint8_t)cls;
  atomic_store_explicit(&s->remote, NULL, memory_order_relaxed);
}

uint32_t slab_drain_remote(struct slab *s)
{
  if (!atomic_load_explicit(&s->remote, memory_order_relaxed))
    return 0;
  void *list = atomic_exchange_explicit(&s->remote, NULL, memory_order_acquire);
  if (!list)
    return 0;
  uint32_t n = 1;
  void *tail = list;
  while (*(void **)tail) {
    tail = *(void **)tail;
    n++;
  }
  *(void **)tail = s->free;
  s->free = list;
  s->used -= n;
  return n;
}

uint32_t slab_carve(struct slab *s)
{
  uint32_t left = (uint32_t)s->capacity - s->carved;
  if (left == 0)
    return 0;
  /* A page at a time keeps untouched pages out of the resident set. */
  uint32_t n = HAK_PAGE_SIZE / s->block_size;
  if (n == 0)
    n = 4;
  if (n > left)
    n = left;
  char *first = slab_start(s) + (size_t)s->carved * s->block_size;
  char *p = first;
  for (uint32_t i = 1; i < n; i++, p += s->block_size)
    *(void **)p = p + s->block_size;
  *(void **)p = s->free;
  s->free = first;
  s->carved = (uint16_t)(s->carved + n);
  return n;
}
