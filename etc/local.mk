# The commented default configuration, installed to $(sysconfdir).
# Packages mark it as a conffile (dpkg) / %config(noreplace) (rpm).
dist_sysconf_DATA = etc/hakmem.conf
