# The sized and query extensions and the C++ operators, against the
# malloc-replacing library (normal build only, like tests/local.mk's).
if !SANITIZE
if HAVE_CHECK
check_PROGRAMS += tests/test_sized tests/test_cxx
TESTS += tests/test_sized tests/test_cxx
endif
endif
tests_test_sized_SOURCES = tests/test_sized.c
tests_test_sized_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) -fno-builtin
tests_test_sized_LDADD = src/libhakmem.la $(CHECK_LIBS)

# C++ programs linked with -lhakmem: new and delete are hakmem's.  The
# sized-deallocation and aligned-new forms are what g++ emits by default
# for C++17; the flags say so in case a CXXFLAGS changes the default.
tests_test_cxx_SOURCES = tests/test_cxx.cc
tests_test_cxx_CXXFLAGS = $(AM_CXXFLAGS) $(CHECK_CFLAGS) -std=gnu++17 -fsized-deallocation \
	-faligned-new -fno-builtin
tests_test_cxx_LDADD = src/libhakmem.la $(CHECK_LIBS) -ldl
