# Manual pages, installed to $(mandir)/manN by their suffix.
dist_man_MANS =
dist_man_MANS += man/hakmem.3

# hakmem(3) documents every function of include/hakmem.h and every counter
# of hak_stats_t; man and lexgrog accept the pages.
TESTS += tests/man_pages.sh
dist_check_SCRIPTS += tests/man_pages.sh

# The option entries of hakmem.3 and hakmem.conf.5 and the whole of
# etc/hakmem.conf are written from src/options.def by hakmemctl (config
# --man, config --sample) and shipped as written; the test fails when a
# copy is stale, and `make regen-options` rewrites the stale ones in the
# source tree.
TESTS += tests/options_generated.sh
dist_check_SCRIPTS += tests/options_generated.sh
regen-options: tools/hakmemctl$(EXEEXT)
	srcdir='$(srcdir)' $(SHELL) '$(srcdir)/tests/options_generated.sh' --update
.PHONY: regen-options
