/* What a small program keeps resident of the libraries it runs on: it
 * allocates and frees three blocks (32, 500 and 5000 bytes; with the
 * argument "large", a block of 1 MiB too, twice, so that BigCache keeps
 * and hands it back), then prints
 * one line per mapping of a file named libc.so.6 or libhakmem.so*:
 *
 *   LIBRARY PERMS OFFSET SIZE_KIB RSS_KIB
 *
 * (OFFSET in hex, from /proc/self/smaps).  Only read(2) and write(2) and
 * string functions after the allocations: stdio would bring in pages of
 * libc that a program on any allocator then shows, hiding what hakmem
 * adds.  tests/footprint.sh runs it with and without hakmem. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char smaps[1 << 20];

static const char *library_of(const char *line, const char *end)
{
  static const char *const names[] = { "/libc.so.6", "/libhakmem.so" };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const char *hit = strstr(line, names[i]);
    if (hit && hit < end)
      return names[i] + 1;
  }
  return NULL;
}

int main(int argc, char **argv)
{
  char *volatile a = malloc(32), *volatile b = malloc(500), *volatile c = malloc(5000);
  if (!a || !b || !c)
    return 1;
  a[0] = b[0] = c[0] = 1;
  free(a);
  free(b);
  free(c);
  if (argc > 1 && strcmp(argv[1], "large") == 0) {
    for (int i = 0; i < 2; i++) {
      char *volatile d = malloc(1 << 20);
      if (!d)
        return 1;
      d[0] = 1;
      free(d);
    }
  }

  int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 1;
  size_t len = 0;
  ssize_t n;
  while ((n = read(fd, smaps + len, sizeof smaps - 1 - len)) > 0)
    len += (size_t)n;
  close(fd);
  smaps[len] = '\0';

  /* A mapping's header line: "lo-hi perms offset dev inode path". */
  const char *library = NULL, *perms = NULL, *offset = NULL, *size = NULL;
  for (char *line = smaps; *line;) {
    char *end = strchr(line, '\n');
    if (!end)
      break;
    *end = '\0';
    if (strchr(line, '-') && strchr(line, '-') < strchr(line, ' ') && line[0] != 'V') {
      library = library_of(line, end);
      perms = strchr(line, ' ') + 1;
      offset = strchr(perms, ' ') + 1;
    } else if (library && strncmp(line, "Size:", 5) == 0) {
      size = line + 5;
    } else if (library && size && strncmp(line, "Rss:", 4) == 0) {
      const char *kib = line + 4;
      while (*kib == ' ')
        kib++;
      char out[160];
      size_t k = 0;
      for (const char *s = library; *s; s++)
        out[k++] = *s;
      out[k++] = ' ';
      for (int i = 0; i < 4; i++)
        out[k++] = perms[i];
      out[k++] = ' ';
      for (const char *s = offset; *s != ' '; s++)
        out[k++] = *s;
      out[k++] = ' ';
      while (*size == ' ')
        size++;
      for (const char *s = size; *s >= '0' && *s <= '9'; s++)
        out[k++] = *s;
      out[k++] = ' ';
      for (const char *s = kib; *s >= '0' && *s <= '9'; s++)
        out[k++] = *s;
      out[k++] = '\n';
      if (write(1, out, k) != (ssize_t)k)
        return 1;
      library = NULL;
      size = NULL;
    }
    line = end + 1;
  }
  return 0;
}
