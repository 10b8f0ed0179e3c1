/* Heap misuse under the real interposition: double frees (same thread,
 * cross-thread, behind the list head), interior and never-allocated
 * pointers, another allocator's blocks, use of freed blocks by realloc
 * and malloc_usable_size, free-list poisoning (local list, medium class,
 * remote stack) and forged large-block headers.
 *
 * The contract (hardening work in progress): each detected misuse writes
 * ONE line on stderr that starts with "hakmem: " and names the function and
 * what went wrong ("double free", "invalid pointer", "corrupt..."), then
 * calls abort().  Every case runs in a child process whose stderr is
 * captured through a pipe; the parent kills it after CASE_DEADLINE seconds
 * (a hang, e.g. a remote-free stack turned into a cycle, is a failure with
 * its own message, never a stuck test run).  A case passes only if the
 * child dies of SIGABRT after such a line.
 *
 * Linked against libhakmem (tests/local.mk): malloc and free are hakmem's;
 * the first test proves it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include "test_util.h"
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem.h"

#define CASE_DEADLINE 10 /* seconds before a child counts as hung */

/* Exit statuses of a child that saw the allocator do something wrong
 * without aborting (the parent prints the child's stderr). */
#define CHILD_RETURNED 0       /* the misuse went unnoticed */
#define CHILD_ATTACKER_ADDR 3  /* malloc handed out the attacker's address */
#define CHILD_PRECONDITION 4   /* the setup did not go as the case needs */

static void child_say(const char *msg)
{
  ssize_t r = write(2, msg, strlen(msg));
  (void)r;
}

/* --- the harness --------------------------------------------------------- */

struct expect {
  const char *func;     /* must appear in the "hakmem: " line, e.g. "free()" */
  const char *words[4]; /* one of them must appear in it too (NULL-terminated) */
};

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Does line [l, l+n) hold e's function and one of its words? */
static bool line_matches(const char *l, size_t n, const struct expect *e)
{
  char buf[1024];
  if (n >= sizeof buf)
    n = sizeof buf - 1;
  memcpy(buf, l, n);
  buf[n] = 0;
  if (strncmp(buf, "hakmem: ", 8) != 0 || !strstr(buf, e->func))
    return false;
  for (int i = 0; e->words[i]; i++)
    if (strstr(buf, e->words[i]))
      return true;
  return false;
}

/* Runs fn in a child with its stderr captured; the child must die of
 * SIGABRT within CASE_DEADLINE seconds after one "hakmem: " line that
 * matches e. */
static void expect_abort(void (*fn)(void), const char *what, struct expect e)
{
  int fd;
  pid_t pid = fork_capturing_stderr(&fd);
  if (pid == 0) {
    fn();
    child_say("misuse-test: the misuse went unnoticed (the case returned)\n");
    _exit(CHILD_RETURNED);
  }
  static char buf[16384];
  size_t len = 0;
  bool hung = false, eof = false;
  double deadline = now_s() + CASE_DEADLINE;
  while (!eof) {
    double left = deadline - now_s();
    if (left <= 0) {
      hung = true;
      break;
    }
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr == 0)
      continue; /* the loop sees the deadline */
    char tmp[4096];
    ssize_t r = read(fd, tmp, sizeof tmp);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      eof = true;
      break;
    }
    size_t take = (size_t)r < sizeof buf - 1 - len ? (size_t)r : sizeof buf - 1 - len;
    memcpy(buf + len, tmp, take);
    len += take;
  }
  buf[len] = 0;
  int status = 0;
  /* Its stderr closed, the child should be gone or going; give it what is
   * left of the deadline, then kill it. */
  for (;;) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid)
      break;
    if (hung || now_s() > deadline) {
      hung = true;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(10000);
  }
  close(fd);
  if (hung)
    ck_abort_msg("%s: HUNG, killed after %d s (expected abort with \"%s\" ... \"%s\"); stderr: %s",
                 what, CASE_DEADLINE, e.func, e.words[0], buf);
  if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
    ck_abort_msg("%s: not aborted (%s %d); stderr: %s", what,
                 WIFSIGNALED(status) ? "killed by signal" : "exit status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), buf);
  /* Exactly one "hakmem: " line, and it says the right thing. */
  int lines = 0;
  bool matched = false;
  for (const char *l = buf; *l;) {
    const char *nl = strchr(l, '\n');
    size_t n = nl ? (size_t)(nl - l) : strlen(l);
    if (strncmp(l, "hakmem: ", 8) == 0) {
      lines++;
      if (!matched && line_matches(l, n, &e)) {
        matched = true;
        /* Into the test's log: what each case was told. */
        printf("%s: %.*s\n", what, (int)n, l);
        fflush(stdout);
      }
    }
    l += n + (nl != NULL);
  }
  if (!matched)
    ck_abort_msg("%s: aborted, but no \"hakmem: \" line names \"%s\" and says \"%s\"%s%s%s: %s",
                 what, e.func, e.words[0], e.words[1] ? " (or \"" : "",
                 e.words[1] ? e.words[1] : "", e.words[1] ? "\")" : "", buf);
  if (lines != 1)
    ck_abort_msg("%s: %d \"hakmem: \" lines, expected one: %s", what, lines, buf);
}

#define FREE_DOUBLE ((struct expect){ "free()", { "double free", NULL } })
#define FREE_INVALID ((struct expect){ "free()", { "invalid pointer", NULL } })
#define CORRUPT(fn) ((struct expect){ fn, { "corrupt", NULL } })
#define USE_OF_FREED(fn) ((struct expect){ fn, { "freed", "double free", "after free", NULL } })

/* Runs fn in a thread of its own and waits for it. */
static void in_thread(void *(*fn)(void *), void *arg)
{
  pthread_t t;
  if (pthread_create(&t, NULL, fn, arg) != 0 || pthread_join(t, NULL) != 0) {
    child_say("misuse-test: pthread_create/join failed\n");
    _exit(CHILD_PRECONDITION);
  }
}

static void *thread_free(void *p)
{
  free(p);
  return NULL;
}

static void *thread_free_twice(void *arg)
{
  void *volatile p = arg;
  free(p);
  free(p);
  return NULL;
}

/* The owner allocates n blocks of size bytes, which drains the remote-free
 * stacks of its slabs of that class; a block at [bad, bad + badlen) (the
 * attacker's buffer) must never come out. */
static void allocate_many(size_t size, int n, const void *bad, size_t badlen)
{
  for (int i = 0; i < n; i++) {
    char *q = malloc(opaque(size));
    if (bad && q && q + size > (const char *)bad && q < (const char *)bad + badlen) {
      char msg[200];
      snprintf(msg, sizeof msg,
               "misuse-test: malloc(%zu) returned %p, inside the attacker's buffer %p\n",
               size, (void *)q, bad);
      child_say(msg);
      _exit(CHILD_ATTACKER_ADDR);
    }
  }
}

/* --- the allocator is hakmem --------------------------------------------- */

START_TEST(malloc_is_hakmem)
{
  hak_stats_t a = stats_now();
  void *volatile p[64];
  for (int i = 0; i < 64; i++)
    p[i] = malloc(opaque(48));
  hak_stats_t b = stats_now();
  for (int i = 0; i < 64; i++)
    free(p[i]);
  ck_assert_msg(b.malloc_calls >= a.malloc_calls + 64,
                "malloc is not hakmem's (malloc_calls %llu -> %llu)",
                (unsigned long long)a.malloc_calls, (unsigned long long)b.malloc_calls);
}
END_TEST

/* --- double frees -------------------------------------------------------- */

static void double_free_head(void)
{
  void *volatile p = malloc(opaque(32));
  free(p);
  free(p);
}

/* The second free of p finds q at the head of the list, not p. */
static void double_free_not_head(void)
{
  void *volatile p = malloc(opaque(32));
  void *volatile q = malloc(opaque(32));
  free(p);
  free(q);
  free(p);
}

static void double_free_medium_not_head(void)
{
  void *volatile p = malloc(opaque(48 * KiB));
  void *volatile q = malloc(opaque(48 * KiB));
  free(p);
  free(q);
  free(p);
}

/* Another thread frees p twice (two pushes onto the remote stack: today a
 * cycle); the owner then allocates enough to drain it. */
static void double_free_cross_thread(void)
{
  void *p = malloc(opaque(32));
  in_thread(thread_free_twice, p);
  allocate_many(32, 4096, NULL, 0);
}

/* Freed by another thread (remote stack), then by its owner. */
static void double_free_remote_then_owner(void)
{
  void *volatile p = malloc(opaque(32));
  void *volatile q = malloc(opaque(32));
  in_thread(thread_free, p);
  free(q);
  free(p);
  allocate_many(32, 4096, NULL, 0);
}

/* Freed by its owner (local list, not its head), then by another thread. */
static void double_free_owner_then_remote(void)
{
  void *volatile p = malloc(opaque(32));
  void *volatile q = malloc(opaque(32));
  free(p);
  free(q);
  in_thread(thread_free, p);
  allocate_many(32, 4096, NULL, 0);
}

/* A thread that allocates in the block's class keeps another thread's
 * freed block in its cross-thread cache (tcache.h); a second free of it, by that thread, by
 * the owner or by a third thread, must still be seen. */
static void *thread_alloc_free_twice(void *arg)
{
  void *volatile p = arg;
  free(malloc(opaque(48)));
  free(p);
  free(p);
  return NULL;
}

static void *thread_alloc_free(void *arg)
{
  free(malloc(opaque(48)));
  free(arg);
  return NULL;
}

/* Frees arg, a block another thread owns, into this thread's cross-thread
 * cache, lets the main thread free it again, and waits. */
struct held_then {
  void *p;
  pthread_barrier_t held, done;
};

static void *thread_hold_and_wait(void *arg)
{
  struct held_then *h = arg;
  free(malloc(opaque(48)));
  free(h->p);
  pthread_barrier_wait(&h->held);
  pthread_barrier_wait(&h->done);
  return NULL;
}

static void double_free_held_same_thread(void)
{
  void *p = malloc(opaque(48));
  in_thread(thread_alloc_free_twice, p);
}

/* A thread holds p in its cross-thread cache (thread_hold_and_wait)
 * while second_free frees p again. */
static void double_free_while_held(void (*second_free)(void *))
{
  static struct held_then h;
  h.p = malloc(opaque(48));
  pthread_barrier_init(&h.held, NULL, 2);
  pthread_barrier_init(&h.done, NULL, 2);
  pthread_t t;
  if (pthread_create(&t, NULL, thread_hold_and_wait, &h) != 0) {
    child_say("misuse-test: pthread_create failed\n");
    _exit(CHILD_PRECONDITION);
  }
  pthread_barrier_wait(&h.held);
  second_free(h.p);
  pthread_barrier_wait(&h.done);
  pthread_join(t, NULL);
}

static void free_in_a_third_thread(void *p)
{
  in_thread(thread_alloc_free, p);
}

static void double_free_held_then_owner(void)
{
  double_free_while_held(free);
}

static void double_free_held_then_third_thread(void)
{
  double_free_while_held(free_in_a_third_thread);
}

/* A block whose second word holds another block's stale free tag (a
 * program's copy of bytes it never wrote) is live: its first free
 * succeeds (tests/test_hostile.c), and its second is still a double free. */
static void double_free_with_copied_tag(size_t size)
{
  uintptr_t *volatile a = malloc(opaque(32));
  uintptr_t *volatile q = malloc(opaque(size));
  free(a);
  uintptr_t stale = a[1];
  memcpy(&q[1], &stale, sizeof stale);
  free(q);
  free(q);
}

static void double_free_copied_tag_same_class(void)
{
  double_free_with_copied_tag(32);
}

static void double_free_copied_tag_other_class(void)
{
  double_free_with_copied_tag(1000);
}

static void double_free_large(void)
{
  void *volatile p = malloc(opaque(1 * MiB));
  free(p);
  free(p);
}

START_TEST(double_free_same_thread)
{
  expect_abort(double_free_head, "free(p); free(p) (32 B)", FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_behind_head)
{
  expect_abort(double_free_not_head, "free(p); free(q); free(p) (32 B)", FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_medium)
{
  expect_abort(double_free_medium_not_head, "free(p); free(q); free(p) (48 KiB)", FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_by_other_thread)
{
  expect_abort(double_free_cross_thread,
               "another thread frees p twice, the owner allocates 4096 x 32 B", FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_remote_and_local)
{
  expect_abort(double_free_remote_then_owner, "another thread frees p, then its owner",
               FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_local_and_remote)
{
  expect_abort(double_free_owner_then_remote, "the owner frees p, then another thread",
               FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_held_by_freeing_thread)
{
  expect_abort(double_free_held_same_thread,
               "a thread frees another's block twice (held in its cross-thread cache)", FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_held_and_owner)
{
  expect_abort(double_free_held_then_owner,
               "another thread frees p into its cross-thread cache, then the owner frees p",
               FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_held_and_third_thread)
{
  expect_abort(double_free_held_then_third_thread,
               "another thread frees p into its cross-thread cache, then a third thread frees p",
               FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_after_copied_tag)
{
  expect_abort(double_free_copied_tag_same_class,
               "another 32 B block's freed tag copied into q; free(q); free(q) (32 B)",
               FREE_DOUBLE);
  expect_abort(double_free_copied_tag_other_class,
               "a 32 B block's freed tag copied into q; free(q); free(q) (1000 B)", FREE_DOUBLE);
}
END_TEST

START_TEST(double_free_large_block)
{
  expect_abort(double_free_large, "free(p); free(p) (1 MiB)", FREE_DOUBLE);
}
END_TEST

/* --- pointers hakmem never returned ------------------------------------- */

static char static_array[256];

static void free_interior_small(void)
{
  char *volatile p = malloc(opaque(64));
  free(p + 8);
}

/* A block-aligned address of a slab that was never carved: the first
 * block of a class this process allocates once (1792 B: four blocks, 7 KiB,
 * carved at a time from a fresh 64 KiB slab), and the block 16 KiB or more after it,
 * in the same slab. */
static void free_never_allocated(void)
{
  char *p = malloc(opaque(1792));
  size_t b = malloc_usable_size(p);
  uintptr_t slab = (uintptr_t)p & ~(uintptr_t)0xffff;
  size_t k = ((size_t)((uintptr_t)p - slab) + 16 * KiB + b - 1) / b;
  char *target = (char *)slab + k * b;
  if (target + b > (char *)slab + 64 * KiB)
    target = p - (16 * KiB + b - 1) / b * b; /* p is near the end: go back */
  if ((uintptr_t)target < slab) {
    child_say("misuse-test: no never-carved block 16 KiB from p in its slab\n");
    _exit(CHILD_PRECONDITION);
  }
  void *volatile t = target;
  free(t);
}

static void free_stack_address(void)
{
  char buf[64];
  memset(buf, 0, sizeof buf);
  void *volatile p = buf + 16;
  free(p);
}

static void free_static_address(void)
{
  void *volatile p = static_array + 32;
  free(p);
}

/* Inside a SuperSlab, in the slot holding its header (never a block). */
static void free_superslab_header(void)
{
  char *p = malloc(opaque(32));
  void *volatile h = (char *)((uintptr_t)p & ~(uintptr_t)(2 * MiB - 1)) + 4096;
  free(h);
}

static void free_interior_large(void)
{
  char *volatile p = malloc(opaque(1 * MiB));
  free(p + 4096);
}

START_TEST(free_interior_pointer)
{
  expect_abort(free_interior_small, "free(malloc(64) + 8)", FREE_INVALID);
}
END_TEST

START_TEST(free_never_handed_out)
{
  expect_abort(free_never_allocated, "free of a never-carved block of a fresh slab",
               FREE_INVALID);
}
END_TEST

START_TEST(free_stack_pointer)
{
  expect_abort(free_stack_address, "free of a stack address", FREE_INVALID);
}
END_TEST

START_TEST(free_static_pointer)
{
  expect_abort(free_static_address, "free of a pointer into a static array", FREE_INVALID);
}
END_TEST

START_TEST(free_in_superslab_header)
{
  expect_abort(free_superslab_header, "free of an address in a SuperSlab's header slot",
               FREE_INVALID);
}
END_TEST

START_TEST(free_large_interior)
{
  expect_abort(free_interior_large, "free(malloc(1 MiB) + 4096)", FREE_INVALID);
}
END_TEST

/* --- use of a freed block ------------------------------------------------ */

/* 24 bytes fit p's 32-byte block: realloc would return p itself. */
static void realloc_freed_in_place(void)
{
  void *volatile p = malloc(opaque(32));
  free(p);
  void *volatile r = realloc(p, opaque(24));
  (void)r;
}

static void realloc_freed_moving(void)
{
  void *volatile p = malloc(opaque(32));
  free(p);
  void *volatile r = realloc(p, opaque(1000));
  (void)r;
}

static void realloc_freed_large(void)
{
  void *volatile p = malloc(opaque(1 * MiB));
  free(p);
  void *volatile r = realloc(p, opaque(2 * MiB));
  (void)r;
}

static void usable_size_freed(void)
{
  void *volatile p = malloc(opaque(32));
  void *volatile q = malloc(opaque(32));
  free(p);
  free(q);
  volatile size_t n = malloc_usable_size(p);
  (void)n;
}

START_TEST(realloc_of_freed_in_place)
{
  expect_abort(realloc_freed_in_place, "free(p); realloc(p, 24) (32 B block)",
               USE_OF_FREED("realloc()"));
}
END_TEST

START_TEST(realloc_of_freed_moving)
{
  expect_abort(realloc_freed_moving, "free(p); realloc(p, 1000) (32 B block)",
               USE_OF_FREED("realloc()"));
}
END_TEST

START_TEST(realloc_of_freed_large)
{
  expect_abort(realloc_freed_large, "free(p); realloc(p, 2 MiB) (1 MiB block)",
               USE_OF_FREED("realloc()"));
}
END_TEST

START_TEST(usable_size_of_freed_pointer)
{
  expect_abort(usable_size_freed, "free(p); malloc_usable_size(p)",
               USE_OF_FREED("malloc_usable_size()"));
}
END_TEST

/* --- another allocator's blocks ------------------------------------------
 * A program linked with jemalloc and run with hakmem preloaded gets
 * hakmem's free, realloc and malloc_usable_size but jemalloc's mallocx; a
 * block from mallocx passed to one of them lives in jemalloc's own mapping,
 * 2 MiB-aligned like a SuperSlab.  That mapping, filled with a pattern, is
 * read as no header: the call reports an invalid pointer. */

static void *other_allocators_block(void)
{
  char *m = mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    child_say("misuse-test: mmap of 4 MiB failed\n");
    _exit(CHILD_PRECONDITION);
  }
  char *base = (char *)(((uintptr_t)m + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
  memset(base, 0xa5, 64 * 1024);
  return base + 32 * 1024;
}

static void free_other_allocators(void)
{
  void *volatile p = other_allocators_block();
  free(p);
}

static void realloc_other_allocators(void)
{
  void *volatile p = other_allocators_block();
  void *volatile r = realloc(p, opaque(200));
  (void)r;
}

static void usable_size_other_allocators(void)
{
  void *volatile p = other_allocators_block();
  volatile size_t n = malloc_usable_size(p);
  (void)n;
}

START_TEST(free_of_other_allocators_block)
{
  expect_abort(free_other_allocators, "free of another allocator's block", FREE_INVALID);
}
END_TEST

START_TEST(realloc_of_other_allocators_block)
{
  expect_abort(realloc_other_allocators, "realloc of another allocator's block",
               ((struct expect){ "realloc()", { "invalid pointer", NULL } }));
}
END_TEST

START_TEST(usable_size_of_other_allocators_block)
{
  expect_abort(usable_size_other_allocators, "malloc_usable_size of another allocator's block",
               ((struct expect){ "malloc_usable_size()", { "invalid pointer", NULL } }));
}
END_TEST

/* --- free-list poisoning --------------------------------------------------
 * A write into a freed block (use after free) replaces its link with the
 * address of an attacker's buffer.  The allocator must notice when it
 * follows the link and never hand the buffer out. */

static _Alignas(64) char attacker[256 * KiB];

static void poison(void *freed)
{
  void *target = attacker + 4096;
  memcpy(freed, &target, sizeof target);
}

/* held: blocks freed before p, so that p goes to its slab's list, not
 * to the thread's medium cache, which keeps no link in its blocks. */
static void poison_local(size_t size, int held)
{
  void *volatile before[8];
  for (int i = 0; i < held; i++)
    before[i] = malloc(opaque(size));
  void *volatile p = malloc(opaque(size));
  void *volatile q = malloc(opaque(size));
  (void)q;
  for (int i = 0; i < held; i++)
    free(before[i]);
  free(p);
  poison(p);
  allocate_many(size, held + 2, attacker, sizeof attacker);
}

static void poison_small(void)
{
  poison_local(32, 0);
}

static void poison_medium(void)
{
  /* The medium cache holds at most 256 KiB a class: five blocks. */
  poison_local(48 * KiB, 8);
}

static void poison_remote(void)
{
  void *volatile p = malloc(opaque(32));
  in_thread(thread_free, p);
  poison(p);
  allocate_many(32, 4096, attacker, sizeof attacker);
}

START_TEST(poisoned_free_list_small)
{
  expect_abort(poison_small, "poisoned free-list link (32 B), then malloc x 2",
               CORRUPT("malloc()"));
}
END_TEST

START_TEST(poisoned_free_list_medium)
{
  expect_abort(poison_medium, "poisoned free-list link (48 KiB), then malloc x 2",
               CORRUPT("malloc()"));
}
END_TEST

START_TEST(poisoned_remote_stack)
{
  expect_abort(poison_remote,
               "poisoned remote-free link (32 B, freed by another thread), owner drains it",
               CORRUPT("malloc()"));
}
END_TEST

/* --- large-block headers -------------------------------------------------- */

/* The header's map_size (8 bytes at block - 64 + 8) says 2^46. */
static void forged_large_size(void)
{
  char *volatile p = malloc(opaque(1 * MiB));
  uint64_t huge = (uint64_t)1 << 46;
  memcpy(p - 64 + 8, &huge, sizeof huge);
  free(p);
  /* Had free believed it, most of the heap would be gone: show it. */
  void *volatile q = malloc(opaque(64));
  (void)q;
}

START_TEST(forged_large_header)
{
  expect_abort(forged_large_size, "free of a 1 MiB block whose header says 64 TiB",
               CORRUPT("free()"));
}
END_TEST

/* --- check = 1 ------------------------------------------------------------
 * These cases need HAKMEM_CHECK=1 from the process's start (hakmem reads
 * its configuration once), so the child execs this program again with the
 * variable set and the case's name. */

static void overflow_into_slack(void)
{
  /* 20 bytes asked, a 32-byte block: the byte written is inside the block. */
  char *volatile p = malloc(opaque(20));
  p[20] = 1;
  free(p);
}

/* The 29th byte is written with a value it did not hold: the trailer is
 * the request XOR a secret, so a fixed byte would leave it unchanged in
 * one run out of 256 (a write of the same value cannot be seen). */
static void overflow_one_byte_into_trailer(void)
{
  char *volatile p = malloc(opaque(28));
  memset(p, 0x11, 28);
  p[28] = (char)~p[28];
  free(p);
}

/* Frees a block of size bytes, writes its byte at, then mallocs blocks of
 * the same size until the written one is handed out again. */
static void write_after_free_of(size_t size, size_t at, int reuses)
{
  char *volatile p = malloc(opaque(size));
  free(p);
  p[at] = 7;
  for (int i = 0; i < reuses; i++) {
    void *volatile q = malloc(opaque(size));
    (void)q;
  }
}

static void write_after_free(void)
{
  write_after_free_of(100, 50, 200);
}

/* A small block (40 bytes asked, a 48-byte block), whose bytes are
 * compared in line rather than by the wide loops. */
static void write_after_free_small(void)
{
  write_after_free_of(40, 30, 200);
}

/* 64 bytes asked, an 80-byte block (room for the trailer), the largest
 * compared in line: the byte written lies in its third piece. */
static void write_after_free_80(void)
{
  write_after_free_of(64, 63, 200);
}

/* 700 bytes asked, a 768-byte block: the canary spans several vectors,
 * and the byte written is its last one, just before the trailer. */
static void overflow_to_end_of_slack(void)
{
  char *volatile p = malloc(opaque(700));
  p[763] = 1;
  free(p);
}

/* With check_fill_bytes = 0 a freed block is compared whole at reuse,
 * past what the program had asked for too: here its last byte, where the
 * trailer was. */
static void write_after_free_at_block_end(void)
{
  write_after_free_of(1000, 1023, 200);
}

/* The same in a medium block (40 KiB class), written in its middle. */
static void write_after_free_medium(void)
{
  write_after_free_of(40000, 20001, 20);
}

/* Under the default bound: a write into a freed block's first bytes,
 * where links and headers live, in a block far larger than the bound. */
static void write_after_free_in_bound(void)
{
  write_after_free_of(1000, 40, 200);
}

/* The same in a medium block, its first word after the free list's. */
static void write_after_free_medium_in_bound(void)
{
  write_after_free_of(40000, 16, 20);
}

/* 40000 bytes asked, a 40 KiB block: the canary is 956 bytes long, and
 * the byte written is its last. */
static void overflow_medium_end_of_slack(void)
{
  char *volatile p = malloc(opaque(40000));
  p[40955] = 1;
  free(p);
}

/* 8 bytes asked, a 16-byte block: its one piece holds the canary and
 * the trailer; the canary's last byte written. */
static void overflow_in_16_byte_block(void)
{
  char *volatile p = malloc(opaque(8));
  p[11] = 1;
  free(p);
}

/* 16 bytes aligned to 64 take a 64-byte block: a canary of 44 bytes,
 * longer than an unaligned request's ever is in such a class, written at
 * its first byte. */
static void overflow_aligned_small(void)
{
  char *volatile p = memalign(64, opaque(16));
  p[16] = 1;
  free(p);
}

static void usable_size_is_the_request(void)
{
  char *volatile p = malloc(opaque(20));
  if (malloc_usable_size(p) != 20) {
    child_say("misuse-test: malloc_usable_size is not the requested size with check = 1\n");
    _exit(CHILD_PRECONDITION);
  }
  /* Using all of it is fine; the abort below shows the case ran. */
  memset(p, 1, 20);
  free(p);
  free(p);
}

/* Another thread's free of a block, with check = 1: a thread that
 * allocates in the block's class keeps it in its cross-thread cache
 * (tcache.h), checked and filled like any freed block. */

/* 48 bytes asked, a 64-byte block: the byte past the request, then the
 * block freed by a thread that allocates 48 bytes too. */
static void overflow_freed_by_other_thread(void)
{
  char *volatile p = malloc(opaque(48));
  p[48] = 1;
  in_thread(thread_alloc_free, p);
}

/* Frees h->p (another thread's block) into this thread's cross-thread
 * cache, waits while the main thread writes to it, then allocates in its
 * class until the block comes back. */
static void *thread_hold_then_reuse(void *arg)
{
  struct held_then *h = arg;
  free(malloc(opaque(48)));
  free(h->p);
  pthread_barrier_wait(&h->held);
  pthread_barrier_wait(&h->done);
  allocate_many(48, 4096, NULL, 0);
  return NULL;
}

/* The owner writes to its block after another thread freed it; whichever
 * thread hands the block out again (the one that freed it, from its
 * cross-thread cache, or the owner, from its remote stack) must see it. */
static void write_after_free_by_other_thread(void)
{
  static struct held_then h;
  h.p = malloc(opaque(48));
  pthread_barrier_init(&h.held, NULL, 2);
  pthread_barrier_init(&h.done, NULL, 2);
  pthread_t t;
  if (pthread_create(&t, NULL, thread_hold_then_reuse, &h) != 0) {
    child_say("misuse-test: pthread_create failed\n");
    _exit(CHILD_PRECONDITION);
  }
  pthread_barrier_wait(&h.held);
  ((char *)h.p)[30] = 7;
  pthread_barrier_wait(&h.done);
  pthread_join(t, NULL);
  allocate_many(48, 4096, NULL, 0);
}

/* Each runs in a child re-executed with HAKMEM_CHECK=1 (exec_check_case),
 * and must abort with the message expected. */
static const struct check_case {
  const char *name;
  void (*fn)(void);
  const char *what;
  struct expect expect;
  const char *fill_bytes; /* HAKMEM_CHECK_FILL_BYTES, or NULL for the default */
} check_cases[] = {
  { "overflow_into_slack", overflow_into_slack,
    "check = 1: a byte written past the request, inside the block",
    { "free()", { "overflow", NULL } }, NULL },
  { "overflow_one_byte_into_trailer", overflow_one_byte_into_trailer,
    "check = 1: 29 bytes written into a 28-byte request",
    { "free()", { "overflow", NULL } }, NULL },
  { "write_after_free", write_after_free,
    "check = 1: a freed block written, then reused",
    { "malloc()", { "use after free", NULL } }, NULL },
  { "usable_size_is_the_request", usable_size_is_the_request,
    "check = 1: usable size is the request; then a double free",
    { "free()", { "double free", NULL } }, NULL },
  { "write_after_free_small", write_after_free_small,
    "check = 1: a freed 48-byte block written, then reused",
    { "malloc()", { "use after free", NULL } }, NULL },
  { "write_after_free_80", write_after_free_80,
    "check = 1: a freed 80-byte block written in its third piece, then reused",
    { "malloc()", { "use after free", NULL } }, NULL },
  { "write_after_free_80_bounded", write_after_free_80,
    "check = 1, check_fill_bytes = 32: a freed 80-byte block, filled whole whatever the bound, "
    "written in its third piece, then reused",
    { "malloc()", { "use after free", NULL } }, "32" },
  { "overflow_to_end_of_slack", overflow_to_end_of_slack,
    "check = 1: the last byte of a long canary written",
    { "free()", { "overflow", NULL } }, NULL },
  { "write_after_free_at_block_end", write_after_free_at_block_end,
    "check = 1, check_fill_bytes = 0: a freed block's last byte written, then reused",
    { "malloc()", { "use after free", NULL } }, "0" },
  { "overflow_in_16_byte_block", overflow_in_16_byte_block,
    "check = 1: the last canary byte of a 16-byte block written",
    { "free()", { "overflow", NULL } }, NULL },
  { "overflow_aligned_small", overflow_aligned_small,
    "check = 1: a byte written past a small aligned request",
    { "free()", { "overflow", NULL } }, NULL },
  { "write_after_free_medium", write_after_free_medium,
    "check = 1, check_fill_bytes = 0: a freed medium block written in its middle, then reused",
    { "malloc()", { "use after free", NULL } }, "0" },
  { "write_after_free_in_bound", write_after_free_in_bound,
    "check = 1: a freed 1 KiB block written in its first bytes, then reused",
    { "malloc()", { "use after free", NULL } }, NULL },
  { "write_after_free_medium_in_bound", write_after_free_medium_in_bound,
    "check = 1: a freed medium block written in its first bytes, then reused",
    { "malloc()", { "use after free", NULL } }, NULL },
  { "overflow_medium_end_of_slack", overflow_medium_end_of_slack,
    "check = 1: the last byte of a medium block's canary written",
    { "free()", { "overflow", NULL } }, NULL },
  { "overflow_freed_by_other_thread", overflow_freed_by_other_thread,
    "check = 1: a byte written past the request, the block freed by another thread",
    { "free()", { "overflow", NULL } }, NULL },
  { "write_after_free_by_other_thread", write_after_free_by_other_thread,
    "check = 1: a block written after another thread freed it, then reused",
    { "malloc()", { "use after free", NULL } }, NULL },
  { "double_free_held_then_owner", double_free_held_then_owner,
    "check = 1: another thread frees p into its cross-thread cache, then the owner frees p",
    { "free()", { "double free", NULL } }, NULL },
  { "double_free_held_same_thread", double_free_held_same_thread,
    "check = 1: a thread frees another's block twice (held in its cross-thread cache)",
    { "free()", { "double free", NULL } }, NULL },
};
#define N_CHECK_CASES (sizeof check_cases / sizeof check_cases[0])

static const char *check_case_name;

static void exec_check_case(void)
{
  setenv("HAKMEM_CHECK", "1", 1);
  for (size_t i = 0; i < N_CHECK_CASES; i++)
    if (strcmp(check_cases[i].name, check_case_name) == 0 && check_cases[i].fill_bytes)
      setenv("HAKMEM_CHECK_FILL_BYTES", check_cases[i].fill_bytes, 1);
  execl("/proc/self/exe", "test_misuse", "--check-case", check_case_name, (char *)NULL);
  child_say("misuse-test: cannot exec /proc/self/exe\n");
  _exit(CHILD_PRECONDITION);
}

START_TEST(check_mode_catches)
{
  check_case_name = check_cases[_i].name;
  expect_abort(exec_check_case, check_cases[_i].what, check_cases[_i].expect);
}
END_TEST

int main(int argc, char **argv)
{
  if (argc == 3 && strcmp(argv[1], "--check-case") == 0) {
    for (size_t i = 0; i < N_CHECK_CASES; i++)
      if (strcmp(argv[2], check_cases[i].name) == 0) {
        check_cases[i].fn();
        child_say("misuse-test: the misuse went unnoticed (the case returned)\n");
        return CHILD_RETURNED;
      }
    child_say("misuse-test: no such check case\n");
    return CHILD_PRECONDITION;
  }

  Suite *s = suite_create("misuse (libhakmem)");
  TCase *t = tcase_create("misuse");
  /* A case has its own deadline, CASE_DEADLINE; Check's is a backstop. */
  tcase_set_timeout(t, 3 * CASE_DEADLINE);
  tcase_add_test(t, malloc_is_hakmem);
  tcase_add_test(t, double_free_same_thread);
  tcase_add_test(t, double_free_behind_head);
  tcase_add_test(t, double_free_medium);
  tcase_add_test(t, double_free_by_other_thread);
  tcase_add_test(t, double_free_remote_and_local);
  tcase_add_test(t, double_free_local_and_remote);
  tcase_add_test(t, double_free_held_by_freeing_thread);
  tcase_add_test(t, double_free_held_and_owner);
  tcase_add_test(t, double_free_held_and_third_thread);
  tcase_add_test(t, double_free_after_copied_tag);
  tcase_add_test(t, double_free_large_block);
  tcase_add_test(t, free_interior_pointer);
  tcase_add_test(t, free_never_handed_out);
  tcase_add_test(t, free_stack_pointer);
  tcase_add_test(t, free_static_pointer);
  tcase_add_test(t, free_in_superslab_header);
  tcase_add_test(t, free_large_interior);
  tcase_add_test(t, realloc_of_freed_in_place);
  tcase_add_test(t, realloc_of_freed_moving);
  tcase_add_test(t, realloc_of_freed_large);
  tcase_add_test(t, usable_size_of_freed_pointer);
  tcase_add_test(t, free_of_other_allocators_block);
  tcase_add_test(t, realloc_of_other_allocators_block);
  tcase_add_test(t, usable_size_of_other_allocators_block);
  tcase_add_test(t, poisoned_free_list_small);
  tcase_add_test(t, poisoned_free_list_medium);
  tcase_add_test(t, poisoned_remote_stack);
  tcase_add_test(t, forged_large_header);
  tcase_add_loop_test(t, check_mode_catches, 0, (int)N_CHECK_CASES);
  suite_add_tcase(s, t);
  return check_run(s);
}
