/* The heap profiler's stack walk (prof_unwind.c) against backtrace(3):
 * the same return addresses through a chain of calls and recursion,
 * through a signal frame (a handler raised by the program), and from a
 * caller's frame taken with PROF_CALLER_FRAME (prof_unwind_from), where
 * the walk skips the frames below it, and replays the thread's previous
 * walk when the stack is the same.  On x86-64 only, the one
 * architecture the walk follows; elsewhere it must decline (-1). */
#include <check.h>
#include "test_util.h"
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "prof.h"
#include "prof_unwind.h"

#define MAX_FRAMES 64

/* Stores the compiler cannot drop keep the calls below from being tail
 * calls, whose frames neither walk would see. */
static volatile uintptr_t keep;

struct walks {
  void *walk[MAX_FRAMES];
  void *bt[MAX_FRAMES];
  int n_walk, n_bt;
  bool repeated;   /* prof_unwind_from replayed its memo */
};

/* Both walks from here: each starts with the return address of its own
 * call, in this function, some bytes apart (more under a sanitizer);
 * the frames above must be the same. */
static __attribute__((noinline)) void take_walks(struct walks *w)
{
  w->n_walk = prof_unwind(w->walk, MAX_FRAMES);
  w->n_bt = backtrace(w->bt, MAX_FRAMES);
  keep = (uintptr_t)w;
}

/* Where frame want is among backtrace's first few: backtrace(3) may
 * report a frame of its own before its caller's (a sanitizer's
 * interceptor); -1 if it is not there. */
static int bt_index(const struct walks *w, void *want)
{
  for (int k = 0; k < w->n_bt && k < 4; k++)
    if (w->bt[k] == want)
      return k;
  return -1;
}

static void assert_same_stack(const struct walks *w)
{
  ck_assert_int_gt(w->n_walk, 3);
  int k = bt_index(w, w->walk[1]);
  ck_assert_int_ge(k, 1);
  ck_assert_int_eq(w->n_walk - 1, w->n_bt - k);
  uintptr_t a = (uintptr_t)w->walk[0], b = (uintptr_t)w->bt[k - 1];
  ck_assert_uint_lt(a > b ? a - b : b - a, 512);
  for (int i = 1; i < w->n_walk; i++)
    ck_assert_ptr_eq(w->walk[i], w->bt[k - 1 + i]);
}

/* The walk from the caller's frame leaves out the function that took it,
 * whose frame backtrace reports before the walk's first. */
static void assert_same_stack_from_caller(const struct walks *w)
{
  ck_assert_int_gt(w->n_walk, 3);
  int k = bt_index(w, w->walk[0]);
  ck_assert_int_ge(k, 1);
  ck_assert_int_eq(w->n_walk, w->n_bt - k);
  for (int i = 0; i < w->n_walk; i++)
    ck_assert_ptr_eq(w->walk[i], w->bt[k + i]);
}

static __attribute__((noinline)) void recurse(struct walks *w, int depth)
{
  if (depth)
    recurse(w, depth - 1);
  else
    take_walks(w);
  keep = (uintptr_t)&depth;
}

/* A frame whose locals are over-aligned: the compiler realigns the stack
 * and finds the caller's frame through rbp. */
static __attribute__((noinline)) void aligned_frame(struct walks *w)
{
  char buf[128] __attribute__((aligned(64)));
  memset(buf, 1, sizeof buf);
  keep = (uintptr_t)buf;
  recurse(w, 3);
  keep = (uintptr_t)buf;
}

static struct walks in_handler;

static void handler(int sig)
{
  (void)sig;
  take_walks(&in_handler);
}

static __attribute__((noinline)) void raise_signal(void)
{
  int rc = raise(SIGUSR1);
  keep = (uintptr_t)&rc;
}

/* The caller's frame, as alloc.c's sampled paths take it, and the walk
 * from there; backtrace from here sees a frame in this function first,
 * then the walk's frames. */
static __attribute__((noinline)) void walk_from_caller(struct walks *w)
{
  struct prof_frame from = PROF_CALLER_FRAME();
  w->n_walk = prof_unwind_from(&from, w->walk, MAX_FRAMES, &w->repeated);
  w->n_bt = backtrace(w->bt, MAX_FRAMES);
  keep = (uintptr_t)w;
}

static __attribute__((noinline)) void from_caller_chain(struct walks *w)
{
  walk_from_caller(w);
  keep = (uintptr_t)w;
}

/* Two callers of from_caller_chain alike but for their return address
 * into it: called from one place, the walks from the caller's frame
 * start at the same frame (the same return address and, the two frames
 * being of one size, the same stack pointer), and only the stack words
 * above tell the two stacks apart. */
static __attribute__((noinline)) void via_first(struct walks *w)
{
  from_caller_chain(w);
  keep = (uintptr_t)w;
}

static __attribute__((noinline)) void via_second(struct walks *w)
{
  from_caller_chain(w);
  keep = (uintptr_t)w + 1;
}

#if defined(__x86_64__)

START_TEST(walk_matches_backtrace)
{
  ck_assert(prof_unwind_start());
  struct walks w;
  recurse(&w, 5);
  assert_same_stack(&w);
}
END_TEST

START_TEST(walk_through_realigned_frame)
{
  ck_assert(prof_unwind_start());
  struct walks w;
  aligned_frame(&w);
  assert_same_stack(&w);
}
END_TEST

START_TEST(walk_through_signal_frame)
{
  ck_assert(prof_unwind_start());
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
  raise_signal();
  /* The handler's caller (the kernel's return trampoline), the
   * interrupted function, raise_signal and this test's frames. */
  assert_same_stack(&in_handler);
}
END_TEST

START_TEST(walk_from_caller_frame)
{
  ck_assert(prof_unwind_start());
  struct walks w;
  from_caller_chain(&w);
  assert_same_stack_from_caller(&w);
}
END_TEST

/* The same stack again is replayed from the thread's memo, and gives the
 * same frames; a stack that differs only above the starting frame is
 * walked, not replayed, and gives its own. */
START_TEST(walk_from_caller_repeats)
{
  ck_assert(prof_unwind_start());
  static void (*const via[3])(struct walks *) = { via_first, via_first, via_second };
  /* One struct for the three walks, copied out after each: its address,
   * in a register the functions above may save, is the same each time. */
  static struct walks scratch;
  struct walks w[3];
  for (int i = 0; i < 3; i++) {
    via[i](&scratch);
    w[i] = scratch;
  }
  for (int i = 0; i < 3; i++)
    assert_same_stack_from_caller(&w[i]);
  ck_assert(w[1].repeated);
  ck_assert_int_eq(w[1].n_walk, w[0].n_walk);
  for (int i = 0; i < w[0].n_walk; i++)
    ck_assert_ptr_eq(w[1].walk[i], w[0].walk[i]);
  ck_assert(!w[2].repeated);
  ck_assert_ptr_ne(w[2].walk[1], w[1].walk[1]);   /* the return into via_second */
}
END_TEST

#else

START_TEST(walk_declines)
{
  prof_unwind_start();
  struct walks w;
  take_walks(&w);
  ck_assert_int_eq(w.n_walk, -1);
}
END_TEST

#endif

int main(void)
{
  Suite *s = suite_create("prof_unwind");
  TCase *tc = tcase_create("walk");
#if defined(__x86_64__)
  tcase_add_test(tc, walk_matches_backtrace);
  tcase_add_test(tc, walk_through_realigned_frame);
  tcase_add_test(tc, walk_through_signal_frame);
  tcase_add_test(tc, walk_from_caller_frame);
  tcase_add_test(tc, walk_from_caller_repeats);
#else
  tcase_add_test(tc, walk_declines);
#endif
  suite_add_tcase(s, tc);
  return check_run(s);
}
