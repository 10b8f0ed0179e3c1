/* Configuration: one table of options, read once at initialisation from,
 * lowest precedence first, the built-in defaults, the mode's presets, the
 * global lines of the conf file, the conf file's [program] sections that
 * match the program, and the HAKMEM_* environment variables.  Values are
 * final after hak_init(); layers read them without locking.  The loader
 * never allocates and never uses stdio or the locale: it runs inside the
 * first malloc, single-threaded (init holds every other thread back), and
 * keeps its state in static buffers.  In secure execution (AT_SECURE:
 * setuid, setgid, file capabilities) the environment is ignored, the conf
 * file is read only if root owns it and only root can write it or any
 * directory on its path, sections are matched against the executable's
 * name only (argv[0] is the caller's), stats_file and learn_state_file
 * are never opened, and heap profiling (prof) is off. */
#ifndef HAKMEM_CONFIG_H
#define HAKMEM_CONFIG_H

#include "hakmem_internal.h"

/* The modes, from src/options.def: HAK_MODE_MINIMAL, ... */
enum hak_mode {
#define CONFIG_MODE(NAME, word, help, man) HAK_MODE_##NAME,
#include "options.def"
  HAK_MODE_COUNT
};
/* The modes' names, indexed by enum hak_mode, NULL-terminated. */
extern const char *const config_mode_words[];
enum hak_evo_policy { HAK_EVO_FROZEN, HAK_EVO_LEARN, HAK_EVO_CANARY };
enum hak_thp { HAK_THP_OFF, HAK_THP_AUTO, HAK_THP_ON };
enum hak_decommit { HAK_DECOMMIT_FREE, HAK_DECOMMIT_DONTNEED, HAK_DECOMMIT_OFF };
enum hak_stats_format { HAK_STATS_TEXT, HAK_STATS_JSON };
/* all: every process whose options ask for a report prints one; top: a
 * process whose parent's environment holds the same HAKMEM_STATS_SCOPE=top
 * entry (it inherited the request) prints none, so only the first process
 * of a tree does. */
enum hak_stats_scope { HAK_STATS_SCOPE_ALL, HAK_STATS_SCOPE_TOP };

/* The effective configuration: one field per row of src/options.def, in
 * its order (an int, or a char array for a string option); the rows say
 * what each means. */
struct hak_config {
#define CONFIG_OPTION(key, type, min, max, words, def, modes, group, def_note, help, man) int key;
#define CONFIG_STRING(key, size, group, noun, def_note, help, man) char key[size];
#include "options.def"
};
extern HAK_HIDDEN struct hak_config hak_config;

/* True when the configuration was loaded under secure execution: the
 * stats report then never opens stats_file (config also leaves it ""). */
extern HAK_HIDDEN bool config_secure;

enum config_type {
  CONFIG_BOOL,     /* 0/1/yes/no/true/false/on/off */
  CONFIG_INT,      /* decimal integer in [min, max] */
  CONFIG_SIZE_MB,  /* MiB in [min, max]: 10, 10M, 10MiB, 1G, 1GiB */
  CONFIG_ENUM,     /* one of words[], case-insensitive; the value is its index */
  CONFIG_STRING,   /* text of at most text_size - 1 bytes */
};

/* One row of the option table (config_options[], made from src/options.def). */
struct config_option {
  const char *key;          /* conf key; the variable is HAKMEM_ + upper(key) */
  enum config_type type;
  int min, max;             /* range for CONFIG_INT and CONFIG_SIZE_MB */
  int def;                  /* built-in default (CONFIG_STRING: always "") */
  bool preset;              /* the mode sets this option ... */
  int mode_value[HAK_MODE_COUNT]; /* ... to this value, indexed by enum hak_mode */
  const char *const *words; /* CONFIG_ENUM: names of the values, NULL-terminated */
  int *value;               /* the hak_config field (NULL for CONFIG_STRING) */
  char *text;               /* CONFIG_STRING: the hak_config field ... */
  unsigned text_size;       /* ... and its size */
  const char *description;  /* one line, for hakmemctl and the man pages */
};

extern const struct config_option config_options[];
extern const unsigned config_option_count;

/* Where an option's value came from. */
enum config_origin {
  CONFIG_FROM_DEFAULT, CONFIG_FROM_MODE, CONFIG_FROM_FILE, CONFIG_FROM_SECTION,
  CONFIG_FROM_ENV, CONFIG_FROM_SECURE,
};
struct config_source {
  enum config_origin origin;
  unsigned line;            /* CONFIG_FROM_FILE / CONFIG_FROM_SECTION */
};
#define CONFIG_OPTION_MAX 48
extern struct config_source config_sources[CONFIG_OPTION_MAX];
/* CONFIG_FROM_SECTION: the section's pattern (cut), written only for a
 * value from a section, so that the pages of a process without one stay
 * untouched (doc/internals.md, "The library's own memory"). */
#define CONFIG_SECTION_MAX 64
extern char config_source_sections[CONFIG_OPTION_MAX][CONFIG_SECTION_MAX];

/* Limits of the conf file and of the warnings shown on stderr. */
#define CONFIG_FILE_MAX     65536   /* bytes; the lines after it are ignored */
#define CONFIG_LINE_MAX     1024    /* bytes per line, without the line end */
#define CONFIG_MAX_WARNINGS 10      /* then one summary line */

/* What to load.  Zero-initialised, it is what the library does except for
 * the program names (see program). */
struct config_request {
  const char *conf_path;    /* NULL: HAKMEM_CONF (not in secure execution),
                               else SYSCONFDIR "/hakmem.conf", which may be absent */
  const char *program;      /* sections are matched against this name; NULL: the
                               running program's /proc/self/exe basename and
                               program_invocation_short_name (either may match;
                               only the first if secure) */
  char *const *envp;        /* "NAME=value" strings, NULL-terminated; NULL: none */
  bool secure;              /* apply the secure-execution rules */
  /* Receives each warning ("file:line: message", no prefix) as it is found.
   * NULL: the first CONFIG_MAX_WARNINGS go to hak_warn() after loading,
   * then a summary line, and none if quiet is set by any source. */
  void (*warn)(void *ctx, const char *msg);
  void *warn_ctx;
};

/* Loads hak_config and config_sources as the request says; returns the
 * number of warnings (problems found).  Never allocates. */
unsigned config_load_from(const struct config_request *rq);
/* The same, with the conf file's contents given in buf (len bytes, not
 * NUL-terminated, not modified); rq->conf_path names it in warnings. */
unsigned config_load_buffer(const struct config_request *rq, const char *buf, size_t len);

/* What init calls: envp is environ, secure is getauxval(AT_SECURE). */
void config_load(char *const *envp, bool secure);
/* The name the program was invoked as (argv[0]'s basename) when init
 * loaded the options, whatever the program wrote over its argv since; ""
 * if unknown.  What reports, the learned state and profiles call it. */
const char *config_program_name(void);

/* The option whose key is key (case-insensitive) or whose variable is
 * HAKMEM_KEY; NULL if none. */
const struct config_option *config_find(const char *key);
const struct config_option *config_find_env(const char *name, size_t len);
/* Parses s for option o into *out (CONFIG_STRING: only checks the length).
 * Returns NULL if valid, else the reason ("expected off|auto|on"), written
 * to why (size bytes). */
const char *config_parse_value(const struct config_option *o, const char *s, int *out,
                               char *why, size_t size);
/* Writes option i's current value or its source ("default", "mode fast",
 * "/etc/hakmem.conf:3", "/etc/hakmem.conf:[redis-server]:12",
 * "env HAKMEM_THP") into buf, NUL-terminated. */
void config_value_format(unsigned i, char *buf, size_t size);
void config_source_format(unsigned i, char *buf, size_t size);
/* The value v of option o as a word: "on", "FREE", "10" (o not a string). */
void config_int_format(const struct config_option *o, int v, char *buf, size_t size);
/* The conf file the last load read (or tried to); "" if none. */
const char *config_conf_path(void);

/* Parses a boolean word; returns false if s is not one. */
bool config_parse_bool(const char *s, int *out);
/* Parses a decimal integer in [min, max]; returns false otherwise. */
bool config_parse_int(const char *s, int min, int max, int *out);
/* Parses a size in MiB (10, 10M, 10MiB, 1G, 1GiB) in [min, max]. */
bool config_parse_size_mb(const char *s, int min, int max, int *out);
/* Matches name against a glob: *, ?, [set], [!set], ranges, \ escapes,
 * as fnmatch(pattern, name, 0). */
bool config_glob_match(const char *pattern, const char *name);

#endif
