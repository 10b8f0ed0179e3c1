/* hakmemctl config --man and --sample: the option sections of the man
 * pages and the commented conf file, written from the option table
 * (src/options.def).  Used at build time to make man/hakmem.3,
 * man/hakmem.conf.5 and etc/hakmem.conf (tests/options_generated.sh);
 * --sample is also for administrators.  Each returns an exit status. */
#ifndef HAKMEMCTL_OPTIONS_H
#define HAKMEMCTL_OPTIONS_H

/* The option entries of hakmem.3 (ENVIRONMENT) or hakmem.conf.5
 * (OPTIONS), in roff, on stdout; page is "hakmem.3" or "hakmem.conf.5". */
int options_man(const char *page);
/* The commented conf file, every key at its built-in default. */
int options_sample(void);

#endif
