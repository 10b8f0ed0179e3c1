# Manual pages, installed to $(mandir)/manN by their suffix.
dist_man_MANS =
dist_man_MANS += man/hakmem.3

# The page documents every option of src/config.c, every function of
# include/hakmem.h and every counter of hak_stats_t; man and lexgrog
# accept it.
TESTS += tests/man_options.sh
dist_check_SCRIPTS += tests/man_options.sh
