/* The option table and the environment reader. */
#include "config.h"

#include <string.h>
#include <strings.h>

struct hak_config hak_config = {
  .mode = HAK_MODE_BALANCED,
  .bigcache = 1,
  .batch_madvise = 1,
  .ss_empty_reuse = 1,
  .ss_empty_scan_limit = 8,
  .superslab_lg = HAK_SS_LG_DEFAULT,
  .purge_delay_ms = 1000,
  .ss_mem_lean_target_mb = 10,
  .ss_mem_lean_decommit = HAK_DECOMMIT_FREE,
  .thp = HAK_THP_OFF,
};

const struct config_option config_options[] = {
  { "stats", CONFIG_BOOL, 0, 1, 0, &hak_config.stats,
    "print the statistics report on stderr at exit" },
  { "check", CONFIG_BOOL, 0, 1, 0, &hak_config.check,
    "validate every free (block boundary, slab state) and abort on a bad pointer" },
  { "bigcache", CONFIG_BOOL, 0, 1, 1, &hak_config.bigcache,
    "keep recently freed large mappings and reuse them for requests of the same size" },
  { "ss_empty_reuse", CONFIG_BOOL, 0, 1, 1, &hak_config.ss_empty_reuse,
    "reuse a class's EMPTY slabs before claiming unused ones (shared pool stage 1)" },
  { "superslab_lg", CONFIG_INT, HAK_SS_LG_MIN, HAK_SS_LG_MAX, HAK_SS_LG_DEFAULT,
    &hak_config.superslab_lg, "log2 of the SuperSlab size: 19 (512 KiB) to 21 (2 MiB)" },
};
const unsigned config_option_count = sizeof config_options / sizeof config_options[0];

static bool word_eq(const char *a, const char *b)
{
  return strcasecmp(a, b) == 0;
}

bool config_parse_bool(const char *s, int *out)
{
  static const char *const yes[] = { "1", "yes", "true", "on" };
  static const char *const no[] = { "0", "no", "false", "off" };
  for (unsigned i = 0; i < 4; i++) {
    if (word_eq(s, yes[i])) {
      *out = 1;
      return true;
    }
    if (word_eq(s, no[i])) {
      *out = 0;
      return true;
    }
  }
  return false;
}

bool config_parse_int(const char *s, int min, int max, int *out)
{
  long v = 0;
  bool neg = *s == '-';
  if (neg)
    s++;
  if (!*s)
    return false;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || v > 1000000000L)
      return false;
    v = v * 10 + (*s - '0');
  }
  if (neg)
    v = -v;
  if (v < min || v > max)
    return false;
  *out = (int)v;
  return true;
}

/* Appends s to buf (cap bytes), keeping it NUL-terminated. */
static void str_append(char *buf, size_t cap, const char *s)
{
  size_t n = strlen(buf);
  while (*s && n + 1 < cap)
    buf[n++] = *s++;
  buf[n] = '\0';
}

static void str_append_int(char *buf, size_t cap, int v)
{
  char tmp[16];
  unsigned u = v < 0 ? (unsigned)-v : (unsigned)v;
  int i = (int)sizeof tmp - 1;
  tmp[i] = '\0';
  do {
    tmp[--i] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    tmp[--i] = '-';
  str_append(buf, cap, tmp + i);
}

/* Compares the variable name (up to '=') with HAKMEM_ + upper(key). */
static bool env_name_matches(const char *name, size_t len, const char *key)
{
  if (len != 7 + strlen(key))
    return false;
  for (size_t i = 0; i < len - 7; i++) {
    char c = key[i];
    if (c >= 'a' && c <= 'z')
      c = (char)(c - 'a' + 'A');
    if (name[7 + i] != c)
      return false;
  }
  return true;
}

static void warn_env(const char *var, const char *what)
{
  char line[256] = "";
  str_append(line, sizeof line, var);
  str_append(line, sizeof line, ": ");
  str_append(line, sizeof line, what);
  hak_warn(line);
}

static void apply_env(const char *var, const struct config_option *o, const char *val)
{
  int v;
  bool ok = o->type == CONFIG_BOOL ? config_parse_bool(val, &v)
                                   : config_parse_int(val, o->min, o->max, &v);
  if (ok) {
    *o->value = v;
    return;
  }
  char what[96] = "";
  if (o->type == CONFIG_BOOL) {
    str_append(what, sizeof what, "expected 0|1|yes|no|true|false|on|off");
  } else {
    str_append(what, sizeof what, "expected an integer from ");
    str_append_int(what, sizeof what, o->min);
    str_append(what, sizeof what, " to ");
    str_append_int(what, sizeof what, o->max);
  }
  str_append(what, sizeof what, " (ignored)");
  warn_env(var, what);
}

void config_load(char *const *envp, bool secure)
{
  for (unsigned i = 0; i < config_option_count; i++)
    *config_options[i].value = config_options[i].def;
  if (secure || !envp)
    return;
  for (char *const *e = envp; *e; e++) {
    const char *var = *e;
    if (strncmp(var, "HAKMEM_", 7) != 0)
      continue;
    const char *eq = strchr(var, '=');
    if (!eq)
      continue;
    size_t len = (size_t)(eq - var);
    unsigned i;
    for (i = 0; i < config_option_count; i++)
      if (env_name_matches(var, len, config_options[i].key))
        break;
    if (i == config_option_count) {
      char name[128] = "";
      size_t n = len < sizeof name - 1 ? len : sizeof name - 1;
      memcpy(name, var, n);
      name[n] = '\0';
      warn_env(name, "unknown variable (ignored)");
      continue;
    }
    apply_env(var, &config_options[i], eq + 1);
  }
}
