/* Purge: the background thread that gives the pages of memory hakmem holds
 * free back to the OS after purge_delay_ms, so that a program that stopped
 * calling malloc shrinks too (jemalloc's background_thread plays the same
 * part).
 *
 * The thread exists only while something is waiting to be purged: the
 * first free that leaves purgeable memory starts it (after every lock is
 * released), it wakes four times per purge period (purge_delay_ms held
 * between 10 ms and 1 s; at most every 10 ms), purges BigCache once per
 * period, and exits when nothing purgeable is left.  It is never started when
 * purge_delay_ms is -1 (modes minimal and fast).  After fork the child has
 * no purge thread; the next purgeable free starts one. */
#ifndef HAKMEM_PURGE_H
#define HAKMEM_PURGE_H

#include "hakmem_internal.h"

/* Starts the purge thread if memory waits to be purged and none runs. */
void purge_kick(void);
/* Fork: the child has no purge thread. */
void purge_postfork_child(void);

#endif
