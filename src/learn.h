/* Learning: an online choice, per decision, among a few candidate values
 * of a policy knob, by ELO rating of their measured costs.
 *
 * A decision is fed events by the layer whose knob it sets (BigCache: each
 * take and put; shared pool: each slab handed out or given back), always
 * under that layer's lock, which therefore also guards the decision: the
 * learner has no lock and no thread of its own, and the fast paths never
 * reach it.  The layer reads the decision's value under the same lock.
 * The layer also hands the learner, with each event, the function that
 * counts its calls: the learner calls no layer by name, and sits below
 * the layers it serves.
 *
 * Epochs are measured in the program's calls, not in the layer's events:
 * an epoch ends at the first event after the program has made epoch_len
 * malloc and free calls of the layer's size range (small blocks for
 * superslab_keep, large blocks for BigCache), counted where every call is
 * counted whatever the candidate (the slabs' own allocation and in-use
 * counts; the large-block counters).  Its cost is the process CPU time it
 * took plus the memory the layer held unused meanwhile, priced in time,
 * per call.  A candidate that makes the layer busier (more hand-outs,
 * more cache traffic) therefore neither gains by it nor moves the epoch's
 * boundary; one that makes the program slower pays for it.  After the
 * value changes, settle_calls pass unmeasured first: the new value runs,
 * but what it costs is still partly its predecessor's doing (memory the
 * predecessor gave back is faulted in again, a cache it shrank refills).
 *
 * Memory: holding memory_price bytes for a second of wall time costs as
 * much as a second of CPU, so a candidate that keeps more memory must buy
 * it with time saved, and a program's sleep costs nothing but the memory
 * it holds meanwhile.  The price is 1 GiB, or ss_mem_lean_target_mb (at
 * least 16 MiB) in memory-lean mode.
 *
 * Phases (evo_policy): LEARN runs the candidates in turn; two consecutive
 * epochs of different candidates are a game, scored by their cost ratio,
 * that moves both ratings.  A candidate LEARN_CLEAR_GAP points behind the
 * leader after LEARN_MIN_EPOCHS_OUT epochs leaves the rotation (with
 * evo_policy = canary).  When the leader is clear of every other
 * candidate by LEARN_CLEAR_GAP points and each has played enough, or after
 * a bounded number of epochs, the decision is FROZEN on the leader (on a
 * tie, the configured value).  With
 * evo_policy = canary, after LEARN_CANARY_INTERVAL frozen epochs a CANARY
 * runs each other candidate in turn for one epoch (after one to warm up)
 * between two epochs of the incumbent; if one costs clearly less than
 * both, twice in a row, the workload has changed and the decision goes
 * back to LEARN.  Each canary that loses at least doubles the wait for the
 * next, and stretches it so that what its challengers cost beyond the
 * incumbent stays within LEARN_CANARY_BUDGET of the frozen time.
 * evo_policy = learn never freezes;
 * evo_policy = frozen (the default outside the learning and research
 * modes) measures nothing and leaves the configured value in place. */
#ifndef HAKMEM_LEARN_H
#define HAKMEM_LEARN_H

#include "hakmem_internal.h"

enum learn_id { LEARN_BIGCACHE_MAX_MB, LEARN_SUPERSLAB_KEEP, LEARN_DECISION_COUNT };
enum learn_phase { LEARN_PHASE_OFF, LEARN_PHASE_LEARN, LEARN_PHASE_FROZEN, LEARN_PHASE_CANARY };

#define LEARN_MAX_CANDIDATES 4
#define LEARN_INITIAL_RATING 1500.0
#define LEARN_K 32.0                /* rating points a game can move */
#define LEARN_CLEAR_GAP 64.0        /* leader's lead needed to freeze */
#define LEARN_MIN_EPOCHS 3          /* epochs the leader runs before a freeze */
#define LEARN_MIN_EPOCHS_OUT 2      /* ... and one clearly behind it */
#define LEARN_MAX_EPOCHS_PER_CANDIDATE 10 /* then freeze on the leader anyway */
#define LEARN_CANARY_INTERVAL 32    /* frozen epochs before the first canary ... */
#define LEARN_CANARY_INTERVAL_MAX 65536 /* ... doubling after each lost one, up to this */
#define LEARN_CANARY_BUDGET 0.02    /* share of the frozen time a lost canary may cost */
#define LEARN_CANARY_MARGIN 0.10    /* a challenger must cost this much less */
/* An epoch's length in calls of the layer's range (half of it again,
 * unmeasured, after a change of value).  Long enough to span a cycle or
 * more of a program that allocates in bursts (an epoch that saw only a
 * burst's allocations, which fault pages in, and the next only its frees
 * would be told apart by that, not by its candidate): a BigCache epoch is
 * 64 large blocks allocated and freed, a superslab_keep one 2^19 small
 * calls, about 40 MiB of 64-512 B blocks allocated and freed.
 * LEARN_EPOCH_CALLS is the default of learn_decision_setup. */
#define LEARN_EPOCH_CALLS 1024u
#define LEARN_LARGE_EPOCH_CALLS 128u
#define LEARN_SMALL_EPOCH_CALLS (1u << 19)
/* The small-call count walks every slab: at most once per this much wall
 * time, and per LEARN_POLL_FACTOR times the last walk's time. */
#define LEARN_POOL_POLL_NS 1000000ull
#define LEARN_POLL_FACTOR 100u

struct learn_candidate {
  int value;
  double rating;
  uint32_t epochs;      /* epochs run with this value */
  double cost;          /* cost of its last epoch */
};

struct learn_decision {
  const char *name;     /* the option it sets */
  unsigned ncand;
  struct learn_candidate cand[LEARN_MAX_CANDIDATES];
  int value;            /* what the layer uses now */
  enum learn_phase phase;
  int policy;           /* enum hak_evo_policy */
  bool log;             /* research mode: one line per transition */
  uint64_t epoch_len;   /* calls an epoch measures */
  uint64_t settle_calls; /* unmeasured calls after a change of value */
  uint64_t poll_ns;     /* wall time between two readings of calls() */
  uint64_t poll_min_ns; /* 0, or calls() walks the heap: poll_ns adapts
                         * to its cost, and is at least this */
  double memory_price;  /* bytes whose retention doubles an epoch's cost */
  /* The clocks of an epoch's cost: the process CPU time in ns (read at
   * an epoch's start and end), and the program's malloc and free calls in
   * the layer's size range so far (counted whatever the candidate; polled
   * under the layer's lock; nearly monotonic: the shared pool's reading
   * races with the slabs' owners, and learn_observe takes a count below
   * the epoch's start as no calls made).  learn_decision_setup
   * sets them; a test may put a clock of its own (learn_machine.h). */
  uint64_t (*cpu_ns)(void);
  uint64_t (*calls)(void);

  unsigned current;     /* candidate of the running epoch */
  unsigned best;        /* the frozen choice */
  unsigned initial;     /* the configured value's candidate */
  bool have_prev;       /* LEARN: the previous epoch's candidate and cost */
  unsigned prev;
  double prev_cost;
  unsigned phase_epochs; /* epochs since the phase began */
  unsigned next_challenger;
  double canary_before; /* CANARY: the incumbent's cost before the challenger */
  double canary_cost;   /* ... and the challenger's */
  unsigned canary_step; /* 0 challenger warming up, 1 measured, 2 incumbent after it */
  bool canary_won;      /* the challenger won once already */
  double canary_base;   /* the incumbent's cost when the canary began */
  double canary_excess; /* the canary's epochs' cost beyond it, summed */
  unsigned canary_interval; /* frozen epochs before the next canary */
  unsigned canary_left; /* challengers this canary has still to try */

  uint64_t epochs;
  uint64_t transitions;
  uint64_t events;
  uint64_t events_to_freeze; /* events from the start until the first freeze */

  /* The running epoch. */
  bool measuring;             /* false while settling (or before the first event) */
  bool settling;              /* the first event came: settle_until_calls is set */
  uint64_t settle_until_calls; /* settling: the measurement starts at this count */
  bool polled;                /* calls() was read, at polled_ns */
  uint64_t polled_ns;
  uint32_t epoch_events;
  uint64_t epoch_start_ns, last_ns;
  uint64_t epoch_cpu_ns;      /* process CPU time at the epoch's start */
  uint64_t epoch_calls;       /* calls() at the epoch's start */
  uint64_t retained;          /* bytes the layer holds unused, last reported */
  double retained_byte_ns;    /* its integral over the epoch */
};

extern struct learn_decision learn_decisions[LEARN_DECISION_COUNT];

/* Sets up every decision from the configuration (values, policy, the
 * saved state of learn_state_file).  Called once by init; no allocation. */
void learn_init(void);

/* The value the layer should use now: the learned one while the decision
 * learns, otherwise configured.  Caller holds the layer's lock. */
HAK_INLINE int learn_value(enum learn_id id, int configured)
{
  const struct learn_decision *d = &learn_decisions[id];
  return d->phase == LEARN_PHASE_OFF ? configured : d->value;
}

/* Whether the decision is measuring (its layer then reports events). */
HAK_INLINE bool learn_active(enum learn_id id)
{
  return learn_decisions[id].phase != LEARN_PHASE_OFF;
}

/* One event of the decision's layer, which now retains retained_bytes
 * unused: the learner's chance to look at the clock and end an epoch.
 * calls counts the program's malloc and free calls in the layer's size
 * range so far (monotonic; it becomes the decision's calls, read when the
 * learner polls, under the same lock).  Returns true when the value
 * changed.  Caller holds the layer's lock. */
bool learn_event(enum learn_id id, uint64_t retained_bytes, uint64_t (*calls)(void));
/* The layer's retained memory changed without an event (purge). */
void learn_retained(enum learn_id id, uint64_t retained_bytes);

const char *learn_phase_name(enum learn_phase p);

/* At exit: writes the frozen choices to learn_state_file, if set. */
void learn_save_state(void);

#endif
