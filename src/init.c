/* Lazy initialisation, thread-exit hook, fork handlers.  The library's
 * constructor and destructor (the exit report) are stats.c's, above every
 * layer this file calls. */
#include "init.h"
#include "alloc.h"
#include "config.h"
#include "bigcache.h"
#include "learn.h"
#include "shared_pool.h"
#include "diag.h"
#include "os.h"
#include "tcache.h"
#include "purge.h"
#include "prof.h"
#include "secret.h"
#include "locks.h"

#include <pthread.h>
#include <sched.h>
#include <sys/auxv.h>
#include <unistd.h>

extern char **environ;

_Atomic int hak_init_state;
static pthread_key_t tcache_key;
static _Atomic bool tcache_key_ready;

static void thread_exit(void *arg)
{
  (void)arg;
  tcache_flush();
}

static void fork_prepare(void)
{
  prof_prefork();
  shared_pool_prefork();
  bigcache_prefork();
  superslab_registry_lock();
  tcache_prefork();
  locks_held_for_fork = true;
}

static void fork_parent(void)
{
  locks_held_for_fork = false;
  tcache_postfork_parent();
  superslab_registry_unlock();
  bigcache_postfork_parent();
  shared_pool_postfork_parent();
  prof_postfork_parent();
}

static void fork_child(void)
{
  locks_held_for_fork = false;
  superslab_registry_reinit();
  bigcache_postfork_child();
  shared_pool_postfork_child(tcache_self.id);
  tcache_postfork_child();
  purge_postfork_child();
  prof_postfork_child();
}

/* verbose = 1: one line with the effective configuration. */
HAK_RARE_TEXT static void init_print_config(void)
{
  static const char *const thp[] = { "off", "auto", "on" };
  char line[256];
  struct diag_buf b = DIAG_BUF(line);
  diag_put(&b, "config: mode ");
  diag_put(&b, config_mode_words[hak_config.mode]);
  diag_put(&b, hak_config.ss_mem_lean ? ", memory-lean" : "");
  diag_put(&b, hak_config.bigcache ? ", bigcache" : ", no bigcache");
  diag_put(&b, hak_config.prewarm && !hak_config.ss_mem_lean ? ", prewarm" : "");
  diag_put(&b, hak_config.purge_delay_ms >= 0 ? ", purge after delay" : ", no purge");
  diag_put(&b, ", thp ");
  diag_put(&b, thp[hak_config.thp % 3]);
  diag_put(&b, hak_config.check ? ", check" : "");
  hak_warn(line);
}

void hak_init_slow(void)
{
  int expected = 0;
  if (!atomic_compare_exchange_strong(&hak_init_state, &expected, 1)) {
    /* Another thread is initialising; it does not allocate meanwhile. */
    while (atomic_load_explicit(&hak_init_state, memory_order_acquire) != 2)
      sched_yield();
    return;
  }
  secret_init();
  config_load(environ, getauxval(AT_SECURE) != 0);
  /* The stats layer redoes this with a copy of stderr when a report is
   * due at exit (stats_prepare_exit_report, from the constructor). */
  diag_prepare(hak_config.quiet, false);
  learn_init();
  prof_init();
  alloc_configure();
  /* diag.c is the first of the files whose code a program rarely runs
   * (Makefile.am): the large blocks' code before it then stays resident
   * without them (doc/internals.md, "The library's own memory"). */
  os_advise_rare_text((const void *)(uintptr_t)hak_warn);
  atomic_store_explicit(&hak_init_state, 2, memory_order_release);
  /* From here malloc works fully, so these may allocate. */
  if (pthread_key_create(&tcache_key, thread_exit) == 0)
    atomic_store_explicit(&tcache_key_ready, true, memory_order_release);
  /* The fork handlers wait for a second thread (locks.h), unless the
   * profiler runs: its unwinder has a busy flag that is no lock. */
  locks_arm_fork_handlers(fork_prepare, fork_parent, fork_child, prof_active);
  if (hak_config.prewarm && !hak_config.ss_mem_lean)
    shared_pool_prewarm();
  prof_start();
  if (hak_config.verbose)
    init_print_config();
}

bool init_thread_started(void *tcache)
{
  return atomic_load_explicit(&tcache_key_ready, memory_order_acquire) &&
         pthread_setspecific(tcache_key, tcache) == 0;
}
