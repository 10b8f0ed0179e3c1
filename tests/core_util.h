/* What the test programs linked against the allocator core share beyond
 * test_util.h: options loaded through the configuration loader, and a
 * thread body that fills slabs and frees them. */
#ifndef HAKMEM_TESTS_CORE_UTIL_H
#define HAKMEM_TESTS_CORE_UTIL_H

#include "test_util.h"
#include "config.h"
#include "hakmem.h"

#include <stdint.h>
#include <stdlib.h>

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

#endif
