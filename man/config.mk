# Man pages of the configuration: the conf file and hakmemctl (man/local.mk
# declares dist_man_MANS and is included before this fragment).
dist_man_MANS += man/hakmem.conf.5 man/hakmemctl.1
