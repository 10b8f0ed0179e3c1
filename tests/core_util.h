/* What the test programs linked against the allocator core share beyond
 * test_util.h: options loaded through the configuration loader, and
 * thread bodies that fill slabs and free them. */
#ifndef HAKMEM_TESTS_CORE_UTIL_H
#define HAKMEM_TESTS_CORE_UTIL_H

#include "test_util.h"
#include "config.h"
#include "hakmem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline void load_options_warning(void *ctx, const char *msg)
{
  (void)ctx;
  ck_abort_msg("load_options: %s", msg);
}

/* Loads the configuration through the loader, as hak_init does, from the
 * "HAKMEM_KEY=value" entries of env (NULL-terminated) and an empty conf
 * file: a mode brings its presets, and hakmemctl would say where each
 * value came from.  A warning fails the test.  What init derives from the
 * options (learn_init, alloc_configure) is not redone: a test whose options need
 * that, or the whole of a mode, runs in a fresh process instead
 * (run_case_in_env). */
static inline void load_options(char *const env[])
{
  struct config_request rq = { .conf_path = "(none)", .program = "test", .envp = env,
                               .warn = load_options_warning };
  config_load_buffer(&rq, "", 0);
}

/* Allocates (uintptr_t)arg blocks of 256 bytes and frees them all: slabs
 * filled, then empty (a pthread body, or called directly). */
static inline void *alloc_free_many(void *arg)
{
  size_t n = (size_t)(uintptr_t)arg;
  void **v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++)
    v[i] = hak_malloc(256);
  for (size_t i = 0; i < n; i++)
    hak_free(v[i]);
  free(v);
  return NULL;
}

#define CHURN_BLOCKS 40000   /* 40000 x 1 KiB: about 20 SuperSlabs */

/* Allocates CHURN_BLOCKS blocks of 1000 bytes, writes them, records their
 * addresses in arg (an array of CHURN_BLOCKS pointers, or NULL) and frees
 * them all (a pthread body). */
static inline void *churn_blocks(void *arg)
{
  void **record = arg;
  void **v = malloc(CHURN_BLOCKS * sizeof *v);
  for (int i = 0; i < CHURN_BLOCKS; i++) {
    v[i] = hak_malloc(1000);
    memset(v[i], 0xab, 1000);
    if (record)
      record[i] = v[i];
  }
  for (int i = 0; i < CHURN_BLOCKS; i++)
    hak_free(v[i]);
  free(v);
  return NULL;
}

/* Runs churn_blocks in a thread that then exits (its cache is flushed). */
static inline void churn_in_thread(void **record)
{
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, churn_blocks, record), 0);
  ck_assert_int_eq(pthread_join(t, NULL), 0);
}

#endif
