/* Learning: ELO ratings of candidate values, the LEARN -> FROZEN -> CANARY
 * phase machine, epoch accounting, and the state file. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "learn.h"
#include "learn_machine.h"
#include "config.h"
#include "secret.h"
#include "counters.h"
#include "diag.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h> /* snprintf of the research log line; rename */
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct learn_decision learn_decisions[LEARN_DECISION_COUNT];

/* Candidates, chosen from bench/learn: BigCache bounds from "a few blocks"
 * to "a whole batch of big buffers"; SuperSlabs kept from one to a burst's
 * worth.  The balanced default is the middle one. */
static const int bigcache_candidates[] = { 16, 128, 1024 };
static const int superslab_keep_candidates[] = { 16, 256, 1024 };

const char *learn_phase_name(enum learn_phase p)
{
  switch (p) {
  case LEARN_PHASE_LEARN: return "LEARN";
  case LEARN_PHASE_FROZEN: return "FROZEN";
  case LEARN_PHASE_CANARY: return "CANARY";
  default: return "OFF";
  }
}

double learn_score(double cost_a, double cost_b)
{
  if (!(cost_a + cost_b > 0))
    return 0.5;
  /* A 10 % difference scores about 0.7, a 25 % one 1: margins count, so
   * that noise of a few percent moves the ratings only a little. */
  double s = 0.5 + 4.0 * (cost_b - cost_a) / (cost_a + cost_b);
  return s < 0 ? 0 : s > 1 ? 1 : s;
}

/* 10^x for the expected score, without libm (every program that loads
 * hakmem would map it for this one call): e^y squared back from e^(y/2^k)
 * by its Taylor series, exact to about 1e-12 for |x| <= 20. */
static double pow10_small(double x)
{
  if (x > 20)
    x = 20;
  if (x < -20)
    x = -20;
  double y = x * 2.302585092994046;
  int halvings = 0;
  while (y > 0.5 || y < -0.5) {
    y /= 2;
    halvings++;
  }
  double sum = 1, term = 1;
  for (int i = 1; i < 14; i++) {
    term *= y / i;
    sum += term;
  }
  while (halvings--)
    sum *= sum;
  return sum;
}

static void elo_game(struct learn_decision *d, unsigned a, unsigned b, double cost_a, double cost_b)
{
  double ra = d->cand[a].rating, rb = d->cand[b].rating;
  double expect_a = 1.0 / (1.0 + pow10_small((rb - ra) / 400.0));
  double delta = LEARN_K * (learn_score(cost_a, cost_b) - expect_a);
  d->cand[a].rating = ra + delta;
  d->cand[b].rating = rb - delta;
}

/* The best-rated candidate; on a tie the configured value, so that a
 * decision where nothing is clearly better keeps what the user set. */
static unsigned leader(const struct learn_decision *d)
{
  unsigned best = d->initial;
  for (unsigned i = 0; i < d->ncand; i++)
    if (d->cand[i].rating > d->cand[best].rating)
      best = i;
  return best;
}

/* Candidate i is clearly behind the leader l after LEARN_MIN_EPOCHS_OUT
 * epochs of its own: with evo_policy = canary it leaves the rotation (a
 * value that made the program several times slower need not run again to
 * prove it), and holds up no freeze. */
static bool out_of_the_running(const struct learn_decision *d, unsigned i, unsigned l)
{
  return i != l && d->cand[i].epochs >= LEARN_MIN_EPOCHS_OUT &&
         d->cand[l].rating - d->cand[i].rating >= LEARN_CLEAR_GAP;
}

/* The leader has run enough, and every other candidate is out. */
static bool converged(const struct learn_decision *d)
{
  unsigned l = leader(d);
  if (d->cand[l].epochs < LEARN_MIN_EPOCHS)
    return false;
  for (unsigned i = 0; i < d->ncand; i++)
    if (i != l && !out_of_the_running(d, i, l))
      return false;
  return true;
}

static void log_transition(const struct learn_decision *d, enum learn_phase from)
{
  if (!d->log)
    return;
  char msg[160];
  snprintf(msg, sizeof msg, "learn: %s %s -> %s, value %d after %llu epochs (%llu events)",
           d->name, learn_phase_name(from), learn_phase_name(d->phase), d->value,
           (unsigned long long)d->epochs, (unsigned long long)d->events);
  hak_warn(msg);
}

static void set_phase(struct learn_decision *d, enum learn_phase p, unsigned run)
{
  enum learn_phase from = d->phase;
  d->phase = p;
  d->phase_epochs = 0;
  d->current = run;
  d->value = d->cand[run].value;
  d->transitions++;
  log_transition(d, from);
}

static unsigned next_challenger(struct learn_decision *d)
{
  unsigned c = d->next_challenger % d->ncand;
  if (c == d->best)
    c = (c + 1) % d->ncand;
  d->next_challenger = c + 1;
  return c;
}

static uint64_t process_cpu_ns(void);
static uint64_t no_calls(void) { return 0; }

void learn_decision_setup(struct learn_decision *d, const char *name, const int *values,
                          unsigned n, unsigned initial, int policy)
{
  memset(d, 0, sizeof *d);
  d->name = name;
  d->ncand = n < LEARN_MAX_CANDIDATES ? n : LEARN_MAX_CANDIDATES;
  for (unsigned i = 0; i < d->ncand; i++) {
    d->cand[i].value = values[i];
    d->cand[i].rating = LEARN_INITIAL_RATING;
  }
  d->policy = policy;
  d->epoch_len = LEARN_EPOCH_CALLS;
  d->settle_calls = LEARN_EPOCH_CALLS / 2;
  d->cpu_ns = process_cpu_ns;
  d->calls = no_calls;
  d->memory_price = (double)(1u << 30);
  d->canary_interval = LEARN_CANARY_INTERVAL;
  d->current = d->best = d->initial = initial < d->ncand ? initial : 0;
  d->value = d->cand[d->current].value;
  d->phase = policy == HAK_EVO_FROZEN ? LEARN_PHASE_OFF : LEARN_PHASE_LEARN;
}

void learn_freeze_on(struct learn_decision *d, unsigned i)
{
  if (d->phase == LEARN_PHASE_OFF || i >= d->ncand)
    return;
  d->best = i;
  d->cand[i].rating = LEARN_INITIAL_RATING + LEARN_CLEAR_GAP;
  d->events_to_freeze = 0;
  set_phase(d, LEARN_PHASE_FROZEN, i);
  d->transitions = 0;
}

/* LEARN: the epoch that ended and the one before are a game; then the
 * next candidate in turn runs, or the decision freezes. */
static unsigned learn_step(struct learn_decision *d, double cost)
{
  unsigned cur = d->current;
  if (d->have_prev && d->prev != cur)
    elo_game(d, cur, d->prev, cost, d->prev_cost);
  d->have_prev = true;
  d->prev = cur;
  d->prev_cost = cost;
  if (d->policy == HAK_EVO_CANARY &&
      (converged(d) || d->phase_epochs >= LEARN_MAX_EPOCHS_PER_CANDIDATE * d->ncand)) {
    d->best = leader(d);
    if (!d->events_to_freeze)
      d->events_to_freeze = d->events;
    set_phase(d, LEARN_PHASE_FROZEN, d->best);
    return d->best;
  }
  unsigned next = (cur + 1) % d->ncand, l = leader(d);
  for (unsigned k = 0; k + 1 < d->ncand && d->policy == HAK_EVO_CANARY &&
                       out_of_the_running(d, next, l); k++)
    next = (next + 1) % d->ncand;
  return next;
}

/* CANARY, per challenger: one epoch to warm up (a cache it enlarges is
 * still cold), one measured, then one of the incumbent.  A challenger
 * cheaper than the incumbent's epochs on both sides by the margin runs
 * again; two such wins in a row mean the workload changed (one can be
 * noise, or the incumbent paying to refill what the challenger gave back). */
static unsigned canary_step(struct learn_decision *d, double cost)
{
  unsigned challenger = d->prev;
  /* What the canary costs: every epoch of it beyond the incumbent's
   * frozen cost, the incumbent's own epochs after a challenger included
   * (they refill what the challenger gave back). */
  d->canary_excess += cost > d->canary_base ? cost - d->canary_base : 0;
  switch (d->canary_step++) {
  case 0: /* warm-up */
    return challenger;
  case 1: /* measured */
    d->canary_cost = cost;
    return d->best;
  default:
    break;
  }
  double limit = (1.0 - LEARN_CANARY_MARGIN) * (d->canary_before < cost ? d->canary_before : cost);
  bool won = d->canary_cost < limit;
  d->canary_before = cost;
  d->canary_step = 0;
  if (won && !d->canary_won) {
    d->canary_won = true;
    return challenger;
  }
  d->canary_won = false;
  if (won) {
    /* Keep what was learned as a head start, but let the ratings move. */
    for (unsigned i = 0; i < d->ncand; i++) {
      d->cand[i].rating = LEARN_INITIAL_RATING + (d->cand[i].rating - LEARN_INITIAL_RATING) / 4;
      d->cand[i].epochs = 0;
    }
    elo_game(d, challenger, d->best, d->canary_cost, cost);
    d->have_prev = true;
    d->prev = d->best;
    d->prev_cost = cost;
    d->canary_interval = LEARN_CANARY_INTERVAL;
    set_phase(d, LEARN_PHASE_LEARN, challenger);
    return challenger;
  }
  /* Lost: the next challenger, if this canary has not tried them all
   * (the incumbent epoch just run is its "before"). */
  if (--d->canary_left > 0) {
    d->prev = next_challenger(d);
    return d->prev;
  }
  /* All lost: wait twice as long, and long enough that what the
   * challengers cost beyond the incumbent stays within the budget. */
  double budget = d->canary_excess / (LEARN_CANARY_BUDGET * (d->canary_base > 0 ? d->canary_base : 1));
  double next = 2.0 * d->canary_interval;
  if (next < budget)
    next = budget;
  d->canary_interval = next < LEARN_CANARY_INTERVAL_MAX ? (unsigned)next : LEARN_CANARY_INTERVAL_MAX;
  set_phase(d, LEARN_PHASE_FROZEN, d->best);
  return d->best;
}

bool learn_epoch_end(struct learn_decision *d, double cost)
{
  if (d->phase == LEARN_PHASE_OFF)
    return false;
  int before = d->value;
  struct learn_candidate *c = &d->cand[d->current];
  c->epochs++;
  c->cost = cost;
  d->epochs++;
  d->phase_epochs++;
  unsigned run = d->current;
  switch (d->phase) {
  case LEARN_PHASE_LEARN:
    run = learn_step(d, cost);
    break;
  case LEARN_PHASE_FROZEN:
    if (d->policy == HAK_EVO_CANARY && d->phase_epochs >= d->canary_interval) {
      d->canary_before = d->canary_base = cost;
      d->canary_step = 0;
      d->canary_won = false;
      d->canary_excess = 0;
      d->canary_left = d->ncand - 1;
      d->prev = next_challenger(d);
      set_phase(d, LEARN_PHASE_CANARY, d->prev);
      run = d->prev;
    }
    break;
  case LEARN_PHASE_CANARY:
    run = canary_step(d, cost);
    break;
  default:
    break;
  }
  d->current = run;
  d->value = d->cand[run].value;
  return d->value != before;
}

static uint64_t clock_ns(clockid_t id)
{
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Wall time, read at every event for the memory integral (vDSO, no
 * system call). */
static uint64_t now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
/* Process CPU time, read at an epoch's start and end (a system call). */
static uint64_t process_cpu_ns(void) { return clock_ns(CLOCK_PROCESS_CPUTIME_ID); }

/* Reads the layer's call count.  A count that walks the heap (poll_min_ns
 * set: the shared pool's) grows with the heap, so the next reading waits
 * LEARN_POLL_FACTOR times as long as this one took, and at least
 * poll_min_ns: the learner's share of the program's time stays under
 * 1 %, whatever the heap's size. */
static uint64_t read_calls(struct learn_decision *d)
{
  if (!d->poll_min_ns)
    return d->calls();
  uint64_t t0 = now_ns();
  uint64_t n = d->calls();
  uint64_t took = now_ns() - t0;
  d->poll_ns = took * LEARN_POLL_FACTOR > d->poll_min_ns ? took * LEARN_POLL_FACTOR : d->poll_min_ns;
  return n;
}

static void integrate(struct learn_decision *d, uint64_t now)
{
  d->retained_byte_ns += (double)d->retained * (double)(now - d->last_ns);
  d->last_ns = now;
}

static void epoch_start(struct learn_decision *d, uint64_t now, uint64_t cpu, uint64_t calls)
{
  d->measuring = true;
  d->epoch_events = 0;
  d->epoch_start_ns = d->last_ns = now;
  d->epoch_cpu_ns = cpu;
  d->epoch_calls = calls;
  d->retained_byte_ns = 0;
}

HAK_COMMON_TEXT void learn_retained(enum learn_id id, uint64_t retained_bytes)
{
  struct learn_decision *d = &learn_decisions[id];
  if (d->phase == LEARN_PHASE_OFF)
    return;
  if (d->measuring)
    integrate(d, now_ns());
  d->retained = retained_bytes;
}

bool learn_observe(struct learn_decision *d, uint64_t now, uint64_t retained_bytes)
{
  d->events++;
  if (d->measuring) {
    integrate(d, now);
    d->epoch_events++;
  }
  d->retained = retained_bytes;
  /* The call count may cost a walk over the heap: not at every event. */
  if (d->polled && now - d->polled_ns < d->poll_ns)
    return false;
  d->polled = true;
  d->polled_ns = now;
  uint64_t calls = read_calls(d);
  if (!d->measuring) {
    /* The first event starts the count: it settles like a change. */
    if (!d->settling) {
      d->settling = true;
      d->settle_until_calls = calls + d->settle_calls;
    }
    if (calls >= d->settle_until_calls)
      epoch_start(d, now, d->cpu_ns(), calls);
    return false;
  }
  /* The shared pool's count reads each slab's counts while its owner
   * runs, so a reading may fall a few calls short of an earlier one:
   * unsigned subtraction would make that 2^64 calls and end the epoch
   * at a cost of nothing. */
  if (calls < d->epoch_calls || calls - d->epoch_calls < d->epoch_len)
    return false;
  uint64_t cpu = d->cpu_ns();
  double cost = ((double)(cpu - d->epoch_cpu_ns) + d->retained_byte_ns / d->memory_price) /
                (double)(calls - d->epoch_calls);
  bool changed = learn_epoch_end(d, cost);
  if (changed) {
    d->measuring = false;
    d->settle_until_calls = calls + d->settle_calls;
  } else {
    epoch_start(d, now, cpu, calls);
  }
  return changed;
}

HAK_COMMON_TEXT bool learn_event(enum learn_id id, uint64_t retained_bytes, uint64_t (*calls)(void))
{
  struct learn_decision *d = &learn_decisions[id];
  if (HAK_LIKELY(d->phase == LEARN_PHASE_OFF))
    return false;
  d->calls = calls;
  return learn_observe(d, now_ns(), retained_bytes);
}

/* ---- state file: lines "program decision value" ---- */

#define STATE_MAX 16384
HAK_BSS_APART(state_buf) static char state_buf[STATE_MAX];

static const char *program_name(void)
{
  return config_program_name()[0] ? config_program_name() : "-";
}

/* Reads the state file into state_buf.  Returns its length; -1 if it does
 * not exist (or cannot be opened); -2 if it is not a regular file (a FIFO
 * would block the program, a device feed it anything), warned once. */
static long state_read(const char *path, void (*warn)(const char *))
{
  static bool warned;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  struct stat st;
  if (fd < 0 && errno != ELOOP)
    return -1;
  if (fd < 0 || diag_fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0)
      close(fd);
    if (!warned)
      warn("learn_state_file is not a regular file (refused)");
    warned = true;
    return -2;
  }
  long len = 0;
  for (;;) {
    ssize_t n = read(fd, state_buf + len, STATE_MAX - 1 - (size_t)len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += n;
  }
  close(fd);
  state_buf[len] = '\0';
  return len;
}

/* Splits "program decision value" in place; false if the line is not one. */
static bool state_fields(char *line, char **prog, char **name, int *value)
{
  char *save;
  *prog = strtok_r(line, " \t", &save);
  *name = strtok_r(NULL, " \t", &save);
  char *v = strtok_r(NULL, " \t", &save);
  return *prog && *name && v && config_parse_int(v, INT32_MIN / 2, INT32_MAX / 2, value);
}

static void state_restore(void)
{
  if (!hak_config.learn_state_file[0] || state_read(hak_config.learn_state_file, hak_warn) <= 0)
    return;
  char *save;
  for (char *line = strtok_r(state_buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *prog, *name;
    int value;
    if (!state_fields(line, &prog, &name, &value) || strcmp(prog, program_name()) != 0)
      continue;
    for (unsigned k = 0; k < LEARN_DECISION_COUNT; k++) {
      struct learn_decision *d = &learn_decisions[k];
      if (strcmp(name, d->name) != 0)
        continue;
      for (unsigned i = 0; i < d->ncand; i++)
        if (d->cand[i].value == value)
          learn_freeze_on(d, i);
    }
  }
}

/* Keeps the line appended to b since start if it fit whole; else takes it
 * back and returns false. */
static bool state_line_fits(struct diag_buf *b, size_t start)
{
  if (!b->truncated)
    return true;
  b->len = start;
  b->buf[start] = '\0';
  b->truncated = false;
  return false;
}

/* Creates a new file beside path, named path.XXXXXXXXXXXXXXXX with a
 * random suffix, with O_EXCL: a name planted in advance (a link to some
 * other file) is never written through, only makes us draw again. */
static int state_temp_create(const char *path, char *tmp, size_t size)
{
  size_t len = strlen(path);
  if (len + 18 > size)
    return -1;
  for (int attempt = 0; attempt < 8; attempt++) {
    uint64_t r = secret_random();
    memcpy(tmp, path, len);
    tmp[len] = '.';
    for (int i = 0; i < 16; i++)
      tmp[len + 1 + (size_t)i] = "0123456789abcdef"[(r >> (4 * i)) & 15];
    tmp[len + 17] = '\0';
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK |
                  O_NOCTTY, 0644);
    if (fd >= 0 || errno != EEXIST)
      return fd;
  }
  return -1;
}

HAK_STARTUP_TEXT void learn_save_state(void)
{
  const char *path = hak_config.learn_state_file;
  if (!path[0] || config_secure)
    return;
  bool any = false;
  for (unsigned k = 0; k < LEARN_DECISION_COUNT; k++)
    any |= learn_decisions[k].phase == LEARN_PHASE_FROZEN ||
           learn_decisions[k].phase == LEARN_PHASE_CANARY;
  if (!any)
    return;
  /* Other programs' lines are kept; ours are replaced.  The new file is
   * written beside the old one and renamed over it, so a reader sees the
   * old file or the new one, whole; anything but a regular file (or
   * nothing) at path is left alone. */
  HAK_BSS_APART(state_out) static char out[STATE_MAX + 1]; /* STATE_MAX bytes of lines and the builder's NUL */
  struct diag_buf b = DIAG_BUF(out);
  long len = state_read(path, hak_warn_at_exit);
  if (len == -2)
    return;
  char *save;
  for (char *line = len > 0 ? strtok_r(state_buf, "\n", &save) : NULL; line;
       line = strtok_r(NULL, "\n", &save)) {
    char copy[256];
    size_t ll = strlen(line);
    if (ll >= sizeof copy)
      continue;
    memcpy(copy, line, ll + 1);
    char *prog, *name;
    int value;
    if (!state_fields(copy, &prog, &name, &value) || strcmp(prog, program_name()) == 0)
      continue;
    size_t start = b.len;
    diag_put(&b, line);
    diag_put_char(&b, '\n');
    if (!state_line_fits(&b, start))
      break;
  }
  for (unsigned k = 0; k < LEARN_DECISION_COUNT; k++) {
    const struct learn_decision *d = &learn_decisions[k];
    if (d->phase != LEARN_PHASE_FROZEN && d->phase != LEARN_PHASE_CANARY)
      continue;
    size_t start = b.len;
    diag_put(&b, program_name());
    diag_put_char(&b, ' ');
    diag_put(&b, d->name);
    diag_put_char(&b, ' ');
    diag_put_i64(&b, d->cand[d->best].value);
    diag_put_char(&b, '\n');
    if (!state_line_fits(&b, start))
      break;
  }
  char tmp[sizeof hak_config.learn_state_file + 24];
  int fd = state_temp_create(path, tmp, sizeof tmp);
  if (fd < 0) {
    hak_warn_at_exit("learn_state_file: cannot write the learned state");
    return;
  }
  bool ok = diag_write(fd, out, b.len);
  ok &= close(fd) == 0;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    hak_warn_at_exit("learn_state_file: cannot write the learned state");
  }
}

/* The candidate equal to the configured value; if none, the configured
 * value replaces the middle candidate, so the start is what the user set. */
HAK_STARTUP_TEXT static void setup_from_config(struct learn_decision *d, const char *name, const int *values,
                              unsigned n, int configured, uint64_t epoch_calls)
{
  int v[LEARN_MAX_CANDIDATES];
  unsigned initial = n / 2;
  for (unsigned i = 0; i < n; i++) {
    v[i] = values[i];
    if (values[i] == configured)
      initial = i;
  }
  v[initial] = configured;
  learn_decision_setup(d, name, v, n, initial, hak_config.evo_policy);
  d->epoch_len = epoch_calls;
  d->settle_calls = epoch_calls / 2;
  d->log = hak_config.mode == HAK_MODE_RESEARCH;
  if (hak_config.ss_mem_lean) {
    int mb = hak_config.ss_mem_lean_target_mb < 16 ? 16 : hak_config.ss_mem_lean_target_mb;
    d->memory_price = (double)((uint64_t)mb << 20);
  }
}

HAK_STARTUP_TEXT void learn_init(void)
{
  setup_from_config(&learn_decisions[LEARN_BIGCACHE_MAX_MB], "bigcache_max_mb",
                    bigcache_candidates, 3, hak_config.bigcache_max_mb, LEARN_LARGE_EPOCH_CALLS);
  setup_from_config(&learn_decisions[LEARN_SUPERSLAB_KEEP], "superslab_keep",
                    superslab_keep_candidates, 3, hak_config.superslab_keep,
                    LEARN_SMALL_EPOCH_CALLS);
  /* Its count walks the heap: read at most every LEARN_POOL_POLL_NS. */
  learn_decisions[LEARN_SUPERSLAB_KEEP].poll_min_ns = LEARN_POOL_POLL_NS;
  /* BigCache off means nothing to learn for it. */
  if (!hak_config.bigcache)
    learn_decisions[LEARN_BIGCACHE_MAX_MB].phase = LEARN_PHASE_OFF;
  if (hak_config.evo_policy != HAK_EVO_FROZEN)
    state_restore();
}
