/* The program tests/install.sh and tests/pkg/apt-install.sh build against
 * an installed hakmem with `pkg-config --cflags --libs hakmem`: it prints
 * "hello from hakmem VERSION" if its malloc is hakmem's, fails otherwise. */
#include <hakmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(void)
{
  hak_stats_t before, after;
  hakmem_stats_get(&before);
  char *p = malloc(100);
  if (p == NULL)
    return 1;
  strcpy(p, "hello from hakmem");
  hakmem_stats_get(&after);
  if (after.malloc_calls <= before.malloc_calls) {
    fprintf(stderr, "malloc is not hakmem's\n");
    return 1;
  }
  printf("%s %s\n", p, hakmem_version());
  free(p);
  return 0;
}
