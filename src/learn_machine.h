/* The learner's phase machine and epoch accounting, one decision at a
 * time, with the clocks the caller gives it.  learn.c runs them for its
 * decisions (learn_init, learn_event); no other layer calls them, so they
 * are not in learn.h.  tests/test_learn.c drives them directly, with a
 * clock and call counter of its own in d->cpu_ns and d->calls.  The same
 * rules as learn.h: the caller serialises all calls on one decision (the
 * layer's lock, or a test's single thread); nothing here allocates. */
#ifndef HAKMEM_LEARN_MACHINE_H
#define HAKMEM_LEARN_MACHINE_H

#include "learn.h"

/* Sets d up with candidate values[0..n) starting on values[initial],
 * epochs of LEARN_EPOCH_CALLS calls, the process CPU clock and no call
 * counter (the caller sets one before feeding events). */
void learn_decision_setup(struct learn_decision *d, const char *name, const int *values,
                          unsigned n, unsigned initial, int policy);
/* Ends d's running epoch with cost (lower is better).  Returns true when
 * the value changed. */
bool learn_epoch_end(struct learn_decision *d, double cost);
/* Starts d FROZEN on candidate i (a restored choice). */
void learn_freeze_on(struct learn_decision *d, unsigned i);
/* learn_event at wall time now_ns: one event of d's layer, which now
 * retains retained_bytes unused.  Returns true when the value changed. */
bool learn_observe(struct learn_decision *d, uint64_t now_ns, uint64_t retained_bytes);

/* The score of a game: 1 when a's cost is far below b's, 0.5 for equal
 * costs, 0 when far above. */
double learn_score(double cost_a, double cost_b);

#endif
