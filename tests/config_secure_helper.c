/* Prints the configuration the allocator loaded at start-up, as the
 * setuid test reads it: "secure 0|1", "conf PATH", then "key value source"
 * per option.  Linked against the allocator core, so the configuration is
 * loaded by init exactly as in the library.  With an argument, the
 * configuration is then loaded again from that conf file, under the same
 * secure-execution rules and with the same program names as init's load
 * (the library itself never takes a path from argv: this only lets the
 * test give a secure-execution program a conf file without installing
 * one), and its warnings are printed as "warning MESSAGE". */
#include "config.h"
#include "hakmem.h"

#include <stdio.h>

static void print_warning(void *ctx, const char *msg)
{
  (void)ctx;
  printf("warning %s\n", msg);
}

int main(int argc, char **argv)
{
  hak_free(hak_malloc(16)); /* initialised by now, in any case */
  if (argc > 1) {
    struct config_request rq = { .conf_path = argv[1], .secure = config_secure,
                                 .warn = print_warning };
    config_load_from(&rq);
  }
  printf("secure %d\nconf %s\n", config_secure ? 1 : 0, config_conf_path());
  for (unsigned i = 0; i < config_option_count; i++) {
    char v[256], src[384];
    config_value_format(i, v, sizeof v);
    config_source_format(i, src, sizeof src);
    printf("%s %s %s\n", config_options[i].key, v, src);
  }
  return 0;
}
