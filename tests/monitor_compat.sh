#!/bin/sh
# hakmemctl stats --pid against live-stats blocks of other library
# versions (tests/monitor_compat_lib.c, built here with $CC as a stand-in
# libhakmem.so.0): a block with fewer entries and an unknown one is read
# (what it has is printed, the heap walk is reported missing), a block of
# an unknown version is refused with a clear message, never a crash.
set -u
: "${srcdir:=.}"
ctl=tools/hakmemctl
me=monitor_compat
. "$srcdir/tests/lib.sh"
[ -x "$ctl" ] || fail "$ctl not built"
: "${CC:=cc}"
command -v "${CC%% *}" >/dev/null 2>&1 || skip "no C compiler ($CC)"
command -v mkfifo >/dev/null 2>&1 || skip "no mkfifo"
scratch_setup
mkfifo "$dir/hold" || fail "cannot make a FIFO"

# Starts a shell with the stand-in library preloaded, which waits on a
# FIFO no one writes; waits until the shell has written a file, which it
# does after the dynamic loader is done.  The library in the maps is not
# enough: until the loader has mapped and relocated its data, hakmemctl
# rightly answers "loaded but not yet started".
start() { # variant-define
  mkdir -p "$dir/$1"
  $CC -shared -fPIC -I"$srcdir/src" -D"$1" -o "$dir/$1/libhakmem.so.0" \
    "$srcdir/tests/monitor_compat_lib.c" || fail "cannot build the stand-in library"
  LD_PRELOAD="$dir/$1/libhakmem.so.0" sh -c ': >"$1"; read line <"$2"' sh "$dir/$1/started" \
    "$dir/hold" &
  pid=$!
  wait_until "the shell with the stand-in library started" test -e "$dir/$1/started"
}

echo "== a block with fewer entries and an unknown one"
start MONITOR_COMPAT_OLD
"$ctl" stats --pid "$pid" >"$dir/out" 2>"$dir/err" || fail "stats --pid exited $?: $(cat "$dir/err")"
cat "$dir/out"
grep -q "^hakmem: stats pid=$pid program=sh .* version=0.0.9$" "$dir/out" || fail "no header"
grep -q '^hakmem: mode  *fast (env HAKMEM_MODE)$' "$dir/out" || fail "no mode"
grep -q '^hakmem: large in use  *1.0 MiB  (slab blocks unknown' "$dir/out" || fail "missing heap walk not said"
grep -q '^hakmem: mapped  *3.0 MiB' "$dir/out" || fail "no mapped bytes"
grep -q '^hakmem: os_mmap 7$' "$dir/out" || fail "no os_mmap counter"
grep -q 'malloc_calls\|future' "$dir/out" && fail "printed a figure the block does not have"
"$ctl" stats --pid "$pid" --json >"$dir/json" || fail "stats --json exited $?"
python3 -m json.tool "$dir/json" >/dev/null 2>&1 || ! command -v python3 >/dev/null ||
  fail "the JSON does not parse: $(cat "$dir/json")"
stop_process

echo "== a block of an unknown version"
start MONITOR_COMPAT_FUTURE
"$ctl" stats --pid "$pid" >"$dir/out" 2>"$dir/err"
rc=$?
cat "$dir/err"
[ $rc = 1 ] || fail "an unknown version exited $rc (want 1)"
grep -q "^hakmemctl: process $pid: live-stats block of version 2 not understood" "$dir/err" ||
  fail "no clear message for an unknown version"
[ ! -s "$dir/out" ] || fail "printed a report of an unknown version"
stop_process
echo PASS
