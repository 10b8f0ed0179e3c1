/* Configuration: one table of options, read once at initialisation from
 * the HAKMEM_* environment variables.  Values are final after hak_init();
 * layers read them without locking.  The parser never allocates and never
 * uses stdio: it runs inside the first malloc.  In secure execution
 * (AT_SECURE: setuid, setgid, file capabilities) the environment is
 * ignored and the built-in defaults stand. */
#ifndef HAKMEM_CONFIG_H
#define HAKMEM_CONFIG_H

#include "hakmem_internal.h"

struct hak_config {
  int stats;           /* print the statistics report at exit */
  int check;           /* validate every free */
  int bigcache;        /* keep recently freed large mappings for reuse */
  int ss_empty_reuse;  /* shared pool stage 1: reuse EMPTY slabs of a class */
  int superslab_lg;    /* log2 of the SuperSlab size */
};
extern struct hak_config hak_config;

enum config_type { CONFIG_BOOL, CONFIG_INT };

struct config_option {
  const char *key;          /* conf key; the variable is HAKMEM_ + upper(key) */
  enum config_type type;
  int min, max;             /* range for CONFIG_INT */
  int def;                  /* built-in default */
  int *value;
  const char *description;
};

extern const struct config_option config_options[];
extern const unsigned config_option_count;

/* Reads the environment (envp: NULL-terminated "NAME=value" strings) into
 * hak_config, warning on stderr about bad values and unknown HAKMEM_*
 * names.  secure: ignore the environment entirely. */
void config_load(char *const *envp, bool secure);

/* Parses a boolean word; returns false if s is not one. */
bool config_parse_bool(const char *s, int *out);
/* Parses a decimal integer in [min, max]; returns false otherwise. */
bool config_parse_int(const char *s, int min, int max, int *out);

#endif
