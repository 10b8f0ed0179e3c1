#!/bin/sh
# Release check of the Debian packages, as a user meets them (`make
# check-packages`; `make deb` runs the first half only):
#
#  1. unpack the release tarball, add the packaging (--debian DIR: the
#     release tarball has no debian/), link the tarball as the orig
#     (hakmem_VERSION.orig.tar.gz: the source format is 3.0 (quilt)) and
#     build the source and binary packages with `dpkg-buildpackage -us
#     -uc` (installing missing build dependencies with apt-get build-dep
#     when run as root); lintian on the result must report no error and
#     no warning;
#  2. put the .debs in a local file-based apt repository (dpkg-scanpackages,
#     a `deb [trusted=yes] file:...` source) and
#     `apt-get install -y libhakmem libhakmem-dev hakmem-tools` from it;
#  3. in a fresh shell: `pkg-config --libs hakmem` says -lhakmem, a program
#     built with it runs on hakmem, a program runs on it under LD_PRELOAD,
#     `man -w` finds the pages, README.md, NEWS and the upstream ChangeLog
#     are in /usr/share/doc, `hakmemctl check` passes the installed file,
#     `hakmemctl run` preloads the bare soname, `hakmemctl config` shows
#     the values of /etc/hakmem.conf and follows an edit of it to `mode =
#     fast`;
#  4. `hakmemctl enable` and `disable` on a small test service: started
#     with systemctl if systemd runs, else its command run with the
#     drop-in's environment (and the reason printed);
#  5. libhakmem0's prerm refuses the removal while /etc/ld.so.preload
#     names the library (in a private mount namespace, where a temporary
#     file is bound over /etc/ld.so.preload: the system's is never
#     changed; if it does not exist, an empty one is created for the bind
#     and removed afterwards);
#  6. a second soname installs beside the first: libhakmem0 repacked as
#     libhakmem1 of a later version (this one's upstream version with
#     "+next", soname libhakmem.so.1) depending on a repacked hakmem-common
#     of that version, which replaces this hakmem-common while libhakmem0
#     stays;
#  7. `apt-get purge` of every hakmem package leaves nothing behind: no
#     file that `dpkg -L` listed, and the same `find` of /etc, /usr and
#     /var as before the install; the local repository's files in
#     /var/lib/apt/lists (named as apt escapes them: '_' is %5f) are
#     removed and that directory holds what it held before.
#
# Steps 2-7 install and remove packages on this system: they need root
# (checked before anything is built), and refuse to run while hakmem
# packages or an unowned /etc/hakmem.conf are already there.
#
# usage: apt-install.sh [--build-only] --debian DIR hakmem-VERSION.tar.gz [WORKDIR]
#        apt-install.sh --debs DIR [WORKDIR]   (skip the build: use the .debs,
#                                               .changes and .buildinfo in DIR)
# (make deb and make check-packages pass --debian with a clean copy of the
# git tree's debian/.)
# DEB_BUILD_OPTIONS is passed on (e.g. nocheck to skip make check in the
# package build).
# The package lists are split into words on purpose.
# shellcheck disable=SC2086
set -eu

build_only=no
debs=
debian=
while :; do
  case "${1:-}" in
    --build-only) build_only=yes; shift;;
    --debian) [ $# -ge 2 ] || exit 2; debian=$(realpath "$2"); shift 2;;
    --debs) [ $# -ge 2 ] || exit 2; debs=$(realpath "$2"); shift 2; set -- none "$@"; break;;
    *) break;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [--build-only] --debian DIR hakmem-VERSION.tar.gz [WORKDIR]" >&2; exit 2; }
[ -n "$debs" ] || tarball=$(realpath "$1")
work=${2:-_build-pkg}
PKGS_ASKED="libhakmem libhakmem-dev hakmem-tools"
PKGS_ALL="libhakmem libhakmem0 libhakmem-dev hakmem-common hakmem-tools"
# The repacked second soname of step 6.
PKG_SECOND=libhakmem1
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

say() { printf '== %s\n' "$*"; }
# Show an apt/dpkg log without dpkg's progress counter.
show() { sed 's/\r$//' <"$1" | tr '\r' '\n' | grep -v '^(Reading database \.\.\. [0-9]*%$' || true; }
fail() { printf 'apt-install.sh: FAIL: %s\n' "$*" >&2; exit 1; }

[ "$build_only" = yes ] || [ "$(id -u)" = 0 ] ||
  fail "installing the packages needs root: run as root, or use --build-only"

# ---- 1. build the packages from the tarball ---------------------------
if [ -n "$debs" ]; then
  [ "$(realpath -m "$work")" != "$debs" ] || { echo "WORKDIR must not be the --debs DIR" >&2; exit 2; }
  rm -rf "$work"
  mkdir -p "$work/build"
  work=$(realpath "$work")
  cp "$debs"/*.deb "$debs"/*.changes "$debs"/*.buildinfo "$work/build/"
  # A source build's files, which the .changes lists.
  for f in "$debs"/*.dsc "$debs"/*.debian.tar.* "$debs"/*.orig.tar.*; do
    [ ! -e "$f" ] || cp "$f" "$work/build/"
  done
else
rm -rf "$work"
mkdir -p "$work/build"
work=$(realpath "$work")
say "unpacking $(basename "$tarball") in $work/build"
tar -C "$work/build" -xzf "$tarball"
src=$(find "$work/build" -mindepth 1 -maxdepth 1 -type d -name 'hakmem-*')
if [ -n "$debian" ]; then
  [ -f "$debian/control" ] || fail "$debian is not a debian/ directory"
  [ ! -e "$src/debian" ] || fail "the tarball has a debian/ directory of its own"
  cp -R "$debian" "$src/debian"
fi
[ -d "$src/debian" ] || fail "no debian/ directory: give --debian DIR"
# 3.0 (quilt): the release tarball, unchanged, is the orig tarball.
upstream=$(cd "$src" && dpkg-parsechangelog -S Version | sed 's/-[^-]*$//')
[ "$(basename "$src")" = "hakmem-$upstream" ] ||
  fail "debian/changelog's upstream version $upstream is not the tarball's $(basename "$src")"
ln -s "$tarball" "$work/build/hakmem_$upstream.orig.tar.gz"

if ! (cd "$src" && dpkg-checkbuilddeps) 2>"$work/builddeps.txt"; then
  if [ "$(id -u)" = 0 ]; then
    say "installing build dependencies: $(cat "$work/builddeps.txt")"
    apt-get build-dep -y "$src" >"$work/build-dep.log" 2>&1 ||
      { cat "$work/build-dep.log" >&2; fail "apt-get build-dep failed"; }
  else
    cat "$work/builddeps.txt" >&2
    fail "build dependencies missing (run as root, or: apt-get build-dep $src)"
  fi
fi

say "dpkg-buildpackage -us -uc (log: $work/build.log)"
start=$(date +%s)
(cd "$src" && dpkg-buildpackage -us -uc) >"$work/build.log" 2>&1 ||
  { tail -n 60 "$work/build.log" >&2; fail "dpkg-buildpackage failed"; }
say "built in $(( $(date +%s) - start )) s:"
fi
(cd "$work/build" && ls -1 ./*.deb ./*.changes ./*.dsc ./*.debian.tar.* 2>/dev/null)

changes=$(ls "$work"/build/*.changes)
say "lintian $(basename "$changes")"
if command -v lintian >/dev/null; then
  # initial-upload-closes-no-bugs asks the first Debian revision to close
  # an ITP bug in Debian's tracker; lintian says to ignore it for a package
  # not (yet) uploaded to Debian, which this one is not.
  lintian --fail-on error,warning --display-info --suppress-tags initial-upload-closes-no-bugs \
    "$changes" >"$work/lintian.txt" 2>&1 ||
    { cat "$work/lintian.txt" >&2; fail "lintian reported errors or warnings"; }
  if [ -s "$work/lintian.txt" ]; then cat "$work/lintian.txt"; else echo "(no output)"; fi
else
  fail "lintian is not installed (apt-get install lintian)"
fi

for deb in "$work"/build/*.deb; do
  say "dpkg -c $(basename "$deb")"
  dpkg -c "$deb"
done
[ "$build_only" = no ] || { say "packages are in $work/build"; exit 0; }

# ---- 2. local apt repository, install ---------------------------------
[ "$(id -u)" = 0 ] || fail "installing the packages needs root"
installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS_ALL $PKG_SECOND 2>/dev/null | awk '$1 !~ /^un/ && $1 !~ /^pn/ {print $2}' || true)
[ -z "$installed" ] || fail "hakmem packages are already installed (purge them first):" $installed
if [ -e /etc/hakmem.conf ]; then
  fail "/etc/hakmem.conf exists and belongs to no package (a 'make install'?); move it away first"
fi

repo=$work/repo
mkdir -p "$repo"
cp "$work"/build/*.deb "$repo"/
(cd "$repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
chmod -R a+rX "$work"
list=/etc/apt/sources.list.d/hakmem-local-test.list
# apt names its copies of a source's indexes after the URI without its
# scheme, with '/' made '_' after quoting '_' and a few other characters as
# %xx (lower-case hex; apt's URItoFileName and QuoteString).
apt_list_name() {
  printf '%s' "$1" | sed -e 's/%/%25/g' -e 's/_/%5f/g' -e 's/~/%7e/g' -e 's/=/%3d/g' \
    -e 's/!/%21/g' -e 's/@/%40/g' -e 's/#/%23/g' -e 's/\$/%24/g' -e 's/\^/%5e/g' \
    -e 's/&/%26/g' -e 's/\*/%2a/g' -e 's/ /%20/g' -e 's/|/%7c/g' -e 's/{/%7b/g' \
    -e 's/}/%7d/g' -e 's/\[/%5b/g' -e 's/\]/%5d/g' -e 's/</%3c/g' -e 's/>/%3e/g' \
    -e 's/"/%22/g' -e 's/\\/%5c/g' -e 's|/|_|g'
}
lists_prefix=/var/lib/apt/lists/$(apt_list_name "$repo")
lists_now() {
  find /var/lib/apt/lists -mindepth 1 -maxdepth 1 ! -name lock ! -name partial ! -name auxfiles \
    -printf '%f\n' | sort
}
lists_now >"$work/lists.before"
# The test service of step 4 and the ld.so.preload of step 5.
test_unit=hakmem-pkgtest.service
test_unit_file=/etc/systemd/system/$test_unit
created_preload=no

# What /etc, /usr and /var hold that is named after hakmem, before and
# after; apt's own lists and caches change for other reasons, and the
# source list of the test repository is this script's.
snapshot() {
  find /etc /usr /var -xdev \( -path /var/lib/apt/lists -o -path /var/cache \
    -o -path /var/log -o -path /var/tmp \) -prune -o -name '*hakmem*' -print |
    grep -vxF "$list" | sort
}
snapshot >"$work/find.before"

remove_test_sources() {
  rm -f "$list" "$lists_prefix"_*
}
cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    say "cleaning up after the failure: purging hakmem packages"
    dpkg --purge $PKG_SECOND $PKGS_ALL >/dev/null 2>&1 || true
  fi
  rm -rf "$test_unit_file" "$test_unit_file.d"
  if [ "$created_preload" = yes ] && [ ! -s /etc/ld.so.preload ]; then rm -f /etc/ld.so.preload; fi
  remove_test_sources
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "deb [trusted=yes] file:$repo ./" >"$list"
say "apt-get update (the local repository only)"
apt-get update -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- \
  -o APT::Get::List-Cleanup=0 >"$work/apt-update.log" 2>&1 ||
  { cat "$work/apt-update.log" >&2; fail "apt-get update failed"; }

say "apt-get install -y $PKGS_ASKED"
st=0
apt-get install -y $PKGS_ASKED >"$work/apt-install.log" 2>&1 || st=$?
show "$work/apt-install.log"
[ "$st" -eq 0 ] || fail "apt-get install failed (exit $st)"
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' libhakmem 2>/dev/null)" = "ii " ] ||
  fail "libhakmem is not installed"
for p in $PKGS_ALL; do
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p")" = "ii " ] || fail "$p is not installed"
done
dpkg-query -W -f='${Conffiles}\n' hakmem-common | grep -q '^ /etc/hakmem.conf ' ||
  fail "/etc/hakmem.conf is not a conffile of hakmem-common"

# ---- 3. use them, from a fresh login-like shell -----------------------
cat >"$work/fresh-shell.sh" <<'EOS'
set -eu
fail() { printf 'apt-install.sh: FAIL: %s\n' "$*" >&2; exit 1; }
cd "$1"

# (pkg-config ends its output with a space; echo drops it.)
libs=$(echo $(pkg-config --libs hakmem))
echo "pkg-config --libs hakmem: $libs"
[ "$libs" = "-lhakmem" ] || fail "pkg-config --libs hakmem printed '$libs'"
cflags=$(echo $(pkg-config --cflags hakmem))
echo "pkg-config --cflags hakmem: '$cflags'"

cc $cflags prog.c -o prog $libs
echo "cc \$(pkg-config --cflags --libs hakmem): ./prog prints: $(./prog)"
ldd ./prog | grep -E 'libhakmem\.so\.0 => /(usr/)?lib/' || fail "prog is not linked with the installed libhakmem.so.0"

# A program that knows nothing of hakmem, preloaded: the statistics
# report at exit shows hakmem served it.  (Not ls or sh: coreutils close
# stderr before the report is written.)
cat >plain.c <<'EOC'
#include <stdio.h>
#include <stdlib.h>
int main(void)
{
  char *p = malloc(64);
  if (p == NULL)
    return 1;
  snprintf(p, 64, "preloaded");
  puts(p);
  free(p);
  return 0;
}
EOC
cc plain.c -o plain
out=$(HAKMEM_STATS=1 LD_PRELOAD=libhakmem.so.0 ./plain 2>report)
[ "$out" = preloaded ] || fail "a program under LD_PRELOAD printed '$out'"
grep -q '^hakmem: stats' report || fail "no statistics report under LD_PRELOAD=libhakmem.so.0"
echo "HAKMEM_STATS=1 LD_PRELOAD=libhakmem.so.0 ./plain: ran, report of $(wc -l <report) lines"
out=$(printf 'b\na\n' | LD_PRELOAD=libhakmem.so.0 sort | tr '\n' ' ')
[ "$out" = "a b " ] || fail "sort under LD_PRELOAD printed '$out'"

for page in hakmem hakmem.conf; do
  m=$(man -w "$page") || fail "man -w $page found nothing"
  echo "man -w $page: $m"
done

# Upstream's README.md and NEWS (dh_installdocs) and ChangeLog (as
# changelog.gz; debian/changelog is changelog.Debian.gz), compressed or not
# as dh_compress chose.
for pkg in libhakmem0 hakmem-tools; do
  d=/usr/share/doc/$pkg
  for f in README.md NEWS changelog changelog.Debian copyright; do
    [ -e "$d/$f" ] || [ -e "$d/$f.gz" ] || fail "$d/$f is missing"
  done
  zcat -f "$d/changelog.Debian.gz" | head -n 1 | grep -q '^hakmem (' || fail "$d/changelog.Debian.gz is not debian/changelog"
  zcat -f "$d/changelog.gz" | grep -q '^hakmem (' && fail "$d/changelog.gz is debian/changelog, not upstream's ChangeLog"
  zcat -f "$d"/NEWS* | grep -q '^hakmem [0-9]' || fail "$d/NEWS is not upstream's NEWS"
  echo "docs of $pkg: $(cd "$d" && echo *)"
done

if ! command -v hakmemctl >/dev/null; then
  echo "SKIP: hakmemctl is not installed (hakmem-tools ships no hakmemctl yet)"
  exit 0
fi
m=$(man -w hakmemctl) || fail "man -w hakmemctl found nothing"
echo "man -w hakmemctl: $m"

hakmemctl check /etc/hakmem.conf || fail "hakmemctl check /etc/hakmem.conf"
out=$(hakmemctl check) || fail "hakmemctl check (no file) exited $?"
[ "$out" = "/etc/hakmem.conf: OK" ] || fail "hakmemctl check (no file) printed '$out'"
echo "hakmemctl check: $out"
# The bare soname, so that ld.so picks each program's architecture.
out=$(hakmemctl run sh -c 'echo "$LD_PRELOAD"') || fail "hakmemctl run exited $?"
[ "$out" = libhakmem.so.0 ] || fail "hakmemctl run set LD_PRELOAD='$out'"
echo "hakmemctl run sh -c 'echo \$LD_PRELOAD': $out"
hakmemctl config >config.before
echo "hakmemctl config (as installed):"
cat config.before
grep -q '/etc/hakmem.conf' config.before ||
  echo "note: no value of the shipped /etc/hakmem.conf differs from its default (no line names the file)"

# Set mode = fast: replace an active mode line, or add one.
if grep -q '^[[:space:]]*mode[[:space:]]*=' /etc/hakmem.conf; then
  sed -i 's/^[[:space:]]*mode[[:space:]]*=.*/mode = fast/' /etc/hakmem.conf
else
  awk 'BEGIN { done = 0 }
       /^[[:space:]]*\[/ && !done { print "mode = fast"; done = 1 }
       { print }
       END { if (!done) print "mode = fast" }' /etc/hakmem.conf >hakmem.conf.new
  cat hakmem.conf.new >/etc/hakmem.conf
fi
hakmemctl config >config.after
echo "hakmemctl config (after mode = fast in /etc/hakmem.conf):"
cat config.after
grep -E '^[[:space:]]*mode[[:space:]:=]+fast([[:space:]]|$)' config.after | grep -q '/etc/hakmem.conf' ||
  fail "hakmemctl config does not show mode fast from /etc/hakmem.conf"
cmp -s config.before config.after && fail "hakmemctl config did not change"
echo "hakmemctl config follows /etc/hakmem.conf"
EOS
mkdir -p "$work/use"
chmod a+rx "$work/use"
# The program it builds is the one tests/install.sh builds too.
cp "$(dirname "$0")/../hello_hakmem.c" "$work/use/prog.c"
say "in a fresh shell: pkg-config, a program, LD_PRELOAD, man, hakmemctl"
st=0
env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 sh "$work/fresh-shell.sh" "$work/use" >"$work/use.log" 2>&1 || st=$?
cat "$work/use.log"
[ "$st" -eq 0 ] || fail "using the installed packages failed (exit $st)"

# ---- 4. hakmemctl enable / disable on a test service -------------------
say "hakmemctl enable / disable $test_unit"
# The service records whether its shell has libhakmem mapped.
result=/run/hakmem-pkgtest.result
cat >"$test_unit_file" <<EOU
[Unit]
Description=libhakmem package test: is this service on hakmem?
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'if grep -q libhakmem /proc/\$\$\$\$/maps; then echo on-hakmem; else echo not-on-hakmem; fi >$result'
EOU
dropin=/etc/systemd/system/$test_unit.d/hakmem.conf
hakmemctl enable "${test_unit%.service}" --mode fast >"$work/enable.log" 2>&1 ||
  { cat "$work/enable.log" >&2; fail "hakmemctl enable exited $?"; }
cat "$work/enable.log"
grep -qx "hakmemctl: wrote $dropin" "$work/enable.log" || fail "hakmemctl enable did not name $dropin"
cat "$dropin"
grep -qx 'Environment="LD_PRELOAD=libhakmem.so.0"' "$dropin" || fail "the drop-in does not preload libhakmem.so.0"
grep -qx 'Environment="HAKMEM_MODE=fast"' "$dropin" || fail "the drop-in does not set HAKMEM_MODE=fast"
why=
if [ ! -d /run/systemd/system ]; then
  why="PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown), not systemd"
else
  state=$(systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded|starting) ;; *) why="systemd is '$state'";; esac
fi
if [ -z "$why" ]; then
  rm -f "$result"
  systemctl daemon-reload || fail "systemctl daemon-reload failed"
  systemctl start "$test_unit" || fail "systemctl start $test_unit failed"
  [ "$(cat "$result" 2>/dev/null)" = on-hakmem ] || fail "$test_unit did not run on hakmem: $(cat "$result" 2>/dev/null)"
  echo "systemctl start $test_unit: the service ran on hakmem"
else
  echo "systemd does not run here ($why): $test_unit not started;"
  echo "running its command with the drop-in's environment instead"
  set --
  while IFS= read -r line; do
    case "$line" in Environment=\"*\") v=${line#Environment=\"}; set -- "$@" "${v%\"}";; esac
  done <"$dropin"
  rm -f "$result"
  env "$@" /bin/sh -c "if grep -q libhakmem /proc/\$\$/maps; then echo on-hakmem; else echo not-on-hakmem; fi >$result"
  [ "$(cat "$result")" = on-hakmem ] || fail "the drop-in's environment does not put the command on hakmem"
  echo "$test_unit's command with $*: on hakmem"
fi
hakmemctl disable "${test_unit%.service}" >"$work/disable.log" 2>&1 ||
  { cat "$work/disable.log" >&2; fail "hakmemctl disable exited $?"; }
cat "$work/disable.log"
[ ! -e "$test_unit_file.d" ] || fail "hakmemctl disable left $test_unit_file.d"
if [ -z "$why" ]; then
  systemctl daemon-reload
  rm -f "$result"
  systemctl start "$test_unit" || fail "systemctl start $test_unit failed"
  [ "$(cat "$result")" = not-on-hakmem ] || fail "$test_unit still runs on hakmem after disable"
  echo "after disable, $test_unit runs without hakmem"
fi
rm -f "$test_unit_file" "$result"
[ -n "$why" ] || systemctl daemon-reload

# ---- 5. libhakmem0's prerm and /etc/ld.so.preload ----------------------
# In a private mount namespace, a temporary file stands for
# /etc/ld.so.preload: processes outside never see it.  The bind needs a
# file to mount over; an empty /etc/ld.so.preload changes nothing.
say "dpkg --remove libhakmem0 while /etc/ld.so.preload names it"
if [ ! -e /etc/ld.so.preload ]; then
  : >/etc/ld.so.preload
  created_preload=yes
fi
libpath=$(dpkg -L libhakmem0 | grep '/libhakmem\.so\.0$')
for entry in libhakmem.so.0 "$libpath"; do
  printf '# libhakmem for every program\n%s\n' "$entry" >"$work/ld.so.preload"
  st=0
  # shellcheck disable=SC2016 # $1 is the inner shell's
  unshare -m /bin/sh -c 'mount --bind "$1" /etc/ld.so.preload && exec dpkg --remove --force-depends libhakmem0' \
    sh "$work/ld.so.preload" >"$work/prerm.log" 2>&1 || st=$?
  show "$work/prerm.log"
  [ "$st" -ne 0 ] || fail "dpkg removed libhakmem0 while /etc/ld.so.preload named $entry"
  grep -q "libhakmem0: /etc/ld.so.preload still names this library" "$work/prerm.log" ||
    fail "no message from the prerm for $entry"
  grep -qx "    $entry" "$work/prerm.log" || fail "the prerm did not name the entry $entry"
  [ "$(dpkg-query -W -f='${db:Status-Status}' libhakmem0)" = installed ] ||
    fail "libhakmem0 is not left installed after the refused removal"
  # dpkg --remove marked it for removal (desired state "r"): undo that.
  echo "libhakmem0:$(dpkg --print-architecture) install" | dpkg --set-selections
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' libhakmem0)" = "ii " ] ||
    fail "libhakmem0 is not back to ii after the refused removal"
  echo "refused with $entry in /etc/ld.so.preload; libhakmem0 still installed"
done
[ "$created_preload" = no ] || [ -s /etc/ld.so.preload ] || { rm -f /etc/ld.so.preload; created_preload=no; }
dpkg --audit >"$work/audit.log" 2>&1 || true
[ ! -s "$work/audit.log" ] || { cat "$work/audit.log"; fail "dpkg --audit reports problems"; }

# ---- 6. a second soname beside the first ------------------------------
# What a later source release would bring: libhakmem1 (soname
# libhakmem.so.1) from a later source version, depending on hakmem-common
# (>= that version).  libhakmem0 depends on hakmem-common (>= its own version), so
# installing libhakmem1 upgrades hakmem-common and keeps libhakmem0.
say "co-installation: libhakmem0 with a repacked $PKG_SECOND"
rp=$work/repack
rm -rf "$rp"
installed=$(dpkg-query -W -f='${Version}' hakmem-common)
next=${installed%-*}+next-1
mkdir -p "$rp"
dpkg-deb -R "$(ls "$repo"/libhakmem0_*.deb)" "$rp/lib"
dpkg-deb -R "$(ls "$repo"/hakmem-common_*.deb)" "$rp/common"
(
  cd "$rp/lib"
  real=$(ls usr/lib/*/libhakmem.so.0.*)
  libdir=$(dirname "$real")
  new=$libdir/libhakmem.so.1.${real##*/libhakmem.so.0.}
  mv "$real" "$new"
  # The soname, in place: same length, NUL-terminated.
  perl -0777 -pi -e 's/libhakmem\.so\.0\0/libhakmem.so.1\0/g' "$new"
  rm "$libdir/libhakmem.so.0"
  ln -s "$(basename "$new")" "$libdir/libhakmem.so.1"
  mv usr/share/doc/libhakmem0 "usr/share/doc/$PKG_SECOND"
  rm -f DEBIAN/shlibs DEBIAN/symbols
  sed -i -e "s/^Package: libhakmem0\$/Package: $PKG_SECOND/" -e "s/^Version: .*/Version: $next/" \
    -e "s/hakmem-common (>= [^)]*)/hakmem-common (>= $next)/" -e '/^Source:/d' DEBIAN/control
  find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort | xargs md5sum >DEBIAN/md5sums
)
sed -i -e "s/^Version: .*/Version: $next/" -e '/^Source:/d' "$rp/common/DEBIAN/control"
dpkg-deb -b --root-owner-group "$rp/lib" "$repo/" >/dev/null
dpkg-deb -b --root-owner-group "$rp/common" "$repo/" >/dev/null
(cd "$repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
apt-get update -o Dir::Etc::sourcelist="$list" -o Dir::Etc::sourceparts=- \
  -o APT::Get::List-Cleanup=0 >"$work/apt-update2.log" 2>&1 ||
  { cat "$work/apt-update2.log" >&2; fail "apt-get update failed"; }
st=0
apt-get install -y "$PKG_SECOND" >"$work/apt-install2.log" 2>&1 || st=$?
show "$work/apt-install2.log"
[ "$st" -eq 0 ] || fail "apt-get install $PKG_SECOND failed (exit $st)"
for p in libhakmem0 "$PKG_SECOND"; do
  [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p")" = "ii " ] || fail "$p is not installed"
done
[ "$(dpkg-query -W -f='${Version}' hakmem-common)" = "$next" ] || fail "hakmem-common was not upgraded"
ls -l /usr/lib/*/libhakmem.so.0 /usr/lib/*/libhakmem.so.1
readelf -d /usr/lib/*/libhakmem.so.1 | grep -q 'SONAME.*\[libhakmem\.so\.1\]' || fail "libhakmem.so.1 has the wrong soname"
for so in libhakmem.so.0 libhakmem.so.1; do
  out=$(HAKMEM_STATS=1 LD_PRELOAD=$so "$work/use/plain" 2>"$work/report.$so") || fail "a program with $so failed"
  [ "$out" = preloaded ] || fail "a program with $so printed '$out'"
  grep -q '^hakmem: stats' "$work/report.$so" || fail "no statistics report with LD_PRELOAD=$so"
done
echo "libhakmem0 and $PKG_SECOND installed together, hakmem-common $(dpkg-query -W -f='${Version}' hakmem-common)"

# ---- 7. purge, and look for leftovers ---------------------------------
for p in $PKGS_ALL $PKG_SECOND; do dpkg -L "$p"; done | sort -u >"$work/dpkg-L.txt"
say "apt-get purge -y $PKGS_ALL $PKG_SECOND"
st=0
apt-get purge -y $PKGS_ALL $PKG_SECOND >"$work/apt-purge.log" 2>&1 || st=$?
show "$work/apt-purge.log"
[ "$st" -eq 0 ] || fail "apt-get purge failed (exit $st)"
left=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS_ALL $PKG_SECOND 2>/dev/null | awk '$1 !~ /^un/ && $1 !~ /^pn/' || true)
[ -z "$left" ] || fail "still known to dpkg after the purge: $left"
stray=
while read -r f; do
  [ "$f" != "/." ] || continue
  [ -e "$f" ] || [ -L "$f" ] || continue
  # A directory the system still needs (another package owns it) stays.
  if [ -d "$f" ] && ! [ -L "$f" ] && dpkg -S "$f" >/dev/null 2>&1; then continue; fi
  stray="$stray $f"
done <"$work/dpkg-L.txt"
[ -z "$stray" ] || fail "left behind by the purge:$stray"
snapshot >"$work/find.after"
if ! cmp -s "$work/find.before" "$work/find.after"; then
  diff "$work/find.before" "$work/find.after" >&2 || true
  fail "files named after hakmem differ from before the install"
fi
say "purge left no file behind ($(wc -l <"$work/dpkg-L.txt") paths of dpkg -L checked)"
remove_test_sources
lists_now >"$work/lists.after"
if ! cmp -s "$work/lists.before" "$work/lists.after"; then
  diff "$work/lists.before" "$work/lists.after" >&2 || true
  fail "/var/lib/apt/lists differs from before (apt's name for the repository: $lists_prefix)"
fi
say "/var/lib/apt/lists holds what it held before ($(wc -l <"$work/lists.after") files)"
say "PASS"
