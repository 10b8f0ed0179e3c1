/* hakmemctl's monitoring commands, which read running processes from
 * outside (see hakmemctl_monitor.c): stats --pid and top.  Each takes the
 * arguments after its command name and returns the exit status. */
#ifndef HAKMEMCTL_MONITOR_H
#define HAKMEMCTL_MONITOR_H

#include <stdbool.h>

/* Whether the arguments of "stats" ask for a running process (--pid)
 * rather than a command to run. */
bool monitor_stats_wanted(int argc, char **argv);
int monitor_stats(int argc, char **argv);
int monitor_top(int argc, char **argv);

#endif
