/* The option sections of hakmem(3) and hakmem.conf(5) and the commented
 * conf file, written from the option table: the types, ranges, defaults
 * and mode values from config_options[] (what the loader uses), the texts
 * from the same rows of src/options.def.  See hakmemctl_options.h. */
#include "hakmemctl_options.h"

#include "config.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum option_group {
#define CONFIG_GROUP(NAME, title) GROUP_##NAME,
#include "options.def"
  GROUP_COUNT
};

static const char *const group_titles[] = {
#define CONFIG_GROUP(NAME, title) title,
#include "options.def"
};

/* The columns of each row that the library does not keep. */
struct option_doc {
  const char *key;
  enum option_group group;
  const char *noun;             /* string options: what the text is */
  const char *def_note;         /* what the default means, or "" */
  const char *man;              /* roff, with @key@ and @see marks */
};

static const struct option_doc docs[] = {
#define CONFIG_OPTION(key, type, min, max, words, def, modes, group, def_note, help, man) \
  { #key, GROUP_##group, NULL, def_note, man },
#define CONFIG_STRING(key, size, group, noun, def_note, help, man) \
  { #key, GROUP_##group, noun, def_note, man },
#include "options.def"
};

struct mode_doc {
  const char *help, *man;
};

static const struct mode_doc mode_docs[] = {
#define CONFIG_MODE(NAME, word, help, man) { help, man },
#include "options.def"
};

/* The page being written: hakmem.3 names options by their variables. */
struct page {
  FILE *f;
  bool env;                     /* hakmem.3: HAKMEM_KEY; hakmem.conf.5: key */
  char line[1024];              /* pending roman text, not yet written */
  bool failed;                  /* a mark named no option */
};

/* The docs rows are the table's, in its order; false (with a message)
 * if the two were built from different tables. */
static bool docs_match_table(void)
{
  if (sizeof docs / sizeof docs[0] != config_option_count) {
    fprintf(stderr, "hakmemctl: %u options in the table, %zu described\n", config_option_count,
            sizeof docs / sizeof docs[0]);
    return false;
  }
  for (unsigned i = 0; i < config_option_count; i++)
    if (strcmp(docs[i].key, config_options[i].key) != 0) {
      fprintf(stderr, "hakmemctl: option %u is %s in the table, %s in its text\n", i,
              config_options[i].key, docs[i].key);
      return false;
    }
  return true;
}

static void upper_name(const char *key, bool env, char *buf, size_t size)
{
  size_t n = (size_t)snprintf(buf, size, "%s%s", env ? "HAKMEM_" : "", key);
  if (env)
    for (size_t i = 0; i < n && i < size; i++)
      buf[i] = (char)toupper((unsigned char)buf[i]);
}

/* ---- roff ---- */

/* Roman text joins the pending line; a bold word ends it. */
static void put_text(struct page *p, const char *s)
{
  size_t n = strlen(p->line);
  snprintf(p->line + n, sizeof p->line - n, "%s%s", n ? " " : "", s);
}

static void flush_text(struct page *p)
{
  if (p->line[0])
    fprintf(p->f, "%s\n", p->line);
  p->line[0] = '\0';
}

/* word in bold, then after (punctuation, no space) in roman. */
static void put_bold(struct page *p, const char *word, const char *after)
{
  flush_text(p);
  bool quote = strchr(word, ' ') != NULL;
  const char *q = quote ? "\"" : "";
  if (after && *after)
    fprintf(p->f, ".BR %s%s%s %s\n", q, word, q, after);
  else
    fprintf(p->f, ".B %s%s%s\n", q, word, q);
}

/* A value as the page writes it: "\-1", a word, "empty". */
static void value_text(const struct config_option *o, int v, char *buf, size_t size)
{
  char tmp[64];
  config_int_format(o, v, tmp, sizeof tmp);
  snprintf(buf, size, "%s%s", tmp[0] == '-' ? "\\" : "", tmp);
}

/* A value in the running text: a word in bold, a number in roman. */
static void put_value(struct page *p, const struct config_option *o, int v, const char *after)
{
  char buf[80];
  value_text(o, v, buf, sizeof buf);
  if (o->type == CONFIG_ENUM) {
    put_bold(p, buf, after);
  } else {
    char t[96];
    snprintf(t, sizeof t, "%s%s", buf, after);
    put_text(p, t);
  }
}

/* "Integer from 1 to 1024, default 8 (mode fast: 4096; modes learning
 * and research: canary)." from the table. */
static void put_type_and_default(struct page *p, unsigned i)
{
  const struct config_option *o = &config_options[i];
  const struct option_doc *d = &docs[i];
  char buf[256], lo[80], hi[80];
  value_text(o, o->min, lo, sizeof lo);
  value_text(o, o->max, hi, sizeof hi);
  switch (o->type) {
  case CONFIG_BOOL: put_text(p, "Boolean, default"); break;
  case CONFIG_INT:
    snprintf(buf, sizeof buf, "Integer from %s to %s, default", lo, hi);
    put_text(p, buf);
    break;
  case CONFIG_SIZE_MB:
    snprintf(buf, sizeof buf, "Size in MiB from %s to %s, default", lo, hi);
    put_text(p, buf);
    break;
  case CONFIG_ENUM:
    put_text(p, "Word:");
    for (int w = 0; o->words[w]; w++) {
      bool last = !o->words[w + 1], before_last = !last && !o->words[w + 2];
      put_bold(p, o->words[w], last ? ";" : before_last ? "" : ",");
      if (before_last)
        put_text(p, "or");
    }
    put_text(p, "default");
    break;
  case CONFIG_STRING: break;
  }
  bool note = d->def_note[0] != '\0', modes = false;
  if (o->preset)
    for (int m = 0; m < HAK_MODE_COUNT; m++)
      modes |= o->mode_value[m] != o->def;
  if (o->type == CONFIG_STRING) {
    snprintf(buf, sizeof buf, "%s of at most %u bytes, default empty%s", d->noun, o->text_size - 1,
             note ? "" : ".");
    put_text(p, buf);
  }
  if (o->type != CONFIG_STRING)
    put_value(p, o, o->def, note || modes ? "" : ".");
  if (note) {
    snprintf(buf, sizeof buf, "(%s)%s", d->def_note, modes ? "" : ".");
    put_text(p, buf);
  }
  if (!modes)
    return;
  /* The modes that differ, grouped by value in the order of the modes. */
  bool done[HAK_MODE_COUNT] = { false };
  bool first = true;
  for (int m = 0; m < HAK_MODE_COUNT; m++) {
    if (done[m] || o->mode_value[m] == o->def)
      continue;
    int same[HAK_MODE_COUNT], n = 0;
    for (int k = m; k < HAK_MODE_COUNT; k++)
      if (!done[k] && o->mode_value[k] == o->mode_value[m]) {
        same[n++] = k;
        done[k] = true;
      }
    bool more = false;
    for (int k = m + 1; k < HAK_MODE_COUNT; k++)
      more |= !done[k] && o->mode_value[k] != o->def;
    snprintf(buf, sizeof buf, "%s%s", first ? "(" : "", n > 1 ? "modes" : "mode");
    put_text(p, buf);
    for (int k = 0; k < n; k++) {
      put_bold(p, config_mode_words[same[k]], k == n - 1 ? ":" : k == n - 2 ? "" : ",");
      if (k == n - 2)
        put_text(p, "and");
    }
    put_value(p, o, o->mode_value[m], more ? ";" : ").");
    first = false;
  }
}

/* Writes one line of an option's text with its marks replaced. */
static void put_man_line(struct page *p, const char *line, size_t len)
{
  char out[1024];
  size_t n = 0;
  if (len > 5 && strncmp(line, "@see ", 5) == 0) {
    const char *end = memchr(line + 5, '@', len - 5);
    if (!end) {
      fprintf(stderr, "hakmemctl: unterminated @see in '%.*s'\n", (int)len, line);
      p->failed = true;
      return;
    }
    int sl = (int)(end - line - 5), rl = (int)(line + len - end - 1);
    if (p->env) {
      if (rl)
        fprintf(p->f, ".BR \"%.*s\" %.*s\n", sl, line + 5, rl, end + 1);
      else
        fprintf(p->f, ".B \"%.*s\"\n", sl, line + 5);
    } else {
      fprintf(p->f, ".B \"%.*s\"\nin\n.BR hakmem (3)%.*s\n", sl, line + 5, rl, end + 1);
    }
    return;
  }
  for (size_t i = 0; i < len && n < sizeof out - 80; i++) {
    const char *end = line[i] == '@' ? memchr(line + i + 1, '@', len - i - 1) : NULL;
    if (!end) {
      out[n++] = line[i];
      continue;
    }
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(end - line - i - 1), line + i + 1);
    const struct config_option *o = config_find(key);
    if (!o || strcmp(o->key, key) != 0) {
      fprintf(stderr, "hakmemctl: @%s@ names no option\n", key);
      p->failed = true;
    }
    char name[80];
    upper_name(key, p->env, name, sizeof name);
    n += (size_t)snprintf(out + n, sizeof out - n, "%s", name);
    i = (size_t)(end - line);
  }
  fprintf(p->f, "%.*s\n", (int)n, out);
}

static void put_man(struct page *p, const char *text)
{
  flush_text(p);
  for (const char *s = text; *s;) {
    const char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    put_man_line(p, s, len);
    s += len + (nl != NULL);
  }
}

/* Under mode: each mode, what it is for, and the options it sets. */
static void put_modes(struct page *p)
{
  const struct config_option *mode = config_find("mode");
  fprintf(p->f, ".RS\n");
  for (int m = 0; m < HAK_MODE_COUNT; m++) {
    fprintf(p->f, ".TP\n.B %s\n", config_mode_words[m]);
    put_man(p, mode_docs[m].man);
    int sets = 0, total = 0;
    for (unsigned i = 0; i < config_option_count; i++)
      total += config_options[i].preset && config_options[i].mode_value[m] != config_options[i].def;
    for (unsigned i = 0; i < config_option_count; i++) {
      const struct config_option *o = &config_options[i];
      if (!o->preset || o->mode_value[m] == o->def)
        continue;
      if (!sets)
        put_text(p, "It sets");
      char name[80], v[80], word[200];
      upper_name(o->key, p->env, name, sizeof name);
      value_text(o, o->mode_value[m], v, sizeof v);
      snprintf(word, sizeof word, p->env ? "%s=%s" : "%s = %s", name, v);
      sets++;
      put_bold(p, word, sets == total ? "." : sets == total - 1 ? "" : ",");
      if (sets == total - 1)
        put_text(p, "and");
    }
    if (m == mode->def)
      put_text(p, "This is the default mode.");
    flush_text(p);
  }
  fprintf(p->f, ".RE\n");
}

int options_man(const char *page)
{
  struct page p = { .f = stdout };
  if (strcmp(page, "hakmem.3") == 0)
    p.env = true;
  else if (strcmp(page, "hakmem.conf.5") != 0) {
    fprintf(stderr, "hakmemctl: config --man: hakmem.3 or hakmem.conf.5, not '%s'\n", page);
    return 2;
  }
  if (!docs_match_table())
    return 1;
  for (int g = 0; g < GROUP_COUNT; g++) {
    fprintf(p.f, ".SS %s\n", group_titles[g]);
    for (unsigned i = 0; i < config_option_count; i++) {
      if (docs[i].group != (enum option_group)g)
        continue;
      char name[80];
      upper_name(config_options[i].key, p.env, name, sizeof name);
      fprintf(p.f, ".TP\n.B %s\n", name);
      put_type_and_default(&p, i);
      put_man(&p, docs[i].man);
      bool modes = config_options[i].value == &hak_config.mode;
      if (modes)
        put_modes(&p);
      if (!p.env) {
        if (modes)
          fprintf(p.f, ".IP\n");
        upper_name(config_options[i].key, true, name, sizeof name);
        put_text(&p, "Environment:");
        put_bold(&p, name, ".");
      }
      flush_text(&p);
    }
  }
  return p.failed || fflush(p.f) != 0 ? 1 : 0;
}

/* ---- the conf file ---- */

/* text as "# " comment lines of at most 72 columns, with a final period
 * and, for a sentence, a capital first letter. */
static void put_comment(const char *text, bool sentence)
{
  char buf[512];
  snprintf(buf, sizeof buf, "%s%s", text, text[strlen(text) - 1] == '.' ? "" : ".");
  if (sentence)
    buf[0] = (char)toupper((unsigned char)buf[0]);
  const char *s = buf;
  size_t width = 72 - 2;
  while (*s) {
    size_t n = strlen(s);
    if (n > width) {
      n = width;
      while (n && s[n] != ' ')
        n--;
      if (!n)
        n = strcspn(s, " ");
    }
    printf("# %.*s\n", (int)n, s);
    s += n;
    while (*s == ' ')
      s++;
  }
}

/* "off|auto|on; modes: fast auto" and the like, for the line above a key
 * (what the default means is the description's to say). */
static void sample_type_line(unsigned i)
{
  const struct config_option *o = &config_options[i];
  char buf[512], v[64];
  size_t n = 0;
  switch (o->type) {
  case CONFIG_BOOL: n = (size_t)snprintf(buf, sizeof buf, "Boolean"); break;
  case CONFIG_INT: n = (size_t)snprintf(buf, sizeof buf, "Integer, %d..%d", o->min, o->max); break;
  case CONFIG_SIZE_MB:
    n = (size_t)snprintf(buf, sizeof buf, "MiB (10, 10M, 10MiB, 1G), %d..%d", o->min, o->max);
    break;
  case CONFIG_ENUM:
    for (int w = 0; o->words[w]; w++)
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", w ? "|" : "", o->words[w]);
    break;
  case CONFIG_STRING:
    n = (size_t)snprintf(buf, sizeof buf, "%s, at most %u bytes", docs[i].noun, o->text_size - 1);
    break;
  }
  if (o->preset) {
    bool first = true;
    for (int m = 0; m < HAK_MODE_COUNT && n < sizeof buf; m++) {
      if (o->mode_value[m] == o->def)
        continue;
      config_int_format(o, o->mode_value[m], v, sizeof v);
      n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s %s", first ? "; modes: " : ", ",
                            config_mode_words[m], v);
      first = false;
    }
  }
  put_comment(buf, o->type != CONFIG_ENUM);
}

static const char sample_head[] =
  "# /etc/hakmem.conf: system-wide configuration of libhakmem, the malloc\n"
  "# used by programs linked with -lhakmem or run with it preloaded.\n"
  "# See hakmem.conf(5); `hakmemctl config --program NAME` shows the values a\n"
  "# program gets and where each comes from, `hakmemctl check FILE` validates.\n"
  "#\n"
  "# Format: `key = value` lines; `#` starts a comment.  Lines after a\n"
  "# `[pattern]` header apply only to programs whose name matches the glob\n"
  "# pattern (`[redis-server]`, `[python3*]`).  Precedence, lowest first:\n"
  "# built-in default, the mode's preset, the lines below, a matching\n"
  "# section, the HAKMEM_<KEY> environment variables (ignored in setuid\n"
  "# programs).  Every key is shown here with its built-in default, after a\n"
  "# line that gives its type and the value of each mode that sets it.\n"
  "# (`hakmemctl config --sample` writes this file.)\n";

static const char sample_tail[] =
  "\n"
  "# Example: a lean cache server, and huge pages for python3 and its\n"
  "# versioned names.\n"
  "#[redis-server]\n"
  "#ss_mem_lean = 1\n"
  "#[python3*]\n"
  "#thp = auto\n";

int options_sample(void)
{
  if (!docs_match_table())
    return 1;
  fputs(sample_head, stdout);
  for (int g = 0; g < GROUP_COUNT; g++) {
    printf("\n# ---- %s ----\n", group_titles[g]);
    for (unsigned i = 0; i < config_option_count; i++) {
      const struct config_option *o = &config_options[i];
      if (docs[i].group != (enum option_group)g)
        continue;
      printf("\n");
      put_comment(o->description, true);
      if (o->value == &hak_config.mode)
        for (int m = 0; m < HAK_MODE_COUNT; m++) {
          char line[160];
          snprintf(line, sizeof line, "%-9s %s", config_mode_words[m], mode_docs[m].help);
          printf("#   %s\n", line);
        }
      else
        sample_type_line(i);
      char v[64] = "";
      if (o->type != CONFIG_STRING)
        config_int_format(o, o->def, v, sizeof v);
      printf("#%s =%s%s\n", o->key, v[0] ? " " : "", v);
    }
  }
  fputs(sample_tail, stdout);
  return fflush(stdout) != 0 ? 1 : 0;
}
