/* Learning mode: the rating update and the phase machine fed synthetic
 * epoch costs (deterministic), epoch accounting with the memory price,
 * the state file, and the layers' use of the learner: frozen policy counts
 * nothing, learning runs epochs and moves the value. */
#include <check.h>
#include "core_util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hakmem.h"
#include "config.h"
#include "learn.h"
#include "learn_machine.h"

static const int three[] = { 16, 128, 1024 };

static void setup3(struct learn_decision *d, int policy)
{
  learn_decision_setup(d, "bigcache_max_mb", three, 3, 1, policy);
}

/* Feeds epochs whose cost is cost[candidate running]; returns how many
 * ran until the phase became want (or max). */
static unsigned run_until(struct learn_decision *d, const double *cost, enum learn_phase want,
                          unsigned max)
{
  unsigned n = 0;
  while (d->phase != want && n < max) {
    learn_epoch_end(d, cost[d->current]);
    n++;
  }
  return n;
}

START_TEST(score_follows_cost_ratio)
{
  ck_assert(learn_score(100, 100) == 0.5);
  double s10 = learn_score(90, 100);
  ck_assert(s10 > 0.65 && s10 < 0.75);
  ck_assert(learn_score(100, 90) == 1.0 - s10);
  ck_assert(learn_score(50, 100) == 1.0);
  ck_assert(learn_score(100, 50) == 0.0);
  ck_assert(learn_score(0, 0) == 0.5);
}
END_TEST

START_TEST(learn_freezes_on_the_cheapest)
{
  struct learn_decision d;
  setup3(&d, HAK_EVO_CANARY);
  ck_assert_int_eq(d.phase, LEARN_PHASE_LEARN);
  ck_assert_int_eq(d.value, 128);
  static const double cost[] = { 300, 200, 100 };
  unsigned n = run_until(&d, cost, LEARN_PHASE_FROZEN, 1000);
  ck_assert_int_eq(d.phase, LEARN_PHASE_FROZEN);
  ck_assert_int_eq(d.value, 1024);
  ck_assert_uint_eq(d.best, 2);
  /* Ratings ordered by cost, and the lead is clear. */
  ck_assert(d.cand[2].rating > d.cand[1].rating && d.cand[1].rating > d.cand[0].rating);
  ck_assert(d.cand[2].rating - d.cand[1].rating >= LEARN_CLEAR_GAP);
  /* Each candidate ran its minimum, and not much more: the leader
   * LEARN_MIN_EPOCHS, those clearly behind LEARN_MIN_EPOCHS_OUT. */
  ck_assert_uint_ge(d.cand[2].epochs, LEARN_MIN_EPOCHS);
  ck_assert_uint_ge(d.cand[0].epochs, LEARN_MIN_EPOCHS_OUT);
  ck_assert_uint_ge(d.cand[1].epochs, LEARN_MIN_EPOCHS_OUT);
  ck_assert_uint_le(n, LEARN_MIN_EPOCHS + 2 * LEARN_MIN_EPOCHS_OUT + 6);
  ck_assert_uint_eq(d.transitions, 1);
  /* Frozen: the value stays while nothing changes. */
  for (int i = 0; i < LEARN_CANARY_INTERVAL - 1; i++)
    ck_assert(!learn_epoch_end(&d, cost[d.current]));
  ck_assert_int_eq(d.phase, LEARN_PHASE_FROZEN);
}
END_TEST

START_TEST(equal_costs_freeze_after_the_bound)
{
  struct learn_decision d;
  setup3(&d, HAK_EVO_CANARY);
  static const double cost[] = { 100, 100, 100 };
  unsigned n = run_until(&d, cost, LEARN_PHASE_FROZEN, 1000);
  ck_assert_int_eq(d.phase, LEARN_PHASE_FROZEN);
  ck_assert_uint_eq(n, LEARN_MAX_EPOCHS_PER_CANDIDATE * 3);
}
END_TEST

START_TEST(policy_learn_never_freezes)
{
  struct learn_decision d;
  setup3(&d, HAK_EVO_LEARN);
  static const double cost[] = { 300, 200, 100 };
  run_until(&d, cost, LEARN_PHASE_FROZEN, 500);
  ck_assert_int_eq(d.phase, LEARN_PHASE_LEARN);
  ck_assert(d.cand[2].rating > d.cand[0].rating + 2 * LEARN_CLEAR_GAP);
  ck_assert_uint_eq(d.transitions, 0);
}
END_TEST

START_TEST(policy_frozen_does_nothing)
{
  struct learn_decision d;
  setup3(&d, HAK_EVO_FROZEN);
  ck_assert_int_eq(d.phase, LEARN_PHASE_OFF);
  ck_assert(!learn_epoch_end(&d, 1));
  ck_assert_uint_eq(d.epochs, 0);
  ck_assert_int_eq(d.value, 128);
}
END_TEST

/* The workload changes while frozen: a canary sees it and the decision
 * learns again, ending on the new best. */
START_TEST(workload_switch_relearns)
{
  struct learn_decision d;
  setup3(&d, HAK_EVO_CANARY);
  enum learn_phase seen[64];
  unsigned nseen = 0;
  seen[nseen++] = d.phase;
  static const double before[] = { 100, 200, 300 };
  static const double after[] = { 300, 200, 100 };
  const double *cost = before;
  for (unsigned e = 0; e < 1000; e++) {
    if (e == 60)
      cost = after;
    enum learn_phase p = d.phase;
    learn_epoch_end(&d, cost[d.current]);
    if (d.phase != p && nseen < 64)
      seen[nseen++] = d.phase;
  }
  /* LEARN -> FROZEN on 16 before the switch ... */
  ck_assert_uint_ge(nseen, 6);
  ck_assert_int_eq(seen[0], LEARN_PHASE_LEARN);
  ck_assert_int_eq(seen[1], LEARN_PHASE_FROZEN);
  /* ... then canaries until one wins: CANARY -> LEARN -> FROZEN on 1024. */
  bool relearned = false;
  for (unsigned i = 2; i + 1 < nseen; i++)
    if (seen[i] == LEARN_PHASE_CANARY && seen[i + 1] == LEARN_PHASE_LEARN)
      relearned = true;
  ck_assert(relearned);
  ck_assert_int_eq(d.phase, LEARN_PHASE_FROZEN);
  ck_assert_int_eq(d.value, 1024);
  /* A canary that loses goes back to FROZEN on the same value. */
  for (unsigned e = 0; e < 200; e++)
    learn_epoch_end(&d, after[d.current]);
  ck_assert_int_eq(d.value, 1024);
}
END_TEST

/* The incumbent, not the challenger, is charged a slow-down that happens
 * during the canary: the challenger must beat both neighbours. */
START_TEST(canary_needs_a_clear_win)
{
  struct learn_decision d;
  setup3(&d, HAK_EVO_CANARY);
  static const double cost[] = { 100, 200, 300 };
  run_until(&d, cost, LEARN_PHASE_FROZEN, 1000);
  ck_assert_int_eq(d.value, 16);
  run_until(&d, cost, LEARN_PHASE_CANARY, 100);
  /* Each challenger costs 95 % of the incumbent's epoch before it: not
   * clear.  Both are tried, then the decision stays frozen. */
  unsigned first = d.current;
  ck_assert_uint_ne(first, d.best);
  learn_epoch_end(&d, 1);   /* warm-up: not counted */
  ck_assert_uint_eq(d.current, first);
  learn_epoch_end(&d, 95);
  ck_assert_int_eq(d.value, 16);
  learn_epoch_end(&d, 100);
  ck_assert_int_eq(d.phase, LEARN_PHASE_CANARY);
  ck_assert_uint_ne(d.current, first);
  ck_assert_uint_ne(d.current, d.best);
  learn_epoch_end(&d, 1);
  learn_epoch_end(&d, 95);
  learn_epoch_end(&d, 100);
  ck_assert_int_eq(d.phase, LEARN_PHASE_FROZEN);
  ck_assert_int_eq(d.value, 16);
  /* One clear win followed by a loss is noise: still frozen. */
  run_until(&d, cost, LEARN_PHASE_CANARY, 10000);
  learn_epoch_end(&d, 100);
  learn_epoch_end(&d, 50);  /* challenger: wins ... */
  learn_epoch_end(&d, 100);
  ck_assert_int_eq(d.phase, LEARN_PHASE_CANARY);
  learn_epoch_end(&d, 100);
  learn_epoch_end(&d, 100); /* ... then loses */
  learn_epoch_end(&d, 100);
  learn_epoch_end(&d, 100); /* and so does the other challenger */
  learn_epoch_end(&d, 100);
  learn_epoch_end(&d, 100);
  ck_assert_int_eq(d.phase, LEARN_PHASE_FROZEN);
  ck_assert_int_eq(d.value, 16);
  /* A lost canary doubles the wait for the next one. */
  unsigned n = run_until(&d, cost, LEARN_PHASE_CANARY, 10000);
  ck_assert_uint_eq(n, 4 * LEARN_CANARY_INTERVAL);
  /* ... and stretches it to the budget: challengers costing 100 and 200
   * more than the incumbent's 100 for two epochs each wait 600 / 2 % of
   * 100 = 300 epochs. */
  ck_assert_uint_eq(d.canary_interval, 4 * LEARN_CANARY_INTERVAL);
  run_until(&d, cost, LEARN_PHASE_FROZEN, 100);
  ck_assert_uint_eq(d.canary_interval, 300);
}
END_TEST

/* A synthetic program for learn_observe: one ms of wall time is one ms of
 * CPU, and each candidate makes its own number of layer events per ms and
 * costs its own CPU ns per malloc or free call. */
static uint64_t fake_cpu, fake_calls, fake_now;
static uint64_t fake_cpu_ns(void) { return fake_cpu; }
static uint64_t fake_call_count(void) { return fake_calls; }

struct fake_candidate {
  double ns_per_call;
  unsigned events_per_ms;
  uint64_t retained;
};

static void fake_setup(struct learn_decision *d, const int *values, unsigned n, int policy)
{
  learn_decision_setup(d, "superslab_keep", values, n, 1, policy);
  d->cpu_ns = fake_cpu_ns;
  d->calls = fake_call_count;
  d->epoch_len = 500000;   /* 50 ms at 100 ns per call */
  d->settle_calls = 250000;
  fake_cpu = 0;
  fake_calls = 0;
  fake_now = 1000000000ull;
}

static void fake_run_ms(struct learn_decision *d, const struct fake_candidate *c, unsigned ms)
{
  for (unsigned t = 0; t < ms; t++) {
    const struct fake_candidate *f = &c[d->current];
    fake_now += 1000000;
    fake_cpu += 1000000;
    fake_calls += (uint64_t)(1e6 / f->ns_per_call);
    for (unsigned e = 0; e < f->events_per_ms; e++)
      learn_observe(d, fake_now, f->retained);
  }
}

/* The cost is CPU per call, not per event: a candidate that makes the
 * layer busier (a pool that hands out and takes back more often) at an
 * equal or higher cost per call gains nothing by its events. */
START_TEST(more_events_do_not_win)
{
  struct learn_decision d;
  /* 16 makes 64 times the events of the others and costs 10 % more per
   * call; 1024 costs 10 % less.  By cost per event 16 would win by far. */
  static const struct fake_candidate busy[] = {
    { 110, 64, 0 }, { 100, 1, 0 }, { 90, 1, 0 },
  };
  fake_setup(&d, three, 3, HAK_EVO_CANARY);
  for (unsigned i = 0; i < 100 && d.phase == LEARN_PHASE_LEARN; i++)
    fake_run_ms(&d, busy, 100);
  ck_assert_int_eq(d.phase, LEARN_PHASE_FROZEN);
  ck_assert_int_eq(d.value, 1024);
  ck_assert(d.cand[0].rating < d.cand[1].rating);
  ck_assert(d.cand[0].cost > d.cand[1].cost && d.cand[1].cost > d.cand[2].cost);
  /* Each epoch measured epoch_len calls whatever its events. */
  ck_assert(d.cand[0].cost > 109 && d.cand[0].cost < 111);

  /* Equal cost per call: the busy candidate earns no rating, and the
   * decision freezes on the configured value after the bound. */
  static const struct fake_candidate equal[] = {
    { 100, 64, 0 }, { 100, 1, 0 }, { 100, 1, 0 },
  };
  fake_setup(&d, three, 3, HAK_EVO_CANARY);
  for (unsigned i = 0; i < 1000 && d.phase == LEARN_PHASE_LEARN; i++)
    fake_run_ms(&d, equal, 100);
  ck_assert_int_eq(d.phase, LEARN_PHASE_FROZEN);
  for (unsigned i = 0; i < 3; i++)
    ck_assert(d.cand[i].rating == LEARN_INITIAL_RATING);
  ck_assert_int_eq(d.value, 128);
  ck_assert_uint_eq(d.epochs, LEARN_MAX_EPOCHS_PER_CANDIDATE * 3);
}
END_TEST

/* Epochs are epoch_len calls long and start after settle_calls; memory
 * held is priced by wall time, a sleep included. */
START_TEST(epoch_cost_prices_memory)
{
  struct learn_decision d;
  static const int two[] = { 1, 2 };
  fake_setup(&d, two, 2, HAK_EVO_LEARN);
  d.memory_price = 1 << 20; /* a MiB held for a second costs a CPU second */
  /* Value 2 holds a MiB; 10000 calls per ms at 100 ns each. */
  static const struct fake_candidate c[] = { { 100, 1, 0 }, { 100, 1, 1 << 20 } };
  /* The first event (ms 1) starts the count: 25 ms settle, 50 measured. */
  fake_run_ms(&d, c, 25);
  ck_assert(!d.measuring);
  fake_run_ms(&d, c, 1);
  ck_assert(d.measuring);
  fake_run_ms(&d, c, 49);
  ck_assert_uint_eq(d.epochs, 0);
  fake_run_ms(&d, c, 1);
  ck_assert_uint_eq(d.epochs, 1);
  /* 50 ms of CPU and 50 MiB-ms held over 500000 calls. */
  ck_assert(d.cand[1].cost > 199.9 && d.cand[1].cost < 200.1);
  ck_assert_int_eq(d.value, 1);
  /* Value 1 settles, then runs an epoch holding nothing. */
  fake_run_ms(&d, c, 75);
  ck_assert_uint_eq(d.epochs, 2);
  ck_assert(d.cand[0].cost > 99.9 && d.cand[0].cost < 100.1);
  ck_assert(d.cand[0].rating > d.cand[1].rating);
  /* Value 2 again, with a 100 ms sleep inside its epoch: no CPU, no call,
   * but the MiB held meanwhile costs as much as 100 ms of CPU. */
  fake_run_ms(&d, c, 50);
  ck_assert(d.measuring);
  for (unsigned t = 0; t < 100; t++) {
    fake_now += 1000000;
    learn_observe(&d, fake_now, 1 << 20);
  }
  ck_assert_uint_eq(d.epochs, 2);
  fake_run_ms(&d, c, 25);
  ck_assert_uint_eq(d.epochs, 3);
  ck_assert(d.cand[1].cost > 399.9 && d.cand[1].cost < 400.1);
}
END_TEST

/* The shared pool's call count reads the slabs while their owners run,
 * and may come back a few calls below the reading an epoch started at.
 * That is no call made, not 2^64 of them: the epoch goes on, and ends
 * when the calls are made, at their cost. */
START_TEST(count_below_epoch_start_ends_nothing)
{
  struct learn_decision d;
  static const int two[] = { 1, 2 };
  fake_setup(&d, two, 2, HAK_EVO_LEARN);
  static const struct fake_candidate c[] = { { 100, 1, 0 }, { 100, 1, 0 } };
  fake_run_ms(&d, c, 26);
  ck_assert(d.measuring);
  int running = d.value;
  uint64_t start = d.epoch_calls;
  fake_now += 1000000;
  fake_cpu += 1000000;
  fake_calls = start - 3;
  ck_assert(!learn_observe(&d, fake_now, 0));
  ck_assert(d.measuring);
  ck_assert_uint_eq(d.epochs, 0);
  ck_assert_int_eq(d.value, running);
  /* 50 ms' calls later the epoch ends: 51 ms of CPU over 500000 calls. */
  fake_calls = start;
  fake_run_ms(&d, c, 50);
  ck_assert_uint_eq(d.epochs, 1);
  double cost = d.cand[running == two[0] ? 0 : 1].cost;
  ck_assert_msg(cost > 101.9 && cost < 102.1, "epoch cost %g ns per call", cost);
}
END_TEST

static char state_path[64];

static char *read_all(const char *path)
{
  static char buf[4096];
  FILE *f = fopen(path, "r");
  ck_assert_ptr_nonnull(f);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

START_TEST(state_file_saves_and_restores)
{
  snprintf(state_path, sizeof state_path, "/tmp/hakmem-learn-test.%d", (int)getpid());
  FILE *f = fopen(state_path, "w");
  ck_assert_ptr_nonnull(f);
  fprintf(f, "other-program bigcache_max_mb 16\n%s superslab_keep 4\n", program_invocation_short_name);
  fclose(f);
  /* Learning mode: evo_policy canary, BigCache of 128 MiB. */
  char file[300];
  snprintf(file, sizeof file, "HAKMEM_LEARN_STATE_FILE=%s", state_path);
  char *env[] = { "HAKMEM_MODE=learning", "HAKMEM_SUPERSLAB_KEEP=4", file, NULL };
  load_options(env);
  ck_assert_int_eq(hak_config.evo_policy, HAK_EVO_CANARY);
  ck_assert_int_eq(hak_config.bigcache_max_mb, 128);
  learn_init();
  /* Our line restored superslab_keep FROZEN on 4; bigcache still learns. */
  ck_assert_int_eq(learn_decisions[LEARN_SUPERSLAB_KEEP].phase, LEARN_PHASE_FROZEN);
  ck_assert_int_eq(learn_decisions[LEARN_SUPERSLAB_KEEP].value, 4);
  ck_assert_int_eq(learn_decisions[LEARN_BIGCACHE_MAX_MB].phase, LEARN_PHASE_LEARN);
  learn_freeze_on(&learn_decisions[LEARN_BIGCACHE_MAX_MB], 2);
  learn_save_state();
  char want[128];
  const char *text = read_all(state_path);
  ck_assert(strstr(text, "other-program bigcache_max_mb 16\n"));
  snprintf(want, sizeof want, "%s bigcache_max_mb 1024\n", program_invocation_short_name);
  ck_assert(strstr(text, want));
  snprintf(want, sizeof want, "%s superslab_keep 4\n", program_invocation_short_name);
  ck_assert(strstr(text, want));
  /* The next run starts FROZEN on what was learned. */
  learn_init();
  ck_assert_int_eq(learn_decisions[LEARN_BIGCACHE_MAX_MB].phase, LEARN_PHASE_FROZEN);
  ck_assert_int_eq(learn_decisions[LEARN_BIGCACHE_MAX_MB].value, 1024);
  /* In secure execution nothing is written. */
  unlink(state_path);
  config_secure = true;
  learn_save_state();
  config_secure = false;
  ck_assert_int_eq(access(state_path, F_OK), -1);
  hak_config.learn_state_file[0] = '\0';
}
END_TEST

/* Frees and re-allocates 24 blocks of 1 MiB, rounds times. */
static void large_churn(int rounds)
{
  void *b[24];
  for (int r = 0; r < rounds; r++) {
    for (int i = 0; i < 24; i++) {
      b[i] = hak_malloc((size_t)1 << 20);
      ck_assert_ptr_nonnull(b[i]);
      memset(b[i], r, 4096);
    }
    for (int i = 0; i < 24; i++)
      hak_free(b[i]);
  }
}

START_TEST(frozen_policy_counts_nothing)
{
  hak_free(hak_malloc(1));
  char *env[] = { "HAKMEM_MODE=balanced", NULL };
  load_options(env);
  ck_assert_int_eq(hak_config.evo_policy, HAK_EVO_FROZEN);
  learn_init();
  large_churn(20);
  for (unsigned k = 0; k < LEARN_DECISION_COUNT; k++) {
    ck_assert_int_eq(learn_decisions[k].phase, LEARN_PHASE_OFF);
    ck_assert_uint_eq(learn_decisions[k].events, 0);
    ck_assert_uint_eq(learn_decisions[k].epochs, 0);
  }
}
END_TEST

START_TEST(learning_runs_epochs_in_the_layers)
{
  hak_free(hak_malloc(1));
  char *env[] = { "HAKMEM_MODE=learning", "HAKMEM_EVO_POLICY=learn", NULL };
  load_options(env);
  ck_assert_int_eq(hak_config.bigcache, 1);
  ck_assert_int_eq(hak_config.bigcache_max_mb, 128);
  learn_init();
  const struct learn_decision *d = &learn_decisions[LEARN_BIGCACHE_MAX_MB];
  /* Epochs are CPU time: churn until every candidate has run one (the
   * bound only stops a broken learner from looping for ever). */
  unsigned rounds = 0;
  bool all_ran = false;
  while (!all_ran && rounds < 200000) {
    large_churn(10);
    rounds += 10;
    all_ran = true;
    for (unsigned i = 0; i < d->ncand; i++)
      all_ran &= d->cand[i].epochs >= 1;
  }
  ck_assert(all_ran);
  /* Two BigCache events per block, a take and a put. */
  ck_assert_uint_eq(d->events, (uint64_t)rounds * 24 * 2);
  for (unsigned i = 0; i < d->ncand; i++)
    ck_assert(d->cand[i].cost > 0);
  hak_stats_t st;
  hakmem_stats_get(&st);
  ck_assert_uint_gt(st.bigcache_hits, 0);
  hak_config.evo_policy = HAK_EVO_FROZEN;
  learn_init();
}
END_TEST

int main(void)
{
  Suite *s = suite_create("learn");
  TCase *t = tcase_create("machine");
  tcase_add_test(t, score_follows_cost_ratio);
  tcase_add_test(t, learn_freezes_on_the_cheapest);
  tcase_add_test(t, equal_costs_freeze_after_the_bound);
  tcase_add_test(t, policy_learn_never_freezes);
  tcase_add_test(t, policy_frozen_does_nothing);
  tcase_add_test(t, workload_switch_relearns);
  tcase_add_test(t, canary_needs_a_clear_win);
  tcase_add_test(t, more_events_do_not_win);
  suite_add_tcase(s, t);
  TCase *a = tcase_create("accounting");
  tcase_set_timeout(a, 60);
  tcase_add_test(a, epoch_cost_prices_memory);
  tcase_add_test(a, count_below_epoch_start_ends_nothing);
  tcase_add_test(a, state_file_saves_and_restores);
  tcase_add_test(a, frozen_policy_counts_nothing);
  tcase_add_test(a, learning_runs_epochs_in_the_layers);
  suite_add_tcase(s, a);
  return check_run(s);
}
