# Unit tests of the allocator's layers, one program per layer (internal
# interfaces, linked against the core library; also built with sanitizers
# by check-sanitizers).  The CORE_TESTS_* variables serve every Check
# program linked that way (config.mk too); tests/test_util.h holds what
# their programs share, tests/core_util.h what the core-linked ones share
# beyond it.
CORE_TESTS_CC_FLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(SANITIZE_CFLAGS)
CORE_TESTS_LINK_FLAGS = $(AM_LDFLAGS) $(SANITIZE_CFLAGS)
CORE_TESTS_LIBS = src/libhakmem_core.la $(CHECK_LIBS)
EXTRA_DIST += tests/test_util.h tests/core_util.h tests/hello_hakmem.c

# The layers of src/: includes and the library's object files' references
# go only downward (the order and the kept cycles are in the script).
TESTS += tests/layering.sh
dist_check_SCRIPTS += tests/layering.sh

UNIT_TESTS = tests/test_size_class tests/test_slab tests/test_superslab tests/test_pool \
	tests/test_alloc tests/test_checkmode tests/test_os tests/test_thp tests/test_config_parse
if HAVE_CHECK
check_PROGRAMS += $(UNIT_TESTS)
TESTS += $(UNIT_TESTS)
endif
# Size classes: table, smallest fit, aligned classes.
tests_test_size_class_SOURCES = tests/test_size_class.c
tests_test_size_class_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_size_class_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_size_class_LDADD = $(CORE_TESTS_LIBS)
# Slabs: carving, remote stack, block index, list end, encoded links.
tests_test_slab_SOURCES = tests/test_slab.c
tests_test_slab_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_slab_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_slab_LDADD = $(CORE_TESTS_LIBS)
# SuperSlabs: the address registry.
tests_test_superslab_SOURCES = tests/test_superslab.c
tests_test_superslab_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_superslab_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_superslab_LDADD = $(CORE_TESTS_LIBS)
# Thread cache and shared pool: the stages, adoption, remote frees.
tests_test_pool_SOURCES = tests/test_pool.c
tests_test_pool_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_pool_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_pool_LDADD = $(CORE_TESTS_LIBS)
# Front door and checked mode: bad frees abort, check = 1.
tests_test_alloc_SOURCES = tests/test_alloc.c
tests_test_alloc_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_alloc_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_alloc_LDADD = $(CORE_TESTS_LIBS)
# check = 1's byte loops at every vector width the CPU has.
tests_test_checkmode_SOURCES = tests/test_checkmode.c
tests_test_checkmode_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_checkmode_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_checkmode_LDADD = $(CORE_TESTS_LIBS)
# OS layer: the ownership guard, decommit failing with ENOMEM.  madvise is
# wrapped at link time (the test's __wrap_madvise makes it fail), so that
# the library needs no test hook.
tests_test_os_SOURCES = tests/test_os.c
tests_test_os_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_os_LDFLAGS = $(CORE_TESTS_LINK_FLAGS) -Wl,--wrap=madvise,--wrap=mmap
tests_test_os_LDADD = $(CORE_TESTS_LIBS)
# Transparent huge page advice (skipped, 77, without THP).
tests_test_thp_SOURCES = tests/test_thp.c
tests_test_thp_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_thp_LDFLAGS = $(CORE_TESTS_LINK_FLAGS) -Wl,--wrap=madvise
tests_test_thp_LDADD = $(CORE_TESTS_LIBS)
# The option value parsers and the environment as init reads it.
tests_test_config_parse_SOURCES = tests/test_config_parse.c
tests_test_config_parse_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_config_parse_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_config_parse_LDADD = $(CORE_TESTS_LIBS)

# What a program that takes hakmem as the system's malloc may do: small
# thread stacks, signal handlers, destructors, fork, thousands of threads,
# exit while allocating, aligned edges, glibc's extensions.  It replaces
# malloc: normal build only.
if !SANITIZE
if HAVE_CHECK
check_PROGRAMS += tests/test_hostile
TESTS += tests/test_hostile
endif
endif
tests_test_hostile_SOURCES = tests/test_hostile.c
tests_test_hostile_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) -fno-builtin
tests_test_hostile_LDADD = src/libhakmem.la $(CHECK_LIBS)

# Integration: what the built and installed library looks like from outside.
if !SANITIZE
TESTS += tests/exports.sh tests/install.sh tests/footprint.sh
dist_check_SCRIPTS += tests/exports.sh tests/install.sh tests/footprint.sh
# Run by footprint.sh, with and without hakmem preloaded.
check_PROGRAMS += tests/footprint_probe
if HAVE_CHECK
check_PROGRAMS += tests/test_dlopen
check_LTLIBRARIES = tests/libdlopen_lib.la
TESTS += tests/test_dlopen
endif
endif
tests_test_dlopen_SOURCES = tests/test_dlopen.c
tests_test_dlopen_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
tests_test_dlopen_LDADD = src/libhakmem.la $(CHECK_LIBS) -ldl
tests_libdlopen_lib_la_SOURCES = tests/dlopen_lib.c
tests_libdlopen_lib_la_LDFLAGS = -module -avoid-version -rpath /nowhere
AM_TESTS_ENVIRONMENT = DLOPEN_LIB=$(abs_top_builddir)/tests/.libs/libdlopen_lib.so; export DLOPEN_LIB; MAKE='$(MAKE)'; export MAKE; CC='$(CC)'; export CC;

# Learning mode: rating, phases, epoch accounting, state file (core-linked).
if HAVE_CHECK
check_PROGRAMS += tests/test_learn
TESTS += tests/test_learn
endif
tests_test_learn_SOURCES = tests/test_learn.c
tests_test_learn_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_learn_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_learn_LDADD = $(CORE_TESTS_LIBS)

# Memory lifecycle: release policy, purge, OS guard, THP (core-linked).
if HAVE_CHECK
check_PROGRAMS += tests/test_lifecycle
TESTS += tests/test_lifecycle
endif
tests_test_lifecycle_SOURCES = tests/test_lifecycle.c
tests_test_lifecycle_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_lifecycle_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_lifecycle_LDADD = $(CORE_TESTS_LIBS)

# The heap profiler's stack walk against backtrace(3): calls, recursion,
# a realigned frame, a signal frame, a walk from the caller's frame.
if HAVE_CHECK
check_PROGRAMS += tests/test_prof_unwind
TESTS += tests/test_prof_unwind
endif
tests_test_prof_unwind_SOURCES = tests/test_prof_unwind.c
tests_test_prof_unwind_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_prof_unwind_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_prof_unwind_LDADD = $(CORE_TESTS_LIBS)

# Large blocks and the OS layer: header/mapping/registry invariant, guard
# pages, sealed headers, huge requests, placement randomisation, errno.
if HAVE_CHECK
check_PROGRAMS += tests/test_large
TESTS += tests/test_large
endif
tests_test_large_SOURCES = tests/test_large.c
tests_test_large_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_large_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_large_LDADD = $(CORE_TESTS_LIBS)

# Out of memory under RLIMIT_AS: refusals change nothing, a retried
# success keeps errno, the C corner cases with no memory left, memory
# coming back once the limit is lifted (core-linked).
if HAVE_CHECK
check_PROGRAMS += tests/test_oom
TESTS += tests/test_oom
endif
tests_test_oom_SOURCES = tests/test_oom.c
tests_test_oom_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_oom_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_oom_LDADD = $(CORE_TESTS_LIBS)

# The mapping-count limit: a few dozen VMAs short of vm.max_map_count,
# every large block and new SuperSlab is granted and keeps its bytes, as
# with the C library's malloc (core-linked, so that both run).
if HAVE_CHECK
check_PROGRAMS += tests/test_maplimit
TESTS += tests/test_maplimit
endif
tests_test_maplimit_SOURCES = tests/test_maplimit.c tests/proc_maps.h
tests_test_maplimit_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_maplimit_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_maplimit_LDADD = $(CORE_TESTS_LIBS)
