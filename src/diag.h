/* Diagnostics: the library's lowest service, used by every layer and by
 * hakmemctl.  It holds the message lines ("hakmem: ..." on stderr), the
 * fatal misuse report, where stderr was at start-up (so that a line
 * written at exit never lands in a file the program opened on a
 * descriptor it had closed), the one text builder every no-stdio message
 * and report is formatted with, and a cheap clock.
 *
 * Nothing here allocates, uses stdio or calls into the allocator: it runs
 * inside malloc, at exit and in hakmemctl.  It includes only libc headers
 * and hakmem_internal.h, never a layer above; what it needs of the
 * configuration (quiet, whether a report is due at exit) it is handed by
 * diag_prepare.
 *
 * Concurrency: diag_prepare runs at initialisation, before other threads
 * allocate (tests call it again, single-threaded); after it, the recorded
 * state is only read.  The message functions may be called from any
 * thread: each line is built on the caller's stack and written with one
 * write(2) where its length allows.  A struct diag_buf belongs to its
 * caller. */
#ifndef HAKMEM_DIAG_H
#define HAKMEM_DIAG_H

#include "hakmem_internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the text builder ----
 * Appends to a caller's fixed buffer: output that does not fit is cut,
 * truncated says so, and the text is always NUL-terminated. */
struct diag_buf {
  char *buf;
  size_t size, len;
  bool truncated;
};

/* A builder over a char array (not a pointer). */
#define DIAG_BUF(array) ((struct diag_buf){ .buf = (array), .size = sizeof(array) })

void diag_put(struct diag_buf *b, const char *s);
void diag_put_char(struct diag_buf *b, char c);
void diag_put_u64(struct diag_buf *b, uint64_t v);
void diag_put_i64(struct diag_buf *b, int64_t v);
/* v as 0x followed by lowercase hexadecimal digits, no leading zeros. */
void diag_put_hex(struct diag_buf *b, uint64_t v);

/* Writes len bytes of buf to fd, retrying after EINTR and short writes;
 * false if a write failed (what was not written is dropped). */
bool diag_write(int fd, const char *buf, size_t len);

/* Joins a and b into buf (truncated to size - 1 bytes); returns buf.  For
 * messages built inside malloc.  a may be buf itself. */
static inline const char *hak_concat(char *buf, size_t size, const char *a, const char *b)
{
  struct diag_buf t = { .buf = buf, .size = size };
  if (a == buf)
    for (const char *s = a; *s && t.len + 1 < size; s++)
      t.len++;
  else
    diag_put(&t, a);
  diag_put(&t, b);
  return buf;
}

/* ---- messages ---- */

/* Reports a fatal misuse (invalid or double free) on stderr and aborts:
 * one line "hakmem: <what> 0x<ptr>", written even when quiet. */
void hak_fatal_pointer(const char *what, const void *ptr) __attribute__((noreturn, cold));
/* One line on stderr, prefixed "hakmem: ".  Nothing if quiet is set.
 * While the program runs, fd 2 is what it made stderr (a daemon's dup2 of
 * its log, say), so warnings follow it. */
void hak_warn(const char *msg);
/* One line "hakmem: <what> 0x<ptr>" on stderr (not fatal). */
void hak_warn_pointer(const char *what, const void *ptr);
/* The same as hak_warn at exit: on stderr only if it is still the file it
 * was at start-up (see diag_prepare), else dropped. */
void hak_warn_at_exit(const char *msg);

/* At start-up, once the configuration is known (init; tests may call it
 * again): whether warnings are silenced, and records which file stderr
 * is; when a report is due at exit, also keeps a close-on-exec copy of
 * stderr, since programs such as coreutils close stderr before they exit. */
void diag_prepare(bool quiet, bool keep_stderr_copy);
/* Standard error as it was at start-up: our copy, else fd 2 if it still
 * is that file; -1 if neither is (the line is then dropped rather than
 * appended to the program's data).  fd 2 before diag_prepare. */
int diag_original_stderr(void);

/* fstat(2) that leaves the C library's read-only data alone: glibc's
 * fstat hands fstatat a "" of its own, and the kernel's read of it
 * faults in 64 KiB of libc (fault-around) that a small program never
 * maps otherwise.  Every fstat of the library goes through it. */
struct stat;
int diag_fstat(int fd, struct stat *st);

/* ---- clock ---- */

/* Monotonic milliseconds from a cheap (coarse) clock. */
uint64_t hak_now_ms(void);

/* Milliseconds from since_ms to now_ms, 0 if since_ms is the later one.
 * The purge reads its clock before it takes a lock, and a thread that
 * held the lock meanwhile may have stamped something later than that
 * reading: unsigned subtraction would make it ages old. */
HAK_INLINE uint64_t hak_ms_elapsed(uint64_t since_ms, uint64_t now_ms)
{
  return now_ms > since_ms ? now_ms - since_ms : 0;
}

#endif
