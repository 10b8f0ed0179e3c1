# Tests of the public API, stress tests and real programs on hakmem.
# (The unit tests of the internals and the export, install and dlopen tests
# are in tests/unit.mk.)

# The public API, from one source built twice: through the hak_ names
# against the core library (also in the sanitizer build) and through the
# standard names against libhakmem.  -fno-builtin: the compiler must not
# fold or elide the allocation calls under test.
TEST_API_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) -fno-builtin
if HAVE_CHECK
check_PROGRAMS += tests/test_api_direct
TESTS += tests/test_api_direct
endif
tests_test_api_direct_SOURCES = tests/test_api.c
tests_test_api_direct_CPPFLAGS = $(AM_CPPFLAGS) -DHAK_TEST_DIRECT
tests_test_api_direct_CFLAGS = $(TEST_API_CFLAGS) $(SANITIZE_CFLAGS)
tests_test_api_direct_LDFLAGS = $(AM_LDFLAGS) $(SANITIZE_CFLAGS)
tests_test_api_direct_LDADD = $(CORE_TESTS_LIBS)

# Everything below replaces malloc (linked or preloaded), which cannot be
# combined with AddressSanitizer: normal build only.
if !SANITIZE
if HAVE_CHECK
check_PROGRAMS += tests/test_api tests/test_stress tests/test_misuse tests/test_purge_thread
TESTS += tests/test_api tests/test_stress tests/test_misuse tests/test_purge_thread
endif
check_PROGRAMS += tests/stress_small tests/valgrind_move tests/fuzz_heap tests/fuzz_heap_glibc
TESTS += tests/real_programs.sh tests/valgrind_stress.sh tests/fuzz_heap.sh
dist_check_SCRIPTS += tests/real_programs.sh tests/valgrind_stress.sh tests/fuzz_heap.sh
check_PROGRAMS += tests/stats_daemon tests/monitor_glibc
TESTS += tests/monitor_live.sh tests/monitor_reports.sh tests/monitor_compat.sh
dist_check_SCRIPTS += tests/monitor_live.sh tests/monitor_reports.sh tests/monitor_compat.sh
# hakmemctl stats --pid --watch across an execve and on a zombie.
TESTS += tests/hakmemctl_watch.sh
dist_check_SCRIPTS += tests/hakmemctl_watch.sh
check_PROGRAMS += tests/prof_sites tests/prof_stash
TESTS += tests/prof_sites.sh tests/prof_stash.sh
dist_check_SCRIPTS += tests/prof_sites.sh tests/prof_stash.sh
check_PROGRAMS += tests/fork_stress
TESTS += tests/fork_stress.sh
dist_check_SCRIPTS += tests/fork_stress.sh
endif

# Monitoring: a daemon read from outside by hakmemctl stats --pid and top
# (tests/monitor_live.sh), blocks of other library versions
# (tests/monitor_compat.sh, which builds tests/monitor_compat_lib.c with
# $CC), and glibc's introspection calls (malloc_info, mallopt) with the
# reports at exit (tests/monitor_reports.sh).  These, like the
# profiler's tests, source tests/lib.sh (scratch directory, a clean
# HAKMEM_* environment, waiting for the process).
# -no-install: the real executable, so that its pid is the program's.
EXTRA_DIST += tests/monitor_compat_lib.c tests/lib.sh
tests_stats_daemon_SOURCES = tests/stats_daemon.c
tests_stats_daemon_CFLAGS = $(AM_CFLAGS) -fno-builtin
tests_stats_daemon_LDFLAGS = $(AM_LDFLAGS) -no-install
tests_stats_daemon_LDADD = src/libhakmem.la
tests_monitor_glibc_SOURCES = tests/monitor_glibc.c
tests_monitor_glibc_CFLAGS = $(AM_CFLAGS) -fno-builtin
tests_monitor_glibc_LDFLAGS = $(AM_LDFLAGS) -no-install
tests_monitor_glibc_LDADD = src/libhakmem.la

# The heap profiler's subject (tests/prof_sites.sh): a plain program, run
# with the library preloaded; its symbols are what google-pprof names.
tests_prof_sites_SOURCES = tests/prof_sites.c
# No _FORTIFY_SOURCE (distributions build with it): its inline memset
# would be the leaf that google-pprof names instead of the two sites.
tests_prof_sites_CFLAGS = $(AM_CFLAGS) -fno-builtin -U_FORTIFY_SOURCE
# The profiler's stash of sampled slots (tests/prof_stash.sh).
tests_prof_stash_SOURCES = tests/prof_stash.c
tests_prof_stash_CFLAGS = $(AM_CFLAGS) -fno-builtin

tests_test_api_SOURCES = tests/test_api.c
tests_test_api_CFLAGS = $(TEST_API_CFLAGS)
tests_test_api_LDADD = src/libhakmem.la $(CHECK_LIBS)

# Threads handing blocks to each other, thread churn, fork from a
# multithreaded program, out of memory under RLIMIT_AS.
tests_test_stress_SOURCES = tests/test_stress.c
tests_test_stress_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) -fno-builtin
tests_test_stress_LDADD = src/libhakmem.la $(CHECK_LIBS)

# The purge thread against unshare and setns, which the kernel grants only
# to a single-threaded process, and against glibc's stack-cache lock.
tests_test_purge_thread_SOURCES = tests/test_purge_thread.c
tests_test_purge_thread_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_test_purge_thread_LDADD = src/libhakmem.la $(CHECK_LIBS)

# Misuse (double, invalid and cross-thread frees, use after free, poisoned
# free lists, forged large headers): each case in a child that must abort
# with one "hakmem: " line.
tests_test_misuse_SOURCES = tests/test_misuse.c
tests_test_misuse_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) -fno-builtin
tests_test_misuse_LDADD = src/libhakmem.la $(CHECK_LIBS)

# The program tests/valgrind_stress.sh runs under memcheck.  -no-install:
# libtool links the real executable (no wrapper script), with a run path to
# the uninstalled library, so valgrind sees the program itself.
tests_stress_small_SOURCES = tests/stress_small.c
tests_stress_small_CFLAGS = $(AM_CFLAGS) -fno-builtin
tests_stress_small_LDFLAGS = $(AM_LDFLAGS) -no-install
tests_stress_small_LDADD = src/libhakmem.la
# Its second program: the OS layer's growing page moves in the layouts
# memcheck once got wrong (core-linked: no malloc replacement).
tests_valgrind_move_SOURCES = tests/valgrind_move.c
tests_valgrind_move_CFLAGS = $(AM_CFLAGS)
tests_valgrind_move_LDFLAGS = $(AM_LDFLAGS) -no-install
tests_valgrind_move_LDADD = src/libhakmem_core.la

# The differential heap fuzzer: one source, on libhakmem and on glibc (the
# second shows the harness is right).  'make check' runs a few seeds
# (tests/fuzz_heap.sh); 'make fuzz' runs seeds for FUZZ_SECONDS.
FUZZ_CFLAGS = $(AM_CFLAGS) -fno-builtin
tests_fuzz_heap_SOURCES = tests/fuzz_heap.c tests/proc_maps.h
tests_fuzz_heap_CFLAGS = $(FUZZ_CFLAGS)
tests_fuzz_heap_LDADD = src/libhakmem.la
tests_fuzz_heap_glibc_SOURCES = tests/fuzz_heap.c tests/proc_maps.h
tests_fuzz_heap_glibc_CFLAGS = $(FUZZ_CFLAGS) -DFUZZ_GLIBC

FUZZ_SECONDS = 600
fuzz: tests/fuzz_heap$(EXEEXT) tests/fuzz_heap_glibc$(EXEEXT)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(SHELL) $(srcdir)/tests/fuzz_heap.sh --long
.PHONY: fuzz

# Forks from a multithreaded program while its threads allocate, the
# library preloaded (tests/fork_stress.sh); 'make fork-stress' runs seeds
# and modes for FORK_SECONDS.  A plain program: it finds hakmem_check_heap
# with dlsym, so it runs on any build of the library (HAKMEM_LIB).
tests_fork_stress_SOURCES = tests/fork_stress.c
tests_fork_stress_CFLAGS = $(AM_CFLAGS) -fno-builtin

FORK_SECONDS = 600
fork-stress: tests/fork_stress$(EXEEXT)
	srcdir=$(srcdir) FORK_SECONDS=$(FORK_SECONDS) $(SHELL) $(srcdir)/tests/fork_stress.sh --long
.PHONY: fork-stress
