/* A library that allocates in its constructor and hands blocks across the
 * dlopen boundary, for tests/test_dlopen.c. */
#include <stdlib.h>
#include <string.h>

char *dlopen_lib_early;

__attribute__((constructor)) static void dlopen_lib_init(void)
{
  dlopen_lib_early = malloc(64);
  strcpy(dlopen_lib_early, "allocated in a dlopened constructor");
}

char *dlopen_lib_dup(const char *s);
char *dlopen_lib_dup(const char *s)
{
  return strdup(s);
}
