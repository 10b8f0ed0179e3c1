/* hakmemctl: show the effective configuration, check a conf file, run a
 * program with libhakmem preloaded.
 *
 * It is built from the library's own src/config.c (the option table, the
 * parser and the source tracking), compiled into this program rather than
 * linked from the allocator core: hakmemctl itself keeps glibc's malloc and
 * never runs the allocator's initialisation, so its output is the
 * configuration alone.  See hakmemctl(1). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#ifndef HAKMEM_LIBDIR
#define HAKMEM_LIBDIR "/usr/lib"
#endif
/* HAKMEM_SONAME comes from configure (the libtool version in configure.ac). */

extern char **environ;

/* config.c reports through hak_warn only when no warn callback is given;
 * every command here gives one. */
void hak_warn(const char *msg)
{
  fprintf(stderr, "hakmem: %s\n", msg);
}

static void usage(FILE *f)
{
  fputs("usage: hakmemctl config [--program NAME] [--conf FILE] [--list]\n"
        "       hakmemctl check FILE...\n"
        "       hakmemctl run [--mode MODE] [--set KEY=VALUE]... [--stats] -- COMMAND [ARG]...\n"
        "       hakmemctl stats [--mode MODE] [--set KEY=VALUE]... -- COMMAND [ARG]...\n"
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

static int cmd_check(int argc, char **argv)
{
  if (argc < 1) {
    usage(stderr);
    return 2;
  }
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

static int set_option(const char *key, const char *value)
{
  const struct config_option *o = config_find(key);
  char why[128], var[80];
  int v;
  if (!o) {
    fprintf(stderr, "hakmemctl: unknown option '%s' (hakmemctl config --list shows them)\n", key);
    return 2;
  }
  if (config_parse_value(o, value, &v, why, sizeof why)) {
    fprintf(stderr, "hakmemctl: %s=%s: %s\n", o->key, value, why);
    return 2;
  }
  env_name(o->key, var, sizeof var);
  setenv(var, value, 1);
  return 0;
}

/* run and stats: set the variables, preload the library, exec. */
static int cmd_run(int argc, char **argv, bool stats)
{
  int i;
  for (i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
    int rc = 0;
    if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
      rc = set_option("mode", argv[++i]);
    } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
      char kv[1100];
      snprintf(kv, sizeof kv, "%s", argv[++i]);
      char *eq = strchr(kv, '=');
      if (!eq) {
        fprintf(stderr, "hakmemctl: --set %s: expected KEY=VALUE\n", kv);
        return 2;
      }
      *eq = '\0';
      rc = set_option(kv, eq + 1);
    } else if (strcmp(argv[i], "--stats") == 0) {
      stats = true;
    } else {
      usage(stderr);
      return 2;
    }
    if (rc)
      return rc;
  }
  if (i + 1 >= argc) {
    usage(stderr);
    return 2;
  }
  if (stats)
    setenv("HAKMEM_STATS", "1", 1);
  const char *lib = getenv("HAKMEMCTL_LIBRARY");
  if (!lib || !*lib)
    lib = HAKMEM_LIBDIR "/" HAKMEM_SONAME;
  if (access(lib, R_OK) != 0) {
    fprintf(stderr, "hakmemctl: %s: %s (set HAKMEMCTL_LIBRARY to the library's path)\n", lib,
            strerror(errno));
    return 127;
  }
  const char *old = getenv("LD_PRELOAD");
  char preload[4096];
  if (old && *old)
    snprintf(preload, sizeof preload, "%s:%s", lib, old);
  else
    snprintf(preload, sizeof preload, "%s", lib);
  setenv("LD_PRELOAD", preload, 1);
  execvp(argv[i + 1], argv + i + 1);
  fprintf(stderr, "hakmemctl: %s: %s\n", argv[i + 1], strerror(errno));
  return errno == ENOENT ? 127 : 126;
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
    return cmd_run(argc - 2, argv + 2, false);
  if (strcmp(cmd, "stats") == 0)
    return cmd_run(argc - 2, argv + 2, true);
  fprintf(stderr, "hakmemctl: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
