# Unit tests of the allocator's layers (internal interfaces, linked against
# the core library; also built with sanitizers by check-sanitizers).  The
# CORE_TESTS_* variables serve every Check program linked that way (config.mk
# too); tests/test_util.h holds what their programs share.
CORE_TESTS_CC_FLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(SANITIZE_CFLAGS)
CORE_TESTS_LINK_FLAGS = $(SANITIZE_CFLAGS)
CORE_TESTS_LIBS = src/libhakmem_core.la $(CHECK_LIBS)
EXTRA_DIST += tests/test_util.h tests/hello_hakmem.c

if HAVE_CHECK
check_PROGRAMS += tests/test_unit
TESTS += tests/test_unit
endif
tests_test_unit_SOURCES = tests/test_unit.c
tests_test_unit_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_unit_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_unit_LDADD = $(CORE_TESTS_LIBS)

# Integration: what the built and installed library looks like from outside.
if !SANITIZE
TESTS += tests/exports.sh tests/install.sh
dist_check_SCRIPTS += tests/exports.sh tests/install.sh
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
