/* Fuzz test of the configuration loader: 20000 seeded random and mutated
 * conf files and environments, fed to the parser in-process (most through
 * an exact-size buffer, so that AddressSanitizer sees any overread, some
 * through a real file).  Asserts: no crash, no hang (alarm), no
 * allocation while loading, at most one warning per line plus a few per
 * file and variable, and on stderr at most CONFIG_MAX_WARNINGS lines plus
 * the summary.  Then iterations/10 valid files with one bad byte (or one
 * over-long line) each: that line alone is lost.
 * Usage: test_config_fuzz [iterations [seed]]. */
#include "config.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- allocation counting ---- */

static volatile int armed;
static volatile unsigned long allocations;

#if defined(__SANITIZE_ADDRESS__)
/* The sanitizer owns malloc; it calls this hook on every allocation. */
int __sanitizer_install_malloc_and_free_hooks(void (*)(const volatile void *, size_t),
                                              void (*)(const volatile void *));
static void on_malloc(const volatile void *p, size_t n)
{
  (void)p;
  (void)n;
  if (armed)
    allocations++;
}
static void on_free(const volatile void *p)
{
  (void)p;
}
static void install_hooks(void)
{
  if (!__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free))
    fprintf(stderr, "cannot install the sanitizer's malloc hook\n");
}
#else
/* This program's own malloc: a bump allocator over a static arena that
 * counts the calls made while armed (glibc's internal calls included,
 * since they resolve to these definitions). */
static _Alignas(16) unsigned char arena[64 << 20];
static size_t arena_used;

static void *bump(size_t n, size_t align)
{
  if (armed)
    allocations++;
  size_t at = (arena_used + 16 + align - 1) & ~(align - 1);
  if (at + n > sizeof arena)
    return NULL;
  arena_used = at + n;
  ((size_t *)(arena + at))[-1] = n;
  return arena + at;
}

void *malloc(size_t n) { return bump(n, 16); }
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b)
{
  if (b && a > (size_t)-1 / b)
    return NULL;
  return bump(a * b, 16); /* the arena is zero and never reused */
}
void *realloc(void *p, size_t n)
{
  void *q = bump(n, 16);
  if (p && q) {
    size_t old = ((size_t *)p)[-1];
    memcpy(q, p, old < n ? old : n);
  }
  return q;
}
void *aligned_alloc(size_t a, size_t n) { return bump(n, a < 16 ? 16 : a); }
void *memalign(size_t a, size_t n) { return bump(n, a < 16 ? 16 : a); }
int posix_memalign(void **out, size_t a, size_t n)
{
  *out = bump(n, a < 16 ? 16 : a);
  return *out ? 0 : 12;
}
static void install_hooks(void)
{
}
#endif

/* ---- generator ---- */

static unsigned long long rng;

static unsigned rnd(unsigned n)
{
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return n ? (unsigned)(rng % n) : 0;
}

static const char *const values[] = {
  "0", "1", "yes", "no", "on", "OFF", "true", "maybe", "", "-1", "1000", "3600001", "19", "22",
  "10", "10M", "10MiB", "1G", "1GiB", "64G", "10K", "FREE", "dontneed", "off", "auto", "on",
  "minimal", "fast", "balanced", "research", "learning", "/tmp/x", "\"quoted\"", "\"",
  "99999999999999999999", "-", "0x10", " 5 ", "a#b", "# c",
};
static const char *const fragments[] = {
  "\n", "\r\n", "[", "]", "=", "#", " ", "\t", "*", "?", "[!", "\\", "\xef\xbb\xbf", "\x01",
  "\x7f", "\xff", "[python3*]\n", "[p]\n", "[redis\n", "[]\n", "= =\n", "mode = fast\n",
  "quiet = 1\n",
};

static char file[CONFIG_FILE_MAX + 4096];

/* A conf file: valid-looking lines with random keys, values and sections. */
static size_t generate(void)
{
  size_t n = 0;
  unsigned lines = rnd(40);
  for (unsigned l = 0; l < lines && n < sizeof file - 2200; l++) {
    unsigned kind = rnd(10);
    const char *s;
    char line[2100];
    size_t k = 0;
    if (kind == 0) {
      snprintf(line, sizeof line, "[%s]\n", rnd(2) ? "p" : config_options[rnd(config_option_count)].key);
    } else if (kind == 1) {
      snprintf(line, sizeof line, "%s", fragments[rnd(sizeof fragments / sizeof fragments[0])]);
    } else if (kind == 2) {
      unsigned len = rnd(3) ? rnd(80) : 1000 + rnd(60);
      for (unsigned i = 0; i < len; i++)
        line[i] = (char)(rnd(2) ? 'a' + rnd(26) : rnd(256));
      line[len] = '\n';
      k = len + 1; /* random bytes may hold a NUL: keep the length */
    } else {
      s = config_options[rnd(config_option_count)].key;
      snprintf(line, sizeof line, "%s%s%s%s%s\n", rnd(4) ? "" : " ", s, rnd(3) ? " = " : "=",
               values[rnd(sizeof values / sizeof values[0])], rnd(5) ? "" : "  # note");
    }
    if (kind != 2)
      k = strlen(line);
    memcpy(file + n, line, k);
    n += k;
  }
  return n;
}

/* Flips, inserts and deletes bytes; sometimes grows the file past the limit. */
static size_t mutate(size_t n)
{
  unsigned edits = rnd(8);
  for (unsigned e = 0; e < edits; e++) {
    unsigned op = rnd(4);
    size_t at = n ? rnd((unsigned)n) : 0;
    if (op == 0 && n) {
      file[at] = (char)rnd(256);
    } else if (op == 1 && n + 64 < sizeof file) {
      unsigned k = 1 + rnd(32);
      memmove(file + at + k, file + at, n - at);
      for (unsigned i = 0; i < k; i++)
        file[at + i] = (char)rnd(256);
      n += k;
    } else if (op == 2 && n) {
      unsigned k = 1 + rnd(32);
      if (at + k > n)
        k = (unsigned)(n - at);
      memmove(file + at, file + at + k, n - at - k);
      n -= k;
    } else if (op == 3 && n && rnd(50) == 0) {
      while (n < CONFIG_FILE_MAX + 10) {
        file[n] = file[rnd((unsigned)n)];
        n++;
      }
    }
  }
  return n;
}

static char env_store[8][256];
static char *envp[9];

static void generate_env(void)
{
  unsigned k = rnd(6);
  for (unsigned i = 0; i < k; i++) {
    const char *key = config_options[rnd(config_option_count)].key;
    char name[96] = "HAKMEM_";
    for (unsigned j = 0; key[j] && j < 80; j++)
      name[7 + j] = (char)(key[j] >= 'a' && key[j] <= 'z' ? key[j] - 'a' + 'A' : key[j]);
    name[7 + strlen(key)] = '\0';
    if (rnd(8) == 0)
      name[7 + rnd((unsigned)strlen(key))] = 'X';
    snprintf(env_store[i], sizeof env_store[i], "%s=%s", rnd(10) ? name : "HAKMEM_CONF",
             values[rnd(sizeof values / sizeof values[0])]);
    envp[i] = env_store[i];
  }
  envp[k] = NULL;
}

static unsigned counted;

static void count(void *ctx, const char *msg)
{
  (void)ctx;
  (void)msg;
  counted++;
}

/* One bad byte costs one line: a valid file of one assignment per line,
 * one byte of one line replaced by a NUL or another control byte, or that
 * line made longer than CONFIG_LINE_MAX; every other line must still
 * apply, with at most one warning. */
static const struct good_line {
  const char *text, *key;
  int value;
} good_lines[] = {
  { "superslab_lg = 20", "superslab_lg", 20 },
  { "thp = on", "thp", HAK_THP_ON },
  { "check = yes", "check", 1 },
  { "verbose = 1", "verbose", 1 },
  { "bigcache = off", "bigcache", 0 },
  { "ss_empty_scan_limit = 17", "ss_empty_scan_limit", 17 },
  { "purge_delay_ms = 250", "purge_delay_ms", 250 },
  { "ss_mem_lean_target_mb = 2G", "ss_mem_lean_target_mb", 2048 },
  { "ss_mem_lean_decommit = DONTNEED", "ss_mem_lean_decommit", HAK_DECOMMIT_DONTNEED },
  { "superslab_keep = 9", "superslab_keep", 9 },
};
#define GOOD_LINES (sizeof good_lines / sizeof good_lines[0])

static int one_bad_byte(unsigned iterations)
{
  static char text[GOOD_LINES * 64 + CONFIG_LINE_MAX + 64];
  for (unsigned it = 0; it < iterations; it++) {
    unsigned bad = (unsigned)rnd(GOOD_LINES), kind = (unsigned)rnd(3);
    size_t n = 0;
    for (unsigned i = 0; i < GOOD_LINES; i++) {
      size_t len = strlen(good_lines[i].text), start = n;
      memcpy(text + n, good_lines[i].text, len);
      n += len;
      if (i == bad && kind == 2) { /* too long: spaces before the line end */
        memset(text + n, ' ', CONFIG_LINE_MAX + 1 - len);
        n = start + CONFIG_LINE_MAX + 1;
      } else if (i == bad) {
        text[start + rnd(len)] = kind == 0 ? '\0' : (char)(1 + rnd(8)); /* 1..8: never tab or LF */
      }
      if (rnd(4) == 0) /* CR LF now and then */
        text[n++] = '\r';
      text[n++] = '\n';
    }
    struct config_request rq = { .conf_path = "bad-byte", .program = "p", .warn = count };
    counted = 0;
    unsigned w = config_load_buffer(&rq, text, n);
    if (w != 1) {
      fprintf(stderr, "one bad byte, iteration %u: %u warnings\n", it, w);
      return 1;
    }
    for (unsigned i = 0; i < GOOD_LINES; i++) {
      if (i == bad)
        continue;
      const struct config_option *o = config_find(good_lines[i].key);
      unsigned idx = (unsigned)(o - config_options);
      if (*o->value != good_lines[i].value || config_sources[idx].line != i + 1) {
        fprintf(stderr, "one bad byte in line %u (kind %u), iteration %u: line %u (%s) lost\n",
                bad + 1, kind, it, i + 1, good_lines[i].key);
        return 1;
      }
    }
  }
  printf("%u files with one bad line: the others all applied\n", iterations);
  return 0;
}

int main(int argc, char **argv)
{
  unsigned iterations = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 20000;
  rng = argc > 2 ? strtoull(argv[2], NULL, 10) : 0x1234abcdULL;
  if (!rng)
    rng = 1;
  install_hooks();
  alarm(300);
  /* The counter sees allocations, glibc's own included. */
  char *(*volatile duplicate)(const char *) = strdup;
  armed = 1;
  free(duplicate("x"));
  armed = 0;
  if (allocations == 0) {
    fprintf(stderr, "the allocation counter does not work\n");
    return 1;
  }
  allocations = 0;
  const char *dir = getenv("TMPDIR");
  char path[256], errpath[256];
  snprintf(path, sizeof path, "%s/hakmem-fuzz-%d.conf", dir && *dir ? dir : "/tmp", (int)getpid());
  snprintf(errpath, sizeof errpath, "%s/hakmem-fuzz-%d.err", dir && *dir ? dir : "/tmp", (int)getpid());
  int errfd = open(errpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (errfd < 0) {
    perror(errpath);
    return 1;
  }
  unlink(errpath);
  int saved_stderr = dup(2);
  unsigned long total_warnings = 0;
  for (unsigned it = 0; it < iterations; it++) {
    size_t n = generate();
    if (rnd(2))
      n = mutate(n);
    generate_env();
    unsigned lines = 1;
    for (size_t i = 0; i < n; i++)
      lines += file[i] == '\n';
    bool through_file = rnd(10) == 0, library_sink = rnd(10) == 0;
    struct config_request rq = { .conf_path = path, .program = rnd(2) ? "p" : "python3.11",
                                 .envp = envp, .secure = rnd(8) == 0,
                                 .warn = library_sink ? NULL : count };
    char *copy = NULL;
    if (through_file) {
      int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0 || write(fd, file, n) != (ssize_t)n) {
        perror(path);
        return 1;
      }
      close(fd);
    } else {
      copy = malloc(n ? n : 1); /* exact size: an overread is an ASan error */
      memcpy(copy, file, n);
    }
    off_t err_before = lseek(errfd, 0, SEEK_END);
    if (library_sink)
      dup2(errfd, 2);
    counted = 0;
    unsigned long before = allocations;
    armed = 1;
    unsigned w = through_file ? config_load_from(&rq) : config_load_buffer(&rq, copy, n);
    armed = 0;
    if (library_sink)
      dup2(saved_stderr, 2);
    free(copy);
    if (allocations != before) {
      fprintf(stderr, "iteration %u: the loader allocated %lu times\n", it, allocations - before);
      return 1;
    }
    if (!library_sink && w != counted) {
      fprintf(stderr, "iteration %u: %u warnings returned, %u reported\n", it, w, counted);
      return 1;
    }
    if (w > lines + 6 + 8) {
      fprintf(stderr, "iteration %u: %u warnings for %u lines\n", it, w, lines);
      return 1;
    }
    if (library_sink) {
      char buf[8192];
      off_t end = lseek(errfd, 0, SEEK_END);
      ssize_t got = pread(errfd, buf, sizeof buf, err_before);
      unsigned nl = 0;
      for (ssize_t i = 0; i < got; i++)
        nl += buf[i] == '\n';
      if (end - err_before > (off_t)sizeof buf || nl > CONFIG_MAX_WARNINGS + 1 ||
          (!hak_config.quiet && nl != (w > CONFIG_MAX_WARNINGS ? CONFIG_MAX_WARNINGS + 1 : w)) ||
          (hak_config.quiet && nl)) {
        fprintf(stderr, "iteration %u: %u lines on stderr for %u warnings\n", it, nl, w);
        return 1;
      }
    }
    /* Whatever the input, the values are within their ranges. */
    for (unsigned i = 0; i < config_option_count; i++) {
      const struct config_option *o = &config_options[i];
      if (o->type == CONFIG_STRING) {
        if (strlen(o->text) >= o->text_size)
          return 1;
      } else if (*o->value < o->min || *o->value > o->max) {
        fprintf(stderr, "iteration %u: %s = %d out of range\n", it, o->key, *o->value);
        return 1;
      }
    }
    if (rq.secure && hak_config.stats_file[0]) {
      fprintf(stderr, "iteration %u: stats_file set in secure execution\n", it);
      return 1;
    }
    total_warnings += w;
  }
  unlink(path);
  printf("%u conf files, %lu warnings, no allocation, no crash\n", iterations, total_warnings);
  return one_bad_byte(iterations / 10 + 1);
}
