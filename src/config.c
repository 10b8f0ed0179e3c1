/* The option table, the loader (conf file and environment) and
 * introspection; the text handling they share (messages, value parsers,
 * key lookup, globs) is in config_parse.c.
 *
 * Loading is two passes over the same sources: the first resolves mode
 * alone (silently), then the mode's presets are applied, and the second
 * applies every key in precedence order and reports problems.  Sources are
 * applied lowest first, so the last assignment wins: conf global lines come
 * before any section, matching sections in file order, the environment
 * last.  Every line of the file is validated, whether its section matches
 * or not, so each program sees the same warnings as `hakmemctl check`. */
#include "config.h"
#include "diag.h"
#include "config_parse.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif

/* The built-in defaults; config_load sets them again before each load. */
struct hak_config hak_config = {
#define CONFIG_OPTION(key, type, min, max, words, def, modes, group, def_note, help, man) .key = def,
#include "options.def"
};
bool config_secure;
struct config_source config_sources[CONFIG_OPTION_MAX];
HAK_BSS_APART(config_source_sections) char config_source_sections[CONFIG_OPTION_MAX][CONFIG_SECTION_MAX];

const char *const config_mode_words[] = {
#define CONFIG_MODE(NAME, word, help, man) #word,
#include "options.def"
  NULL
};
static const char *const evo_words[] = { "frozen", "learn", "canary", NULL };
static const char *const thp_words[] = { "off", "auto", "on", NULL };
static const char *const decommit_words[] = { "FREE", "DONTNEED", "OFF", NULL };
static const char *const stats_format_words[] = { "text", "json", NULL };
static const char *const stats_scope_words[] = { "all", "top", NULL };

/* The preset column of a row: the value of each mode, in enum hak_mode
 * order, or none (the mode leaves the option at its default). */
#define CONFIG_PRESET(...) .preset = true, .mode_value = { __VA_ARGS__ }
#define CONFIG_NO_PRESET .preset = false

const struct config_option config_options[] = {
#define CONFIG_OPTION(k, ty, lo, hi, w, d, modes, group, def_note, help, man) \
  { .key = #k, .type = ty, .min = lo, .max = hi, .def = d, modes, .words = w, \
    .value = &hak_config.k, .description = help },
#define CONFIG_STRING(k, size, group, noun, def_note, help, man) \
  { .key = #k, .type = CONFIG_STRING, .text = hak_config.k, .text_size = sizeof hak_config.k, \
    .description = help },
#include "options.def"
};
const unsigned config_option_count = sizeof config_options / sizeof config_options[0];
_Static_assert(sizeof config_options / sizeof config_options[0] <= CONFIG_OPTION_MAX,
               "config_sources is too small");
_Static_assert(sizeof config_mode_words / sizeof config_mode_words[0] == HAK_MODE_COUNT + 1,
               "one word per mode");

/* ---- loading ---- */

enum section_state { IN_GLOBAL, IN_MATCHING, IN_OTHER };

struct load {
  const struct config_request *rq;
  bool silent;                  /* first pass: resolve mode, report nothing */
  unsigned warnings;
  const char *names[2];         /* the program's names for section matching */
  enum section_state state;
  char section[64];
  bool truncated;               /* the file is larger than CONFIG_FILE_MAX */
};

HAK_BSS_APART(file_buf) static char file_buf[CONFIG_FILE_MAX + 1];
static char conf_path_buf[256];
static char exe_name[256];
/* argv[0]'s basename, copied at initialisation: a daemon that rewrites its
 * argv for ps (postgres, nginx, sshd) overwrites the string
 * program_invocation_short_name points into, often with spaces in it. */
static char invoked_name[256];
HAK_BSS_APART(held) static char held[CONFIG_MAX_WARNINGS][256];
static unsigned held_count;

const char *config_conf_path(void)
{
  return conf_path_buf;
}

static void note(struct load *ld, struct config_msg *m)
{
  if (ld->silent)
    return;
  ld->warnings++;
  if (ld->rq->warn)
    ld->rq->warn(ld->rq->warn_ctx, m->s);
  else if (held_count < CONFIG_MAX_WARNINGS)
    config_copy_str(held[held_count++], sizeof held[0], m->s);
}

/* Starts a message "path:line: " (line 0: "path: "). */
static void msg_where(struct config_msg *m, unsigned line)
{
  config_msg_str(m, conf_path_buf);
  if (line) {
    config_msg_str(m, ":");
    config_msg_int(m, line);
  }
  config_msg_str(m, ": ");
}

static void file_warn(struct load *ld, unsigned line, const char *what)
{
  struct config_msg m = { .n = 0 };
  msg_where(&m, line);
  config_msg_str(&m, what);
  note(ld, &m);
}

static void set_value(const struct config_option *o, int v, const char *text,
                      enum config_origin origin, unsigned line, const char *section)
{
  struct config_source *src = &config_sources[o - config_options];
  if (o->type == CONFIG_STRING)
    config_copy_str(o->text, o->text_size, text);
  else
    *o->value = v;
  src->origin = origin;
  src->line = line;
  if (origin == CONFIG_FROM_SECTION)
    config_copy_str(config_source_sections[o - config_options], CONFIG_SECTION_MAX, section ? section : "");
}

static void errno_word(struct config_msg *m, int err)
{
  switch (err) {
  case EACCES: config_msg_str(m, "permission denied"); break;
  case ENOENT: config_msg_str(m, "no such file"); break;
  case ELOOP: config_msg_str(m, "is a symbolic link (not followed)"); break;
  case ENOTDIR: config_msg_str(m, "a component of the path is not a directory"); break;
  case ENAMETOOLONG: config_msg_str(m, "name too long"); break;
  case EISDIR: config_msg_str(m, "is a directory"); break;
  default: config_msg_str(m, "error "); config_msg_int(m, err); break;
  }
}

/* In secure execution, whoever may write a directory on the conf file's
 * path may replace the file: as sudo does, every directory from / down
 * must be owned by root and writable by neither group nor others (stat,
 * so a directory reached through a symbolic link is checked as what it
 * leads to).  A relative path is refused.  On refusal, appends the reason
 * to m and returns false. */
static bool conf_dirs_trusted(struct config_msg *m)
{
  char dir[sizeof conf_path_buf];
  config_copy_str(dir, sizeof dir, conf_path_buf);
  if (dir[0] != '/') {
    config_msg_str(m, "not an absolute path: ignored in secure execution");
    return false;
  }
  char *last = strrchr(dir, '/');
  for (char *p = dir;; p = strchr(p + 1, '/')) {
    /* The prefix up to p ("/" for the first), then the next. */
    char saved = p[1];
    bool root = p == dir;
    if (root)
      p[1] = '\0';
    else
      *p = '\0';
    struct stat st;
    bool ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == 0 &&
              !(st.st_mode & (S_IWGRP | S_IWOTH));
    if (!ok) {
      config_msg_str(m, "directory ");
      config_msg_text(m, dir, 128);
      config_msg_str(m, " is not owned by root or is writable by group or others: "
                        "ignored in secure execution");
    }
    if (root)
      p[1] = saved;
    else
      *p = '/';
    if (!ok)
      return false;
    if (p == last)
      return true;
  }
}

/* Reads conf_path_buf into file_buf; returns its length, or -1 if there is
 * nothing to parse (warned, unless the default file is simply absent).  A
 * file larger than CONFIG_FILE_MAX is read up to the limit and flagged in
 * ld->truncated: its first part still counts (parse_file says so). */
static long conf_read(struct load *ld, bool must_exist)
{
  bool secure = ld->rq->secure;
  int fd = open(conf_path_buf, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (secure ? O_NOFOLLOW : 0));
  struct config_msg m = { .n = 0 };
  msg_where(&m, 0);
  if (fd < 0) {
    if (errno == ENOENT && !must_exist)
      return -1;
    config_msg_str(&m, "cannot open: ");
    errno_word(&m, errno);
    config_msg_str(&m, " (ignored)");
    note(ld, &m);
    return -1;
  }
  struct stat st;
  long len = -1;
  if (diag_fstat(fd, &st) != 0) {
    config_msg_str(&m, "cannot stat (ignored)");
  } else if (S_ISDIR(st.st_mode)) {
    config_msg_str(&m, "is a directory (ignored)");
  } else if (!S_ISREG(st.st_mode)) {
    config_msg_str(&m, "not a regular file (ignored)");
  } else if (secure && (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))) {
    config_msg_str(&m, "not owned by root or writable by group or others: ignored in secure execution");
  } else if (secure && !conf_dirs_trusted(&m)) {
    /* m says which directory. */
  } else {
    if (st.st_mode & S_IWOTH) {
      struct config_msg w = { .n = 0 };
      msg_where(&w, 0);
      config_msg_str(&w, "writable by any user (read anyway; chmod o-w to fix)");
      note(ld, &w);
    }
    len = 0;
    while (len <= CONFIG_FILE_MAX) {
      ssize_t r = read(fd, file_buf + len, (size_t)(CONFIG_FILE_MAX + 1 - len));
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0) {
        config_msg_str(&m, "read error: ");
        errno_word(&m, errno);
        config_msg_str(&m, " (ignored)");
        len = -1;
        break;
      }
      if (r == 0)
        break;
      len += r;
    }
    if (len > CONFIG_FILE_MAX) {
      ld->truncated = true;
      len = CONFIG_FILE_MAX;
    }
  }
  close(fd);
  if (len < 0)
    note(ld, &m);
  return len;
}

static bool section_matches(const struct load *ld, const char *pattern)
{
  for (unsigned i = 0; i < 2; i++)
    if (ld->names[i] && ld->names[i][0] && config_glob_match(pattern, ld->names[i]))
      return true;
  return false;
}

static void parse_section(struct load *ld, char *s, unsigned line)
{
  size_t n = strlen(s);
  if (n < 2 || s[n - 1] != ']') {
    struct config_msg m = { .n = 0 };
    msg_where(&m, line);
    config_msg_str(&m, "unterminated section header '");
    config_msg_text(&m, s, 64);
    config_msg_str(&m, "' (lines up to the next section ignored)");
    note(ld, &m);
    ld->state = IN_OTHER;
    return;
  }
  s[n - 1] = '\0';
  char *pattern = config_trim(s + 1);
  if (!*pattern) {
    file_warn(ld, line, "empty section name (lines up to the next section ignored)");
    ld->state = IN_OTHER;
    return;
  }
  ld->state = section_matches(ld, pattern) ? IN_MATCHING : IN_OTHER;
  config_copy_str(ld->section, sizeof ld->section, pattern);
}

static void parse_assignment(struct load *ld, char *s, unsigned line)
{
  char *eq = strchr(s, '=');
  struct config_msg m = { .n = 0 };
  msg_where(&m, line);
  if (!eq) {
    config_msg_str(&m, "missing '=' in '");
    config_msg_text(&m, s, 64);
    config_msg_str(&m, "' (ignored)");
    note(ld, &m);
    return;
  }
  *eq = '\0';
  char *key = config_trim(s), *val = config_trim(eq + 1);
  size_t vn = strlen(val);
  if (vn >= 2 && val[0] == '"' && val[vn - 1] == '"') {
    val[vn - 1] = '\0';
    val++;
  }
  if (!*key) {
    config_msg_str(&m, "missing key before '=' (ignored)");
    note(ld, &m);
    return;
  }
  const struct config_option *o = config_find(key);
  if (!o) {
    config_msg_str(&m, "unknown key '");
    config_msg_text(&m, key, 64);
    config_msg_str(&m, "' (ignored)");
    const char *near = config_closest_key(key);
    if (near) {
      config_msg_str(&m, "; did you mean '");
      config_msg_str(&m, near);
      config_msg_str(&m, "'?");
    }
    note(ld, &m);
    return;
  }
  if (ld->silent && o->value != &hak_config.mode)
    return;
  int v = 0;
  char why[128];
  if (config_parse_value(o, val, &v, why, sizeof why)) {
    config_msg_str(&m, o->key);
    config_msg_str(&m, " = ");
    config_msg_text(&m, val, 64);
    config_msg_str(&m, ": ");
    config_msg_str(&m, why);
    note(ld, &m);
    return;
  }
  if (ld->state == IN_GLOBAL)
    set_value(o, v, val, CONFIG_FROM_FILE, line, NULL);
  else if (ld->state == IN_MATCHING)
    set_value(o, v, val, CONFIG_FROM_SECTION, line, ld->section);
}

/* One line, without its line end, NUL-terminated in a buffer of our own. */
static void parse_line(struct load *ld, char *s, unsigned line)
{
  for (char *p = s; *p; p++) {
    if (*p == '#' && (p == s || config_is_space(p[-1]))) {
      *p = '\0';
      break;
    }
    if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
      file_warn(ld, line, "control character in line (ignored)");
      return;
    }
  }
  s = config_trim(s);
  if (!*s)
    return;
  if (*s == '[')
    parse_section(ld, s, line);
  else if (ld->state != IN_OTHER || !ld->silent)
    parse_assignment(ld, s, line);
}

/* The first CONFIG_FILE_MAX bytes of a larger file: its complete lines
 * are read, the cut last line and the rest are not, with one warning that
 * names the limit and the last line read; returns the length to parse. */
static size_t cut_truncated(struct load *ld, const char *buf, size_t len)
{
  while (len && buf[len - 1] != '\n')
    len--;
  unsigned lines = 0;
  for (const char *p = buf; (p = memchr(p, '\n', len - (size_t)(p - buf))); p++)
    lines++;
  struct config_msg m = { .n = 0 };
  msg_where(&m, 0);
  config_msg_str(&m, "larger than ");
  config_msg_int(&m, CONFIG_FILE_MAX);
  config_msg_str(&m, " bytes: lines 1-");
  config_msg_int(&m, lines);
  config_msg_str(&m, " read, the rest ignored");
  note(ld, &m);
  return len;
}

/* Each line on its own: a bad byte or an over-long line costs that line
 * only.  CR LF line ends and a UTF-8 byte order mark are read silently, so
 * that a file saved by a Windows editor behaves like any other, in the
 * library and in `hakmemctl check` alike. */
static void parse_file(struct load *ld, const char *buf, size_t len)
{
  char lb[CONFIG_LINE_MAX + 1];
  size_t pos = 0;
  unsigned line = 0;
  ld->state = IN_GLOBAL;
  ld->section[0] = '\0';
  if (ld->truncated)
    len = cut_truncated(ld, buf, len);
  if (len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0)
    pos = 3;
  while (pos < len) {
    const char *s = buf + pos;
    const char *nl = memchr(s, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - s) : len - pos;
    pos += n + 1;
    line++;
    if (n && s[n - 1] == '\r')
      n--;
    if (n > CONFIG_LINE_MAX) {
      file_warn(ld, line, "line longer than 1024 bytes (ignored)");
      continue;
    }
    if (memchr(s, '\0', n)) {
      file_warn(ld, line, "NUL byte in line (ignored)");
      continue;
    }
    memcpy(lb, s, n);
    lb[n] = '\0';
    parse_line(ld, lb, line);
  }
}

static void parse_env(struct load *ld)
{
  if (ld->rq->secure || !ld->rq->envp)
    return;
  for (char *const *e = ld->rq->envp; *e; e++) {
    const char *var = *e, *eq = strchr(var, '=');
    if (strncmp(var, "HAKMEM_", 7) != 0 || !eq)
      continue;
    size_t len = (size_t)(eq - var);
    if (len == 11 && strncmp(var, "HAKMEM_CONF", 11) == 0)
      continue;
    const struct config_option *o = config_find_env(var, len);
    struct config_msg m = { .n = 0 };
    config_msg_text(&m, var, 96);
    config_msg_str(&m, ": ");
    if (!o) {
      if (ld->silent)
        continue;
      char key[64];
      size_t k = len - 7 < sizeof key - 1 ? len - 7 : sizeof key - 1;
      for (size_t i = 0; i < k; i++)
        key[i] = config_lower(var[7 + i]);
      key[k] = '\0';
      config_msg_str(&m, "unknown variable (ignored)");
      const char *near = config_closest_key(key);
      if (near) {
        config_msg_str(&m, "; did you mean HAKMEM_");
        for (const char *p = near; *p; p++) {
          char up[2] = { *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p, '\0' };
          config_msg_str(&m, up);
        }
        config_msg_str(&m, "?");
      }
      note(ld, &m);
      continue;
    }
    if (ld->silent && o->value != &hak_config.mode)
      continue;
    int v = 0;
    char why[128];
    if (config_parse_value(o, eq + 1, &v, why, sizeof why)) {
      config_msg_str(&m, why);
      note(ld, &m);
      continue;
    }
    set_value(o, v, eq + 1, CONFIG_FROM_ENV, 0, NULL);
  }
}

static const char *env_lookup(char *const *envp, const char *name)
{
  size_t n = strlen(name);
  for (char *const *e = envp; e && *e; e++)
    if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
      return *e + n + 1;
  return NULL;
}

/* The names sections are matched against (see struct config_request). */
static void program_names(struct load *ld)
{
  ld->names[0] = ld->names[1] = NULL;
  if (ld->rq->program) {
    ld->names[0] = ld->rq->program;
    return;
  }
  ssize_t n = readlink("/proc/self/exe", exe_name, sizeof exe_name - 1);
  if (n > 0) {
    exe_name[n] = '\0';
    char *slash = strrchr(exe_name, '/');
    ld->names[0] = slash ? slash + 1 : exe_name;
  }
  /* argv[0] is the caller's to choose (exec -a): in secure execution it
   * must not pick the section, so only the executable's name does. */
  if (!ld->rq->secure)
    ld->names[1] = program_invocation_short_name;
}

static unsigned load(const struct config_request *rq, const char *buf, long len, bool truncated)
{
  struct load ld = { .rq = rq, .truncated = truncated };
  held_count = 0;
  config_secure = rq->secure;
  for (unsigned i = 0; i < config_option_count; i++) {
    const struct config_option *o = &config_options[i];
    set_value(o, o->def, "", CONFIG_FROM_DEFAULT, 0, NULL);
  }
  program_names(&ld);
  if (!buf) {
    const char *path = rq->conf_path;
    bool must_exist = path != NULL;
    if (!path && !rq->secure) {
      path = env_lookup(rq->envp, "HAKMEM_CONF");
      must_exist = path != NULL;
    }
    if (!path || !*path) {
      path = SYSCONFDIR "/hakmem.conf";
      must_exist = false;
    }
    config_copy_str(conf_path_buf, sizeof conf_path_buf, path);
    if (strlen(path) >= sizeof conf_path_buf)
      file_warn(&ld, 0, "path too long (ignored)");
    else
      len = conf_read(&ld, must_exist);
    buf = file_buf;
  } else {
    config_copy_str(conf_path_buf, sizeof conf_path_buf, rq->conf_path ? rq->conf_path : "(buffer)");
  }
  /* First pass: mode alone, silently; then the mode's presets. */
  ld.silent = true;
  if (len >= 0)
    parse_file(&ld, buf, (size_t)len);
  parse_env(&ld);
  for (unsigned i = 0; i < config_option_count; i++) {
    const struct config_option *o = &config_options[i];
    if (o->preset)
      set_value(o, o->mode_value[hak_config.mode], "", CONFIG_FROM_MODE, 0, NULL);
  }
  ld.silent = false;
  if (len >= 0)
    parse_file(&ld, buf, (size_t)len);
  parse_env(&ld);
  /* Files a setuid program would write for its caller are never opened. */
  if (rq->secure && hak_config.stats_file[0])
    set_value(config_find("stats_file"), 0, "", CONFIG_FROM_SECURE, 0, NULL);
  if (rq->secure && hak_config.learn_state_file[0])
    set_value(config_find("learn_state_file"), 0, "", CONFIG_FROM_SECURE, 0, NULL);
  if (rq->secure && hak_config.prof)
    set_value(config_find("prof"), 0, "", CONFIG_FROM_SECURE, 0, NULL);
  if (!rq->warn && !hak_config.quiet) {
    for (unsigned i = 0; i < held_count; i++)
      hak_warn(held[i]);
    if (ld.warnings > held_count) {
      struct config_msg m = { .n = 0 };
      config_msg_int(&m, (long)(ld.warnings - held_count));
      config_msg_str(&m, " more configuration warnings not shown ('hakmemctl check ");
      config_msg_str(&m, conf_path_buf);
      config_msg_str(&m, "' lists the conf file's)");
      hak_warn(m.s);
    }
  }
  return ld.warnings;
}

unsigned config_load_from(const struct config_request *rq)
{
  return load(rq, NULL, -1, false);
}

unsigned config_load_buffer(const struct config_request *rq, const char *buf, size_t len)
{
  if (len > CONFIG_FILE_MAX)
    return load(rq, buf, CONFIG_FILE_MAX, true);
  return load(rq, buf, (long)len, false);
}

void config_load(char *const *envp, bool secure)
{
  if (!invoked_name[0] && program_invocation_short_name)
    hak_concat(invoked_name, sizeof invoked_name, program_invocation_short_name, "");
  struct config_request rq = { .envp = envp, .secure = secure };
  config_load_from(&rq);
}

const char *config_program_name(void)
{
  if (invoked_name[0])
    return invoked_name;
  return program_invocation_short_name ? program_invocation_short_name : "";
}

/* ---- introspection ---- */

void config_value_format(unsigned i, char *buf, size_t size)
{
  const struct config_option *o = &config_options[i];
  if (o->type == CONFIG_STRING) {
    struct config_msg m = { .n = 0 };
    config_msg_str(&m, "\"");
    config_msg_text(&m, o->text, 200);
    config_msg_str(&m, "\"");
    config_copy_str(buf, size, m.s);
  } else {
    config_int_format(o, *o->value, buf, size);
  }
}

void config_source_format(unsigned i, char *buf, size_t size)
{
  const struct config_source *src = &config_sources[i];
  struct config_msg m = { .n = 0 };
  switch (src->origin) {
  case CONFIG_FROM_DEFAULT: config_msg_str(&m, "default"); break;
  case CONFIG_FROM_MODE:
    config_msg_str(&m, "mode ");
    config_msg_str(&m, config_mode_words[hak_config.mode]);
    break;
  case CONFIG_FROM_FILE:
  case CONFIG_FROM_SECTION:
    config_msg_str(&m, conf_path_buf);
    config_msg_str(&m, ":");
    if (src->origin == CONFIG_FROM_SECTION) {
      config_msg_str(&m, "[");
      config_msg_text(&m, config_source_sections[i], CONFIG_SECTION_MAX - 1);
      config_msg_str(&m, "]:");
    }
    config_msg_int(&m, src->line);
    break;
  case CONFIG_FROM_ENV:
    config_msg_str(&m, "env HAKMEM_");
    for (const char *p = config_options[i].key; *p; p++) {
      char up[2] = { *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p, '\0' };
      config_msg_str(&m, up);
    }
    break;
  case CONFIG_FROM_SECURE: config_msg_str(&m, "secure execution"); break;
  }
  config_copy_str(buf, size, m.s);
}
