/* Diagnostics (see diag.h): message lines, the stderr identity, the text
 * builder and the clock, all with write(2) and formatted by hand: this
 * code runs inside malloc, at exit and in hakmemctl. */
#include "diag.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

HAK_COMMON_TEXT uint64_t hak_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the text builder ---- */

HAK_STARTUP_TEXT void diag_put(struct diag_buf *b, const char *s)
{
  if (b->size == 0)
    return;
  while (*s) {
    if (b->len + 1 >= b->size) {
      b->truncated = true;
      break;
    }
    b->buf[b->len++] = *s++;
  }
  b->buf[b->len] = '\0';
}

void diag_put_char(struct diag_buf *b, char c)
{
  char s[2] = { c, '\0' };
  diag_put(b, s);
}

void diag_put_u64(struct diag_buf *b, uint64_t v)
{
  char tmp[24];
  int i = (int)sizeof tmp - 1;
  tmp[i] = '\0';
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  diag_put(b, tmp + i);
}

void diag_put_i64(struct diag_buf *b, int64_t v)
{
  if (v < 0) {
    diag_put_char(b, '-');
    diag_put_u64(b, (uint64_t)0 - (uint64_t)v);
  } else {
    diag_put_u64(b, (uint64_t)v);
  }
}

void diag_put_hex(struct diag_buf *b, uint64_t v)
{
  char tmp[24];
  int i = (int)sizeof tmp - 1;
  tmp[i] = '\0';
  do {
    tmp[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  tmp[--i] = 'x';
  tmp[--i] = '0';
  diag_put(b, tmp + i);
}

bool diag_write(int fd, const char *buf, size_t len)
{
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(fd, buf + off, len - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    off += (size_t)n;
  }
  return true;
}

/* ---- where lines written at exit go ----
 *
 * Standard error as it was at start-up: a copy of it (taken when a report
 * is due at exit) and the identity of the file it was.  A program may
 * close either descriptor and open its own files, which then get their
 * numbers: a descriptor is written to only while fstat still shows that
 * identity. */
struct fd_identity {
  dev_t dev;
  ino_t ino;
  int accmode;          /* O_ACCMODE bits: F_SETFL cannot change them */
  bool valid;
};
static struct fd_identity stderr_identity;
static int stderr_copy = -1;
static bool diag_quiet;

HAK_STARTUP_TEXT int diag_fstat(int fd, struct stat *st)
{
  return fstatat(fd, "", st, AT_EMPTY_PATH);
}

HAK_STARTUP_TEXT static bool fd_identify(int fd, struct fd_identity *id)
{
  struct stat st;
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || diag_fstat(fd, &st) != 0)
    return false;
  *id = (struct fd_identity){ .dev = st.st_dev, .ino = st.st_ino, .accmode = fl & O_ACCMODE,
                              .valid = true };
  return true;
}

static bool fd_is_stderr(int fd)
{
  struct fd_identity now;
  return fd >= 0 && stderr_identity.valid && fd_identify(fd, &now) &&
         now.dev == stderr_identity.dev && now.ino == stderr_identity.ino &&
         now.accmode == stderr_identity.accmode;
}

int diag_original_stderr(void)
{
  if (!stderr_identity.valid)
    return STDERR_FILENO; /* not recorded yet */
  if (fd_is_stderr(stderr_copy))
    return stderr_copy;
  if (fd_is_stderr(STDERR_FILENO))
    return STDERR_FILENO;
  return -1;
}

HAK_STARTUP_TEXT void diag_prepare(bool quiet, bool keep_stderr_copy)
{
  diag_quiet = quiet;
  if (stderr_copy >= 0)
    close(stderr_copy);
  stderr_copy = -1;
  /* A stderr closed at start-up matches nothing: no line is trusted to fd 2. */
  struct fd_identity id = { .accmode = -1 };
  if (fd_identify(STDERR_FILENO, &id) && keep_stderr_copy)
    stderr_copy = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 10);
  id.valid = true;
  stderr_identity = id;
}

/* ---- messages ---- */

/* "hakmem: <what>[ 0x<ptr>]\n" to fd; a line longer than the buffer is cut. */
static void write_line(int fd, const char *what, bool with_ptr, const void *ptr)
{
  char line[256];
  struct diag_buf b = DIAG_BUF(line);
  diag_put(&b, "hakmem: ");
  diag_put(&b, what);
  if (with_ptr) {
    diag_put_char(&b, ' ');
    diag_put_hex(&b, (uintptr_t)ptr);
  }
  /* The newline always fits: the builder keeps one byte for the NUL. */
  line[b.len++] = '\n';
  diag_write(fd, line, b.len);
}

void hak_warn(const char *msg)
{
  if (!diag_quiet)
    write_line(STDERR_FILENO, msg, false, NULL);
}

void hak_warn_at_exit(const char *msg)
{
  int fd = diag_original_stderr();
  if (!diag_quiet && fd >= 0)
    write_line(fd, msg, false, NULL);
}

void hak_warn_pointer(const char *what, const void *ptr)
{
  if (!diag_quiet)
    write_line(STDERR_FILENO, what, true, ptr);
}

void hak_fatal_pointer(const char *what, const void *ptr)
{
  write_line(STDERR_FILENO, what, true, ptr);
  abort();
}
