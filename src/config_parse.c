/* The configuration's text handling: message buffers, value parsers, key
 * lookup, "did you mean" suggestions and the section glob matcher.  Pure
 * functions of their arguments and of the option table; no stdio, no
 * allocation, no locale, since the loader runs inside the first malloc. */
#include "config_parse.h"

#include <string.h>
#include <strings.h>

/* ---- text helpers (no stdio) ---- */

HAK_STARTUP_TEXT void config_msg_str(struct config_msg *m, const char *s)
{
  while (*s && m->n < sizeof m->s - 1)
    m->s[m->n++] = *s++;
  m->s[m->n] = '\0';
}

void config_msg_int(struct config_msg *m, long v)
{
  char tmp[24];
  unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
  int i = (int)sizeof tmp - 1;
  tmp[i] = '\0';
  do {
    tmp[--i] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0)
    tmp[--i] = '-';
  config_msg_str(m, tmp + i);
}

/* Appends at most max bytes of s, with unprintable bytes shown as '?'. */
void config_msg_text(struct config_msg *m, const char *s, size_t max)
{
  size_t i;
  for (i = 0; s[i] && i < max && m->n < sizeof m->s - 1; i++) {
    unsigned char c = (unsigned char)s[i];
    m->s[m->n++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
  }
  m->s[m->n] = '\0';
  if (s[i])
    config_msg_str(m, "...");
}

HAK_STARTUP_TEXT void config_copy_str(char *dst, size_t size, const char *src)
{
  size_t n = strlen(src);
  if (n >= size)
    n = size - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

char config_lower(char c)
{
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

bool config_is_space(char c)
{
  return c == ' ' || c == '\t';
}

/* Trims spaces and tabs in place; returns the new start. */
char *config_trim(char *s)
{
  while (config_is_space(*s))
    s++;
  size_t n = strlen(s);
  while (n && config_is_space(s[n - 1]))
    s[--n] = '\0';
  return s;
}

/* ---- values ---- */

/* The words a boolean accepts, for suggestions. */
static const char *const bool_words[] = { "yes", "no", "true", "false", "on", "off", NULL };

bool config_parse_bool(const char *s, int *out)
{
  static const char *const yes[] = { "1", "yes", "true", "on" };
  static const char *const no[] = { "0", "no", "false", "off" };
  for (unsigned i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = 1;
      return true;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = 0;
      return true;
    }
  }
  return false;
}

/* Parses an optional '-' and decimal digits up to end; false on anything
 * else or on a magnitude above 10^10. */
static bool parse_long(const char *s, const char *end, long *out)
{
  long v = 0;
  bool neg = s < end && *s == '-';
  if (neg)
    s++;
  if (s == end)
    return false;
  for (; s < end; s++) {
    if (*s < '0' || *s > '9' || v > 1000000000L)
      return false;
    v = v * 10 + (*s - '0');
  }
  *out = neg ? -v : v;
  return true;
}

bool config_parse_int(const char *s, int min, int max, int *out)
{
  long v;
  if (!parse_long(s, s + strlen(s), &v) || v < min || v > max)
    return false;
  *out = (int)v;
  return true;
}

/* Parses a size in MiB into *v; false if it is not one.  The suffix is
 * M, MB, MiB, G, GB or GiB in any case, optionally after spaces. */
static bool parse_size(const char *s, long *v)
{
  const char *e = s;
  while (*e >= '0' && *e <= '9')
    e++;
  if (e == s || !parse_long(s, e, v))
    return false;
  while (config_is_space(*e))
    e++;
  static const char *const mib[] = { "", "m", "mb", "mib" };
  static const char *const gib[] = { "g", "gb", "gib" };
  for (unsigned i = 0; i < 4; i++)
    if (strcasecmp(e, mib[i]) == 0)
      return true;
  for (unsigned i = 0; i < 3; i++)
    if (strcasecmp(e, gib[i]) == 0) {
      *v *= 1024;
      return true;
    }
  return false;
}

bool config_parse_size_mb(const char *s, int min, int max, int *out)
{
  long v;
  if (!parse_size(s, &v) || v < min || v > max)
    return false;
  *out = (int)v;
  return true;
}

static void suggest_word(struct config_msg *m, const char *s, const char *const *words);

static void expect_words(struct config_msg *m, const char *const *w)
{
  config_msg_str(m, "expected ");
  for (unsigned i = 0; w[i]; i++) {
    if (i)
      config_msg_str(m, "|");
    config_msg_str(m, w[i]);
  }
}

const char *config_parse_value(const struct config_option *o, const char *s, int *out,
                               char *why, size_t size)
{
  struct config_msg m = { .n = 0 };
  long v = 0;
  switch (o->type) {
  case CONFIG_BOOL:
    if (config_parse_bool(s, out))
      return NULL;
    config_msg_str(&m, "expected 0|1|yes|no|true|false|on|off");
    suggest_word(&m, s, bool_words);
    break;
  case CONFIG_INT:
  case CONFIG_SIZE_MB:
    if (o->type == CONFIG_INT ? parse_long(s, s + strlen(s), &v) : parse_size(s, &v)) {
      if (v >= o->min && v <= o->max) {
        *out = (int)v;
        return NULL;
      }
      config_msg_str(&m, "out of range ");
    } else {
      config_msg_str(&m, o->type == CONFIG_INT ? "expected an integer " : "expected a size in MiB ");
    }
    config_msg_int(&m, o->min);
    config_msg_str(&m, "..");
    config_msg_int(&m, o->max);
    if (o->type == CONFIG_SIZE_MB)
      config_msg_str(&m, " (10, 10M, 10MiB, 1G)");
    break;
  case CONFIG_ENUM:
    for (int i = 0; o->words[i]; i++)
      if (strcasecmp(s, o->words[i]) == 0) {
        *out = i;
        return NULL;
      }
    expect_words(&m, o->words);
    suggest_word(&m, s, o->words);
    break;
  case CONFIG_STRING:
    if (strlen(s) < o->text_size)
      return NULL;
    config_msg_str(&m, "longer than ");
    config_msg_int(&m, (long)o->text_size - 1);
    config_msg_str(&m, " bytes");
    break;
  }
  config_copy_str(why, size, m.s);
  return why;
}

void config_int_format(const struct config_option *o, int v, char *buf, size_t size)
{
  struct config_msg m = { .n = 0 };
  if (o->type == CONFIG_ENUM && v >= 0 && v <= o->max)
    config_msg_str(&m, o->words[v]);
  else
    config_msg_int(&m, v);
  config_copy_str(buf, size, m.s);
}

const struct config_option *config_find(const char *key)
{
  for (unsigned i = 0; i < config_option_count; i++)
    if (strcasecmp(config_options[i].key, key) == 0)
      return &config_options[i];
  return NULL;
}

/* Does name[0, len) equal HAKMEM_ + upper(key)? */
static bool env_name_matches(const char *name, size_t len, const char *key)
{
  if (len != 7 + strlen(key) || strncmp(name, "HAKMEM_", 7) != 0)
    return false;
  for (size_t i = 0; i < len - 7; i++)
    if (name[7 + i] != (key[i] >= 'a' && key[i] <= 'z' ? key[i] - 'a' + 'A' : key[i]))
      return false;
  return true;
}

const struct config_option *config_find_env(const char *name, size_t len)
{
  for (unsigned i = 0; i < config_option_count; i++)
    if (env_name_matches(name, len, config_options[i].key))
      return &config_options[i];
  return NULL;
}

/* Edit distance, case-insensitive, counting a swap of two neighbouring
 * letters as one edit (the commonest typo); large for long words.  Three
 * rows on the stack: it runs inside the first malloc. */
static unsigned edit_distance(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  unsigned rows[3][49];
  if (la > 48 || lb > 48)
    return 99;
  unsigned *prev2 = rows[0], *prev = rows[1], *row = rows[2];
  for (size_t j = 0; j <= lb; j++)
    prev[j] = (unsigned)j;
  for (size_t i = 1; i <= la; i++) {
    row[0] = (unsigned)i;
    for (size_t j = 1; j <= lb; j++) {
      char ca = config_lower(a[i - 1]), cb = config_lower(b[j - 1]);
      unsigned best = prev[j - 1] + (ca != cb);
      if (prev[j] + 1 < best)
        best = prev[j] + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      if (i > 1 && j > 1 && ca == config_lower(b[j - 2]) && config_lower(a[i - 2]) == cb &&
          prev2[j - 2] + 1 < best)
        best = prev2[j - 2] + 1;
      row[j] = best;
    }
    unsigned *t = prev2;
    prev2 = prev;
    prev = row;
    row = t;
  }
  return prev[lb];
}

/* Is candidate closer to word than *best_d, and close enough to be a
 * typo (at most two edits, and at most one per three letters)? */
static bool closer(const char *word, const char *candidate, unsigned *best_d)
{
  unsigned d = edit_distance(word, candidate);
  if (d >= *best_d || d * 3 > (unsigned)strlen(word))
    return false;
  *best_d = d;
  return true;
}

/* The key closest to word if it is close enough to be a typo, else NULL. */
const char *config_closest_key(const char *word)
{
  const char *best = NULL;
  unsigned best_d = 3;
  for (unsigned i = 0; i < config_option_count; i++)
    if (closer(word, config_options[i].key, &best_d))
      best = config_options[i].key;
  return best;
}

const char *config_closest_word(const char *word, const char *const *words)
{
  const char *best = NULL;
  unsigned best_d = 3;
  for (unsigned i = 0; words[i]; i++)
    if (closer(word, words[i], &best_d))
      best = words[i];
  return best;
}

/* Appends "; did you mean 'W'?" when a word of the list is close to s. */
static void suggest_word(struct config_msg *m, const char *s, const char *const *words)
{
  const char *near = config_closest_word(s, words);
  if (!near)
    return;
  config_msg_str(m, "; did you mean '");
  config_msg_str(m, near);
  config_msg_str(m, "'?");
}

/* ---- section globs ---- */

/* Matches c against the set that starts after '['; returns the pattern
 * after the closing ']', or NULL if the set is not closed. */
static const char *match_set(const char *p, char c, bool *matched)
{
  bool neg = *p == '!' || *p == '^', in = false;
  if (neg)
    p++;
  for (bool first = true; *p && (*p != ']' || first); first = false) {
    unsigned char lo = (unsigned char)*p, hi;
    if (lo == '\\' && p[1])
      lo = (unsigned char)*++p;
    p++;
    hi = lo;
    if (*p == '-' && p[1] && p[1] != ']') {
      p++;
      hi = (unsigned char)*p;
      if (hi == '\\' && p[1])
        hi = (unsigned char)*++p;
      p++;
    }
    if ((unsigned char)c >= lo && (unsigned char)c <= hi)
      in = true;
  }
  if (*p != ']')
    return NULL;
  *matched = in != neg;
  return p + 1;
}

/* Iterative, with one backtracking point for the last '*': linear in
 * pattern times name, whatever the pattern. */
bool config_glob_match(const char *p, const char *n)
{
  const char *star_p = NULL, *star_n = NULL;
  for (;;) {
    if (*p == '*') {
      while (*p == '*')
        p++;
      star_p = p;
      star_n = n;
      continue;
    }
    if (*n) {
      bool ok = false;
      const char *next = NULL;
      if (*p == '?') {
        ok = true;
        next = p + 1;
      } else if (*p == '[') {
        next = match_set(p + 1, *n, &ok);
      }
      if (!next) {
        if (*p == '\\' && p[1]) {
          ok = p[1] == *n;
          next = p + 2;
        } else {
          ok = *p && *p == *n;
          next = p + 1;
        }
      }
      if (ok) {
        p = next;
        n++;
        continue;
      }
    } else if (!*p) {
      return true;
    }
    if (!star_p || !*star_n)
      return false;
    p = star_p;
    n = ++star_n;
  }
}
