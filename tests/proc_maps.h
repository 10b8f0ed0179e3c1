/* The number of the calling process's mappings, for the tests that run
 * close to the kernel's limit on them (vm.max_map_count). */
#ifndef HAKMEM_TESTS_PROC_MAPS_H
#define HAKMEM_TESTS_PROC_MAPS_H

#include <fcntl.h>
#include <unistd.h>

/* The lines of /proc/self/maps (the process's mappings, or one more with
 * [vsyscall], which is on no list: a safe overestimate); -1 if it cannot
 * be read. */
static inline long proc_maps_lines(void)
{
  static char buf[1 << 16];
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  long lines = 0;
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0)
    for (ssize_t i = 0; i < r; i++)
      lines += buf[i] == '\n';
  close(fd);
  return r < 0 ? -1 : lines;
}

#endif
