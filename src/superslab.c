/* SuperSlab mapping, the address registry and the release policy. */
#include "superslab.h"
#include "config.h"
#include "diag.h"
#include "learn.h"
#include "os.h"
#include "locks.h"

#include <string.h>

HAK_BSS_APART(registry_l1) _Atomic uintptr_t registry_l1[1u << REGISTRY_L1_BITS];
HAK_BSS_APART(registry_empty_leaf) const struct registry_leaf registry_empty_leaf;
static pthread_mutex_t registry_lock = LOCK_INITIALIZER;

static struct registry_leaf *registry_leaf_at(uintptr_t a)
{
  return (struct registry_leaf *)((uintptr_t)&registry_empty_leaf +
                                  atomic_load_explicit(&registry_l1[a >> 32], memory_order_relaxed));
}

/* The leaf of a (mapped now if it was the empty one), or NULL if it
 * cannot be mapped. */
static struct registry_leaf *registry_leaf_get_locked(uintptr_t a)
{
  struct registry_leaf *leaf = registry_leaf_at(a);
  if (leaf == &registry_empty_leaf) {
    leaf = os_map_aligned(sizeof(struct registry_leaf), HAK_PAGE_SIZE);
    if (!leaf)
      return NULL;
    atomic_store_explicit(&registry_l1[a >> 32], (uintptr_t)leaf - (uintptr_t)&registry_empty_leaf,
                          memory_order_release);
  }
  return leaf;
}

static void registry_clear_locked(uintptr_t base, size_t size)
{
  for (uintptr_t a = base; a < base + size; a += HAK_UNIT_SIZE) {
    struct registry_leaf *leaf = registry_leaf_at(a);
    if (leaf != &registry_empty_leaf)
      atomic_store_explicit(&leaf->entry[(a >> HAK_UNIT_SHIFT) & ((1u << REGISTRY_L2_BITS) - 1)],
                            0, memory_order_release);
  }
}

bool registry_set(uintptr_t base, size_t size, uintptr_t entry)
{
  lock_take(&registry_lock);
  for (uintptr_t a = base; a < base + size; a += HAK_UNIT_SIZE) {
    struct registry_leaf *leaf = registry_leaf_get_locked(a);
    if (!leaf) {
      registry_clear_locked(base, a - base);
      lock_give(&registry_lock);
      return true;
    }
    atomic_store_explicit(&leaf->entry[(a >> HAK_UNIT_SHIFT) & ((1u << REGISTRY_L2_BITS) - 1)],
                          entry, memory_order_release);
  }
  lock_give(&registry_lock);
  return false;
}

void registry_clear(uintptr_t base, size_t size)
{
  lock_take(&registry_lock);
  registry_clear_locked(base, size);
  lock_give(&registry_lock);
}

struct superslab *superslab_create(unsigned lg)
{
  size_t size = (size_t)1 << lg;
  struct superslab *ss = os_map_aligned(size, size);
  if (!ss)
    return NULL;
  bool huge_advised = os_advise_new_mapping(ss, size, hak_config.thp);
  /* Fresh anonymous memory is zero: only non-zero fields are set. */
  ss->magic = SUPERSLAB_MAGIC;
  ss->huge_advised = huge_advised;
  ss->header_state = SLAB_HEADER;
  ss->lg = lg;
  ss->nslabs = 1u << (lg - HAK_SLAB_SHIFT);
  ss->nunused = ss->nslabs - 1;
  /* Nothing is resident yet: decommitting a slot never touched would be
   * a wasted system call, and a committed free slot is preferred to it. */
  ss->decommitted = (uint32_t)(((uint64_t)1 << ss->nslabs) - 2);
  for (unsigned i = 1; i < ss->nslabs; i++) {
    ss->slabs[i].index = (uint8_t)i;
    ss->slabs[i].state = SLAB_UNUSED;
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

/* The most fully free SuperSlabs kept mapped: a bound on address space,
 * not the retention policy, which is by time (the purge decommits a kept
 * SuperSlab after purge_delay_ms and unmaps it after
 * SUPERSLAB_UNMAP_DELAYS of those).  superslab_keep, learned in learning
 * mode. */
unsigned superslab_keep_limit(void)
{
  return (unsigned)learn_value(LEARN_SUPERSLAB_KEEP, hak_config.superslab_keep);
}

static bool lean_can_decommit(void)
{
  return hak_config.ss_mem_lean_decommit != HAK_DECOMMIT_OFF && os_decommit_enabled();
}

static bool lean_over_target(size_t free_committed_bytes)
{
  return free_committed_bytes > (size_t)hak_config.ss_mem_lean_target_mb << 20;
}

enum superslab_release superslab_release_policy(const struct superslab *ss,
                                                unsigned kept_empty,
                                                size_t free_committed_bytes)
{
  (void)ss;
  if (kept_empty >= superslab_keep_limit())
    return SUPERSLAB_UNMAP;
  if (hak_config.ss_mem_lean) {
    /* Lean: kept hot while the pool's free committed memory, this one's
     * included, stays under the target (the purge decommits it after
     * purge_delay_ms); beyond the target its pages go back at once, and
     * it stays mapped (address space only) unless they cannot. */
    if (!lean_over_target(free_committed_bytes))
      return SUPERSLAB_KEEP;
    return lean_can_decommit() ? SUPERSLAB_DECOMMIT : SUPERSLAB_UNMAP;
  }
  return SUPERSLAB_KEEP;
}

bool superslab_lean_must_decommit(size_t free_committed_bytes)
{
  return hak_config.ss_mem_lean && lean_over_target(free_committed_bytes) && lean_can_decommit();
}

bool superslab_decommit_dontneed(void)
{
  return hak_config.ss_mem_lean_decommit == HAK_DECOMMIT_DONTNEED;
}

bool superslab_purge_due(uint64_t since_ms, uint64_t now_ms)
{
  if (hak_config.purge_delay_ms < 0)
    return false;
  uint64_t delay = (uint64_t)hak_config.purge_delay_ms;
  /* Lean returns sooner: what it keeps under its target ages four times
   * as fast. */
  if (hak_config.ss_mem_lean)
    delay /= SUPERSLAB_LEAN_DELAY_DIVISOR;
  return hak_ms_elapsed(since_ms, now_ms) >= delay;
}

bool superslab_unmap_due(uint64_t since_ms, uint64_t now_ms)
{
  if (hak_config.purge_delay_ms < 0)
    return false;
  uint64_t delay = (uint64_t)hak_config.purge_delay_ms * SUPERSLAB_UNMAP_DELAYS;
  if (delay < SUPERSLAB_UNMAP_MIN_MS)
    delay = SUPERSLAB_UNMAP_MIN_MS;
  return hak_ms_elapsed(since_ms, now_ms) >= delay;
}

int superslab_decommit_slots(struct superslab *ss, unsigned first, unsigned last, bool dontneed)
{
  if (first >= last)
    return 0;
  int err = os_decommit((char *)ss + ((size_t)first << HAK_SLAB_SHIFT),
                        (size_t)(last - first) << HAK_SLAB_SHIFT, dontneed);
  if (err == 0)
    for (unsigned i = first; i < last; i++)
      ss->decommitted |= 1u << i;
  return err;
}

void superslab_registry_lock(void) { lock_hold(&registry_lock); }
void superslab_registry_unlock(void) { pthread_mutex_unlock(&registry_lock); }
void superslab_registry_reinit(void) { lock_reset(&registry_lock); }
