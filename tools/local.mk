# hakmemctl: built from tools/hakmemctl.c, tools/hakmemctl_monitor.c (stats
# --pid, top) with tools/live_reader.c (reading another process) and the
# library's own src/config.c and src/config_parse.c (option table, from
# src/options.def, loader and parsers), src/report.c (the report's format)
# and src/diag.c (the message lines and the text builder), not from the
# allocator core, so that it keeps glibc's malloc and never runs the
# allocator's start-up.
bin_PROGRAMS = tools/hakmemctl
tools_hakmemctl_SOURCES = tools/hakmemctl.c src/config.c src/config.h \
	src/config_parse.c src/config_parse.h src/hakmem_internal.h \
	src/diag.c src/diag.h \
	tools/hakmemctl_monitor.c tools/hakmemctl_monitor.h \
	tools/live_reader.c tools/live_reader.h \
	src/report.c src/report.h src/live_stats.h
tools_hakmemctl_SOURCES += tools/hakmemctl_profile.c tools/hakmemctl_profile.h src/prof.h
# config --man and --sample: the option sections of the man pages and the
# commented conf file, from the option table (src/options.def).
tools_hakmemctl_SOURCES += tools/hakmemctl_options.c tools/hakmemctl_options.h
tools_hakmemctl_CPPFLAGS = $(AM_CPPFLAGS) -DHAKMEM_LIBDIR='"$(libdir)"'
tools_hakmemctl_CFLAGS = $(AM_CFLAGS)
# The option table, included by src/config.h, src/config.c and
# tools/hakmemctl_options.c.
EXTRA_DIST += src/options.def
