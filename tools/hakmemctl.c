/* hakmemctl: show the effective configuration, check a conf file, run a
 * program with libhakmem preloaded, put a systemd service on hakmem.
 *
 * It is built from the library's own src/config.c (the option table, the
 * parser and the source tracking), compiled into this program rather than
 * linked from the allocator core: hakmemctl itself keeps glibc's malloc and
 * never runs the allocator's initialisation, so its output is the
 * configuration alone.  See hakmemctl(1). */
#include "config.h"
#include "config_parse.h"
#include "hakmemctl_monitor.h"
#include "hakmemctl_options.h"
#include "hakmemctl_profile.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef HAKMEM_LIBDIR
#define HAKMEM_LIBDIR "/usr/lib"
#endif
#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
/* HAKMEM_SONAME comes from configure (the libtool version in configure.ac). */
/* Where systemd reads the administrator's unit files and drop-ins. */
#define SYSTEMD_SYSTEM_DIR "/etc/systemd/system"

extern char **environ;

static void usage(FILE *f)
{
  fputs("usage: hakmemctl config [--program NAME] [--conf FILE] [--list | --sample]\n"
        "       hakmemctl config --man hakmem.3|hakmem.conf.5\n"
        "       hakmemctl check [FILE]...\n"
        "       hakmemctl run [--mode MODE] [--set KEY=VALUE]... [--stats] [--] COMMAND [ARG]...\n"
        "       hakmemctl stats [--mode MODE] [--set KEY=VALUE]... [--] COMMAND [ARG]...\n"
        "       hakmemctl stats --pid PID [--watch SECONDS] [--count N] [--json]\n"
        "       hakmemctl top [--once] [--delay SECONDS] [--json]\n"
        "       hakmemctl profile [--prefix P] [--sample-kb N] [--interval-mb N] [--leak] [--no-svg]\n"
        "                         -- COMMAND [ARG]...\n"
        "       hakmemctl profile --pid PID [--timeout SECONDS] [--no-svg]\n"
        "       hakmemctl enable UNIT [--mode MODE] [--set KEY=VALUE]... [--now] [--root DIR]\n"
        "       hakmemctl disable UNIT [--now] [--root DIR]\n"
        "       hakmemctl --version | --help\n"
        "See hakmemctl(1) and hakmem.conf(5).\n",
        f);
}

static void warn_prefixed(void *ctx, const char *msg)
{
  (void)ctx;
  fprintf(stderr, "hakmem: %s\n", msg);
}

static void warn_plain(void *ctx, const char *msg)
{
  (void)ctx;
  fprintf(stderr, "%s\n", msg);
}

static void env_name(const char *key, char *buf, size_t size)
{
  snprintf(buf, size, "HAKMEM_%s", key);
  for (char *p = buf; *p; p++)
    if (*p >= 'a' && *p <= 'z')
      *p = (char)(*p - 'a' + 'A');
}

static void type_text(const struct config_option *o, char *buf, size_t size)
{
  switch (o->type) {
  case CONFIG_BOOL: snprintf(buf, size, "bool"); break;
  case CONFIG_INT: snprintf(buf, size, "int %d..%d", o->min, o->max); break;
  case CONFIG_SIZE_MB: snprintf(buf, size, "size MiB %d..%d", o->min, o->max); break;
  case CONFIG_STRING: snprintf(buf, size, "string"); break;
  case CONFIG_ENUM: {
    size_t n = (size_t)snprintf(buf, size, "enum ");
    for (int i = 0; o->words[i] && n < size; i++)
      n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? "|" : "", o->words[i]);
    break;
  }
  }
}

/* The table itself, one tab-separated line per option (for scripts and
 * the man-page test). */
static int cmd_list(void)
{
  printf("#key\tvariable\ttype\tdefault");
  for (int m = 0; m < HAK_MODE_COUNT; m++)
    printf("\t%s", config_mode_words[m]);
  printf("\tdescription\n");
  for (unsigned i = 0; i < config_option_count; i++) {
    const struct config_option *o = &config_options[i];
    char var[80], type[96], v[64];
    env_name(o->key, var, sizeof var);
    type_text(o, type, sizeof type);
    if (o->type == CONFIG_STRING)
      snprintf(v, sizeof v, "\"\"");
    else
      config_int_format(o, o->def, v, sizeof v);
    printf("%s\t%s\t%s\t%s", o->key, var, type, v);
    for (int m = 0; m < HAK_MODE_COUNT; m++) {
      if (o->preset)
        config_int_format(o, o->mode_value[m], v, sizeof v);
      printf("\t%s", v);
    }
    printf("\t%s\n", o->description);
  }
  return 0;
}

static int cmd_config(int argc, char **argv)
{
  struct config_request rq = { .envp = environ, .program = "", .warn = warn_prefixed };
  bool list = false;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--program") == 0 && i + 1 < argc)
      rq.program = argv[++i];
    else if (strcmp(argv[i], "--conf") == 0 && i + 1 < argc)
      rq.conf_path = argv[++i];
    else if (strcmp(argv[i], "--list") == 0)
      list = true;
    else if (strcmp(argv[i], "--sample") == 0 && argc == 1)
      return options_sample();
    else if (strcmp(argv[i], "--man") == 0 && argc == 2)
      return options_man(argv[++i]);
    else {
      usage(stderr);
      return 2;
    }
  }
  if (list)
    return cmd_list();
  rq.secure = getauxval(AT_SECURE) != 0;
  config_load_from(&rq);
  const char *path = config_conf_path();
  printf("# conf: %s%s\n", path, access(path, F_OK) == 0 ? "" : " (absent)");
  printf("# program: %s\n", *rq.program ? rq.program : "(none: no section applies; use --program)");
  if (rq.secure)
    printf("# secure execution: HAKMEM_* ignored\n");
  printf("%-24s %-12s %s\n", "key", "value", "source");
  for (unsigned i = 0; i < config_option_count; i++) {
    char v[256], src[384];
    config_value_format(i, v, sizeof v);
    config_source_format(i, src, sizeof src);
    printf("%-24s %-12s %s\n", config_options[i].key, v, src);
  }
  return 0;
}

/* check without a FILE: the file every program reads, as `hakmemctl
 * config` names it (HAKMEM_CONF, else SYSCONFDIR/hakmem.conf).  The
 * absence of the system file is not an error, since programs then run on
 * the built-in defaults; a missing HAKMEM_CONF file is, as the library
 * warns about it. */
static int check_system_file(void)
{
  const char *path = getenv("HAKMEM_CONF");
  bool system_file = !path || !*path || getauxval(AT_SECURE);
  if (system_file)
    path = SYSCONFDIR "/hakmem.conf";
  if (system_file && access(path, F_OK) != 0 && errno == ENOENT) {
    printf("%s: absent (programs use the built-in defaults)\n", path);
    return 0;
  }
  struct config_request rq = { .conf_path = path, .program = "", .warn = warn_plain };
  if (config_load_from(&rq))
    return 1;
  printf("%s: OK\n", path);
  return 0;
}

static int cmd_check(int argc, char **argv)
{
  if (argc < 1)
    return check_system_file();
  int status = 0;
  for (int i = 0; i < argc; i++) {
    struct config_request rq = { .conf_path = argv[i], .program = "", .warn = warn_plain };
    if (config_load_from(&rq))
      status = 1;
    else
      printf("%s: OK\n", argv[i]);
  }
  return status;
}

/* Is dir one that ld.so searches for a bare soname: a default directory, or
 * a line of /etc/ld.so.conf or /etc/ld.so.conf.d/ *.conf (which name the
 * multiarch directories and /usr/local/lib on Debian and Fedora)? */
static bool dir_in_loader_path(const char *dir)
{
  static const char *const defaults[] = { "/lib", "/usr/lib", "/lib64", "/usr/lib64", NULL };
  for (int i = 0; defaults[i]; i++)
    if (strcmp(dir, defaults[i]) == 0)
      return true;
  bool found = false;
  glob_t g;
  if (glob("/etc/ld.so.conf.d/*.conf", 0, NULL, &g) != 0)
    g.gl_pathc = 0;
  for (size_t i = 0; i <= g.gl_pathc && !found; i++) {
    FILE *f = fopen(i == g.gl_pathc ? "/etc/ld.so.conf" : g.gl_pathv[i], "re");
    char line[4096];
    while (f && !found && fgets(line, sizeof line, f)) {
      line[strcspn(line, "#\r\n")] = '\0';
      char *start = line + strspn(line, " \t");
      size_t n = strlen(start);
      while (n && (start[n - 1] == ' ' || start[n - 1] == '\t' || start[n - 1] == '/'))
        start[--n] = '\0';
      found = strcmp(start, dir) == 0;
    }
    if (f)
      fclose(f);
  }
  if (g.gl_pathc)
    globfree(&g);
  return found;
}

/* What LD_PRELOAD should name: HAKMEMCTL_LIBRARY if set; else the bare
 * soname, so that ld.so picks the library of each program's own
 * architecture (a 32-bit child of a 64-bit program, say), when ld.so finds
 * the installed library by that name; else its full path.  Returns NULL,
 * with a message, if the library is not there (checked unless for another
 * root: enable --root). */
static const char *preload_name(bool check)
{
  const char *lib = getenv("HAKMEMCTL_LIBRARY");
  if (lib && *lib) {
    if (!check || access(lib, R_OK) == 0)
      return lib;
  } else {
    lib = HAKMEM_LIBDIR "/" HAKMEM_SONAME;
    if (!check || access(lib, R_OK) == 0)
      return dir_in_loader_path(HAKMEM_LIBDIR) ? HAKMEM_SONAME : lib;
  }
  fprintf(stderr, "hakmemctl: %s: %s (set HAKMEMCTL_LIBRARY to the library's path)\n", lib,
          strerror(errno));
  return NULL;
}

/* Parses --mode MODE and --set KEY=VALUE at argv[*i] (advancing *i past
 * the value) and checks the value against the option table; on success
 * stores KEY and VALUE in key/value.  Returns 0, 1 if argv[*i] is neither,
 * or 2 after a message. */
static int parse_setting(int argc, char **argv, int *i, char *key, size_t key_size, char *value,
                         size_t value_size)
{
  const char *kv;
  if (strcmp(argv[*i], "--mode") == 0 && *i + 1 < argc) {
    snprintf(key, key_size, "mode");
    kv = argv[++*i];
    snprintf(value, value_size, "%s", kv);
  } else if (strcmp(argv[*i], "--set") == 0 && *i + 1 < argc) {
    kv = argv[++*i];
    const char *eq = strchr(kv, '=');
    if (!eq) {
      fprintf(stderr, "hakmemctl: --set %s: expected KEY=VALUE\n", kv);
      return 2;
    }
    snprintf(key, key_size, "%.*s", (int)(eq - kv), kv);
    snprintf(value, value_size, "%s", eq + 1);
  } else {
    return 1;
  }
  const struct config_option *o = config_find(key);
  char why[128];
  int v;
  if (!o) {
    const char *near = config_closest_key(key);
    fprintf(stderr, "hakmemctl: unknown option '%s'%s%s%s (hakmemctl config --list shows them)\n", key,
            near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
    return 2;
  }
  if (config_parse_value(o, value, &v, why, sizeof why)) {
    fprintf(stderr, "hakmemctl: %s=%s: %s\n", o->key, value, why);
    return 2;
  }
  snprintf(key, key_size, "%s", o->key);
  return 0;
}

/* run and stats: set the variables, preload the library, exec.  The
 * command starts at the first argument that is not an option of ours, or
 * after "--" (needed only for a command whose name begins with '-'). */
static int cmd_run(int argc, char **argv, const char *name, bool stats)
{
  int i;
  for (i = 0; i < argc && argv[i][0] == '-'; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    char key[64], value[1024], var[80];
    int rc = parse_setting(argc, argv, &i, key, sizeof key, value, sizeof value);
    if (rc == 0) {
      env_name(key, var, sizeof var);
      setenv(var, value, 1);
    } else if (rc == 2) {
      return 2;
    } else if (strcmp(argv[i], "--stats") == 0) {
      stats = true;
    } else {
      fprintf(stderr, "hakmemctl: unknown option '%s' (a command whose name begins with '-' goes after --)\n",
              argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (i >= argc) {
    fprintf(stderr, "hakmemctl: no command to run (hakmemctl %s [OPTION]... [--] COMMAND [ARG]...)\n",
            name);
    return 2;
  }
  if (stats) {
    setenv("HAKMEM_STATS", "1", 1);
    /* One report, the command's, not one per child it starts; unless
     * stats_program names the programs that report, a limit of its own,
     * which a command that prints no report (a dash script) needs. */
    const char *named = getenv("HAKMEM_STATS_PROGRAM");
    if (!named || !*named)
      setenv("HAKMEM_STATS_SCOPE", "top", 0);
  }
  const char *lib = preload_name(true);
  if (!lib)
    return 127;
  const char *old = getenv("LD_PRELOAD");
  char preload[4096];
  if (old && *old)
    snprintf(preload, sizeof preload, "%s:%s", lib, old);
  else
    snprintf(preload, sizeof preload, "%s", lib);
  setenv("LD_PRELOAD", preload, 1);
  execvp(argv[i], argv + i);
  fprintf(stderr, "hakmemctl: %s: %s\n", argv[i], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}

/* ---- enable and disable: a systemd drop-in per service ---- */

/* A unit name as systemd accepts it: no '/', not "." or "..", only the
 * characters of unit names; "foo" means "foo.service", as in systemctl. */
static bool unit_name(const char *arg, char *unit, size_t size)
{
  size_t n = strlen(arg);
  if (n == 0 || n > 200 || arg[0] == '.' || arg[0] == '-' ||
      strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.@-\\") != n) {
    fprintf(stderr, "hakmemctl: '%s' is not a unit name\n", arg);
    return false;
  }
  snprintf(unit, size, "%s%s", arg, strchr(arg, '.') ? "" : ".service");
  return true;
}

/* Runs systemctl with the given arguments; returns its exit status. */
static int run_systemctl(const char *a1, const char *a2)
{
  printf("+ systemctl %s%s%s\n", a1, a2 ? " " : "", a2 ? a2 : "");
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0)
    return 1;
  if (pid == 0) {
    execlp("systemctl", "systemctl", a1, a2, (char *)NULL);
    fprintf(stderr, "hakmemctl: systemctl: %s\n", strerror(errno));
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return 1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

/* After a change: reload and restart (--now), or say how to. */
static int apply_unit_change(const char *unit, bool now, bool enabled)
{
  if (!now) {
    printf("hakmemctl: to apply it: systemctl daemon-reload && systemctl restart %s\n", unit);
    return 0;
  }
  if (run_systemctl("daemon-reload", NULL) != 0 || run_systemctl("restart", unit) != 0) {
    fprintf(stderr, "hakmemctl: the drop-in is %s, but systemctl failed (see above)\n",
            enabled ? "written" : "removed");
    return 1;
  }
  return 0;
}

/* The options enable and disable share: UNIT anywhere, --now, --root DIR
 * (an image root, as systemctl --root: the drop-in goes under
 * DIR/etc/systemd/system and systemctl is not run). */
struct unit_request {
  char unit[256];
  const char *root;
  bool now;
  char env[16][1200];           /* "HAKMEM_KEY=value" lines (enable) */
  int env_count;
};

static int parse_unit_args(int argc, char **argv, bool enable, struct unit_request *ur)
{
  const char *unit = NULL;
  for (int i = 0; i < argc; i++) {
    char key[64], value[1024];
    int rc = enable ? parse_setting(argc, argv, &i, key, sizeof key, value, sizeof value) : 1;
    if (rc == 2)
      return 2;
    if (rc == 0) {
      if (ur->env_count == (int)(sizeof ur->env / sizeof ur->env[0])) {
        fprintf(stderr, "hakmemctl: too many settings\n");
        return 2;
      }
      char var[80];
      env_name(key, var, sizeof var);
      snprintf(ur->env[ur->env_count++], sizeof ur->env[0], "%s=%s", var, value);
    } else if (strcmp(argv[i], "--now") == 0) {
      ur->now = true;
    } else if (strcmp(argv[i], "--root") == 0 && i + 1 < argc) {
      ur->root = argv[++i];
    } else if (argv[i][0] != '-' && !unit) {
      unit = argv[i];
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (!unit) {
    fprintf(stderr, "hakmemctl: which unit? (hakmemctl %s UNIT)\n", enable ? "enable" : "disable");
    return 2;
  }
  if (!unit_name(unit, ur->unit, sizeof ur->unit))
    return 2;
  if (ur->now && ur->root) {
    fprintf(stderr, "hakmemctl: --now and --root exclude each other\n");
    return 2;
  }
  return 0;
}

/* The drop-in's directory and file for the request. */
static void dropin_paths(const struct unit_request *ur, char *dir, size_t dsize, char *file,
                         size_t fsize)
{
  snprintf(dir, dsize, "%s%s/%s.d", ur->root ? ur->root : "", SYSTEMD_SYSTEM_DIR, ur->unit);
  snprintf(file, fsize, "%s/hakmem.conf", dir);
}

/* mkdir -p, mode 0755. */
static int make_dirs(const char *path)
{
  char p[4096];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return -1;
      *s = c;
      if (!c)
        return 0;
    }
  }
}

/* Environment="NAME=value", quoted as systemd reads it: a backslash and a
 * double quote escaped with a backslash, '%' (which starts a specifier)
 * doubled. */
static void write_environment_line(FILE *f, const char *assignment)
{
  fputs("Environment=\"", f);
  for (const char *p = assignment; *p; p++) {
    if (*p == '\\' || *p == '"')
      fputc('\\', f);
    else if (*p == '%')
      fputc('%', f);
    fputc(*p, f);
  }
  fputs("\"\n", f);
}

/* Writes the drop-in: a temporary file created exclusively beside it, then
 * renamed over it, so systemd never reads half a file. */
static int cmd_enable(int argc, char **argv)
{
  static struct unit_request ur;
  int rc = parse_unit_args(argc, argv, true, &ur);
  if (rc)
    return rc;
  const char *lib = preload_name(!ur.root);
  if (!lib)
    return 1;
  char dir[4096], file[4200], tmp[4300];
  dropin_paths(&ur, dir, sizeof dir, file, sizeof file);
  snprintf(tmp, sizeof tmp, "%s.XXXXXX", file);
  int fd = -1;
  if (make_dirs(dir) != 0 || (fd = mkstemp(tmp)) < 0) {
    fprintf(stderr, "hakmemctl: %s: %s\n", fd < 0 && errno != ENOENT ? dir : file, strerror(errno));
    return 1;
  }
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    unlink(tmp);
    return 1;
  }
  fprintf(f, "# Written by hakmemctl enable: %s runs on hakmem (see hakmemctl(1)).\n"
             "# Remove with: hakmemctl disable %s\n"
             "[Service]\n",
          ur.unit, ur.unit);
  char preload[4200];
  snprintf(preload, sizeof preload, "LD_PRELOAD=%s", lib);
  write_environment_line(f, preload);
  for (int i = 0; i < ur.env_count; i++)
    write_environment_line(f, ur.env[i]);
  bool bad = fchmod(fd, 0644) != 0;
  bad |= fflush(f) != 0 || fsync(fd) != 0;
  bad |= fclose(f) != 0;
  if (bad || rename(tmp, file) != 0) {
    fprintf(stderr, "hakmemctl: %s: %s\n", file, strerror(errno));
    unlink(tmp);
    return 1;
  }
  printf("hakmemctl: wrote %s\n", file);
  return apply_unit_change(ur.unit, ur.now, true);
}

/* Removes the drop-in, and its directory if nothing else is in it. */
static int cmd_disable(int argc, char **argv)
{
  static struct unit_request ur;
  int rc = parse_unit_args(argc, argv, false, &ur);
  if (rc)
    return rc;
  char dir[4096], file[4200];
  dropin_paths(&ur, dir, sizeof dir, file, sizeof file);
  if (unlink(file) != 0) {
    if (errno != ENOENT) {
      fprintf(stderr, "hakmemctl: %s: %s\n", file, strerror(errno));
      return 1;
    }
    printf("hakmemctl: %s is not on hakmem (no %s)\n", ur.unit, file);
    return 0;
  }
  printf("hakmemctl: removed %s\n", file);
  if (rmdir(dir) == 0)
    printf("hakmemctl: removed %s\n", dir);
  return apply_unit_change(ur.unit, ur.now, false);
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0) {
    printf("hakmemctl %s\n", PACKAGE_VERSION);
    return 0;
  }
  if (strcmp(cmd, "config") == 0)
    return cmd_config(argc - 2, argv + 2);
  if (strcmp(cmd, "check") == 0)
    return cmd_check(argc - 2, argv + 2);
  if (strcmp(cmd, "run") == 0)
    return cmd_run(argc - 2, argv + 2, cmd, false);
  if (strcmp(cmd, "stats") == 0 && monitor_stats_wanted(argc - 2, argv + 2))
    return monitor_stats(argc - 2, argv + 2);
  if (strcmp(cmd, "top") == 0)
    return monitor_top(argc - 2, argv + 2);
  if (strcmp(cmd, "stats") == 0)
    return cmd_run(argc - 2, argv + 2, cmd, true);
  if (strcmp(cmd, "profile") == 0)
    return hakmemctl_profile(argc - 2, argv + 2);
  if (strcmp(cmd, "enable") == 0)
    return cmd_enable(argc - 2, argv + 2);
  if (strcmp(cmd, "disable") == 0)
    return cmd_disable(argc - 2, argv + 2);
  fprintf(stderr, "hakmemctl: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
