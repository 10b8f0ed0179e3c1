# Unit tests of the allocator's layers (internal interfaces, linked against
# the core library; also built with sanitizers by check-sanitizers).
if HAVE_CHECK
check_PROGRAMS += tests/test_unit
TESTS += tests/test_unit
endif
tests_test_unit_SOURCES = tests/test_unit.c
tests_test_unit_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(SANITIZE_CFLAGS)
tests_test_unit_LDFLAGS = $(SANITIZE_CFLAGS)
tests_test_unit_LDADD = src/libhakmem_core.la $(CHECK_LIBS)
