# The files the library writes and reads for the program: the exit
# report's descriptor, stats_file, learn_state_file and the conf file
# refused when they are not regular files (core-linked; also built with
# sanitizers by check-sanitizers).
if HAVE_CHECK
check_PROGRAMS += tests/test_files
TESTS += tests/test_files
endif
tests_test_files_SOURCES = tests/test_files.c
tests_test_files_CFLAGS = $(CORE_TESTS_CC_FLAGS)
tests_test_files_LDFLAGS = $(CORE_TESTS_LINK_FLAGS)
tests_test_files_LDADD = $(CORE_TESTS_LIBS)
