/* A library that allocates in its constructor and hands blocks across the
 * dlopen boundary, for tests/test_dlopen.c; and holds a thread-local
 * megabyte, for tests/test_hostile.c. */
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

/* A thread-local megabyte, for tests/test_hostile.c: in a library loaded
 * by dlopen, glibc allocates it with malloc (a large block) in each
 * thread that touches it, and frees it when the thread's stack is
 * reused or freed, some of those frees holding its stack cache's lock. */
__thread char dlopen_lib_big_tls[1 << 20];

void dlopen_lib_touch_tls(void);
void dlopen_lib_touch_tls(void)
{
  dlopen_lib_big_tls[0] = 1;
  dlopen_lib_big_tls[sizeof dlopen_lib_big_tls - 1] = 1;
}
