/* The configuration loader: option types, mode presets, the precedence of
 * every source, conf-file errors, quiet, secure execution.  Linked against
 * the allocator core (hak_config is the library's own); each test runs in
 * its own process (CK_FORK). */
#include "config.h"

#include <check.h>
#include "test_util.h"
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---- */

static char warnings[64][256];
static unsigned nwarn;
static char conf[256];

static void collect(void *ctx, const char *msg)
{
  (void)ctx;
  if (nwarn < 64)
    snprintf(warnings[nwarn], sizeof warnings[0], "%s", msg);
  nwarn++;
}

static bool warned(const char *text)
{
  for (unsigned i = 0; i < nwarn && i < 64; i++)
    if (strstr(warnings[i], text))
      return true;
  return false;
}

/* Writes text (len bytes) to a fresh temporary file; its path is conf. */
static void write_conf_len(const char *text, size_t len)
{
  const char *dir = getenv("TMPDIR");
  snprintf(conf, sizeof conf, "%s/hakmem-conf-XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkstemp(conf);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
  fchmod(fd, 0644);
  close(fd);
}

static void write_conf(const char *text)
{
  write_conf_len(text, strlen(text));
}

static unsigned load_file(const char *program, char **env, bool secure)
{
  struct config_request rq = { .conf_path = conf, .program = program, .envp = env,
                               .secure = secure, .warn = collect };
  nwarn = 0;
  return config_load_from(&rq);
}

/* Loads text as the conf file (through a real file). */
static unsigned load(const char *text, const char *program, char **env)
{
  write_conf(text);
  unsigned n = load_file(program, env, false);
  unlink(conf);
  return n;
}

static int opt_index(const char *key)
{
  const struct config_option *o = config_find(key);
  ck_assert_msg(o != NULL, "no option %s", key);
  return (int)(o - config_options);
}

/* The source of key, with "@" standing for the conf path. */
static void assert_source(const char *key, const char *expected)
{
  char want[512], got[512];
  const char *at = strchr(expected, '@');
  if (at)
    snprintf(want, sizeof want, "%.*s%s%s", (int)(at - expected), expected, conf, at + 1);
  else
    snprintf(want, sizeof want, "%s", expected);
  config_source_format((unsigned)opt_index(key), got, sizeof got);
  ck_assert_msg(strcmp(got, want) == 0, "%s: source '%s', expected '%s'", key, got, want);
}

/* ---- option table ---- */

START_TEST(table_is_consistent)
{
  ck_assert_uint_le(config_option_count, CONFIG_OPTION_MAX);
  for (unsigned i = 0; i < config_option_count; i++) {
    const struct config_option *o = &config_options[i];
    ck_assert_ptr_nonnull(o->description);
    ck_assert(config_find(o->key) == o);
    for (unsigned j = 0; j < i; j++)
      ck_assert_str_ne(o->key, config_options[j].key);
    if (o->type == CONFIG_STRING)
      continue;
    ck_assert(o->def >= o->min && o->def <= o->max);
    if (o->preset) {
      ck_assert_int_eq(o->def, o->mode_value[HAK_MODE_BALANCED]);
      for (int m = 0; m < HAK_MODE_COUNT; m++)
        ck_assert(o->mode_value[m] >= o->min && o->mode_value[m] <= o->max);
    }
  }
  /* Each row of src/options.def reads and writes its own field of
   * struct hak_config, and the fields are in the table's order. */
  uintptr_t last = 0;
#define CONFIG_OPTION(key, type, min, max, words, def, modes, group, def_note, help, man) \
  ck_assert_ptr_eq(config_find(#key)->value, &hak_config.key); \
  ck_assert_uint_ge((uintptr_t)&hak_config.key, last); \
  last = (uintptr_t)&hak_config.key + 1;
#define CONFIG_STRING(key, size, group, noun, def_note, help, man) \
  ck_assert_ptr_eq(config_find(#key)->text, hak_config.key); \
  ck_assert_uint_eq(config_find(#key)->text_size, sizeof hak_config.key); \
  ck_assert_uint_ge((uintptr_t)hak_config.key, last); \
  last = (uintptr_t)hak_config.key + 1;
#include "options.def"
  ck_assert(config_find("THP") == config_find("thp"));
  ck_assert(config_find_env("HAKMEM_SS_MEM_LEAN", 18) == config_find("ss_mem_lean"));
  ck_assert(config_find_env("HAKMEM_SS_MEM_LEA", 17) == NULL);
}
END_TEST

/* Every option at its built-in default, which is mode balanced's. */
START_TEST(defaults)
{
  ck_assert_uint_eq(load("", NULL, NULL), 0);
  for (unsigned i = 0; i < config_option_count; i++) {
    const struct config_option *o = &config_options[i];
    if (o->type == CONFIG_STRING)
      ck_assert_msg(o->text[0] == '\0', "%s = '%s'", o->key, o->text);
    else
      ck_assert_msg(*o->value == o->def, "%s = %d, default %d", o->key, *o->value, o->def);
    char src[64];
    config_source_format(i, src, sizeof src);
    ck_assert_str_eq(src, o->preset ? "mode balanced" : "default");
  }
  ck_assert_int_eq(hak_config.mode, HAK_MODE_BALANCED);
  ck_assert_int_eq(hak_config.superslab_lg, 21);
  ck_assert_int_eq(hak_config.thp, HAK_THP_OFF);
  ck_assert(!config_secure);
}
END_TEST

/* ---- modes ---- */

/* Asserts that every option has the value mode m gives it: its preset
 * column in src/options.def, else its default. */
static void assert_mode_values(int m)
{
  ck_assert_int_eq(hak_config.mode, m);
  for (unsigned i = 0; i < config_option_count; i++) {
    const struct config_option *o = &config_options[i];
    if (o->type == CONFIG_STRING || o->value == &hak_config.mode)
      continue;
    int want = o->preset ? o->mode_value[m] : o->def;
    ck_assert_msg(*o->value == want, "mode %s: %s = %d, expected %d", config_mode_words[m], o->key,
                  *o->value, want);
  }
}

START_TEST(mode_presets)
{
  for (int m = 0; m < HAK_MODE_COUNT; m++) {
    char text[64], envvar[64];
    snprintf(text, sizeof text, "mode = %s\n", config_mode_words[m]);
    ck_assert_uint_eq(load(text, NULL, NULL), 0);
    assert_mode_values(m);
    /* The same through the environment, in any case. */
    snprintf(envvar, sizeof envvar, "HAKMEM_MODE=%s", config_mode_words[m]);
    for (char *p = envvar + 12; *p; p++)
      *p = (char)(*p - 'a' + 'A');
    char *env[] = { envvar, NULL };
    ck_assert_uint_eq(load("", NULL, env), 0);
    assert_mode_values(m);
  }
  /* What each mode promises (hakmem(3)), whatever the table's details. */
  load("mode = minimal\n", NULL, NULL);
  ck_assert(!hak_config.bigcache && !hak_config.ss_empty_reuse && !hak_config.prewarm);
  load("mode = fast\n", NULL, NULL);
  ck_assert(hak_config.prewarm && hak_config.purge_delay_ms == -1 && hak_config.thp == HAK_THP_AUTO);
  load("mode = learning\n", NULL, NULL);
  ck_assert(hak_config.evo_policy != HAK_EVO_FROZEN && !hak_config.check);
  load("mode = research\n", NULL, NULL);
  ck_assert(hak_config.evo_policy != HAK_EVO_FROZEN && hak_config.check && hak_config.stats &&
            hak_config.verbose);
  /* A mode that does not exist. */
  ck_assert_uint_eq(load("mode = adaptive\n", NULL, NULL), 1);
  ck_assert(warned(":1: mode = adaptive: expected minimal|fast|balanced|learning|research"));
  ck_assert_int_eq(hak_config.mode, HAK_MODE_BALANCED);
}
END_TEST

/* An explicit key beats the preset wherever either is written: mode is
 * resolved first, whatever the line order. */
START_TEST(explicit_key_beats_preset)
{
  char *env[] = { "HAKMEM_MODE=fast", NULL };
  load("thp = on\nmode = minimal\nbigcache = 1\n", NULL, NULL);
  ck_assert_int_eq(hak_config.mode, HAK_MODE_MINIMAL);
  ck_assert_int_eq(hak_config.thp, HAK_THP_ON);
  ck_assert_int_eq(hak_config.bigcache, 1);
  ck_assert_int_eq(hak_config.prewarm, 0);
  assert_source("thp", "@:1");
  assert_source("prewarm", "mode minimal");
  /* Mode from the environment, key from the file: the key still wins. */
  load("thp = on\n", NULL, env);
  ck_assert_int_eq(hak_config.mode, HAK_MODE_FAST);
  ck_assert_int_eq(hak_config.thp, HAK_THP_ON);
  ck_assert_int_eq(hak_config.prewarm, 1);
  assert_source("mode", "env HAKMEM_MODE");
  assert_source("prewarm", "mode fast");
  /* Mode from a section overrides the global mode. */
  load("mode = minimal\n[prog]\nmode = research\n", "prog", NULL);
  ck_assert_int_eq(hak_config.mode, HAK_MODE_RESEARCH);
  ck_assert_int_eq(hak_config.check, 1);
  assert_source("mode", "@:[prog]:3");
  load("mode = minimal\n[prog]\nmode = research\n", "other", NULL);
  ck_assert_int_eq(hak_config.mode, HAK_MODE_MINIMAL);
}
END_TEST

/* ---- precedence ---- */

/* Every subset of {mode preset, global line, section, environment} sets
 * purge_delay_ms to its own value; the highest source present wins. */
START_TEST(precedence_matrix)
{
  for (unsigned set = 0; set < 16; set++) {
    bool mode = set & 1, global = set & 2, section = set & 4, envp = set & 8;
    char text[256] = "";
    char *env[] = { "HAKMEM_PURGE_DELAY_MS=300", NULL };
    unsigned line = 0, section_line = 0, global_line = 0;
    if (mode) {
      strcat(text, "mode = fast\n");
      line++;
    }
    if (global) {
      strcat(text, "purge_delay_ms = 100\n");
      global_line = ++line;
    }
    if (section) {
      strcat(text, "[app*]\npurge_delay_ms = 200\n");
      line += 2;
      section_line = line;
    }
    /* A section that does not match changes nothing. */
    strcat(text, "[other]\npurge_delay_ms = 999\n");
    ck_assert_uint_eq(load(text, "app-server", envp ? env : NULL), 0);
    char want[64];
    int v;
    if (envp) {
      v = 300;
      snprintf(want, sizeof want, "env HAKMEM_PURGE_DELAY_MS");
    } else if (section) {
      v = 200;
      snprintf(want, sizeof want, "@:[app*]:%u", section_line);
    } else if (global) {
      v = 100;
      snprintf(want, sizeof want, "@:%u", global_line);
    } else if (mode) {
      v = -1;
      snprintf(want, sizeof want, "mode fast");
    } else {
      v = 1000;
      snprintf(want, sizeof want, "mode balanced");
    }
    ck_assert_msg(hak_config.purge_delay_ms == v, "set %u: %d, expected %d", set,
                  hak_config.purge_delay_ms, v);
    assert_source("purge_delay_ms", want);
  }
}
END_TEST

START_TEST(sections)
{
  const char *text = "thp = on\n"
                     "[python3*]   # globs\n"
                     "thp = auto\n"
                     "[python3.11]\n"
                     "thp = off\n"
                     "[redis-server]\n"
                     "ss_mem_lean = 1\n";
  load(text, "python3", NULL);
  ck_assert_int_eq(hak_config.thp, HAK_THP_AUTO);
  ck_assert_int_eq(hak_config.ss_mem_lean, 0);
  assert_source("thp", "@:[python3*]:3");
  load(text, "python3.11", NULL); /* both match: the later section wins */
  ck_assert_int_eq(hak_config.thp, HAK_THP_OFF);
  load(text, "python", NULL);
  ck_assert_int_eq(hak_config.thp, HAK_THP_ON);
  load(text, "redis-server", NULL);
  ck_assert_int_eq(hak_config.ss_mem_lean, 1);
  ck_assert_int_eq(hak_config.thp, HAK_THP_ON);
  assert_source("ss_mem_lean", "@:[redis-server]:7");
  load(text, "", NULL); /* no name: no section */
  ck_assert_int_eq(hak_config.thp, HAK_THP_ON);
  /* Without a name given, the running program's names are used. */
  load("[test_config*]\nverbose = 1\n", NULL, NULL);
  ck_assert_int_eq(hak_config.verbose, 1);
}
END_TEST

START_TEST(glob_matches_like_fnmatch)
{
  static const char *const pats[] = {
    "python3*", "python3", "*", "?", "p?thon*", "[pq]ython3", "[!p]ython3", "[^p]ython3",
    "[a-z]*[0-9]", "*.*", "*a*a*a*b", "\\*", "py\\thon3", "[]]x", "[!]]x", "[", "[a-", "a[",
    "**3", "*3*", "redis-*", "[p-q-]ython3", "",
  };
  static const char *const names[] = {
    "python3", "python3.11", "qython3", "python", "p", "", "*", "]x", "ax", "aaaaaaaaaaab",
    "aaaaaaaaaaaa", "redis-server", "[", "a[", "-ython3", "3",
  };
  for (unsigned i = 0; i < sizeof pats / sizeof pats[0]; i++)
    for (unsigned j = 0; j < sizeof names / sizeof names[0]; j++)
      ck_assert_msg(config_glob_match(pats[i], names[j]) == (fnmatch(pats[i], names[j], 0) == 0),
                    "'%s' vs '%s'", pats[i], names[j]);
}
END_TEST

START_TEST(environment)
{
  char *env[] = { "HAKMEM_THP=maybe", "HAKMEM_SS_MEM_LEEN=1", "HAKMEM_NOPE=1",
                  "HAKMEM_STATS=yes", "HAKMEM_CHECK", "PATH=/bin", "HAKMEM_CONF=/nonexistent",
                  NULL };
  load("", NULL, env);
  ck_assert_uint_eq(nwarn, 3);
  ck_assert_str_eq(warnings[0], "HAKMEM_THP=maybe: expected off|auto|on");
  ck_assert_str_eq(warnings[1], "HAKMEM_SS_MEM_LEEN=1: unknown variable (ignored); "
                                "did you mean HAKMEM_SS_MEM_LEAN?");
  ck_assert_str_eq(warnings[2], "HAKMEM_NOPE=1: unknown variable (ignored)");
  ck_assert_int_eq(hak_config.thp, HAK_THP_OFF);
  ck_assert_int_eq(hak_config.stats, 1);
  ck_assert_int_eq(hak_config.check, 0);
  /* HAKMEM_CONF names the conf file when the caller does not. */
  write_conf("superslab_lg = 20\n");
  char var[300];
  snprintf(var, sizeof var, "HAKMEM_CONF=%s", conf);
  char *env2[] = { var, NULL };
  struct config_request rq = { .program = "x", .envp = env2, .warn = collect };
  nwarn = 0;
  ck_assert_uint_eq(config_load_from(&rq), 0);
  ck_assert_int_eq(hak_config.superslab_lg, 20);
  ck_assert_str_eq(config_conf_path(), conf);
  /* What init calls. */
  config_load(env2, false);
  ck_assert_int_eq(hak_config.superslab_lg, 20);
  unlink(conf);
  /* A missing HAKMEM_CONF file is worth a warning. */
  char *env3[] = { "HAKMEM_CONF=/nonexistent/hakmem.conf", NULL };
  rq.envp = env3;
  nwarn = 0;
  ck_assert_uint_eq(config_load_from(&rq), 1);
  ck_assert_str_eq(warnings[0], "/nonexistent/hakmem.conf: cannot open: no such file (ignored)");
}
END_TEST

/* ---- values ---- */

START_TEST(value_types)
{
  static const char *const yes[] = { "1", "yes", "YES", "true", "True", "on", "ON" };
  static const char *const no[] = { "0", "no", "No", "false", "FALSE", "off", "Off" };
  char text[128];
  for (unsigned i = 0; i < 7; i++) {
    snprintf(text, sizeof text, "ss_mem_lean = %s\nbigcache = %s\n", yes[i], no[i]);
    ck_assert_uint_eq(load(text, NULL, NULL), 0);
    ck_assert_int_eq(hak_config.ss_mem_lean, 1);
    ck_assert_int_eq(hak_config.bigcache, 0);
  }
  static const struct { const char *s; int mb; } sizes[] = {
    { "10", 10 }, { "10M", 10 }, { "10MiB", 10 }, { "10 MiB", 10 }, { "10m", 10 }, { "10MB", 10 },
    { "1G", 1024 }, { "1GiB", 1024 }, { "2gb", 2048 }, { "0", 0 }, { "64G", 65536 },
  };
  for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    snprintf(text, sizeof text, "ss_mem_lean_target_mb = %s\n", sizes[i].s);
    ck_assert_uint_eq(load(text, NULL, NULL), 0);
    ck_assert_int_eq(hak_config.ss_mem_lean_target_mb, sizes[i].mb);
  }
  static const char *const bad_sizes[] = { "10K", "-1", "M", "10 M B", "1.5G", "65G", "10MiBs" };
  for (unsigned i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
    snprintf(text, sizeof text, "ss_mem_lean_target_mb = %s\n", bad_sizes[i]);
    ck_assert_uint_eq(load(text, NULL, NULL), 1);
    ck_assert_int_eq(hak_config.ss_mem_lean_target_mb, 10);
  }
  static const struct { const char *s; int v; } enums[] = {
    { "FREE", HAK_DECOMMIT_FREE }, { "free", HAK_DECOMMIT_FREE },
    { "DontNeed", HAK_DECOMMIT_DONTNEED }, { "off", HAK_DECOMMIT_OFF },
  };
  for (unsigned i = 0; i < 4; i++) {
    snprintf(text, sizeof text, "ss_mem_lean_decommit = %s\n", enums[i].s);
    ck_assert_uint_eq(load(text, NULL, NULL), 0);
    ck_assert_int_eq(hak_config.ss_mem_lean_decommit, enums[i].v);
  }
  ck_assert_uint_eq(load("thp = AUTO\npurge_delay_ms = -1\nss_empty_scan_limit = 1024\n"
                         "stats_file = \"/tmp/with space\"  # comment\n", NULL, NULL), 0);
  ck_assert_int_eq(hak_config.thp, HAK_THP_AUTO);
  ck_assert_int_eq(hak_config.purge_delay_ms, -1);
  ck_assert_int_eq(hak_config.ss_empty_scan_limit, 1024);
  ck_assert_str_eq(hak_config.stats_file, "/tmp/with space");
  ck_assert_uint_eq(load("stats_file = /var/log/a#b\n", NULL, NULL), 0);
  ck_assert_str_eq(hak_config.stats_file, "/var/log/a#b");
  char value[300];
  memset(value, 'x', 299);
  value[299] = '\0';
  snprintf(text, sizeof text, "stats_file = /tmp/x\n");
  char big[400];
  snprintf(big, sizeof big, "stats_file = %s\n", value);
  ck_assert_uint_eq(load(big, NULL, NULL), 1);
  ck_assert(warned("stats_file = xxx"));
  ck_assert(warned(": longer than 255 bytes"));
  ck_assert_str_eq(hak_config.stats_file, "");
  /* The value as hakmemctl shows it. */
  load("thp = on\nss_mem_lean_decommit = dontneed\n", NULL, NULL);
  char buf[64];
  config_value_format((unsigned)opt_index("thp"), buf, sizeof buf);
  ck_assert_str_eq(buf, "on");
  config_value_format((unsigned)opt_index("ss_mem_lean_decommit"), buf, sizeof buf);
  ck_assert_str_eq(buf, "DONTNEED");
  config_value_format((unsigned)opt_index("stats_file"), buf, sizeof buf);
  ck_assert_str_eq(buf, "\"\"");
}
END_TEST

/* ---- bad input ---- */

START_TEST(bad_lines)
{
  const char *text = "superslab_lg = 20\n"              /* 1: fine */
                     "ss_mem_leen = 1\n"                /* 2 */
                     "thp = maybe\n"                    /* 3 */
                     "superslab_lg = 22\n"              /* 4 */
                     "ss_empty_scan_limit = 0\n"        /* 5 */
                     "purge_delay_ms = 10x\n"           /* 6 */
                     "just some words\n"                /* 7 */
                     " = 3\n"                           /* 8 */
                     "check = \n"                       /* 9 */
                     "[]\n"                             /* 10 */
                     "stats = 1\n"                      /* 11: in the bad section */
                     "[redis\n"                         /* 12 */
                     "verbose = 1\n";                   /* 13 */
  ck_assert_uint_eq(load(text, "redis", NULL), 10);
  ck_assert_int_eq(hak_config.superslab_lg, 20);
  ck_assert_int_eq(hak_config.thp, HAK_THP_OFF);
  ck_assert_int_eq(hak_config.ss_empty_scan_limit, 8);
  ck_assert_int_eq(hak_config.purge_delay_ms, 1000);
  ck_assert_int_eq(hak_config.check, 0);
  ck_assert_int_eq(hak_config.stats, 0);
  ck_assert_int_eq(hak_config.verbose, 0);
  char want[512];
  snprintf(want, sizeof want, "%s:2: unknown key 'ss_mem_leen' (ignored); did you mean 'ss_mem_lean'?", conf);
  ck_assert_str_eq(warnings[0], want);
  snprintf(want, sizeof want, "%s:3: thp = maybe: expected off|auto|on", conf);
  ck_assert_str_eq(warnings[1], want);
  ck_assert(warned(":4: superslab_lg = 22: out of range 19..21"));
  ck_assert(warned(":5: ss_empty_scan_limit = 0: out of range 1..1024"));
  ck_assert(warned(":6: purge_delay_ms = 10x: expected an integer -1..3600000"));
  ck_assert(warned(":7: missing '=' in 'just some words' (ignored)"));
  ck_assert(warned(":8: missing key before '='"));
  ck_assert(warned(":9: check = : expected 0|1|yes|no|true|false|on|off"));
  ck_assert(warned(":10: empty section name"));
  ck_assert(warned(":12: unterminated section header '[redis'"));
  /* No suggestion when nothing is close. */
  load("frobnicate = 1\n", NULL, NULL);
  ck_assert(warned("unknown key 'frobnicate' (ignored)"));
  ck_assert(!warned("did you mean"));
  /* Misspelled values get the nearest word, as keys do. */
  ck_assert_uint_eq(load("mode = balnced\nthp = Atuo\ncheck = ture\nss_mem_lean_decommit = dontneeed\n"
                         "stats = maybe\n", NULL, NULL), 5);
  snprintf(want, sizeof want,
           "%s:1: mode = balnced: expected minimal|fast|balanced|learning|research; did you mean 'balanced'?",
           conf);
  ck_assert_str_eq(warnings[0], want);
  ck_assert(warned(":2: thp = Atuo: expected off|auto|on; did you mean 'auto'?"));
  ck_assert(warned(":3: check = ture: expected 0|1|yes|no|true|false|on|off; did you mean 'true'?"));
  ck_assert(warned(":4: ss_mem_lean_decommit = dontneeed: expected FREE|DONTNEED|OFF; did you mean 'DONTNEED'?"));
  ck_assert(warned(":5: stats = maybe: expected 0|1|yes|no|true|false|on|off"));
  ck_assert(!warned("maybe: expected 0|1|yes|no|true|false|on|off; did"));
  ck_assert_int_eq(hak_config.mode, HAK_MODE_BALANCED);
}
END_TEST

START_TEST(bad_files)
{
  /* A line too long, then a good one. */
  char text[3000];
  memset(text, 'a', 2000);
  strcpy(text + 2000, " = 1\nsuperslab_lg = 19\n");
  ck_assert_uint_eq(load(text, NULL, NULL), 1);
  ck_assert(warned(":1: line longer than 1024 bytes (ignored)"));
  ck_assert_int_eq(hak_config.superslab_lg, 19);
  /* A line of exactly the limit is fine. */
  memset(text, ' ', 1024);
  memcpy(text + 1024 - 9, "check = 1", 9);
  strcpy(text + 1024, "\n");
  ck_assert_uint_eq(load(text, NULL, NULL), 0);
  ck_assert_int_eq(hak_config.check, 1);
  /* Too big: the first CONFIG_FILE_MAX bytes count, up to the last whole
   * line in them; the line cut by the limit and the rest do not. */
  static char big[CONFIG_FILE_MAX + 100];
  memset(big, '\n', sizeof big);
  memcpy(big, "check = 1\n", 10);
  memcpy(big + CONFIG_FILE_MAX - 5, "thp = on\n", 9);   /* cut by the limit */
  memcpy(big + CONFIG_FILE_MAX + 10, "verbose = 1\n", 12); /* after it */
  write_conf_len(big, sizeof big);
  ck_assert_uint_eq(load_file(NULL, NULL, false), 1);
  char want[512];
  snprintf(want, sizeof want, "%s: larger than 65536 bytes: lines 1-%d read, the rest ignored", conf,
           CONFIG_FILE_MAX - 14);
  ck_assert_str_eq(warnings[0], want);
  ck_assert_int_eq(hak_config.check, 1);
  ck_assert_int_eq(hak_config.thp, HAK_THP_OFF);
  ck_assert_int_eq(hak_config.verbose, 0);
  assert_source("check", "@:1");
  unlink(conf);
  write_conf_len(big, CONFIG_FILE_MAX);
  ck_assert_uint_eq(load_file(NULL, NULL, false), 1); /* the last line, "thp =" */
  ck_assert(warned("thp = : expected off|auto|on"));
  ck_assert_int_eq(hak_config.check, 1);
  unlink(conf);
  /* A NUL byte costs its line only. */
  write_conf_len("check = 1\n\0\0\0thp = on\nverbose = 1\nstats = 1\0\n", 45);
  ck_assert_uint_eq(load_file(NULL, NULL, false), 2);
  ck_assert(warned(":2: NUL byte in line (ignored)"));
  ck_assert(warned(":4: NUL byte in line (ignored)"));
  ck_assert_int_eq(hak_config.check, 1);
  ck_assert_int_eq(hak_config.thp, HAK_THP_OFF);
  ck_assert_int_eq(hak_config.verbose, 1);
  ck_assert_int_eq(hak_config.stats, 0);
  unlink(conf);
  /* CR LF line ends and a BOM: read, silently (hakmemctl check agrees). */
  ck_assert_uint_eq(load("\xef\xbb\xbf" "check = 1\r\nthp = on\r\n[x]\r\nverbose = 1\r\n", "x", NULL), 0);
  ck_assert_int_eq(hak_config.check, 1);
  ck_assert_int_eq(hak_config.thp, HAK_THP_ON);
  ck_assert_int_eq(hak_config.verbose, 1);
  /* Binary garbage without NUL bytes: warnings, bounded, nothing applied. */
  char garbage[4096];
  unsigned s = 12345;
  for (unsigned i = 0; i < sizeof garbage; i++) {
    s = s * 1103515245 + 12345;
    garbage[i] = (char)((s >> 16) % 255 + 1);
  }
  write_conf_len(garbage, sizeof garbage);
  unsigned n = load_file(NULL, NULL, false);
  ck_assert_uint_ge(n, 1);
  ck_assert_uint_le(n, 4096);
  ck_assert(warned("control character in line (ignored)"));
  ck_assert_int_eq(hak_config.check, 0);
  unlink(conf);
  /* Not files. */
  struct config_request rq = { .conf_path = "/", .warn = collect };
  nwarn = 0;
  ck_assert_uint_eq(config_load_from(&rq), 1);
  ck_assert_str_eq(warnings[0], "/: is a directory (ignored)");
  rq.conf_path = "/dev/zero";
  nwarn = 0;
  ck_assert_uint_eq(config_load_from(&rq), 1);
  ck_assert_str_eq(warnings[0], "/dev/zero: not a regular file (ignored)");
  /* A FIFO with no writer must not hang the program. */
  char fifo[64];
  snprintf(fifo, sizeof fifo, "/tmp/hakmem-fifo-%d", (int)getpid());
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  rq.conf_path = fifo;
  nwarn = 0;
  ck_assert_uint_eq(config_load_from(&rq), 1);
  ck_assert(warned("not a regular file"));
  unlink(fifo);
  /* The default path may be absent: no warning. */
  rq.conf_path = NULL;
  rq.envp = NULL;
  nwarn = 0;
  config_load_from(&rq);
  if (access(SYSCONFDIR "/hakmem.conf", F_OK) != 0)
    ck_assert_uint_eq(nwarn, 0);
}
END_TEST

START_TEST(unreadable_file)
{
  write_conf("check = 1\n");
  chmod(conf, 0);
  /* Root reads anything: drop to nobody (this test runs in its own
   * process). */
  if (geteuid() == 0)
    ck_assert(setgid(65534) == 0 && setuid(65534) == 0);
  ck_assert_uint_eq(load_file(NULL, NULL, false), 1);
  char want[512];
  snprintf(want, sizeof want, "%s: cannot open: permission denied (ignored)", conf);
  ck_assert_str_eq(warnings[0], want);
  ck_assert_int_eq(hak_config.check, 0);
}
END_TEST

/* ---- warnings on stderr: limit, summary, quiet ---- */

/* Loads text with the library's own reporting (no callback) and returns
 * the number of lines it wrote on stderr. */
static unsigned stderr_lines(const char *text, char **env)
{
  char out[64];
  snprintf(out, sizeof out, "/tmp/hakmem-stderr-%d", (int)getpid());
  int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
  ck_assert_int_ge(fd, 0);
  int saved = dup(2);
  dup2(fd, 2);
  write_conf(text);
  struct config_request rq = { .conf_path = conf, .program = "p", .envp = env };
  config_load_from(&rq);
  dup2(saved, 2);
  close(saved);
  unlink(conf);
  char buf[8192];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  unlink(out);
  unsigned lines = 0;
  for (ssize_t i = 0; i < n; i++)
    lines += buf[i] == '\n';
  buf[n > 0 ? n : 0] = '\0';
  for (char *p = buf; *p; p = strchr(p, '\n') + 1)
    ck_assert_msg(strncmp(p, "hakmem: ", 8) == 0, "line without prefix: %s", p);
  return lines;
}

START_TEST(warning_limit_and_quiet)
{
  char text[2048] = "";
  for (int i = 0; i < 15; i++)
    strcat(text, "bogus = 1\n");
  ck_assert_uint_eq(stderr_lines(text, NULL), CONFIG_MAX_WARNINGS + 1);
  ck_assert_uint_eq(stderr_lines("bogus = 1\n", NULL), 1);
  /* verbose = 0 does not silence them; quiet does, even set last. */
  ck_assert_uint_eq(stderr_lines("verbose = 0\nbogus = 1\n", NULL), 1);
  strcat(text, "[p]\nquiet = 1\n");
  ck_assert_uint_eq(stderr_lines(text, NULL), 0);
  char *env[] = { "HAKMEM_QUIET=1", "HAKMEM_BOGUS=1", NULL };
  ck_assert_uint_eq(stderr_lines("bogus = 1\n", env), 0);
  /* quiet = 0 in the environment undoes the file's quiet = 1. */
  char *env2[] = { "HAKMEM_QUIET=0", NULL };
  ck_assert_uint_eq(stderr_lines("quiet = 1\nbogus = 1\n", env2), 1);
}
END_TEST

/* ---- secure execution ---- */

START_TEST(secure_ignores_environment)
{
  char *env[] = { "HAKMEM_MODE=research", "HAKMEM_STATS_FILE=/tmp/x", "HAKMEM_BOGUS=1",
                  "HAKMEM_CONF=/etc/passwd", NULL };
  struct config_request rq = { .conf_path = NULL, .program = "p", .envp = env, .secure = true,
                               .warn = collect };
  nwarn = 0;
  config_load_from(&rq);
  ck_assert(config_secure);
  ck_assert_str_ne(config_conf_path(), "/etc/passwd");
  ck_assert_str_eq(config_conf_path(), SYSCONFDIR "/hakmem.conf");
  ck_assert(!warned("HAKMEM_"));
  ck_assert_str_eq(hak_config.stats_file, "");
  for (unsigned i = 0; i < config_option_count; i++)
    ck_assert_int_ne(config_sources[i].origin, CONFIG_FROM_ENV);
  /* What init calls. */
  config_load(env, true);
  ck_assert_int_ne(hak_config.mode, HAK_MODE_RESEARCH);
}
END_TEST

/* Whether every directory from / down to path (included) is owned by
 * root and writable by neither group nor others: what secure execution
 * asks of the conf file's directories. */
static bool dirs_trusted(const char *path)
{
  char p[512];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1;; s++) {
    bool end = *s == '\0';
    if (*s == '/' || end) {
      char c = *s;
      *s = '\0';
      struct stat st;
      if (stat(p, &st) != 0 || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)))
        return false;
      *s = c;
    }
    if (end)
      return true;
  }
}

/* A fresh directory, mode 0755, in the first trusted place (see
 * dirs_trusted) of: the current directory (the build tree), /run, /root;
 * NULL unless we are root.  The tests of a conf file read in secure
 * execution need one, as a root-owned file under /tmp is rightly refused,
 * and a build tree under /tmp (CI's clone) is not trusted either. */
static const char *trusted_dir(void)
{
  static char dir[200];
  char cwd[160];
  if (geteuid() != 0 || !dirs_trusted("/") || !getcwd(cwd, sizeof cwd))
    return NULL;
  const char *places[] = { cwd, "/run", "/root" };
  for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
    if (!dirs_trusted(places[i]))
      continue;
    snprintf(dir, sizeof dir, "%s/hakmem-secure-XXXXXX", places[i]);
    if (mkdtemp(dir) && chmod(dir, 0755) == 0)
      return dir;
  }
  return NULL;
}

/* Writes text, mode 0644, to dir/name; its path is conf. */
static void write_conf_at(const char *dir, const char *name, const char *text)
{
  snprintf(conf, sizeof conf, "%s/%s", dir, name);
  int fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  fchmod(fd, 0644);
  close(fd);
}

START_TEST(secure_conf_ownership)
{
  static const char text[] =
    "check = 1\nstats_file = /tmp/hakmem-report\nlearn_state_file = /tmp/hakmem-learned\n";
  const char *dir = trusted_dir();
  if (geteuid() == 0 && !dir)
    ck_abort_msg("secure_conf_ownership: no trusted directory (build tree, /run, /root) to test "
                 "the conf file read in secure execution");
  if (dir) {
    write_conf_at(dir, "hakmem.conf", text);
    /* Root's, 0644: read, but neither stats_file nor learn_state_file is used. */
    ck_assert_uint_eq(load_file("p", NULL, true), 0);
    ck_assert_int_eq(hak_config.check, 1);
    ck_assert_str_eq(hak_config.stats_file, "");
    assert_source("stats_file", "secure execution");
    ck_assert_str_eq(hak_config.learn_state_file, "");
    assert_source("learn_state_file", "secure execution");
    /* Group-writable: ignored. */
    chmod(conf, 0664);
    ck_assert_uint_eq(load_file("p", NULL, true), 1);
    ck_assert(warned("not owned by root or writable by group or others: ignored in secure execution"));
    ck_assert_int_eq(hak_config.check, 0);
    chmod(conf, 0644);
    /* A directory on its path writable by its group or by others: ignored. */
    char sub[220];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    write_conf_at(sub, "hakmem.conf", text);
    ck_assert_uint_eq(load_file("p", NULL, true), 0);
    ck_assert_int_eq(hak_config.check, 1);
    for (int i = 0; i < 2; i++) {
      chmod(i ? dir : sub, i ? 0757 : 0775);
      ck_assert_uint_eq(load_file("p", NULL, true), 1);
      char want[800];
      snprintf(want, sizeof want, "%s: directory %s is not owned by root or is writable by "
               "group or others: ignored in secure execution", conf, i ? dir : sub);
      ck_assert_str_eq(warnings[0], want);
      ck_assert_int_eq(hak_config.check, 0);
      chmod(i ? dir : sub, 0755);
    }
    /* ... or not owned by root. */
    ck_assert_int_eq(chown(sub, 65534, 0), 0);
    ck_assert_uint_eq(load_file("p", NULL, true), 1);
    ck_assert(warned("directory "));
    ck_assert_int_eq(hak_config.check, 0);
    unlink(conf);
    rmdir(sub);
    unlink(conf);
    snprintf(conf, sizeof conf, "%s/hakmem.conf", dir);
    /* A relative path, naming the same acceptable file from its own
     * directory: ignored. */
    char cwd[160];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(dir), 0);
    struct config_request rq = { .conf_path = "hakmem.conf", .program = "p", .secure = true,
                                 .warn = collect };
    nwarn = 0;
    ck_assert_uint_eq(config_load_from(&rq), 1);
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert(warned("not an absolute path: ignored in secure execution"));
    ck_assert_int_eq(hak_config.check, 0);
    unlink(conf);
    rmdir(dir);
  }
  /* Root's, 0644, but in a directory anyone may write (/tmp): ignored. */
  write_conf(text);
  if (geteuid() == 0) {
    ck_assert_uint_eq(load_file("p", NULL, true), 1);
    ck_assert(warned(" is not owned by root or is writable by group or others: "
                     "ignored in secure execution"));
    ck_assert_int_eq(hak_config.check, 0);
    /* Owned by someone else: ignored. */
    ck_assert_int_eq(chown(conf, 65534, 65534), 0);
  }
  ck_assert_uint_eq(load_file("p", NULL, true), 1);
  ck_assert(warned("ignored in secure execution"));
  ck_assert_int_eq(hak_config.check, 0);
  /* Outside secure execution the same file is read. */
  ck_assert_uint_eq(load_file("p", NULL, false), 0);
  ck_assert_int_eq(hak_config.check, 1);
  ck_assert_str_eq(hak_config.stats_file, "/tmp/hakmem-report");
  ck_assert_str_eq(hak_config.learn_state_file, "/tmp/hakmem-learned");
  /* Writable by others: read, with a warning. */
  chmod(conf, 0666);
  ck_assert_uint_eq(load_file("p", NULL, false), 1);
  ck_assert(warned(": writable by any user (read anyway; chmod o-w to fix)"));
  ck_assert_int_eq(hak_config.check, 1);
  /* A symbolic link is not followed in secure execution. */
  char link[256], target[256];
  snprintf(target, sizeof target, "%s", conf);
  chmod(conf, 0644);
  snprintf(link, sizeof link, "%.200s.link", target);
  ck_assert_int_eq(symlink(target, link), 0);
  snprintf(conf, sizeof conf, "%s", link);
  ck_assert_uint_eq(load_file("p", NULL, true), 1);
  ck_assert(warned("cannot open: is a symbolic link (not followed)"));
  unlink(link);
  unlink(target);
}
END_TEST

/* Which sections apply: outside secure execution the executable's name or
 * argv[0]'s (exec -a redis-server prog applies [redis-server]); in secure
 * execution argv[0], the caller's choice, is not used. */
START_TEST(secure_section_by_executable)
{
  static const char text[] = "[redis-server]\ncheck = 1\n[test_config]\nverbose = 1\n";
  char *argv0 = program_invocation_short_name;
  program_invocation_short_name = "redis-server"; /* as exec -a would */
  struct config_request rq = { .conf_path = "mem", .warn = collect };
  nwarn = 0;
  ck_assert_uint_eq(config_load_buffer(&rq, text, strlen(text)), 0);
  ck_assert_int_eq(hak_config.check, 1);
  ck_assert_int_eq(hak_config.verbose, 1);
  rq.secure = true;
  ck_assert_uint_eq(config_load_buffer(&rq, text, strlen(text)), 0);
  ck_assert_int_eq(hak_config.check, 0);
  ck_assert_int_eq(hak_config.verbose, 1); /* /proc/self/exe: tests/test_config */
  program_invocation_short_name = argv0;
}
END_TEST

/* The parser works in place on a caller's buffer too (the fuzz test's
 * entry); an oversized buffer is refused like an oversized file. */
START_TEST(buffer_entry)
{
  struct config_request rq = { .conf_path = "mem", .program = "p", .warn = collect };
  nwarn = 0;
  ck_assert_uint_eq(config_load_buffer(&rq, "thp = on\n[p]\ncheck = 1", 22), 0);
  ck_assert_int_eq(hak_config.thp, HAK_THP_ON);
  ck_assert_int_eq(hak_config.check, 1);
  assert_source("check", "mem:[p]:3");
  static char big[CONFIG_FILE_MAX + 1];
  memset(big, '\n', sizeof big);
  memcpy(big, "thp = auto\n", 11);
  nwarn = 0;
  ck_assert_uint_eq(config_load_buffer(&rq, big, sizeof big), 1);
  ck_assert_str_eq(warnings[0], "mem: larger than 65536 bytes: lines 1-65526 read, the rest ignored");
  ck_assert_int_eq(hak_config.thp, HAK_THP_AUTO);
}
END_TEST

static Suite *config_suite(void)
{
  Suite *s = suite_create("config");
  TCase *t = tcase_create("table");
  tcase_add_test(t, table_is_consistent);
  tcase_add_test(t, defaults);
  tcase_add_test(t, mode_presets);
  tcase_add_test(t, explicit_key_beats_preset);
  suite_add_tcase(s, t);
  t = tcase_create("precedence");
  tcase_add_test(t, precedence_matrix);
  tcase_add_test(t, sections);
  tcase_add_test(t, glob_matches_like_fnmatch);
  tcase_add_test(t, environment);
  suite_add_tcase(s, t);
  t = tcase_create("values");
  tcase_add_test(t, value_types);
  tcase_add_test(t, bad_lines);
  tcase_add_test(t, bad_files);
  tcase_add_test(t, unreadable_file);
  tcase_add_test(t, warning_limit_and_quiet);
  tcase_add_test(t, buffer_entry);
  suite_add_tcase(s, t);
  t = tcase_create("secure");
  tcase_add_test(t, secure_ignores_environment);
  tcase_add_test(t, secure_conf_ownership);
  tcase_add_test(t, secure_section_by_executable);
  suite_add_tcase(s, t);
  return s;
}

int main(void)
{
  return check_run(config_suite());
}
