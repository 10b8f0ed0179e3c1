/* What a program that takes hakmem as the system's malloc may do, beyond
 * plain misuse (tests/test_misuse.c): threads with small stacks or
 * stacks of the program's own, malloc in signal handlers on an alternate
 * stack, thread-specific destructors that allocate after hakmem's own
 * thread-exit work (and one that calls pthread_exit), thread_local
 * destructors and atexit handlers that allocate at exit, fork while
 * other threads allocate, vfork and posix_spawn, thousands of threads,
 * exit from one thread while others allocate, pthread_cancel, a sandbox
 * that refuses mremap, malloc entered again from a signal handler that
 * interrupted it, aligned allocation at its edges (alignments up to
 * 1 GiB, products that overflow) and glibc's extensions.
 * Each must work as on glibc: no crash, no hang, no spurious NULL or
 * report.  Every case runs in a forked child (check_run) under Check's
 * timeout, so that a hang fails.  The thread and signal cases run again
 * with stats, check and prof on (run_case_in_env).
 *
 * Linked against libhakmem (tests/unit.mk): malloc and free are
 * hakmem's. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <check.h>
#include "test_util.h"
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "hakmem.h"

extern char **environ;

/* Hides a pointer from the compiler, which may elide a malloc and free
 * pair or warn about a read of freed memory. */
static void *opaque_ptr(void *p)
{
  void *volatile v = p;
  return v;
}

/* --- realloc must not copy a free tag into a slab block --------------- */

/* A slab block is free when its second word holds the free tag, a
 * per-process secret.  Memory the program never wrote may hold a stale
 * copy of it: a large mapping reused by BigCache at another offset (a
 * sampled block with prof = 1, an aligned one) shows the bytes of an old
 * block that a realloc had copied from a medium block, whose interior
 * held the tags of the smaller blocks its slab carved before.  A realloc
 * that moves such a block into a slab block copied the tag along, and
 * the block's free then aborted with "double free" (or its
 * malloc_usable_size with "already freed").  The test plants the tag
 * where the stale copy would be, in a large block, and moves it into
 * slab blocks of each kind. */
/* A live block of size bytes (a size class's) that its slab serves: with
 * prof = 1, a sampled request is served as a large block instead (its
 * usable size is its mapping's), whose freed words hold no free tag. */
static void *slab_block(size_t size)
{
  for (int i = 0; i < 64; i++) {
    void *p = opaque_ptr(malloc(size));
    ck_assert_ptr_nonnull(p);
    if (malloc_usable_size(p) == size)
      return p;
    free(p);
  }
  ck_abort_msg("64 blocks of %zu bytes in a row were not slab blocks", size);
  return NULL;
}

static uintptr_t learn_free_tag(void)
{
  char *a = slab_block(16), *b = opaque_ptr(malloc(16));
  free(a);
  uintptr_t tag = ((volatile uintptr_t *)opaque_ptr(a))[1];
  free(b);
  return tag;
}

START_TEST(realloc_into_slab_copies_no_free_tag)
{
  uintptr_t tag = learn_free_tag();
  size_t sizes[] = { 100 * KiB, 1000, 24 };
  for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    uintptr_t *q = malloc(300 * KiB); /* large */
    ck_assert_ptr_nonnull(q);
    q[0] = 0x1234;
    q[1] = tag;
    q[2] = 0x5678;
    uintptr_t *n = realloc(q, sizes[i]); /* into a slab block */
    ck_assert_ptr_nonnull(n);
    ck_assert_uint_eq(n[0], 0x1234);
    ck_assert_uint_eq(n[2], 0x5678);
    ck_assert_uint_ge(malloc_usable_size(n), sizes[i]);
    free(n); /* aborted with "double free" */
  }
}
END_TEST

/* --- a program's own copy of a stale free tag -------------------------- */

/* A freed block's tag stays in bytes that a later, bigger block over it
 * leaves unwritten; a program may copy such bytes (a struct's padding, a
 * buffer it never filled) into another block's second word.  glibc frees
 * that block; so must hakmem, whose tag is keyed by the block's address.
 * The test copies the tag a freed 32-byte block holds into live blocks of
 * the same class, of other classes and of a medium one, frees them (one
 * from another thread), and walks the heap. */
static void *free_in_thread(void *p)
{
  free(p);
  return NULL;
}

START_TEST(copied_stale_free_tag_is_no_double_free)
{
  size_t sizes[] = { 32, 32, 16, 100, 1000, 40 * KiB };
  enum { N = sizeof sizes / sizeof *sizes };
  uintptr_t *q[N];
  uintptr_t *a = slab_block(32), *b = opaque_ptr(malloc(32));
  for (unsigned i = 0; i < N; i++) { /* live while a is: none is at a */
    q[i] = malloc(sizes[i]);
    ck_assert_ptr_nonnull(q[i]);
  }
  free(a);
  uintptr_t stale = ((volatile uintptr_t *)opaque_ptr(a))[1];
  ck_assert_uint_ne(stale, 0);
  for (unsigned i = 0; i < N; i++) {
    memcpy(&q[i][1], &stale, sizeof stale);
    if (i == 1) {
      pthread_t t;
      ck_assert_int_eq(pthread_create(&t, NULL, free_in_thread, q[i]), 0);
      ck_assert_int_eq(pthread_join(t, NULL), 0);
    } else {
      free(q[i]); /* aborted with "double free" when every block's tag was the same */
    }
  }
  ck_assert_int_eq(hakmem_check_heap(), 0);
  free(b);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

/* --- threads with small stacks ----------------------------------------- */

/* Everything a thread may do: its first malloc (thread init), refills,
 * large blocks, realloc both ways, aligned blocks, malloc_trim,
 * cross-thread frees, and its exit. */
static void *every_call(void *arg)
{
  void **give = arg;
  char *p = malloc(16);
  memset(p, 1, 16);
  void *a[300];
  for (int i = 0; i < 300; i++)
    a[i] = malloc(16 + (size_t)i * 7);
  for (int i = 0; i < 300; i++)
    free(a[i]);
  char *big = malloc(4 * MiB);
  if (!big)
    return NULL;
  memset(big, 2, 4096);
  big = realloc(big, 8 * MiB);
  big = realloc(big, 100);
  free(big);
  void *q;
  if (posix_memalign(&q, 4096, 100 * KiB) != 0)
    return NULL;
  free(q);
  free(memalign(64, 1000));
  p = realloc(p, 100 * KiB);
  free(p);
  malloc_trim(0);
  if (give)
    free(*give);
  void *r = calloc(10, 10);
  free(r);
  return (void *)1;
}

static void run_with_stack(size_t stack)
{
  pthread_attr_t at;
  pthread_attr_init(&at);
  ck_assert_int_eq(pthread_attr_setstacksize(&at, stack), 0);
  void *given = malloc(48), *ret = NULL;
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, &at, every_call, &given), 0);
  ck_assert_int_eq(pthread_join(t, &ret), 0);
  ck_assert_msg(ret == (void *)1, "stack of %zu bytes: a call failed", stack);
  pthread_attr_destroy(&at);
}

START_TEST(threads_with_small_stacks)
{
  size_t stacks[] = { PTHREAD_STACK_MIN, 16 * KiB, 32 * KiB, 64 * KiB };
  for (unsigned i = 0; i < sizeof stacks / sizeof *stacks; i++)
    if (stacks[i] >= (size_t)PTHREAD_STACK_MIN)
      run_with_stack(stacks[i]);
}
END_TEST

/* Threads on stacks the program provides (pthread_attr_setstack): glibc
 * frees such a thread's TLS blocks as it is joined, holding the lock of
 * its stack cache, which pthread_create takes too; hakmem's frees there
 * must start no thread.  The stacks are static: the program owns them. */
START_TEST(threads_on_stacks_of_their_own)
{
  static char stacks[2][64 * 1024] __attribute__((aligned(4096)));
  size_t sizes[] = { PTHREAD_STACK_MIN, sizeof stacks[0] };
  for (int round = 0; round < 20; round++) {
    unsigned k = round % 2;
    pthread_attr_t at;
    pthread_attr_init(&at);
    ck_assert_int_eq(pthread_attr_setstack(&at, stacks[k], sizes[k]), 0);
    void *given = malloc(48), *ret = NULL;
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, &at, every_call, &given), 0);
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_msg(ret == (void *)1, "stack of %zu bytes: a call failed", sizes[k]);
    pthread_attr_destroy(&at);
  }
}
END_TEST

static void (*touch_big_tls)(void);

static void *touch_tls_and_wait(void *arg)
{
  (void)arg;
  touch_big_tls();
  usleep(20000);
  return NULL;
}

/* Twelve threads at once, each touching a megabyte of thread-local
 * storage of a dlopened library (a large block glibc mallocs per thread),
 * in a process that freed no large block before: as they are joined,
 * glibc's stack cache outgrows its 40 MiB and frees their TLS holding
 * the cache's lock, and that free, the first to leave memory to purge,
 * started the purge thread, whose pthread_create waited for that lock:
 * the join hung. */
START_TEST(big_tls_of_a_dlopened_library)
{
  const char *lib = getenv("DLOPEN_LIB");
  void *h = lib ? dlopen(lib, RTLD_NOW) : NULL;
  ck_assert_msg(h != NULL, "DLOPEN_LIB: %s", lib ? dlerror() : "not set");
  touch_big_tls = (void (*)(void))(uintptr_t)dlsym(h, "dlopen_lib_touch_tls");
  ck_assert_ptr_nonnull(touch_big_tls);
  pthread_t t[12];
  for (int i = 0; i < 12; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, touch_tls_and_wait, NULL), 0);
  for (int i = 0; i < 12; i++)
    ck_assert_int_eq(pthread_join(t[i], NULL), 0);
}
END_TEST

/* --- signal handlers ----------------------------------------------------- */

static volatile sig_atomic_t handled;

static void allocating_handler(int sig)
{
  (void)sig;
  char *p = malloc(40), *q = malloc(200 * KiB), *r = malloc(1 * MiB);
  if (p && q && r) {
    memset(p, 3, 40);
    q[0] = r[0] = 1;
    handled++;
  }
  free(p);
  free(q);
  free(r);
}

static void *wait_for_signals(void *arg)
{
  (void)arg;
  for (;;)
    pause();
  return NULL;
}

/* A handler interrupting the thread outside malloc may allocate (only
 * interrupting malloc itself is undefined); on an alternate stack of
 * 16 KiB too. */
START_TEST(malloc_in_signal_handler_on_small_altstack)
{
  static char alt[16 * 1024];
  stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt };
  ck_assert_int_eq(sigaltstack(&ss, NULL), 0);
  struct sigaction sa = { .sa_handler = allocating_handler, .sa_flags = SA_ONSTACK };
  sigemptyset(&sa.sa_mask);
  ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
  for (int i = 0; i < 100; i++)
    raise(SIGUSR1);
  ck_assert_int_eq(handled, 100);
  /* And in a thread whose first call to hakmem is the handler's. */
  handled = 0;
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, wait_for_signals, NULL), 0);
  usleep(10000);
  pthread_kill(t, SIGUSR1);
  for (int i = 0; i < 500 && handled == 0; i++)
    usleep(1000);
  ck_assert_int_eq(handled, 1);
  pthread_cancel(t);
  pthread_join(t, NULL);
}
END_TEST

/* --- thread-specific destructors -------------------------------------- */

static pthread_key_t realloc_key, exit_key;
static __thread int rounds;

/* Runs after hakmem's own thread-exit work, perhaps: frees, allocates,
 * and sets the value again (glibc calls it again, up to
 * PTHREAD_DESTRUCTOR_ITERATIONS times). */
static void allocating_destructor(void *v)
{
  free(v);
  char *p = malloc(64);
  memset(p, 5, 64);
  char *big = malloc(300 * KiB);
  free(big);
  if (rounds++ < 3)
    pthread_setspecific(realloc_key, p);
  else
    free(p);
}

static void exiting_destructor(void *v)
{
  free(v);
  free(malloc(128));
  pthread_exit(NULL);
}

static void *set_both_keys(void *arg)
{
  (void)arg;
  pthread_setspecific(realloc_key, malloc(32));
  pthread_setspecific(exit_key, malloc(32));
  free(malloc(100));
  return NULL;
}

START_TEST(destructors_allocate_after_thread_exit)
{
  ck_assert_int_eq(pthread_key_create(&realloc_key, allocating_destructor), 0);
  ck_assert_int_eq(pthread_key_create(&exit_key, exiting_destructor), 0);
  hak_stats_t before = stats_now();
  for (int i = 0; i < 200; i++) {
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, set_both_keys, NULL), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
  }
  malloc_trim(0);
  hak_stats_t after = stats_now();
  /* The destructors' blocks were freed: at most one SuperSlab's worth of
   * growth, not one per thread. */
  ck_assert_uint_le(after.mapped_bytes, before.mapped_bytes + 8 * MiB);
}
END_TEST

/* --- exit handlers and thread_local destructors ------------------------ */

/* C++ thread_local destructors are registered with this; they run at a
 * thread's exit before its pthread key destructors (hakmem's thread-exit
 * work among them) on threads, and at exit() on the main thread, before
 * the atexit handlers and hakmem's own destructor (the exit report). */
int __cxa_thread_atexit_impl(void (*fn)(void *), void *arg, void *dso);
extern void *__dso_handle;

static void allocate_or_exit(void *status)
{
  if (every_call(NULL) != (void *)1)
    _exit((int)(uintptr_t)status);
}

static void atexit_allocates(void)
{
  allocate_or_exit((void *)4);
}

static void *register_thread_local_destructor(void *arg)
{
  (void)arg;
  __cxa_thread_atexit_impl(allocate_or_exit, (void *)3, &__dso_handle);
  free(opaque_ptr(malloc(200)));
  return NULL;
}

/* Every size kind allocated in thread_local destructors of threads and of
 * the main thread, and in an atexit handler; the process exits 7. */
START_TEST(exit_handlers_allocate)
{
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    alarm(20);
    atexit(atexit_allocates);
    __cxa_thread_atexit_impl(allocate_or_exit, (void *)5, &__dso_handle);
    for (int i = 0; i < 4; i++) {
      pthread_t t;
      if (pthread_create(&t, NULL, register_thread_local_destructor, NULL) != 0 ||
          pthread_join(t, NULL) != 0)
        _exit(6);
    }
    exit(7);
  }
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 7, "child status %#x", status);
}
END_TEST

/* --- fork, vfork, posix_spawn ----------------------------------------- */

static _Atomic int stop_churn;

/* Mallocs, frees and reallocs of every size kind, and malloc_trim now
 * and then, until stop_churn. */
static void *churn(void *arg)
{
  unsigned s = (unsigned)(uintptr_t)arg;
  void *slots[64] = { 0 };
  while (!stop_churn) {
    s = s * 1103515245u + 12345u;
    unsigned i = (s >> 8) % 64;
    size_t n = (s >> 16) % 3 == 0 ? (s >> 4) % (300 * KiB) : (s >> 4) % 1000;
    if ((s >> 20) % 5 == 0) {
      void *r = realloc(slots[i], n);
      if (r || n == 0)
        slots[i] = r;
    } else {
      free(slots[i]);
      slots[i] = malloc(n);
    }
    if ((s & 0xfff) == 7)
      malloc_trim(0);
  }
  for (int i = 0; i < 64; i++)
    free(slots[i]);
  return NULL;
}

static void start_churn(pthread_t *t, int n)
{
  stop_churn = 0;
  for (int i = 0; i < n; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1)), 0);
}

static void stop_churning(pthread_t *t, int n)
{
  stop_churn = 1;
  for (int i = 0; i < n; i++)
    pthread_join(t[i], NULL);
}

/* The child of a fork taken while other threads were inside malloc, free,
 * realloc or malloc_trim: everything works in it, a thread included. */
START_TEST(fork_while_threads_allocate)
{
  pthread_t t[3];
  start_churn(t, 3);
  for (int round = 0; round < 100; round++) {
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      alarm(10);
      void *a = malloc(50), *b = malloc(500 * KiB);
      free(a);
      free(b);
      malloc_trim(0);
      pthread_t x;
      void *ret = NULL;
      if (pthread_create(&x, NULL, every_call, NULL) != 0 || pthread_join(x, &ret) != 0)
        _exit(3);
      _exit(ret == (void *)1 ? 7 : 4);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 7, "round %d: child status %#x",
                  round, status);
  }
  stop_churning(t, 3);
}
END_TEST

/* Fork handlers of the program's that allocate, registered once hakmem's
 * are (a second thread took one of its locks): glibc runs prepare
 * handlers last registered first, so hakmem's take its locks after the
 * program's ran, and the child handlers first registered first, so the
 * locks are released before the program's run.  Registered before
 * hakmem's, they run inside hakmem's fork window: the next test. */
static void allocating_fork_handler(void)
{
  free(opaque_ptr(malloc(100)));
  free(opaque_ptr(malloc(300 * KiB)));
  free(opaque_ptr(malloc(5000)));
}

/* 30 forks, each child allocating once and exiting 7.  No heap check in
 * the child: threads churning in the parent stopped wherever they were,
 * so their slabs may be caught between a pop and its count, which
 * hakmem_check_heap reports (so did the previous release's children). */
static void fork_rounds_children_allocate(void)
{
  for (int round = 0; round < 30; round++) {
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      free(opaque_ptr(malloc(1000)));
      _exit(7);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 7, "round %d: child status %#x",
                  round, status);
  }
}

START_TEST(fork_handlers_of_the_program_allocate)
{
  pthread_t t[2];
  start_churn(t, 2);
  usleep(10000);
  ck_assert_int_eq(pthread_atfork(allocating_fork_handler, allocating_fork_handler,
                                  allocating_fork_handler), 0);
  fork_rounds_children_allocate();
  stop_churning(t, 2);
}
END_TEST

/* The program registers allocating handlers while it has one thread,
 * so before hakmem's (registered at the second thread): its prepare
 * handler runs after hakmem's took its locks, its parent and child
 * handlers before hakmem's release them.  They used to wait for those
 * locks for ever; the forking thread now passes through them. */
START_TEST(fork_handlers_registered_before_hakmems_allocate)
{
  ck_assert_int_eq(pthread_atfork(allocating_fork_handler, allocating_fork_handler,
                                  allocating_fork_handler), 0);
  pthread_t t[2];
  start_churn(t, 2);
  usleep(10000);
  fork_rounds_children_allocate();
  stop_churning(t, 2);
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

START_TEST(vfork_and_posix_spawn)
{
  pthread_t t[2];
  start_churn(t, 2);
  for (int round = 0; round < 30; round++) {
    int status;
    pid_t pid = vfork();
    if (pid == 0) {
      execl("/bin/true", "true", (char *)NULL);
      _exit(9);
    }
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *argv[] = { "true", NULL };
    ck_assert_int_eq(posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ), 0);
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  stop_churning(t, 2);
}
END_TEST

/* --- many threads -------------------------------------------------------- */

static void *short_lived(void *arg)
{
  void *p = malloc((uintptr_t)arg % 2000 + 1);
  free(p);
  return p ? (void *)1 : NULL;
}

static _Atomic int alive_go;

static void *stays_alive(void *arg)
{
  void *p = malloc((uintptr_t)arg % 5000 + 1);
  while (!alive_go)
    usleep(1000);
  free(p);
  return p ? (void *)1 : NULL;
}

/* 2000 threads one after another (their ids reused), then 500 alive at
 * once, each with blocks of its own. */
START_TEST(thousands_of_threads)
{
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 64 * KiB);
  for (int i = 0; i < 2000; i++) {
    pthread_t t;
    void *ret = NULL;
    ck_assert_int_eq(pthread_create(&t, &at, short_lived, (void *)(uintptr_t)i), 0);
    ck_assert_int_eq(pthread_join(t, &ret), 0);
    ck_assert_ptr_eq(ret, (void *)1);
  }
  static pthread_t alive[500];
  for (int i = 0; i < 500; i++)
    ck_assert_int_eq(pthread_create(&alive[i], &at, stays_alive, (void *)(uintptr_t)i), 0);
  alive_go = 1;
  for (int i = 0; i < 500; i++) {
    void *ret = NULL;
    ck_assert_int_eq(pthread_join(alive[i], &ret), 0);
    ck_assert_ptr_eq(ret, (void *)1);
  }
  pthread_attr_destroy(&at);
}
END_TEST

/* --- exit while other threads allocate ------------------------------------ */

static void *exit_soon(void *arg)
{
  usleep(5000);
  if (arg)
    quick_exit(5);
  exit(5);
}

static void exits_while_allocating(bool quick)
{
  for (int round = 0; round < 10; round++) {
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
      alarm(10);
      pthread_t t[3], e;
      start_churn(t, 3);
      pthread_create(&e, NULL, exit_soon, quick ? &e : NULL);
      for (;;)
        free(malloc(100));
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 5, "round %d: status %#x", round,
                  status);
  }
}

START_TEST(exit_while_threads_allocate)
{
  exits_while_allocating(false);
  exits_while_allocating(true);
}
END_TEST

/* --- a sandbox that refuses mremap --------------------------------------- */

/* Gives every call of syscall nr in this process from now on the seccomp
 * action (SECCOMP_RET_ERRNO | an errno, SECCOMP_RET_TRAP for SIGSYS). */
static void filter_syscall(int nr, unsigned action)
{
  struct sock_filter f[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, action),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { .len = sizeof f / sizeof *f, .filter = f };
  ck_assert_int_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
  ck_assert_int_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
}

/* Makes syscall nr fail with err, as a seccomp filter of a sandbox
 * (systemd's SystemCallFilter, a container's profile) does. */
static void refuse_syscall(int nr, int err)
{
  filter_syscall(nr, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA));
}

/* A large block's realloc moves its pages with mremap; refused (EPERM,
 * or ENOSYS), it returned NULL where glibc's copies.  So does a malloc
 * that grows a smaller mapping BigCache kept, when the addresses after it
 * are taken: that refusal was taken for the kernel refusing memory, and
 * BigCache was emptied (purge_reclaim) before a new mapping was made, or,
 * when another thread cached a mapping meanwhile, the malloc returned
 * NULL. */
START_TEST(realloc_without_mremap)
{
  refuse_syscall(SYS_mremap, _i == 0 ? EPERM : ENOSYS);
  /* A cached 8 MiB mapping split for 1 MiB, its rest taken by 6 MiB: the
   * 1 MiB one, freed, cannot grow in place to serve 2 MiB. */
  free(opaque_ptr(malloc(8 * MiB)));
  char *head = malloc(1 * MiB), *rest = malloc(6 * MiB);
  ck_assert_ptr_nonnull(head);
  ck_assert_ptr_nonnull(rest);
  free(head);
  char *two = malloc(2 * MiB);
  ck_assert_ptr_nonnull(two);
  ck_assert_msg(stats_now().bigcache_bytes > 0, "BigCache was emptied");
  free(two);
  free(rest);
  for (int round = 0; round < 20; round++) {
    unsigned char *p = malloc(100 * KiB);
    ck_assert_ptr_nonnull(p);
    memset(p, 0xa5, 100 * KiB);
    for (size_t n = 300 * KiB; n <= 32 * MiB; n *= 2) {
      p = realloc(p, n);
      ck_assert_msg(p != NULL, "realloc to %zu bytes: NULL", n);
      ck_assert_int_eq(p[0], 0xa5);
      ck_assert_int_eq(p[100 * KiB - 1], 0xa5);
      p[n - 1] = 1;
    }
    p = realloc(p, 500 * KiB);
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(p[100 * KiB - 1], 0xa5);
    free(p);
  }
  malloc_trim(0);
}
END_TEST

/* --- malloc entered again while it holds a lock ------------------------- */

static sigjmp_buf reentry_jump;
static volatile sig_atomic_t reentry_by_longjmp;

/* Blocks of a class the process has not used yet: its first refill takes
 * the shared pool's lock. */
static void allocate_in_a_new_class(void)
{
  for (int i = 0; i < 300; i++)
    opaque_ptr(malloc(7000));
}

/* The SIGSYS of a trapped mmap: the SuperSlab's, which the shared pool
 * maps under its lock. */
static void reenter_malloc(int sig)
{
  (void)sig;
  if (reentry_by_longjmp)
    siglongjmp(reentry_jump, 1);
  allocate_in_a_new_class();
}

/* Small blocks until a new SuperSlab is mapped, whose mmap is trapped;
 * the handler allocates, or jumps out and the program allocates.  The
 * thread asks for the lock it holds: that hung, waiting for itself (glibc
 * aborts in the second case, finding its arena half changed).  alarm
 * turns the hang into a failure.  The purge thread is started first (a
 * large block freed asks for it), so that the trapped mmap is not the one
 * of its stack, made with every signal blocked. */
static void reenter_malloc_holding_its_lock(void)
{
  signal(SIGALRM, SIG_DFL);
  alarm(10);
  uint64_t started = stats_now().purge_threads;
  for (int i = 0; i < 100 && stats_now().purge_threads == started; i++) {
    free(opaque_ptr(malloc(4 * MiB)));
    usleep(1000);
  }
  if (stats_now().purge_threads == started)
    _exit(3);
  struct sigaction sa = { .sa_handler = reenter_malloc };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSYS, &sa, NULL);
  filter_syscall(SYS_mmap, SECCOMP_RET_TRAP);
  if (sigsetjmp(reentry_jump, 1) == 0)
    for (;;)
      opaque_ptr(malloc(48));
  allocate_in_a_new_class();
}

START_TEST(malloc_reentered_inside_its_lock_aborts)
{
  reentry_by_longjmp = _i;
  expect_child_aborts(reenter_malloc_holding_its_lock,
                      _i ? "malloc after a longjmp out of malloc" : "malloc in a handler",
                      "malloc entered again");
}
END_TEST

/* --- a sandbox that answers a system call from its SIGSYS handler ------- */

static volatile sig_atomic_t mmap_refused;

/* Answers the trapped mmap with ENOMEM, in whichever thread made it. */
static void refuse_mmap(int sig, siginfo_t *si, void *ucv)
{
  (void)sig;
  (void)si;
  ucontext_t *uc = ucv;
  uc->uc_mcontext.gregs[REG_RAX] = -ENOMEM;
  mmap_refused++;
}

/* A sandbox may trap a system call (SIGSYS) and answer it in its handler.
 * The purge thread's stack was mapped with every signal blocked, SIGSYS
 * included, and the kernel then killed the process instead.  The free of
 * a large block makes memory to purge, and the next allocation (of the
 * block BigCache kept: no mmap) starts the purge thread; its stack is
 * refused, and the purge runs in the allocating thread. */
static void mmap_answered_by_handler(void)
{
  signal(SIGALRM, SIG_DFL);
  alarm(20);
  char *p = malloc(4 * MiB);
  memset(p, 1, 4 * MiB);
  struct sigaction sa = { .sa_sigaction = refuse_mmap, .sa_flags = SA_SIGINFO };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSYS, &sa, NULL);
  filter_syscall(SYS_mmap, SECCOMP_RET_TRAP);
  uint64_t started = stats_now().purge_threads;
  free(p);
  free(malloc(4 * MiB));
  _exit(stats_now().purge_threads > started && mmap_refused ? 0 : 3);
}

START_TEST(purge_thread_takes_a_sandboxs_sigsys)
{
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0)
    mmap_answered_by_handler();
  int status;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x (signal %d)",
                status, WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
END_TEST

/* --- aligned allocation at its edges ------------------------------------- */

START_TEST(aligned_allocation_edges)
{
  size_t aligns[] = { 1, 2, 8, 16, 32, 64, 4096, 64 * KiB, 2 * MiB, 4 * MiB };
  for (unsigned i = 0; i < sizeof aligns / sizeof *aligns; i++) {
    size_t al = aligns[i];
    size_t sizes[] = { 0, 1, al, al + 1, 3 * al, 100 * KiB };
    for (unsigned j = 0; j < sizeof sizes / sizeof *sizes; j++) {
      size_t n = sizes[j];
      char *p = memalign(al, n);
      ck_assert_msg(p && (uintptr_t)p % al == 0, "memalign(%zu, %zu)", al, n);
      ck_assert_uint_ge(malloc_usable_size(p), n);
      memset(p, 1, n);
      p = realloc(p, 2 * n + 5);
      ck_assert_ptr_nonnull(p);
      size_t k = 0;
      while (k < n && p[k] == 1)
        k++;
      ck_assert_msg(k == n, "memalign(%zu, %zu): byte %zu lost by realloc", al, n, k);
      free(p);
      if (al >= sizeof(void *)) {
        void *q = NULL;
        ck_assert_int_eq(posix_memalign(&q, al, n), 0);
        ck_assert_uint_eq((uintptr_t)q % al, 0);
        free(q);
      }
      void *a = aligned_alloc(al, n);
      ck_assert_ptr_nonnull(a);
      ck_assert_uint_eq((uintptr_t)a % al, 0);
      free(a);
    }
  }
  void *v = valloc(10);
  ck_assert_uint_eq((uintptr_t)v % 4096, 0);
  free(v);
  v = pvalloc(10);
  ck_assert_uint_eq((uintptr_t)v % 4096, 0);
  ck_assert_uint_ge(malloc_usable_size(v), 4096);
  free(v);
  v = pvalloc(0);
  ck_assert_ptr_nonnull(v);
  free(v);
  void *q = &q;
  ck_assert_int_eq(posix_memalign(&q, 3, 10), EINVAL);
  ck_assert_int_eq(posix_memalign(&q, 4, 10), EINVAL);
  ck_assert_int_eq(posix_memalign(&q, 64, opaque(SIZE_MAX - 10)), ENOMEM);
  errno = 0;
  ck_assert_ptr_null(memalign(1 * MiB, opaque(SIZE_MAX - 100)));
  ck_assert_int_eq(errno, ENOMEM);
  errno = 0;
  ck_assert_ptr_null(pvalloc(opaque(SIZE_MAX - 100)));
  ck_assert_int_eq(errno, ENOMEM);
  errno = 0;
  ck_assert_ptr_null(valloc(opaque(SIZE_MAX - 100)));
  ck_assert_int_eq(errno, ENOMEM);
  errno = 0;
  ck_assert_ptr_null(aligned_alloc(64, opaque(SIZE_MAX - 63)));
  ck_assert_int_eq(errno, ENOMEM);
  errno = 0;
  ck_assert_ptr_null(memalign(opaque((size_t)1 << 63), 1));
  /* Alignments of tens of TiB: ENOMEM at once (they hung, hakmem looking
   * for such an address in its region of 32 TiB forever). */
  for (unsigned lg = 44; lg <= 62; lg++) {
    size_t huge = opaque((size_t)1 << lg);
    errno = 0;
    void *h = memalign(huge, 100);
    ck_assert_msg(h == NULL ? errno == ENOMEM : (uintptr_t)h % huge == 0, "memalign(2^%u)", lg);
    free(h);
    h = &h;
    int r = posix_memalign(&h, huge, 1);
    ck_assert_msg(r == ENOMEM || r == 0, "posix_memalign(2^%u): %d", lg, r);
    if (r == 0)
      free(h);
    free(aligned_alloc(huge, huge));
  }
  errno = 0;
  ck_assert_ptr_null(reallocarray(NULL, opaque(SIZE_MAX / 2), 3));
  ck_assert_int_eq(errno, ENOMEM);
  errno = 0;
  ck_assert_ptr_null(malloc(opaque((size_t)PTRDIFF_MAX + 1)));
  ck_assert_int_eq(errno, ENOMEM);
  char *z = malloc(10);
  errno = 0;
  ck_assert_ptr_null(realloc(z, opaque(SIZE_MAX)));
  ck_assert_int_eq(errno, ENOMEM);
  free(z);
  ck_assert_uint_eq(malloc_usable_size(NULL), 0);
}
END_TEST

/* Blocks aligned up to 1 GiB: usable size, then realloc down to a slab
 * block and up again to a large one, the bytes kept; calloc's and
 * reallocarray's products at the overflow edge; sizes a few bytes short
 * of SIZE_MAX. */
START_TEST(aligned_up_to_a_gib_and_product_edges)
{
  for (size_t al = 8; al <= 1024 * MiB; al *= 2) {
    size_t sizes[] = { 1, 100, al, 300 * KiB };
    for (unsigned j = 0; j < sizeof sizes / sizeof *sizes; j++) {
      size_t n = sizes[j], head = n < 4096 ? n : 4096;
      unsigned char *p = memalign(al, n);
      ck_assert_msg(p && (uintptr_t)p % al == 0, "memalign(%zu, %zu)", al, n);
      ck_assert_uint_ge(malloc_usable_size(p), n);
      memset(p, 7, head);
      p = realloc(p, 100);
      ck_assert_ptr_nonnull(p);
      ck_assert_int_eq(p[0], 7);
      ck_assert_int_eq(p[(head < 100 ? head : 100) - 1], 7);
      p = realloc(p, 2 * MiB);
      ck_assert_ptr_nonnull(p);
      ck_assert_int_eq(p[0], 7);
      free(p);
    }
  }
  errno = 0;
  ck_assert_ptr_null(calloc(opaque(SIZE_MAX / 2 + 1), 2));
  ck_assert_int_eq(errno, ENOMEM);
  errno = 0;
  ck_assert_ptr_null(calloc(opaque((size_t)1 << 32), opaque((size_t)1 << 32)));
  ck_assert_int_eq(errno, ENOMEM);
  errno = 0;
  ck_assert_ptr_null(calloc(opaque(PTRDIFF_MAX), 1));
  ck_assert_int_eq(errno, ENOMEM);
  void *z = calloc(0, opaque(SIZE_MAX));
  ck_assert_ptr_nonnull(z);
  free(z);
  z = reallocarray(NULL, 0, opaque(SIZE_MAX));
  ck_assert_ptr_nonnull(z);
  free(z);
  for (size_t k = 0; k < 70; k += 7) {
    errno = 0;
    ck_assert_ptr_null(malloc(opaque(SIZE_MAX - k)));
    ck_assert_int_eq(errno, ENOMEM);
  }
  void *q = &q;
  ck_assert_int_eq(posix_memalign(&q, 64, 0), 0);
  free(q);
}
END_TEST

/* --- glibc's extensions ----------------------------------------------- */

START_TEST(glibc_extensions_answer)
{
  char *held = malloc(1000);
  struct mallinfo2 mi = mallinfo2();
  ck_assert_uint_ge(mi.uordblks, 1000);
  free(held);
  malloc_stats(); /* on stderr */
  FILE *f = fopen("/dev/null", "w");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(malloc_info(0, f), 0);
  errno = 0;
  ck_assert_int_eq(malloc_info(1, f), -1);
  ck_assert_int_eq(errno, EINVAL);
  fclose(f);
  int params[] = { M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX,
                   M_CHECK_ACTION, M_PERTURB, M_ARENA_TEST, M_MXFAST, 12345, -1 };
  for (unsigned i = 0; i < sizeof params / sizeof *params; i++) {
    int r = mallopt(params[i], 1);
    ck_assert_msg(r == 0 || r == 1, "mallopt(%d, 1) = %d", params[i], r);
  }
  char *p = malloc(10);
  memset(p, 0, 10);
  free(p);
  malloc_trim(opaque(SIZE_MAX));
}
END_TEST

/* --- pthread_cancel ---------------------------------------------------- */

static void *sample_until_cancelled(void *arg)
{
  (void)arg;
  for (;;) {
    char *p = malloc(3000);
    memset(p, 1, 64);
    free(p);
    pthread_testcancel();
  }
  return NULL;
}

/* malloc is no cancellation point, but the profile it writes every
 * prof_interval_mb was made of some (open, write, close): a thread
 * cancelled in one died holding the profiler's lock, and the next sample
 * of any thread hung.  Run with prof = 1 and a profile every MiB. */
START_TEST(cancel_during_profile_dump)
{
  for (int i = 0; i < 30; i++) {
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, sample_until_cancelled, NULL), 0);
    usleep(2000);
    pthread_cancel(t);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
  }
  for (int i = 0; i < 20000; i++)
    free(opaque_ptr(malloc(3000)));
}
END_TEST

START_TEST(cancel_with_profile_dumps)
{
  char dir[] = "/tmp/hakmem-hostile.XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  static char prefix[64];
  snprintf(prefix, sizeof prefix, "HAKMEM_PROF_PREFIX=%s/p", dir);
  char *const env[] = { "HAKMEM_PROF=1", "HAKMEM_PROF_SAMPLE_KB=1", "HAKMEM_PROF_INTERVAL_MB=1",
                        prefix, NULL };
  run_case_in_env("prof_dump_cancel", env);
  char cmd[96];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* --- the same with stats, check and prof on ------------------------------ */

static char *const with_stats[] = { "HAKMEM_STATS=1", "HAKMEM_STATS_FILE=/dev/null", NULL };
static char *const with_check[] = { "HAKMEM_CHECK=1", NULL };
static char *const with_prof[] = { "HAKMEM_PROF=1", "HAKMEM_PROF_SAMPLE_KB=1",
                                   "HAKMEM_PROF_PREFIX=/nonexistent/hostile", NULL };

/* Runs big_tls_of_a_dlopened_library in a process that is no fork's
 * child (whose purge thread would start at an allocation anyway) and
 * does not fork per test (CK_FORK=no), killed after 20 s: a thread hung
 * inside pthread_create holds every signal blocked, so only SIGKILL ends
 * it. */
START_TEST(join_frees_big_tls_of_a_dlopened_library)
{
  fflush(NULL);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    setenv(FRESH_CASE_VAR, "big_tls", 1);
    setenv("CK_RUN_CASE", "big_tls", 1);
    setenv("CK_FORK", "no", 1);
    unsetenv("CK_RUN_SUITE");
    execl("/proc/self/exe", program_invocation_name, (char *)NULL);
    _exit(127);
  }
  int status = wait_deadline(pid, 20);
  ck_assert_msg(status != -1, "the joins of threads with a dlopened library's TLS hung");
  ck_assert_msg(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x", status);
}
END_TEST

START_TEST(threads_and_signals_with_options)
{
  char *const *envs[] = { with_stats, with_check, with_prof };
  for (unsigned i = 0; i < 3; i++)
    run_case_in_env("with_options", envs[i]);
}
END_TEST

static Suite *fresh_suite(void)
{
  Suite *s = suite_create("hostile (fresh process)");
  TCase *t = tcase_create("with_options");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, threads_with_small_stacks);
  tcase_add_test(t, threads_on_stacks_of_their_own);
  tcase_add_test(t, malloc_in_signal_handler_on_small_altstack);
  tcase_add_test(t, destructors_allocate_after_thread_exit);
  tcase_add_test(t, exit_handlers_allocate);
  tcase_add_test(t, realloc_into_slab_copies_no_free_tag);
  tcase_add_test(t, copied_stale_free_tag_is_no_double_free);
  suite_add_tcase(s, t);
  t = tcase_create("prof_dump_cancel");
  tcase_set_timeout(t, 30);
  tcase_add_test(t, cancel_during_profile_dump);
  suite_add_tcase(s, t);
  t = tcase_create("big_tls");
  tcase_add_test(t, big_tls_of_a_dlopened_library);
  suite_add_tcase(s, t);
  return s;
}

int main(void)
{
  if (fresh_case_requested())
    return check_run(fresh_suite());
  Suite *s = suite_create("hostile (libhakmem)");
  TCase *t = tcase_create("hostile");
  tcase_set_timeout(t, 60);
  tcase_add_test(t, realloc_into_slab_copies_no_free_tag);
  tcase_add_test(t, copied_stale_free_tag_is_no_double_free);
  tcase_add_test(t, threads_with_small_stacks);
  tcase_add_test(t, threads_on_stacks_of_their_own);
  tcase_add_test(t, malloc_in_signal_handler_on_small_altstack);
  tcase_add_test(t, destructors_allocate_after_thread_exit);
  tcase_add_test(t, exit_handlers_allocate);
  tcase_add_test(t, fork_while_threads_allocate);
  tcase_add_test(t, fork_handlers_of_the_program_allocate);
  tcase_add_test(t, fork_handlers_registered_before_hakmems_allocate);
  tcase_add_test(t, vfork_and_posix_spawn);
  tcase_add_test(t, thousands_of_threads);
  tcase_add_test(t, exit_while_threads_allocate);
  tcase_add_loop_test(t, realloc_without_mremap, 0, 2);
  tcase_add_loop_test(t, malloc_reentered_inside_its_lock_aborts, 0, 2);
  tcase_add_test(t, purge_thread_takes_a_sandboxs_sigsys);
  tcase_add_test(t, aligned_allocation_edges);
  tcase_add_test(t, aligned_up_to_a_gib_and_product_edges);
  tcase_add_test(t, glibc_extensions_answer);
  tcase_add_test(t, threads_and_signals_with_options);
  tcase_add_test(t, join_frees_big_tls_of_a_dlopened_library);
  tcase_add_test(t, cancel_with_profile_dumps);
  suite_add_tcase(s, t);
  return check_run(s);
}
