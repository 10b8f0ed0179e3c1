/* SuperSlab mapping, the address registry and the release policy. */
#include "superslab.h"
#include "os.h"

#include <string.h>

_Atomic(struct registry_leaf *) registry_l1[1u << REGISTRY_L1_BITS];
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

static struct registry_leaf *registry_leaf_get_locked(uintptr_t a)
{
  size_t i = a >> 32;
  struct registry_leaf *leaf = atomic_load_explicit(&registry_l1[i], memory_order_relaxed);
  if (!leaf) {
    leaf = os_map_aligned(sizeof(struct registry_leaf), HAK_PAGE_SIZE);
    if (!leaf)
      return NULL;
    atomic_store_explicit(&registry_l1[i], leaf, memory_order_release);
  }
  return leaf;
}

bool registry_set(uintptr_t base, size_t size, uintptr_t entry)
{
  pthread_mutex_lock(&registry_lock);
  for (uintptr_t a = base; a < base + size; a += HAK_UNIT_SIZE) {
    struct registry_leaf *leaf = registry_leaf_get_locked(a);
    if (!leaf) {
      pthread_mutex_unlock(&registry_lock);
      registry_clear(base, a - base);
      return true;
    }
    atomic_store_explicit(&leaf->entry[(a >> HAK_UNIT_SHIFT) & ((1u << REGISTRY_L2_BITS) - 1)],
                          entry, memory_order_release);
  }
  pthread_mutex_unlock(&registry_lock);
  return false;
}

void registry_clear(uintptr_t base, size_t size)
{
  pthread_mutex_lock(&registry_lock);
  for (uintptr_t a = base; a < base + size; a += HAK_UNIT_SIZE) {
    struct registry_leaf *leaf = atomic_load_explicit(&registry_l1[a >> 32], memory_order_relaxed);
    if (leaf)
      atomic_store_explicit(&leaf->entry[(a >> HAK_UNIT_SHIFT) & ((1u << REGISTRY_L2_BITS) - 1)],
                            0, memory_order_release);
  }
  pthread_mutex_unlock(&registry_lock);
}

struct superslab *superslab_create(unsigned lg)
{
  size_t size = (size_t)1 << lg;
  struct superslab *ss = os_map_aligned(size, size);
  if (!ss)
    return NULL;
  /* Fresh anonymous memory is zero: only non-zero fields are set. */
  ss->magic = SUPERSLAB_MAGIC;
  ss->lg = lg;
  ss->nslabs = 1u << (lg - HAK_SLAB_SHIFT);
  ss->nunused = ss->nslabs - 1;
  for (unsigned i = 0; i < ss->nslabs; i++) {
    ss->slabs[i].index = (uint8_t)i;
    ss->slabs[i].state = i == 0 ? SLAB_HEADER : SLAB_UNUSED;
    atomic_store_explicit(&ss->slabs[i].owner, HAK_NO_OWNER, memory_order_relaxed);
  }
  if (registry_set((uintptr_t)ss, size, (uintptr_t)ss | REGISTRY_TAG_SUPERSLAB)) {
    os_unmap(ss, size);
    return NULL;
  }
  return ss;
}

void superslab_destroy(struct superslab *ss)
{
  size_t size = (size_t)1 << ss->lg;
  registry_clear((uintptr_t)ss, size);
  ss->magic = 0;
  os_unmap(ss, size);
}

enum superslab_release superslab_release_policy(const struct superslab *ss,
                                                unsigned kept_empty)
{
  (void)ss;
  /* One spare SuperSlab absorbs a program that repeatedly frees and
   * reallocates its last slabs; further empty ones go back to the OS. */
  return kept_empty < 1 ? SUPERSLAB_KEEP : SUPERSLAB_UNMAP;
}

void superslab_registry_lock(void) { pthread_mutex_lock(&registry_lock); }
void superslab_registry_unlock(void) { pthread_mutex_unlock(&registry_lock); }
void superslab_registry_reinit(void) { pthread_mutex_init(&registry_lock, NULL); }
