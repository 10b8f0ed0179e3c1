/* The background purge thread. */
#include "purge.h"
#include "config.h"
#include "bigcache.h"
#include "prof_stash.h"
#include "tcache.h"
#include "shared_pool.h"
#include "counters.h"
#include "diag.h"
#include "os.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static _Atomic bool purge_running;
/* 1 while a caller of purge_stop waits for the thread to end: the thread
 * ends at its next wake, which the stop hastens (futex on this word), and
 * no start is made meanwhile. */
static _Atomic int purge_stopping;
/* The thread's id in the kernel, stored as it starts, and its process's,
 * stored by its starter: purge_stop waits until the kernel has released
 * that thread, and a vfork child, whose memory is its parent's, leaves
 * the parent's alone. */
static _Atomic pid_t purge_thread_tid, purge_thread_pid;
/* 1 while the thread sleeps a whole period for threads that hold blocks
 * and keep using them: a kick wakes it (purge_wake). */
static _Atomic int purge_dozing;

/* Sleeps ms, or until a stop is asked (purge_stop).  A wake cut short by
 * anything else only makes a tick shorter. */
static void purge_sleep(uint64_t ms)
{
  struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };
  syscall(SYS_futex, &purge_stopping, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
}

/* Whether some layer raised its flag: memory to purge, or a thread
 * holding blocks that nobody watches yet. */
static bool purge_wanted(void)
{
  return shared_pool_purge_wanted() || bigcache_purge_wanted() || prof_stash_purge_wanted() ||
         tcache_reclaim_wanted();
}

/* Sleeps ms, or until a kick (purge_wake) or a stop.  The store of
 * purge_dozing and the load of the flags, with a full fence between, pair
 * with the kicker's store of a flag and load of purge_dozing (purge_kick's
 * fence, purge_stop's): either this thread sees the flag and does not
 * sleep, or the kicker sees it dozing and wakes it. */
static void purge_doze(uint64_t ms)
{
  atomic_store(&purge_dozing, 1);
  atomic_thread_fence(memory_order_seq_cst);
  if (!purge_wanted() && !atomic_load_explicit(&purge_stopping, memory_order_relaxed)) {
    struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L };
    /* A wake, the timeout or a value already changed: all end the doze. */
    syscall(SYS_futex, &purge_dozing, FUTEX_WAIT_PRIVATE, 1, &ts, NULL, 0);
  }
  atomic_store(&purge_dozing, 0);
}

/* A kick while the thread runs: cut its doze short, if it dozes. */
static void purge_wake(void)
{
  if (atomic_load_explicit(&purge_dozing, memory_order_relaxed) &&
      atomic_exchange(&purge_dozing, 0))
    syscall(SYS_futex, &purge_dozing, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

size_t purge_heap_growth(void)
{
  /* Only the pass that holds purge_running, or a test, calls this. */
  static uint64_t mapped_seen = UINT64_MAX;
  uint64_t mapped = atomic_load_explicit(&hak_counters.pool_new_superslab, memory_order_relaxed);
  size_t given = 0;
  if (mapped_seen != UINT64_MAX && mapped > mapped_seen)
    given = bigcache_decommit_oldest((size_t)(mapped - mapped_seen) << hak_config.superslab_lg);
  mapped_seen = mapped;
  return given;
}

/* How often the thread, with nothing to purge, looks whether it is all
 * that keeps the process alive (purge_leader_gone). */
#define PURGE_PARK_CHECK_MS 10000

/* Whether the thread group's leader has ended (or that cannot be read):
 * with exit(2), not exit_group, as a clone(2) child's function that
 * returns does, the process lives as long as this thread. */
static bool purge_leader_gone(void)
{
  char buf[512];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return true;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return true;
  buf[n] = '\0';
  /* "pid (comm) state ...": the name may hold any byte but ends at the
   * last ')'. */
  char *end = strrchr(buf, ')');
  return !end || end[1] != ' ' || end[2] == 'Z' || end[2] == 'X';
}

/* The thread stops (purge_stop): it lets the next allocation's slow path
 * start it again, before purge_running says it has gone. */
static void *purge_end_stopped(void)
{
  atomic_store(&purge_start_wanted, true);
  atomic_store(&purge_running, false);
  return NULL;
}

static void *purge_main(void *arg)
{
  (void)arg;
  atomic_store(&purge_thread_tid, (pid_t)syscall(SYS_gettid));
  /* The pool is purged every quarter of the purge period, so that its
   * memory goes back within 1.25 delays of becoming due, not two.
   * BigCache, which tells an idle program by its own activity between
   * two of its passes, is purged once per period as before. */
  uint64_t period = shared_pool_purge_period_ms();
  uint64_t tick = period / 4 < 10 ? 10 : period / 4;
  uint64_t activity = UINT64_MAX, bigcache_last = hak_now_ms();
  bool bigcache_pending = true, dozing = false;
  for (;;) {
    shared_pool_take_purge_wanted();
    if (dozing)
      purge_doze(period);
    else
      purge_sleep(tick);
    if (atomic_load(&purge_stopping))
      return purge_end_stopped();
    bool idle;
    uint64_t now = hak_now_ms();
    /* Idle threads' held blocks first: the slabs they empty are purged
     * with the others. */
    bool held = tcache_reclaim_idle(now);
    bool pending = shared_pool_purge(now, &idle, &activity);
    purge_heap_growth();
    if (now - bigcache_last >= period) {
      bigcache_last = now;
      /* Taken only here: a mapping cached between two of its passes
       * keeps the thread running until the next one. */
      bigcache_take_purge_wanted();
      bigcache_pending = bigcache_purge(now, idle);
      bigcache_pending |= prof_stash_purge();
    }
    pending |= bigcache_pending;
    /* Only threads that hold blocks and are not due yet: a busy one
     * cannot be due before a period has passed, so the thread waits that
     * long (a kick ends it sooner), not a tick: a daemon that holds a
     * block and wakes every second does not keep it waking four times a
     * second. */
    dozing = !pending && held && !purge_wanted();
    if (pending || held || purge_wanted())
      continue;
    /* Nothing left: wait for the next kick rather than end, so that the
     * thread is not started again and again. */
    bool wanted;
    do
      purge_doze(PURGE_PARK_CHECK_MS);
    while (!(wanted = purge_wanted()) && !atomic_load(&purge_stopping) && !purge_leader_gone());
    if (atomic_load(&purge_stopping))
      return purge_end_stopped();
    if (wanted) {
      period = shared_pool_purge_period_ms();
      tick = period / 4 < 10 ? 10 : period / 4;
      continue;
    }
    /* Stop, unless memory became purgeable meanwhile and no kicker saw
     * purge_running false yet.  The fence pairs with purge_kick's: a
     * store of a flag and a later load of another variable may pass each
     * other (even on x86), and without a fence on each side this thread
     * could miss a flag while its kicker still saw purge_running true:
     * nobody would purge until the next kick. */
    atomic_store(&purge_running, false);
    atomic_thread_fence(memory_order_seq_cst);
    if (!purge_wanted())
      return NULL;
    bool expected = false;
    if (!atomic_compare_exchange_strong(&purge_running, &expected, true))
      return NULL;
  }
}

/* When the thread could not be started (RLIMIT_NPROC, a cgroup's pids
 * limit, a seccomp filter): the earliest time of the next try, 0 if the
 * last start succeeded.  A failed pthread_create costs a clone and more;
 * tried on every allocation's slow path, it made such a program several
 * times slower. */
static _Atomic uint64_t purge_retry_ms;
/* Whether the last pass done in the thread's place left memory due later:
 * the kicks after it must come back for it, though no flag is raised
 * again. */
static _Atomic bool purge_pass_pending;

_Atomic bool purge_start_wanted = true;

/* The heap from which an allocation's slow path starts the thread before
 * anything waits to be purged: a program that frees its memory and then
 * sleeps makes no allocation after the frees that could start it.  Four
 * SuperSlabs (of 2 MiB by default): a smaller program keeps at most that
 * much free, if it never allocates again after freeing it. */
#define PURGE_THREAD_HEAP_MIN ((uint64_t)8 << 20)

/* One pass of the purge thread's work, done in its place while it cannot
 * be started, so that memory still goes back by time (on the program's
 * calls, at most once per period).  Its caller holds purge_running, so no
 * other pass runs meanwhile. */
static void purge_pass_here(uint64_t now)
{
  static uint64_t activity = UINT64_MAX;
  bool idle;
  shared_pool_take_purge_wanted();
  bool pending = tcache_reclaim_idle(now);
  pending |= shared_pool_purge(now, &idle, &activity);
  purge_heap_growth();
  bigcache_take_purge_wanted();
  pending |= bigcache_purge(now, idle);
  pending |= prof_stash_purge();
  atomic_store_explicit(&purge_pass_pending, pending, memory_order_relaxed);
}

/* A pass in the thread's place, if its start failed and a period has
 * passed since the last try.  Called with purge_running free. */
static void purge_pass_if_due(void)
{
  uint64_t retry = atomic_load_explicit(&purge_retry_ms, memory_order_relaxed);
  if (!retry)
    return;
  uint64_t now = hak_now_ms();
  bool expected = false;
  if (now < retry || !atomic_compare_exchange_strong(&purge_running, &expected, true))
    return;
  int saved_errno = errno;
  purge_pass_here(now);
  atomic_store_explicit(&purge_retry_ms, now + shared_pool_purge_period_ms(), memory_order_relaxed);
  atomic_store(&purge_running, false);
  errno = saved_errno;
}

void purge_kick(void)
{
  if (hak_config.purge_delay_ms < 0 ||
      !(purge_wanted() || atomic_load_explicit(&purge_pass_pending, memory_order_relaxed)))
    return;
  /* The flag seen above was raised before this load (see purge_main's
   * fence). */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(&purge_running, memory_order_relaxed)) {
    purge_wake();
    return;
  }
  /* No thread: only an allocation's slow path starts it (purge_start_now),
   * never a kick, which may come from a free that glibc makes holding
   * the lock of its stack cache, which pthread_create takes.  The flags
   * stay raised for that start. */
  purge_pass_if_due();
}

bool purge_reclaim(void)
{
  int saved = errno;
  bool released = shared_pool_trim();
  released |= bigcache_flush();
  released |= prof_stash_release();
  errno = saved;
  return released;
}

void purge_start_now(void)
{
  if (hak_config.purge_delay_ms < 0 || atomic_load_explicit(&purge_running, memory_order_relaxed) ||
      atomic_load_explicit(&purge_stopping, memory_order_relaxed))
    return;
  if (!purge_wanted() && !atomic_load_explicit(&purge_pass_pending, memory_order_relaxed) &&
      atomic_load_explicit(&os_counters.mapped_bytes, memory_order_relaxed) < PURGE_THREAD_HEAP_MIN)
    return;
  uint64_t retry = atomic_load_explicit(&purge_retry_ms, memory_order_relaxed);
  if (retry && hak_now_ms() < retry)
    return;
  bool expected = false;
  if (!atomic_compare_exchange_strong(&purge_running, &expected, true))
    return;
  /* Lowered before the thread exists: a thread stopped at once raises it
   * again (purge_end_stopped), and that must not be lost.  The process
   * is noted before too: an unshare right after this call must find the
   * thread its own, though it may not have run yet. */
  atomic_store(&purge_start_wanted, false);
  atomic_store(&purge_thread_pid, getpid());
  int saved_errno = errno;
  counters_add(&hak_counters.purge_threads, 1);
  /* The thread takes no signals meant for the program, but those its own
   * instructions raise: blocked, they would kill the process instead of
   * reaching the program's handler (a sandbox's SIGSYS for a system call
   * it traps and answers, a SIGSEGV or SIGBUS on a page the program
   * protected). */
  sigset_t all, old;
  sigfillset(&all);
  static const int synchronous[] = { SIGSYS, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP };
  for (unsigned i = 0; i < sizeof synchronous / sizeof synchronous[0]; i++)
    sigdelset(&all, synchronous[i]);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  pthread_t t;
  bool started = pthread_create(&t, &attr, purge_main, NULL) == 0;
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (started) {
    atomic_store_explicit(&purge_retry_ms, 0, memory_order_relaxed);
    atomic_store_explicit(&purge_pass_pending, false, memory_order_relaxed);
  } else {
    uint64_t now = hak_now_ms();
    purge_pass_here(now);
    atomic_store_explicit(&purge_retry_ms, now + shared_pool_purge_period_ms(),
                          memory_order_relaxed);
    atomic_store(&purge_start_wanted, true);
    atomic_store(&purge_running, false);
  }
  errno = saved_errno;
}

/* How long purge_stop waits for the thread at most: a pass in progress
 * ends in milliseconds, but a signal handler that interrupted hakmem
 * holding a lock the pass waits for would wait for ever. */
#define PURGE_STOP_WAIT_MS 2000

static void purge_stop_pause(void)
{
  struct timespec ts = { .tv_sec = 0, .tv_nsec = 200000 };
  nanosleep(&ts, NULL);
}

HAK_RARE_TEXT void purge_stop(void)
{
  if (!atomic_load(&purge_running) || atomic_load(&purge_thread_pid) != getpid())
    return;
  int saved_errno = errno;
  atomic_store(&purge_stopping, 1);
  atomic_thread_fence(memory_order_seq_cst);
  syscall(SYS_futex, &purge_stopping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  purge_wake();
  uint64_t deadline = hak_now_ms() + PURGE_STOP_WAIT_MS;
  while (atomic_load(&purge_running) && hak_now_ms() < deadline)
    purge_stop_pause();
  /* Gone from purge_main is not gone from the thread group: the kernel
   * clears the thread's id (what pthread_join waits for) before it leaves
   * the group, and until it has left, the call still fails.  A signal to
   * a thread that has left finds none. */
  pid_t pid = getpid(), tid = atomic_load(&purge_thread_tid);
  if (tid && tid != pid && !atomic_load(&purge_running))
    while (syscall(SYS_tgkill, pid, tid, 0) == 0 && hak_now_ms() < deadline)
      purge_stop_pause();
  errno = saved_errno;
}

HAK_RARE_TEXT void purge_stop_end(void)
{
  atomic_store(&purge_stopping, 0);
}

HAK_RARE_TEXT void purge_postfork_child(void)
{
  atomic_store(&purge_start_wanted, true);
  atomic_store(&purge_running, false);
  atomic_store(&purge_dozing, 0);
  atomic_store(&purge_stopping, 0);
  atomic_store(&purge_thread_tid, 0);
  atomic_store_explicit(&purge_retry_ms, 0, memory_order_relaxed);
}
