/* Configuration: one table of options, read once at initialisation from
 * the HAKMEM_* environment variables.  Values are final after hak_init();
 * layers read them without locking.  The parser never allocates and never
 * uses stdio: it runs inside the first malloc.  In secure execution
 * (AT_SECURE: setuid, setgid, file capabilities) the environment is
 * ignored and the built-in defaults stand. */
#ifndef HAKMEM_CONFIG_H
#define HAKMEM_CONFIG_H

#include "hakmem_internal.h"

enum hak_mode { HAK_MODE_MINIMAL, HAK_MODE_FAST, HAK_MODE_BALANCED, HAK_MODE_RESEARCH };
enum hak_thp { HAK_THP_OFF, HAK_THP_AUTO, HAK_THP_ON };
enum hak_decommit { HAK_DECOMMIT_FREE, HAK_DECOMMIT_DONTNEED, HAK_DECOMMIT_OFF };

/* The effective configuration.  Each field is one option of the table in
 * config.c (key = field name). */
struct hak_config {
  int mode;                  /* enum hak_mode: the preset the other values start from */
  int stats;                 /* full statistics report at exit */
  int ss_os_stats;           /* report the OS call counters at exit */
  int shared_pool_stage_stats; /* report the shared-pool stage counters at exit */
  int ss_stats_dump;         /* report per-class and SuperSlab lines at exit */
  char stats_file[256];      /* reports go here (appended) instead of stderr; "" = stderr */
  int check;                 /* validate every free */
  int verbose;               /* print the effective configuration at start-up */
  int quiet;                 /* silence warnings (bad options, OS failures) */
  int bigcache;              /* keep recently freed large mappings for reuse */
  int batch_madvise;         /* decommit freed large blocks in batches */
  int ss_empty_reuse;        /* shared pool stage 1: reuse EMPTY slabs of a class */
  int ss_empty_scan_limit;   /* slabs of its ring a thread scans before asking the pool */
  int superslab_lg;          /* log2 of the SuperSlab size */
  int prewarm;               /* map and fault in a SuperSlab at start-up */
  int purge_delay_ms;        /* decommit SuperSlabs empty this long; -1 = never */
  int ss_mem_lean;           /* memory-lean mode */
  int ss_mem_lean_target_mb; /* lean: bound on retained-but-unused memory */
  int ss_mem_lean_decommit;  /* enum hak_decommit: how lean mode decommits */
  int thp;                   /* enum hak_thp: transparent huge pages per mapping */
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
