/* The heap profiler's stack walk: the return addresses of the calling
 * thread's stack, by the DWARF call-frame information (.eh_frame) that
 * libgcc's unwinder reads too, with each code address's rule cached.
 *
 * backtrace(3) costs some 1.5k instructions a frame, because libgcc finds
 * and interprets the frame's CFI program for every frame of every call.
 * Here each return address is looked up once: its FDE is found by the
 * binary search of its object's .eh_frame_hdr table (dl_iterate_phdr,
 * as libgcc's _Unwind_Find_FDE does), its rule (where the caller's stack
 * pointer, return address and frame pointer are, relative to the stack
 * or frame pointer) is computed from the CFI the first time and then
 * read from a table, so that a frame costs a few loads.  x86-64 frames
 * whose rules are of that plain kind are walked, and the kernel's signal
 * frame, whose registers are read from its ucontext; a frame described
 * otherwise (a DWARF expression, a frame realigned through a DRAP
 * register, an object without the search table) makes the walk give up,
 * and the caller uses backtrace(3), which handles everything.  So
 * libgcc_s is not needed: backtrace(3) loads it at its first call, and
 * only a stack the walk cannot follow gets there.  The frame-pointer
 * chain is never trusted: code built without frame pointers uses rbp as
 * it likes.
 *
 * Concurrency: the rule table is read without a lock (a slot's key is
 * published after its rule, with release order); a thread that computed a
 * rule inserts it if it gets the table's flag at once, and otherwise
 * simply does not keep it, so no thread ever waits here and fork cannot
 * leave a lock held.  dl_iterate_phdr takes the loader's lock for a rule
 * not yet in the table, as libgcc does for every frame.  Nothing here
 * allocates. */
#ifndef HAKMEM_PROF_UNWIND_H
#define HAKMEM_PROF_UNWIND_H

#include "hakmem_internal.h"

/* At the profiler's start (maps the rule table; loads nothing): whether
 * the walk is available.  False: prof_unwind always returns -1. */
bool prof_unwind_start(void);

/* Up to max return addresses of the caller's stack, the caller's own
 * return address first, as backtrace(3) gives them after its own frame;
 * -1 if a frame's rule is not one this walk follows (use backtrace). */
int prof_unwind(void **frames, int max);

/* A frame to start a walk from: the caller of a function of hakmem, as
 * it is once that call returns (its return address, the stack pointer
 * above the call's return address, and its rbp). */
struct prof_frame {
  uintptr_t ip, sp, bp;
};

/* As prof_unwind, from the frame from instead of the caller's own, its
 * return address first: the frames between are not walked.  *repeated
 * is set when the frames are those of the thread's previous call (the
 * same frame, and the same words on the stack above it), which the walk
 * then replays from its memo instead of looking each frame's rule up. */
int prof_unwind_from(const struct prof_frame *from, void **frames, int max, bool *repeated);

/* After fork, in the child: the table's flag may have been held. */
void prof_unwind_postfork_child(void);

#endif
