#!/bin/sh
# Release check of the Debian packages, as a user meets them (`make
# check-packages`; `make deb` runs the first half only):
#
#  1. unpack the release tarball and build the binary packages from it
#     with `dpkg-buildpackage -us -uc -b` (installing missing build
#     dependencies with apt-get build-dep when run as root); lintian on
#     the result must report no error and no warning;
#  2. put the .debs in a local file-based apt repository (dpkg-scanpackages,
#     a `deb [trusted=yes] file:...` source) and
#     `apt-get install -y libhakmem libhakmem-dev hakmem-tools` from it;
#  3. in a fresh shell: `pkg-config --libs hakmem` says -lhakmem, a program
#     built with it runs on hakmem, a program runs on it under LD_PRELOAD,
#     `man -w` finds the pages, `hakmemctl config` shows the values of
#     /etc/hakmem.conf and follows an edit of it to `mode = fast`;
#  4. `apt-get purge` of every hakmem package leaves nothing behind: no
#     file that `dpkg -L` listed, and the same `find` of /etc, /usr and
#     /var as before the install.
#
# Steps 2-4 install and remove packages on this system: they need root,
# and refuse to run while hakmem packages or an unowned /etc/hakmem.conf
# are already there.
#
# usage: apt-install.sh [--build-only] hakmem-VERSION.tar.gz [WORKDIR]
#        apt-install.sh --debs DIR [WORKDIR]   (skip the build: use the .debs,
#                                               .changes and .buildinfo in DIR)
# DEB_BUILD_OPTIONS is passed on (e.g. nocheck to skip make check in the
# package build).
# The package lists are split into words on purpose.
# shellcheck disable=SC2086
set -eu

build_only=no
debs=
case "${1:-}" in
  --build-only) build_only=yes; shift;;
  --debs) [ $# -ge 2 ] || exit 2; debs=$(realpath "$2"); shift 2; set -- none "$@";;
esac
[ $# -ge 1 ] || { echo "usage: $0 [--build-only] hakmem-VERSION.tar.gz [WORKDIR]" >&2; exit 2; }
[ -n "$debs" ] || tarball=$(realpath "$1")
work=${2:-_build-pkg}
PKGS_ASKED="libhakmem libhakmem-dev hakmem-tools"
PKGS_ALL="libhakmem libhakmem0 libhakmem-dev hakmem-common hakmem-tools"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

say() { printf '== %s\n' "$*"; }
# Show an apt/dpkg log without dpkg's progress counter.
show() { sed 's/\r$//' <"$1" | tr '\r' '\n' | grep -v '^(Reading database \.\.\. [0-9]*%$' || true; }
fail() { printf 'apt-install.sh: FAIL: %s\n' "$*" >&2; exit 1; }

# ---- 1. build the packages from the tarball ---------------------------
if [ -n "$debs" ]; then
  [ "$(realpath -m "$work")" != "$debs" ] || { echo "WORKDIR must not be the --debs DIR" >&2; exit 2; }
  rm -rf "$work"
  mkdir -p "$work/build"
  work=$(realpath "$work")
  cp "$debs"/*.deb "$debs"/*.changes "$debs"/*.buildinfo "$work/build/"
else
rm -rf "$work"
mkdir -p "$work/build"
work=$(realpath "$work")
say "unpacking $(basename "$tarball") in $work/build"
tar -C "$work/build" -xzf "$tarball"
src=$(find "$work/build" -mindepth 1 -maxdepth 1 -type d -name 'hakmem-*')
[ -d "$src/debian" ] || fail "the tarball has no debian/ directory"

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

say "dpkg-buildpackage -us -uc -b (log: $work/build.log)"
start=$(date +%s)
(cd "$src" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1 ||
  { tail -n 60 "$work/build.log" >&2; fail "dpkg-buildpackage failed"; }
say "built in $(( $(date +%s) - start )) s:"
fi
(cd "$work/build" && ls -1 ./*.deb ./*.changes)

changes=$(ls "$work"/build/*.changes)
say "lintian $(basename "$changes")"
if command -v lintian >/dev/null; then
  lintian --fail-on error,warning --display-info "$changes" >"$work/lintian.txt" 2>&1 ||
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
installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS_ALL 2>/dev/null | awk '$1 !~ /^un/ && $1 !~ /^pn/ {print $2}' || true)
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
lists_prefix=/var/lib/apt/lists/$(echo "$repo" | sed 's|/|_|g')

# What /etc, /usr and /var hold that is named after hakmem, before and
# after; apt's own lists and caches change for other reasons, and the
# source list of the test repository is this script's.
snapshot() {
  find /etc /usr /var -xdev \( -path /var/lib/apt/lists -o -path /var/cache \
    -o -path /var/log -o -path /var/tmp \) -prune -o -name '*hakmem*' -print |
    grep -vxF "$list" | sort
}
snapshot >"$work/find.before"

cleanup() {
  status=$?
  if [ "$status" -ne 0 ]; then
    say "cleaning up after the failure: purging hakmem packages"
    dpkg --purge $PKGS_ALL >/dev/null 2>&1 || true
  fi
  rm -f "$list" "$lists_prefix"_*
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

if ! command -v hakmemctl >/dev/null; then
  echo "SKIP: hakmemctl is not installed (hakmem-tools ships no hakmemctl yet)"
  exit 0
fi
m=$(man -w hakmemctl) || fail "man -w hakmemctl found nothing"
echo "man -w hakmemctl: $m"

hakmemctl check /etc/hakmem.conf || fail "hakmemctl check /etc/hakmem.conf"
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

# ---- 4. purge, and look for leftovers ---------------------------------
for p in $PKGS_ALL; do dpkg -L "$p"; done | sort -u >"$work/dpkg-L.txt"
say "apt-get purge -y $PKGS_ALL"
st=0
apt-get purge -y $PKGS_ALL >"$work/apt-purge.log" 2>&1 || st=$?
show "$work/apt-purge.log"
[ "$st" -eq 0 ] || fail "apt-get purge failed (exit $st)"
left=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' $PKGS_ALL 2>/dev/null | awk '$1 !~ /^un/ && $1 !~ /^pn/' || true)
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
say "PASS"
