/* hakmemctl profile: heap profiles of a program run under hakmem, or of a
 * running process asked through its hakmem_prof_control block; see
 * hakmemctl_profile.c and hakmemctl(1).  Single-threaded, like the rest
 * of hakmemctl. */
#ifndef HAKMEMCTL_PROFILE_H
#define HAKMEMCTL_PROFILE_H

/* argv: the arguments after "profile"; returns the exit status. */
int hakmemctl_profile(int argc, char **argv);

#endif
