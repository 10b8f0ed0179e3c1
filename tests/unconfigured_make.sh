#!/bin/sh
# In a tree where ./configure has not run, GNUmakefile makes every target
# (make bench, make check, plain make) fail with a message that says to run
# ./configure, instead of make finding the bench/ directory "up to date";
# clean and distclean succeed.
set -u
: "${srcdir:=.}"
fail() { echo "FAIL: $*"; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/unconfigured.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
# A make of its own: not the jobserver or the directory messages of the
# make running the tests.
mk() { (cd "$dir" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL ${MAKE:-make} "$@"); }
cp "$srcdir/GNUmakefile" "$dir/" && mkdir "$dir/bench" "$dir/tests" || exit 1
for goal in bench check ''; do
  mk $goal >"$dir/out" 2>&1 && fail "make $goal succeeded in an unconfigured tree"
  grep -q 'not configured: run ./configure first' "$dir/out" || fail "make $goal printed: $(cat "$dir/out")"
  echo "make $goal: $(head -n 1 "$dir/out")"
done
# Cleaning has nothing to do and succeeds (dh_auto_clean runs make distclean).
for goal in clean distclean; do
  mk -s $goal >"$dir/out" 2>&1 || fail "make $goal failed in an unconfigured tree: $(cat "$dir/out")"
  [ ! -s "$dir/out" ] || fail "make $goal printed: $(cat "$dir/out")"
  out=$(mk -s -n --no-print-directory $goal 2>&1)
  [ -n "$out" ] || fail "make -n $goal printed nothing: debhelper would think there is no $goal target"
done
echo PASS
