/* Prints the configuration the allocator loaded at start-up, as the
 * setuid test reads it: "secure 0|1", "conf PATH", then "key value source"
 * per option.  Linked against the allocator core, so the configuration is
 * loaded by init exactly as in the library. */
#include "config.h"
#include "hakmem.h"

#include <stdio.h>

int main(void)
{
  hak_free(hak_malloc(16)); /* initialised by now, in any case */
  printf("secure %d\nconf %s\n", config_secure ? 1 : 0, config_conf_path());
  for (unsigned i = 0; i < config_option_count; i++) {
    char v[256], src[384];
    config_value_format(i, v, sizeof v);
    config_source_format(i, src, sizeof src);
    printf("%s %s %s\n", config_options[i].key, v, src);
  }
  return 0;
}
