/* The configuration's text handling, shared by the loader (config.c) and
 * the parsers (config_parse.c); internal to the config layer.  Every
 * function here works only on its arguments and reads the option table,
 * which is constant: no global state, no stdio, no allocation, no locale,
 * so it is safe inside the first malloc and from any thread.  The value
 * parsers, config_find*, config_int_format and config_glob_match are
 * declared in config.h, for hakmemctl and the tests. */
#ifndef HAKMEM_CONFIG_PARSE_H
#define HAKMEM_CONFIG_PARSE_H

#include "config.h"

/* A message built in place, without stdio: appends stop at the end of s,
 * which is always NUL-terminated.  Start it as { .n = 0 }. */
struct config_msg {
  char s[256];
  size_t n;
};

/* Appends s; the decimal v; at most max bytes of s with unprintable bytes
 * shown as '?' (and "..." if s was cut). */
void config_msg_str(struct config_msg *m, const char *s);
void config_msg_int(struct config_msg *m, long v);
void config_msg_text(struct config_msg *m, const char *s, size_t max);

/* Copies src into dst (size bytes), cut and NUL-terminated. */
void config_copy_str(char *dst, size_t size, const char *src);
/* ASCII only, whatever the locale. */
char config_lower(char c);
/* A space or a tab. */
bool config_is_space(char c);
/* Trims spaces and tabs in place; returns the new start. */
char *config_trim(char *s);

/* The key closest to word if it is close enough to be a typo (at most two
 * edits, one per three letters), else NULL. */
const char *config_closest_key(const char *word);
/* The same among words (NULL-terminated): the value a misspelled enum or
 * boolean value was probably meant to be. */
const char *config_closest_word(const char *word, const char *const *words);

#endif
