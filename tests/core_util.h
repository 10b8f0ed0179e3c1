/* What the test programs linked against the allocator core share beyond
 * test_util.h: options loaded through the configuration loader. */
#ifndef HAKMEM_TESTS_CORE_UTIL_H
#define HAKMEM_TESTS_CORE_UTIL_H

#include "test_util.h"
#include "config.h"

static inline void load_options_warning(void *ctx, const char *msg)
{
  (void)ctx;
  ck_abort_msg("load_options: %s", msg);
}

/* Loads the configuration through the loader, as hak_init does, from the
 * "HAKMEM_KEY=value" entries of env (NULL-terminated) and an empty conf
 * file: a mode brings its presets, and hakmemctl would say where each
 * value came from.  A warning fails the test.  What init derives from the
 * options (shared_pool_set_superslab_lg, shared_pool_set_empty_reuse,
 * learn_init, alloc_configure) is not redone: a test whose options need
 * that, or the whole of a mode, runs in a fresh process instead
 * (run_case_in_env). */
static inline void load_options(char *const env[])
{
  struct config_request rq = { .conf_path = "(none)", .program = "test", .envp = env,
                               .warn = load_options_warning };
  config_load_buffer(&rq, "", 0);
}

#endif
