/* The heap profiler's stack walk: the return addresses of the calling
 * thread's stack, by the DWARF call-frame information (.eh_frame) that
 * libgcc's unwinder reads too, with each code address's rule cached.
 *
 * backtrace(3) costs some 1.5k instructions a frame, because libgcc finds
 * and interprets the frame's CFI program for every frame of every call.
 * Here each return address is looked up once: its rule (where the
 * caller's stack pointer, return address and frame pointer are, relative
 * to the stack or frame pointer) is computed from the CFI the first time
 * and then read from a table, so that a frame costs a few loads.  Only
 * x86-64 frames whose rules are of that plain kind are walked; a frame
 * described otherwise (a signal frame, a DWARF expression, a realigned
 * stack) makes the walk give up, and the caller uses backtrace(3), which
 * handles everything.  The frame-pointer chain is never trusted: code
 * built without frame pointers uses rbp as it likes.
 *
 * Concurrency: the rule table is read without a lock (a slot's key is
 * published after its rule, with release order); a thread that computed a
 * rule inserts it if it gets the table's flag at once, and otherwise
 * simply does not keep it, so no thread ever waits here and fork cannot
 * leave a lock held.  Nothing here allocates. */
#ifndef HAKMEM_PROF_UNWIND_H
#define HAKMEM_PROF_UNWIND_H

#include "hakmem_internal.h"

/* Once malloc works (it loads libgcc_s and maps the rule table): whether
 * the walk is available.  False: prof_unwind always returns -1. */
bool prof_unwind_start(void);

/* Up to max return addresses of the caller's stack, the caller's own
 * return address first, as backtrace(3) gives them after its own frame;
 * -1 if a frame's rule is not one this walk follows (use backtrace). */
int prof_unwind(void **frames, int max);

/* After fork, in the child: the table's flag may have been held. */
void prof_unwind_postfork_child(void);

#endif
