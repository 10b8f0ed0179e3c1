# Release and distro packaging (included by Makefile.am).
#
#   make dist / make distcheck   the release tarball hakmem-VERSION.tar.gz
#   make rpm                     rpmbuild -ta on that tarball (rpm/hakmem.spec)
#   make deb                     the Debian packages, built from that tarball
#   make check-packages          make deb, then install the packages from a
#                                local apt repository and use them
#                                (tests/pkg/apt-install.sh; needs root, and
#                                installs and purges packages on this system)
#
# The Debian source package is 3.0 (quilt) with the release tarball as its
# orig (debian/README.source).  The tarball carries rpm/hakmem.spec, so
# that `rpmbuild -ta` finds the spec inside it, but not debian/: the
# packaging travels in the Debian source's debian.tar.xz, and `make deb`
# copies the files listed below next to the unpacked tarball.  The version
# is AC_INIT's; `make dist` in the git tree refuses a tarball whose
# debian/changelog (its upstream part, before the Debian revision),
# rpm/hakmem.spec or NEWS does not name that version.

PACKAGING_DEBIAN_FILES = \
	debian/.gitignore \
	debian/README.source \
	debian/changelog \
	debian/control \
	debian/copyright \
	debian/hakmem-common.install \
	debian/hakmem-tools.docs \
	debian/hakmem-tools.install \
	debian/libhakmem-dev.install \
	debian/libhakmem0.docs \
	debian/libhakmem0.install \
	debian/libhakmem0.prerm \
	debian/libhakmem0.symbols \
	debian/not-installed \
	debian/rules \
	debian/source/format \
	debian/tests/build \
	debian/tests/control \
	debian/tests/preload \
	debian/tests/tools

EXTRA_DIST += NEWS rpm/hakmem.spec tests/pkg/apt-install.sh

# Where make deb, make check-packages and make rpm work and leave their
# results (under _build*, which git and dpkg-source already ignore).
PKG_BUILD_DIR = _build-pkg
PKG_DEBIAN_DIR = _build-pkg-debian
RPM_TOPDIR = _build-rpm

dist-hook: check-release-versions

# debian/ is not in the tarball, so `make dist` from an unpacked tarball
# (as distcheck does) skips its check.
check-release-versions:
	@test ! -f $(srcdir)/debian/changelog || { \
	v=`sed -n '1s/^[^(]*(\([^)]*\)-[^)-]*).*/\1/p' $(srcdir)/debian/changelog`; \
	if test "x$$v" != "x$(VERSION)"; then \
	  echo "debian/changelog's upstream version is '$$v', configure.ac's $(VERSION): add an entry (dch -v $(VERSION)-1)" >&2; \
	  exit 1; fi; }
	@v=`sed -n 's/^Version:[ 	]*//p' $(srcdir)/rpm/hakmem.spec`; \
	if test "x$$v" != "x$(VERSION)"; then \
	  echo "rpm/hakmem.spec is at $$v, configure.ac at $(VERSION): update Version and %changelog" >&2; \
	  exit 1; fi
	@if ! grep -q "^hakmem $(VERSION)" $(srcdir)/NEWS; then \
	  echo "NEWS has no 'hakmem $(VERSION)' entry" >&2; exit 1; fi

# rpmbuild checks BuildRequires against the rpm database; where rpm does
# not manage the system's packages (Debian, which ships rpmbuild in its
# rpm package) that database is empty, so the check is skipped there.
rpm: dist-gzip
	rm -rf $(RPM_TOPDIR)
	mkdir -p $(RPM_TOPDIR)
	nodeps=; if ! rpm -qf /bin/sh >/dev/null 2>&1; then \
	  echo "make rpm: rpm does not manage this system's packages: rpmbuild --nodeps"; \
	  nodeps=--nodeps; fi; \
	rpmbuild -ta $$nodeps --define "_topdir $(abs_builddir)/$(RPM_TOPDIR)" \
	  $(RPMBUILD_FLAGS) $(distdir).tar.gz
	@echo "make rpm: built:"; ls -1 $(RPM_TOPDIR)/RPMS/*/*.rpm $(RPM_TOPDIR)/SRPMS/*.rpm

# The listed debian/ files, without the leftovers of a dpkg-buildpackage
# run in the git tree.
pkg-debian-dir:
	@test -f $(srcdir)/debian/control || { \
	  echo "make deb needs debian/ (it is in the git tree, not in the release tarball)" >&2; exit 1; }
	rm -rf $(PKG_DEBIAN_DIR)
	mkdir -p $(PKG_DEBIAN_DIR)
	(cd $(srcdir) && tar -cf - $(PACKAGING_DEBIAN_FILES)) | (cd $(PKG_DEBIAN_DIR) && tar -xf -)

deb: dist-gzip pkg-debian-dir
	$(SHELL) $(srcdir)/tests/pkg/apt-install.sh --build-only \
	  --debian $(PKG_DEBIAN_DIR)/debian $(distdir).tar.gz $(PKG_BUILD_DIR)

# Root is checked first, before the tarball and the packages are built for
# nothing.
check-packages:
	@if test "`id -u`" != 0; then \
	  echo "make check-packages installs and purges packages with apt: run it as root (sudo make check-packages)" >&2; \
	  exit 1; fi
	$(MAKE) $(AM_MAKEFLAGS) dist-gzip pkg-debian-dir
	$(SHELL) $(srcdir)/tests/pkg/apt-install.sh \
	  --debian $(PKG_DEBIAN_DIR)/debian $(distdir).tar.gz $(PKG_BUILD_DIR)

clean-local: clean-packaging
clean-packaging:
	rm -rf $(RPM_TOPDIR) $(PKG_BUILD_DIR) $(PKG_DEBIAN_DIR)

.PHONY: check-release-versions rpm deb pkg-debian-dir check-packages clean-packaging
