# Configuration: the loader in-process (Check), a fuzz test, the setuid
# test and hakmemctl (the man pages: man/local.mk).  The core-linked programs are also
# built with sanitizers by check-sanitizers.
if HAVE_CHECK
check_PROGRAMS += tests/test_config
TESTS += tests/test_config
endif
tests_test_config_SOURCES = tests/test_config.c
tests_test_config_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_config_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_config_LDADD = $(CORE_TESTS_LIBS)

check_PROGRAMS += tests/test_config_fuzz
TESTS += tests/test_config_fuzz
tests_test_config_fuzz_SOURCES = tests/test_config_fuzz.c
tests_test_config_fuzz_CFLAGS = $(AM_CFLAGS) $(SANITIZE_CFLAGS)
tests_test_config_fuzz_LDFLAGS = $(AM_LDFLAGS) $(SANITIZE_CFLAGS)
tests_test_config_fuzz_LDADD = src/libhakmem_core.la

if !SANITIZE
check_PROGRAMS += tests/config_secure_helper
TESTS += tests/config_setuid.sh tests/config_hakmemctl.sh
dist_check_SCRIPTS += tests/config_setuid.sh tests/config_hakmemctl.sh
endif
tests_config_secure_helper_SOURCES = tests/config_secure_helper.c
tests_config_secure_helper_LDADD = src/libhakmem_core.la
