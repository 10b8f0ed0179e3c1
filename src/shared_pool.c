/* Shared pool: slab hand-out stages, EMPTY recycling, SuperSlab lists. */
#include "shared_pool.h"
#include "learn.h"
#include "os.h"
#include "locks.h"
#include "counters.h"
#include "diag.h"

#include <errno.h>

static pthread_mutex_t pool_lock = LOCK_INITIALIZER;

static struct slab *empty_list[HAK_NUM_CLASSES];
static unsigned empty_count[HAK_NUM_CLASSES];
/* Apart: only a thread that exits holding blocks writes it. */
HAK_BSS_APART(orphan_list) static struct slab *orphan_list[HAK_NUM_CLASSES];
static struct superslab *all_list;
static struct superslab *unused_list, *unused_tail;
static unsigned kept_empty;       /* SuperSlabs kept fully free ... */
static size_t kept_committed;     /* ... and their committed bytes */
/* Bytes of free slots whose pages may be resident, over every SuperSlab:
 * the sum of their free_committed counts.  Lean mode holds it under
 * ss_mem_lean_target_mb. */
static size_t pool_free_committed;
/* Allocation counts of slabs that were re-formatted or unmapped.  Apart:
 * a program whose slabs never change class or go back writes none. */
HAK_BSS_APART(retired_allocs) static uint64_t retired_allocs[HAK_NUM_CLASSES];

/* Bumped on every hand-out and hand-back: the purge compares it between
 * ticks to tell an idle program. */
static uint64_t pool_activity;
/* Set when memory became purgeable; the purge thread takes it. */
static _Atomic bool pool_purge_wanted;

static struct superslab *superslab_of_slab(struct slab *s)
{
  return (struct superslab *)((uintptr_t)s & ~((uintptr_t)HAK_UNIT_SIZE - 1));
}

/* ---- intrusive lists (pool lock) ---- */

static void slab_list_push(struct slab **head, struct slab *s)
{
  s->prev = NULL;
  s->next = *head;
  if (*head)
    (*head)->prev = s;
  *head = s;
}

static void slab_list_remove(struct slab **head, struct slab *s)
{
  if (s->prev)
    s->prev->next = s->next;
  else
    *head = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->next = s->prev = NULL;
}

static struct slab *slab_list_pop(struct slab **head)
{
  struct slab *s = *head;
  if (s)
    slab_list_remove(head, s);
  return s;
}

static void unused_list_add(struct superslab *ss)
{
  if (ss->on_unused_list)
    return;
  ss->on_unused_list = true;
  ss->unused_prev = NULL;
  ss->unused_next = unused_list;
  if (unused_list)
    unused_list->unused_prev = ss;
  else
    unused_tail = ss;
  unused_list = ss;
}

/* At the back: claims look for resident slots at the front. */
static void unused_list_add_tail(struct superslab *ss)
{
  if (ss->on_unused_list)
    return;
  ss->on_unused_list = true;
  ss->unused_next = NULL;
  ss->unused_prev = unused_tail;
  if (unused_tail)
    unused_tail->unused_next = ss;
  else
    unused_list = ss;
  unused_tail = ss;
}

static void unused_list_remove(struct superslab *ss)
{
  if (!ss->on_unused_list)
    return;
  ss->on_unused_list = false;
  if (ss->unused_prev)
    ss->unused_prev->unused_next = ss->unused_next;
  else
    unused_list = ss->unused_next;
  if (ss->unused_next)
    ss->unused_next->unused_prev = ss->unused_prev;
  else
    unused_tail = ss->unused_prev;
}

static void all_list_add(struct superslab *ss)
{
  ss->all_prev = NULL;
  ss->all_next = all_list;
  if (all_list)
    all_list->all_prev = ss;
  all_list = ss;
}

static void all_list_remove(struct superslab *ss)
{
  if (ss->all_prev)
    ss->all_prev->all_next = ss->all_next;
  else
    all_list = ss->all_next;
  if (ss->all_next)
    ss->all_next->all_prev = ss->all_prev;
}

/* ---- slot state changes (pool lock) ---- */

static void slab_retire_counts(struct slab *s)
{
  retired_allocs[s->cls] += s->allocs;
  s->allocs = 0;
}

/* Committed bytes of ss's slots (the header slot aside). */
static size_t superslab_committed_bytes(const struct superslab *ss)
{
  return (size_t)(ss->nslabs - 1 - superslab_slot_count(ss->decommitted))
         << HAK_SLAB_SHIFT;
}

/* ss joins (kept) or leaves the kept SuperSlabs, or, kept, had pages
 * decommitted: keeps kept_empty and kept_committed exact without a walk. */
static void superslab_set_kept(struct superslab *ss, bool kept)
{
  if (ss->empty_kept) {
    kept_empty--;
    kept_committed -= ss->kept_bytes;
  }
  ss->empty_kept = kept;
  ss->kept_bytes = kept ? superslab_committed_bytes(ss) : 0;
  if (kept) {
    kept_empty++;
    kept_committed += ss->kept_bytes;
  }
}

/* Free slots of ss (bit i = slot i): UNUSED, EMPTY, or the span of an
 * EMPTY medium slab. */
static uint32_t superslab_free_mask(const struct superslab *ss)
{
  uint32_t m = 0;
  for (unsigned i = 1; i < ss->nslabs; i++) {
    uint8_t st = ss->slabs[i].state;
    if (st == SLAB_UNUSED || st == SLAB_EMPTY ||
        (st == SLAB_SPAN_TAIL && ss->slabs[i - ss->slabs[i].head_offset].state == SLAB_EMPTY))
      m |= 1u << i;
  }
  return m;
}

static uint32_t superslab_unused_mask(const struct superslab *ss)
{
  uint32_t m = 0;
  for (unsigned i = 1; i < ss->nslabs; i++)
    if (ss->slabs[i].state == SLAB_UNUSED)
      m |= 1u << i;
  return m;
}

/* ss's free slots whose pages may be resident, counted from its slots
 * (hakmem_check_heap compares it with the count kept as they change). */
static unsigned superslab_count_free_committed(const struct superslab *ss)
{
  return superslab_slot_count(superslab_free_mask(ss) & ~ss->decommitted);
}

/* n slots (negative: fewer) of ss became free and resident: its count and
 * the pool's sum.  Every path that changes a slot between in use and
 * free, or a free slot's decommitted bit, says so here: the slab taken
 * or given back, decommit, prewarm, unmap. */
static void superslab_free_committed_add(struct superslab *ss, int n)
{
  ss->free_committed = (uint32_t)((int)ss->free_committed + n);
  pool_free_committed += (size_t)((ptrdiff_t)n * (ptrdiff_t)HAK_SLAB_SIZE);
}

/* The free slots span of ss go in use as one slab.  A small slot is
 * about to be touched (touch): resident.  A medium slab touches its span
 * as it carves; its decommitted bits are brought up to date when it is
 * given back (pool_release_empty_locked). */
static void superslab_slots_taken(struct superslab *ss, uint32_t span, bool touch)
{
  superslab_free_committed_add(ss, -(int)superslab_slot_count(span & ~ss->decommitted));
  if (touch)
    ss->decommitted &= ~span;
  ss->purge_marked &= ~span;
  if (ss->ninuse++ == 0 && ss->empty_kept)
    superslab_set_kept(ss, false);
  /* thp = auto: a 2 MiB SuperSlab half in use is hot: huge pages. */
  if (hak_config.thp == HAK_THP_AUTO && !ss->huge_advised && ss->lg >= 21 &&
      ss->ninuse * 2 >= ss->nslabs)
    ss->huge_advised = os_advise_huge(ss, (size_t)1 << ss->lg, true) == 0;
}

/* Slab s of ss goes from free (an UNUSED slot, or an EMPTY slab taken
 * back or re-formatted for a small class) to in use. */
static void superslab_slab_taken(struct superslab *ss, const struct slab *s)
{
  bool medium = s->state == SLAB_EMPTY && size_class_is_medium(s->cls);
  superslab_slots_taken(ss, medium ? superslab_span_mask(ss->nslabs, s) : 1u << s->index, !medium);
}

static void slab_hand_out(struct slab *s, uint64_t owner)
{
  s->state = SLAB_ACTIVE;
  s->next = s->prev = NULL;
  atomic_store_explicit(&s->owner, slab_owner_for(s->cls, owner), memory_order_release);
}

static void slab_to_unused(struct superslab *ss, struct slab *s)
{
  slab_retire_counts(s);
  s->state = SLAB_UNUSED;
  s->free = SLAB_LIST_END;
  s->carved = 0;
  ss->nunused++;
  if (size_class_is_medium(s->cls)) {
    /* The slots of a medium slab's span become UNUSED together. */
    unsigned k = superslab_span_slots(s->cls, ss->nslabs);
    for (unsigned i = 1; i < k; i++) {
      ss->slabs[s->index + i].state = SLAB_UNUSED;
      ss->slabs[s->index + i].head_offset = 0;
      ss->slabs[s->index + i].cls = 0;
    }
    ss->nunused += k - 1;
    s->cls = 0;
  }
  unused_list_add(ss);
}

static void superslab_unmap_locked(struct superslab *ss)
{
  for (unsigned i = 1; i < ss->nslabs; i++) {
    struct slab *s = &ss->slabs[i];
    if (s->state == SLAB_EMPTY) {
      slab_list_remove(&empty_list[s->cls], s);
      empty_count[s->cls]--;
    }
    slab_retire_counts(s);
  }
  if (ss->empty_kept)
    superslab_set_kept(ss, false);
  pool_free_committed -= (size_t)ss->free_committed << HAK_SLAB_SHIFT;
  unused_list_remove(ss);
  all_list_remove(ss);
  superslab_destroy(ss);
  counters_add(&hak_counters.superslabs_unmapped, 1);
}

/* Gives up the EMPTY slabs of ss that span a slot of mask (their free
 * lists live in the pages about to be decommitted or claimed). */
static void superslab_unformat_empty_locked(struct superslab *ss, uint32_t mask)
{
  for (unsigned i = 1; i < ss->nslabs; i++) {
    struct slab *s = &ss->slabs[i];
    if (s->state == SLAB_EMPTY && (superslab_span_mask(ss->nslabs, s) & mask)) {
      slab_list_remove(&empty_list[s->cls], s);
      empty_count[s->cls]--;
      slab_to_unused(ss, s);
    }
  }
}

/* Decommits the runs of UNUSED, still committed slots of ss among those
 * of mask, one system call per run.  Returns true if anything was
 * decommitted. */
static bool superslab_decommit_unused_locked(struct superslab *ss, uint32_t mask, bool dontneed)
{
  uint32_t todo = superslab_unused_mask(ss) & ~ss->decommitted & mask;
  bool any = false;
  while (todo) {
    unsigned i = (unsigned)__builtin_ctz(todo);
    unsigned j = i;
    while (j < ss->nslabs && (todo >> j & 1))
      j++;
    if (superslab_decommit_slots(ss, i, j, dontneed) == 0) {
      superslab_free_committed_add(ss, -(int)(j - i));
      any = true;
    }
    todo &= ~(uint32_t)((((uint64_t)1 << j) - 1) & ~(((uint64_t)1 << i) - 1));
  }
  /* Nothing resident left to claim here: out of the way of claims. */
  if (any && ss->on_unused_list && ss->free_committed == 0) {
    unused_list_remove(ss);
    unused_list_add_tail(ss);
  }
  return any;
}

#define ALL_SLOTS UINT32_MAX

/* Gives back the pages of the free slots of ss among mask, its EMPTY
 * slabs there unformatted first.  Returns true if anything was
 * decommitted. */
static bool superslab_purge_slots_locked(struct superslab *ss, uint32_t mask, bool dontneed)
{
  superslab_unformat_empty_locked(ss, mask);
  bool any = superslab_decommit_unused_locked(ss, mask, dontneed);
  if (ss->empty_kept)
    superslab_set_kept(ss, true);
  return any;
}

static bool superslab_fully_decommitted(const struct superslab *ss)
{
  uint32_t all = (uint32_t)(((uint64_t)1 << ss->nslabs) - 2);
  return (ss->decommitted & all) == all;
}

static uint64_t pool_calls_locked(void);

/* A hand-out or hand-back, for the learner of superslab_keep; when the
 * learned limit shrinks, kept SuperSlabs beyond it are unmapped at once. */
static void pool_learn_event_locked(void)
{
  if (!learn_active(LEARN_SUPERSLAB_KEEP) ||
      !learn_event(LEARN_SUPERSLAB_KEEP, kept_committed, pool_calls_locked))
    return;
  unsigned limit = superslab_keep_limit();
  struct superslab *next;
  for (struct superslab *ss = all_list; ss && kept_empty > limit; ss = next) {
    next = ss->all_next;
    if (ss->empty_kept)
      superslab_unmap_locked(ss);
  }
}

/* Every slab of ss is free now: ask the release policy. */
static void superslab_emptied_locked(struct superslab *ss)
{
  enum superslab_release r =
      superslab_release_policy(ss, kept_empty, pool_free_committed);
  if (r == SUPERSLAB_DECOMMIT) {
    superslab_purge_slots_locked(ss, ALL_SLOTS, superslab_decommit_dontneed());
    if (!superslab_fully_decommitted(ss))
      r = SUPERSLAB_UNMAP;
    else
      counters_add(&hak_counters.lean_decommit, 1);
  }
  if (r == SUPERSLAB_UNMAP) {
    if (hak_config.ss_mem_lean)
      counters_add(&hak_counters.lean_retire, 1);
    superslab_unmap_locked(ss);
    return;
  }
  superslab_set_kept(ss, true);
  ss->empty_since_ms = hak_now_ms();
  if (r == SUPERSLAB_KEEP)
    pool_purge_wanted = true;
}

/* How far down the list of SuperSlabs with UNUSED slots a claim looks for
 * a slot whose pages are still resident. */
#define CLAIM_SCAN_SUPERSLABS 8

static struct slab *pool_take_unused_locked(struct superslab *ss, unsigned i)
{
  struct slab *s = &ss->slabs[i];
  if (--ss->nunused == 0)
    unused_list_remove(ss);
  superslab_slab_taken(ss, s);
  return s;
}

/* How deep pool_claim_slot_locked looks into each other class's EMPTY
 * list for a slab that held the claiming class before. */
#define CLAIM_PREV_SCAN 8

/* Claims a free slot for a small slab of class cls, the warmest first: an
 * UNUSED slot whose pages are still resident, then another class's EMPTY
 * slab (re-formatted), then any UNUSED slot.  Reusing resident memory
 * before touching more keeps both page faults and the resident set
 * down. */
static struct slab *pool_claim_slot_locked(unsigned cls)
{
  unsigned k = 0;
  for (struct superslab *ss = unused_list; ss && k < CLAIM_SCAN_SUPERSLABS;
       ss = ss->unused_next, k++) {
    if (!ss->free_committed)
      continue;
    uint32_t warm = superslab_unused_mask(ss) & ~ss->decommitted;
    if (warm)
      return pool_take_unused_locked(ss, (unsigned)__builtin_ctz(warm));
  }
  /* Of the other classes' EMPTY slabs, one that was formatted for cls
   * before its present class, from the class that has the most: the
   * lines of its blocks' first and last bytes, which the program touched
   * then, may still be in the cache, where a slot re-formatted for a new
   * class puts nearly every block boundary on a line not touched for
   * long (bench/burst, whose classes' demand varies from burst to burst,
   * re-formats about two slabs a burst).  Otherwise, of each list's
   * head (the last given back), the one whose carving reached furthest:
   * its pages are resident, where a slab of small blocks that was never
   * carved past a page or two would fault in the rest as the new class
   * carves it. */
  struct slab *best = NULL, *held = NULL;
  size_t best_touched = 0;
  unsigned held_count = 0;
  for (unsigned c = 0; c < HAK_NUM_SMALL_CLASSES; c++) {
    struct slab *s = empty_list[c];
    size_t touched = s ? (size_t)s->carved * slab_block_size(s) : 0;
    if (s && (!best || touched > best_touched)) {
      best = s;
      best_touched = touched;
    }
    if (empty_count[c] <= held_count)
      continue;
    for (unsigned depth = 0; s && depth < CLAIM_PREV_SCAN; depth++, s = s->next)
      if (s->prev_cls == cls) {
        held = s;
        held_count = empty_count[c];
        break;
      }
  }
  if (held)
    best = held;
  if (best) {
    unsigned c = best->cls;
    slab_list_remove(&empty_list[c], best);
    empty_count[c]--;
    slab_retire_counts(best);
    superslab_slab_taken(superslab_of_slab(best), best);
    return best;
  }
  if (unused_list)
    return pool_take_unused_locked(unused_list,
                                   (unsigned)__builtin_ctz(superslab_unused_mask(unused_list)));
  return NULL;
}

/* What claiming the run of slots run of ss costs: a slot to fault in
 * (decommitted) weighs most, then an EMPTY slab given up, then a fully
 * free SuperSlab taken back into use (kept, it could go back whole). */
static unsigned span_claim_cost(const struct superslab *ss, uint32_t run, uint32_t unused)
{
  return 4 * superslab_slot_count(run & ss->decommitted) + superslab_slot_count(run & ~unused) +
         (ss->ninuse == 0 ? 2 : 0);
}

/* Claims a run of free slots for a medium slab of class cls and returns
 * its first slot, or NULL (no SuperSlab could be mapped).  A run's slots
 * are UNUSED or belong to EMPTY slabs, which are given up; of every
 * SuperSlab's runs the cheapest (span_claim_cost), the highest in its
 * SuperSlab, so that medium slabs gather at the top of SuperSlabs while
 * small ones are claimed from the bottom.  A new SuperSlab only when none
 * of the first SPAN_SCAN_SUPERSLABS has such a run: the walk runs under
 * the pool lock, and a heap of a gigabyte has five hundred. */
#define SPAN_SCAN_SUPERSLABS 64
static struct slab *pool_claim_span_locked(unsigned cls)
{
  struct superslab *best = NULL;
  uint32_t best_run = 0;
  unsigned best_cost = UINT32_MAX, n = 0;
  for (struct superslab *ss = all_list; ss && best_cost > 0 && n < SPAN_SCAN_SUPERSLABS;
       ss = ss->all_next, n++) {
    unsigned k = superslab_span_slots(cls, ss->nslabs);
    uint32_t free = superslab_free_mask(ss);
    if (superslab_slot_count(free) < k)
      continue;
    uint32_t unused = superslab_unused_mask(ss);
    for (unsigned at = ss->nslabs - k; at >= 1 && best_cost > 0; at--) {
      uint32_t run = (uint32_t)((((uint64_t)1 << k) - 1) << at);
      if ((free & run) != run)
        continue;
      unsigned cost = span_claim_cost(ss, run, unused);
      if (cost < best_cost) {
        best = ss;
        best_run = run;
        best_cost = cost;
      }
    }
  }
  struct superslab *ss = best;
  if (ss) {
    superslab_unformat_empty_locked(ss, best_run);
    counters_add(&hak_counters.pool_claim_unused, 1);
  } else {
    ss = superslab_create((unsigned)hak_config.superslab_lg);
    if (!ss)
      return NULL;
    all_list_add(ss);
    unused_list_add(ss);
    counters_add(&hak_counters.pool_new_superslab, 1);
    unsigned k = superslab_span_slots(cls, ss->nslabs);
    best_run = (uint32_t)((((uint64_t)1 << k) - 1) << (ss->nslabs - k));
  }
  unsigned first = (unsigned)__builtin_ctz(best_run), k = superslab_slot_count(best_run);
  ss->nunused -= k;
  if (ss->nunused == 0)
    unused_list_remove(ss);
  superslab_slots_taken(ss, best_run, false);
  for (unsigned i = 1; i < k; i++) {
    ss->slabs[first + i].state = SLAB_SPAN_TAIL;
    ss->slabs[first + i].head_offset = (uint8_t)i;
    ss->slabs[first + i].cls = (uint8_t)cls;
  }
  return &ss->slabs[first];
}

struct slab *shared_pool_acquire(unsigned cls, uint64_t owner)
{
  lock_take(&pool_lock);
  pool_activity++;
  struct slab *s = slab_list_pop(&orphan_list[cls]);
  if (s) {
    if (s->forked_orphan)
      slab_recount(s);
    counters_add(&hak_counters.pool_adopt, 1);
    goto out;
  }
  if (hak_config.ss_empty_reuse && (s = slab_list_pop(&empty_list[cls]))) {
    empty_count[cls]--;
    superslab_slab_taken(superslab_of_slab(s), s);
    counters_add(&hak_counters.pool_reuse_empty, 1);
    goto out;
  }
  if (size_class_is_medium(cls)) {
    s = pool_claim_span_locked(cls);
    if (!s) {
      lock_give(&pool_lock);
      errno = ENOMEM;
      return NULL;
    }
    slab_format(s, cls, (uint32_t)size_class_size(cls),
                (size_t)superslab_span_slots(cls, superslab_of_slab(s)->nslabs) << HAK_SLAB_SHIFT);
    goto out;
  }
  s = pool_claim_slot_locked(cls);
  if (s) {
    counters_add(&hak_counters.pool_claim_unused, 1);
  } else {
    struct superslab *ss = superslab_create((unsigned)hak_config.superslab_lg);
    if (!ss) {
      lock_give(&pool_lock);
      errno = ENOMEM;
      return NULL;
    }
    all_list_add(ss);
    unused_list_add(ss);
    counters_add(&hak_counters.pool_new_superslab, 1);
    s = pool_claim_slot_locked(cls);
  }
  slab_format(s, cls, (uint32_t)size_class_size(cls), HAK_SLAB_SIZE);
out:
  slab_hand_out(s, owner);
  pool_learn_event_locked();
  lock_give(&pool_lock);
  return s;
}

/* Lean mode: the pool's free committed memory stays under
 * ss_mem_lean_target_mb (superslab_lean_must_decommit says when it is
 * not).  Over it, free slots are decommitted at once: those of first
 * (where a slab was just given back) before the others.  Under it, free
 * memory is reused hot and purged by time as in balanced. */
static void pool_hold_lean_target_locked(struct superslab *first)
{
  if (!superslab_lean_must_decommit(pool_free_committed))
    return;
  bool dontneed = superslab_decommit_dontneed();
  bool any = first && superslab_purge_slots_locked(first, ALL_SLOTS, dontneed);
  for (struct superslab *ss = all_list; ss && superslab_lean_must_decommit(pool_free_committed);
       ss = ss->all_next)
    if (ss->free_committed)
      any |= superslab_purge_slots_locked(ss, ALL_SLOTS, dontneed);
  if (any)
    counters_add(&hak_counters.lean_decommit, 1);
}

/* s, owned by nobody now, has no block in use: EMPTY for its class or
 * back to UNUSED, and its SuperSlab to the release policy if it was the
 * last slab in use. */
static void pool_release_empty_locked(struct slab *s)
{
  struct superslab *ss = superslab_of_slab(s);
  counters_add(&hak_counters.slabs_emptied, 1);
  pool_activity++;
  atomic_store_explicit(&s->owner, HAK_NO_OWNER, memory_order_release);
  if (size_class_is_medium(s->cls)) {
    /* The slots its carving reached are resident now; those beyond keep
     * the state they had when it was handed out.  Its whole span is
     * free now. */
    uint32_t span = superslab_span_mask(ss->nslabs, s);
    size_t touched = (size_t)s->carved * slab_block_size(s);
    unsigned reached = (unsigned)((touched + HAK_SLAB_SIZE - 1) >> HAK_SLAB_SHIFT);
    ss->decommitted &= ~(span & (uint32_t)((((uint64_t)1 << reached) - 1) << s->index));
    superslab_free_committed_add(ss, (int)superslab_slot_count(span & ~ss->decommitted));
  } else if (!(ss->decommitted >> s->index & 1)) {
    superslab_free_committed_add(ss, 1);
  }
  /* A burst that repeats finds its slabs formatted, with no carving and
   * no refill per page (bench/burst); their pages wait for the purge.  A
   * medium class too (see SHARED_POOL_EMPTY_CAPPED). */
  bool capped = hak_config.ss_mem_lean;
  if (hak_config.ss_empty_reuse && (!capped || empty_count[s->cls] < SHARED_POOL_EMPTY_CAPPED)) {
    s->state = SLAB_EMPTY;
    slab_list_push(&empty_list[s->cls], s);
    empty_count[s->cls]++;
  } else {
    /* To the front of the list claims look through: its slot is
     * resident, those of SuperSlabs further down may have been given
     * back. */
    unused_list_remove(ss);
    slab_to_unused(ss, s);
  }
  /* Free pages wait for the purge (balanced: purge_delay_ms). */
  pool_purge_wanted = true;
  if (--ss->ninuse == 0) {
    superslab_emptied_locked(ss); /* which may unmap it */
    ss = NULL;
  }
  pool_hold_lean_target_locked(ss);
  pool_learn_event_locked();
}

void shared_pool_release_empty(struct slab *s)
{
  lock_take(&pool_lock);
  pool_release_empty_locked(s);
  lock_give(&pool_lock);
}

/* Collects the remote stacks of orphaned slabs, which no thread drains,
 * and gives back those whose every block has come back: a thread that
 * exits with blocks live, freed later by others, must not pin its slabs.
 * Returns true if a slab was released. */
static bool pool_collect_orphans_locked(void)
{
  bool released = false;
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    struct slab *next;
    for (struct slab *s = orphan_list[c]; s; s = next) {
      next = s->next;
      /* A fork's orphan is recounted before its count decides. */
      if (s->forked_orphan)
        slab_recount(s);
      else
        slab_drain_remote(s);
      if (s->used == 0) {
        slab_list_remove(&orphan_list[c], s);
        pool_release_empty_locked(s);
        released = true;
      }
    }
  }
  return released;
}

static _Atomic bool orphans_freed;

void shared_pool_orphan_freed(void)
{
  if (!atomic_load_explicit(&orphans_freed, memory_order_relaxed))
    atomic_store_explicit(&orphans_freed, true, memory_order_relaxed);
  if (!atomic_load_explicit(&pool_purge_wanted, memory_order_relaxed))
    atomic_store_explicit(&pool_purge_wanted, true, memory_order_relaxed);
}

void shared_pool_orphan(struct slab *s)
{
  lock_take(&pool_lock);
  atomic_store_explicit(&s->owner, HAK_NO_OWNER, memory_order_release);
  s->state = SLAB_ORPHAN;
  slab_list_push(&orphan_list[s->cls], s);
  lock_give(&pool_lock);
}

bool shared_pool_trim(void)
{
  lock_take(&pool_lock);
  atomic_store_explicit(&orphans_freed, false, memory_order_relaxed);
  bool released = pool_collect_orphans_locked();
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++) {
    struct slab *s;
    while ((s = slab_list_pop(&empty_list[c]))) {
      empty_count[c]--;
      slab_to_unused(superslab_of_slab(s), s);
    }
  }
  struct superslab *next;
  for (struct superslab *ss = all_list; ss; ss = next) {
    next = ss->all_next;
    if (ss->ninuse == 0) {
      superslab_unmap_locked(ss);
      released = true;
    } else if (ss->nunused) {
      released |= superslab_decommit_unused_locked(ss, ALL_SLOTS, true);
    }
  }
  lock_give(&pool_lock);
  return released;
}

/* The small-block malloc and free calls of the whole process so far
 * (from the slabs' own counts, as in shared_pool_usage; a free from
 * another thread counts once drained), for the learner of
 * superslab_keep.  Caller holds the pool lock. */
static uint64_t pool_calls_locked(void)
{
  /* A slab's frees are its allocations less the blocks still in use; a
   * retired slab had every block back. */
  uint64_t n = 0;
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
    n += 2 * retired_allocs[c];
  for (struct superslab *ss = all_list; ss; ss = ss->all_next)
    for (unsigned i = 1; i < ss->nslabs; i++) {
      const struct slab *s = &ss->slabs[i];
      if (s->state == SLAB_UNUSED || s->state == SLAB_SPAN_TAIL)
        continue;
      uint64_t allocs = *(volatile const uint64_t *)&s->allocs;
      uint64_t used = *(volatile const uint16_t *)&s->used;
      n += 2 * allocs - (used < allocs ? used : allocs);
    }
  return n;
}

void shared_pool_usage(struct shared_pool_usage *u)
{
  *u = (struct shared_pool_usage){0};
  lock_take(&pool_lock);
  for (unsigned c = 0; c < HAK_NUM_CLASSES; c++)
    u->allocs[c] = retired_allocs[c];
  for (struct superslab *ss = all_list; ss; ss = ss->all_next) {
    u->superslabs_live++;
    u->superslabs_empty += ss->empty_kept;
    u->superslab_bytes += (size_t)1 << ss->lg;
    u->free_committed_bytes += (size_t)ss->free_committed << HAK_SLAB_SHIFT;
    for (unsigned i = 1; i < ss->nslabs; i++) {
      struct slab *s = &ss->slabs[i];
      if (s->state == SLAB_UNUSED || s->state == SLAB_SPAN_TAIL)
        continue;
      u->allocs[s->cls] += *(volatile uint64_t *)&s->allocs;
      uint64_t used = *(volatile uint16_t *)&s->used;
      uint64_t carved = *(volatile uint32_t *)&s->carved;
      if (used > carved)
        used = carved;
      u->in_use_bytes += used * slab_block_size(s);
      u->free_bytes += (carved - used) * slab_block_size(s);
      u->in_use_class[s->cls] += used * slab_block_size(s);
      u->free_class[s->cls] += (carved - used) * slab_block_size(s);
    }
  }
  lock_give(&pool_lock);
}

bool shared_pool_take_purge_wanted(void)
{
  return atomic_exchange(&pool_purge_wanted, false);
}

bool shared_pool_purge_wanted(void)
{
  return atomic_load_explicit(&pool_purge_wanted, memory_order_relaxed);
}

uint64_t shared_pool_purge_period_ms(void)
{
  int64_t d = hak_config.purge_delay_ms;
  return d < 10 ? 10 : d > 1000 ? 1000 : (uint64_t)d;
}

/* When the purge last saw the pool's activity count change. */
static uint64_t pool_quiet_since_ms;

_Atomic uint32_t shared_pool_purge_passes;

bool shared_pool_purge(uint64_t now_ms, bool *idle_io, uint64_t *activity_io)
{
  bool pending = false;
  atomic_fetch_add_explicit(&shared_pool_purge_passes, 1, memory_order_relaxed);
  lock_take(&pool_lock);
  if (atomic_exchange_explicit(&orphans_freed, false, memory_order_relaxed))
    pool_collect_orphans_locked();
  if (pool_activity != *activity_io) {
    *activity_io = pool_activity;
    pool_quiet_since_ms = now_ms;
  }
  bool idle = hak_ms_elapsed(pool_quiet_since_ms, now_ms) >= shared_pool_purge_period_ms();
  *idle_io = idle;
  struct superslab *next;
  for (struct superslab *ss = all_list; ss; ss = next) {
    next = ss->all_next;
    if (ss->empty_kept) {
      if (superslab_unmap_due(ss->empty_since_ms, now_ms)) {
        superslab_unmap_locked(ss);
        continue;
      }
      /* Decommitted already: it waits to be unmapped. */
      if (superslab_fully_decommitted(ss)) {
        pending = true;
        continue;
      }
      if ((idle || superslab_purge_due(ss->empty_since_ms, now_ms)) &&
          superslab_purge_slots_locked(ss, ALL_SLOTS, true))
        counters_add(&hak_counters.purge_decommit, 1);
      pending = true;
      continue;
    }
    /* A SuperSlab in use: the purge marks its free slots whose pages are
     * resident, and gives back those still free (taking a slot clears its
     * mark) once purge_delay_ms has passed since, then marks the free
     * ones again; or all at once when the program has been idle for a
     * whole period.  A busy program thus keeps a free page between one and
     * two purge delays, not for as long as its SuperSlab has a slab in use. */
    uint32_t free_committed = superslab_free_mask(ss) & ~ss->decommitted;
    if (!idle && ss->purge_marked && !superslab_purge_due(ss->purge_marked_ms, now_ms)) {
      pending = true;
      continue;
    }
    uint32_t due = idle ? free_committed : free_committed & ss->purge_marked;
    if (due && superslab_purge_slots_locked(ss, due, true))
      counters_add(&hak_counters.purge_decommit, 1);
    ss->purge_marked = free_committed & ~due;
    ss->purge_marked_ms = now_ms;
    if (ss->purge_marked)
      pending = true;
  }
  learn_retained(LEARN_SUPERSLAB_KEEP, kept_committed);
  lock_give(&pool_lock);
  return pending;
}

void shared_pool_prewarm(void)
{
  lock_take(&pool_lock);
  struct superslab *ss = superslab_create((unsigned)hak_config.superslab_lg);
  if (ss) {
    all_list_add(ss);
    unused_list_add(ss);
    /* Fault the slots in now so the first slabs cost no page faults. */
    char *first = (char *)ss + HAK_SLAB_SIZE;
    size_t bytes = ((size_t)ss->nslabs - 1) << HAK_SLAB_SHIFT;
    for (size_t off = 0; off < bytes; off += HAK_PAGE_SIZE)
      ((volatile char *)first)[off] = 0;
    ss->decommitted = 0;
    superslab_free_committed_add(ss, (int)ss->nslabs - 1);
    counters_add(&hak_counters.prewarm_bytes, bytes);
    counters_add(&hak_counters.pool_new_superslab, 1);
  }
  lock_give(&pool_lock);
}

void shared_pool_prefork(void) { lock_hold(&pool_lock); }
void shared_pool_postfork_parent(void) { pthread_mutex_unlock(&pool_lock); }

HAK_RARE_TEXT void shared_pool_postfork_child(uint64_t survivor)
{
  lock_reset(&pool_lock);
  for (struct superslab *ss = all_list; ss; ss = ss->all_next) {
    for (unsigned i = 1; i < ss->nslabs; i++) {
      struct slab *s = &ss->slabs[i];
      if (s->state == SLAB_ACTIVE && !slab_owned_by(s, survivor)) {
        atomic_store_explicit(&s->owner, HAK_NO_OWNER, memory_order_relaxed);
        s->state = SLAB_ORPHAN;
        s->forked_orphan = true;
        slab_list_push(&orphan_list[s->cls], s);
      }
    }
  }
}

/* ---- hakmem_check_heap ---- */

/* Reports one problem found by the heap walk: "hakmem: check_heap: what
 * 0x<where>" on stderr.  Returns -1. */
HAK_RARE_TEXT static int heap_problem(const char *what, const void *where)
{
  char line[160];
  hak_warn_pointer(hak_concat(line, sizeof line, "check_heap: ", what), where);
  return -1;
}

/* Walks the local free list of s, which nobody else may change while the
 * walk runs: every link inside the slab at a carved block's start, every
 * block tagged free, no more blocks than carved minus used.  A slab
 * orphaned by a fork (forked_orphan) and not yet adopted may be a list
 * change away from its counts (slab_recount), and its head may be a
 * block whose tag its thread had cleared: its walk checks that every
 * link reaches a block's start in the slab, and stops at its capacity. */
HAK_RARE_TEXT static int heap_check_free_list(const struct slab *s)
{
  bool exact = !s->forked_orphan;
  uint32_t limit = exact ? (uint32_t)s->carved - s->used : s->capacity, k = 0;
  for (const uintptr_t *p = s->free; !slab_list_is_end(p);) {
    if (!slab_is_block_below(s, p, exact ? s->carved : s->capacity))
      return heap_problem("free list links outside its slab, to", p);
    if (hak_hardened && exact && !slab_block_tagged(p))
      return heap_problem("block on a free list without the free tag (written after free?)", p);
    if (++k > limit)
      return heap_problem("free list longer than the free blocks of its slab (cycle?) at", p);
    p = (const uintptr_t *)slab_link_raw(p);
  }
  if (exact && k != limit)
    return heap_problem("free list shorter than the free blocks of its slab", s);
  return 0;
}

/* The descriptor of a slab that holds blocks. */
HAK_RARE_TEXT static int heap_check_slab(const struct slab *s)
{
  if (s->cls >= HAK_NUM_CLASSES)
    return heap_problem("slab with a bad class", s);
  size_t bs = slab_block_size(s);
  struct slab probe = *s;
  slab_format(&probe, s->cls, (uint32_t)bs, (size_t)s->capacity * bs);
  if (probe.block_mul != s->block_mul)
    return heap_problem("slab descriptor with a damaged block size", s);
  if (s->used > s->carved || s->carved > s->capacity)
    return heap_problem("slab with inconsistent counts", s);
  const struct superslab *ss = superslab_of_slab((struct slab *)s);
  unsigned k = superslab_span_slots(s->cls, ss->nslabs);
  if ((size_t)s->capacity * bs > (size_t)k << HAK_SLAB_SHIFT || s->index + k > ss->nslabs)
    return heap_problem("slab larger than its span", s);
  for (unsigned j = 1; j < k; j++)
    if (ss->slabs[s->index + j].state != SLAB_SPAN_TAIL || ss->slabs[s->index + j].head_offset != j)
      return heap_problem("medium slab without its tail slots", s);
  return 0;
}

HAK_RARE_TEXT static int heap_check_superslab(struct superslab *ss, uint64_t me)
{
  if (ss->magic != SUPERSLAB_MAGIC || ss->lg < HAK_SS_LG_MIN || ss->lg > HAK_SS_LG_MAX ||
      ss->nslabs != 1u << (ss->lg - HAK_SLAB_SHIFT))
    return heap_problem("SuperSlab header damaged", ss);
  if (registry_lookup((uintptr_t)ss) != ((uintptr_t)ss | REGISTRY_TAG_SUPERSLAB))
    return heap_problem("SuperSlab missing from the registry", ss);
  unsigned inuse = 0, unused = 0;
  for (unsigned i = 1; i < ss->nslabs; i++) {
    struct slab *s = &ss->slabs[i];
    if (s->index != i)
      return heap_problem("slab descriptor with a wrong index", s);
    switch (s->state) {
    case SLAB_UNUSED:
      unused++;
      continue;
    case SLAB_SPAN_TAIL: {
      const struct slab *h = s - s->head_offset;
      if (s->head_offset == 0 || s->head_offset >= i ||
          (h->state != SLAB_ACTIVE && h->state != SLAB_ORPHAN && h->state != SLAB_EMPTY) ||
          !size_class_is_medium(h->cls) || s->head_offset >= superslab_span_slots(h->cls, ss->nslabs))
        return heap_problem("medium slab tail without its head", s);
      continue;
    }
    case SLAB_ACTIVE:
    case SLAB_ORPHAN:
      inuse++;
      break;
    case SLAB_EMPTY:
      break;
    default:
      return heap_problem("slab in an unknown state", s);
    }
    if (heap_check_slab(s))
      return -1;
    /* Lists are stable only for slabs no other thread owns. */
    if (s->state == SLAB_ACTIVE && !slab_owned_by(s, me))
      continue;
    if (s->state == SLAB_EMPTY &&
        (s->used != 0 || atomic_load_explicit(&s->owner, memory_order_relaxed) != HAK_NO_OWNER))
      return heap_problem("EMPTY slab with blocks in use or an owner", s);
    slab_drain_remote(s);
    if (heap_check_free_list(s))
      return -1;
  }
  if (inuse != ss->ninuse || unused != ss->nunused)
    return heap_problem("SuperSlab slab counts disagree with its slabs", ss);
  if (ss->free_committed != superslab_count_free_committed(ss))
    return heap_problem("SuperSlab count of free committed slots disagrees with its slabs", ss);
  return 0;
}

HAK_RARE_TEXT int shared_pool_check_heap(uint64_t me)
{
  int rc = 0;
  size_t free_committed = 0;
  lock_take(&pool_lock);
  for (struct superslab *ss = all_list; ss && rc == 0; ss = ss->all_next) {
    rc = heap_check_superslab(ss, me);
    free_committed += (size_t)ss->free_committed << HAK_SLAB_SHIFT;
  }
  if (rc == 0 && free_committed != pool_free_committed)
    rc = heap_problem("pool's free committed bytes disagree with its SuperSlabs", all_list);
  for (unsigned c = 0; c < HAK_NUM_CLASSES && rc == 0; c++) {
    for (struct slab *s = empty_list[c]; s && rc == 0; s = s->next)
      if (s->state != SLAB_EMPTY || s->cls != c)
        rc = heap_problem("EMPTY list holds a slab of another state or class", s);
    for (struct slab *s = orphan_list[c]; s && rc == 0; s = s->next)
      if (s->state != SLAB_ORPHAN || s->cls != c)
        rc = heap_problem("orphan list holds a slab of another state or class", s);
  }
  lock_give(&pool_lock);
  return rc;
}
