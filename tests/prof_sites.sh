#!/bin/sh
# The heap profiler (prof = 1) end to end, on tests/prof_sites under
# LD_PRELOAD=libhakmem.so.0, read back by google-pprof:
#  - off by default: no profile is written;
#  - on from a [prof_sites] section of the file HAKMEM_CONF names, and
#    not from another program's section;
#  - two allocation sites holding 64 and 32 MiB: at the default sampling
#    rate (512 KiB) alpha_site and beta_site get >= 90 % of the profile's
#    bytes, and alpha_site between 50 % and 83 % (2/3 expected; the bound
#    is more than four standard deviations of the sampling away); with
#    prof_sample_kb = 0 (every block) exactly 2/3 (within 1 %);
#  - the stack walk through frames of every kind: deep_site gets >= 90 %
#    of the bytes, and deep_recurse, deep_aligned (a realigned frame) and
#    deep_alloca (alloca) are on >= 90 % of them (google-pprof --cum);
#    signal_site, allocating in a signal handler, gets >= 90 %, and
#    signal_raiser, below the signal frame, is on >= 90 %; on x86-64
#    the profiler's own walk crosses all of them (libgcc_s not loaded);
#  - prof_interval_mb = 16: numbered profiles while the program runs;
#  - prof_leak = 1: a planted leak (20 blocks of 1000 bytes from
#    leak_site) is reported, and google-pprof puts its 20 objects on
#    leak_site; a clean program gets "no block is still live"; the same
#    with a sample every KiB, blocks moved by realloc on the way;
#  - threads freeing each other's blocks while the program forks, with a
#    sample every 16 KiB: no failure, no warning, and both processes' exit
#    profiles name alpha_site among the allocations (--alloc_space), and
#    the parent's has nothing of the two sites in use;
#  - hakmemctl profile -- prog leaves the exit profile and an SVG, of
#    the space allocated when nothing was live at exit;
#  - hakmemctl profile --pid on a running process gets a profile (skipped
#    if process_vm_writev is not permitted here), and refuses a process
#    whose profiling is off.
# Skipped (77) without google-pprof (Debian package google-perftools).
# Run by 'make check' from the top build directory.
set -u
me=prof_sites.sh
lib=${HAKMEM_LIB:-$(pwd)/src/.libs/libhakmem.so.0}
case $lib in /*) ;; *) lib=$(pwd)/$lib ;; esac
prog=$(pwd)/tests/prof_sites
ctl=$(pwd)/tools/hakmemctl
for f in "$lib" "$prog" "$ctl"; do
  [ -f "$f" ] || { echo "$me: $f not found (run from the top build directory after make)" >&2; exit 1; }
done
command -v google-pprof >/dev/null || { echo "$me: google-pprof not found (google-perftools): skipped" >&2; exit 77; }

. "${srcdir:-.}/tests/lib.sh"
scratch_setup
# Only the variables each case sets.
clear_hakmem_env

# Waits until the program started in the background ($pid) has written
# "ready" to the file $1.
wait_ready() {
  wait_until "prof_sites was ready" grep -qs '^ready$' "$1"
}

# The share of the profile's in-use bytes (google-pprof --text) on the
# functions whose names start with $2, in per cent with one decimal.
share() {
  google-pprof --text "$prog" "$1" 2>/dev/null | awk -v want="$2" '
    $2 ~ /%$/ && NF >= 6 { total += $1; if (index($6, want) == 1) mine += $1 }
    END { if (total > 0) printf "%.1f\n", 100 * mine / total; else print "none" }'
}

# The exit profile whose name starts with $2 gives the two sites the
# shares awk's condition $3 accepts (on a, alpha_site's, and b,
# beta_site's, per cent); $4 says what is wanted, $1 which case this is.
# Leaves the profile's name in $p, empty if there is none.
two_sites() {
  p=$(ls "$dir"/$2.*.exit.heap 2>/dev/null)
  if [ -z "$p" ]; then
    fail_later "$1: no exit profile"
    return
  fi
  a=$(share "$p" alpha_site); b=$(share "$p" beta_site)
  echo "$me: $1: alpha_site $a %, beta_site $b %"
  awk -v a="$a" -v b="$b" "BEGIN { exit !($3) }" ||
    fail_later "$1: alpha_site $a %, beta_site $b % (want $4)"
}

# Off by default.
HAKMEM_PROF_PREFIX=$dir/off env LD_PRELOAD="$lib" "$prog" two || fail_later "prof_sites two failed"
ls "$dir"/off* >/dev/null 2>&1 && fail_later "a profile was written with prof off"

# Two sites, default rate.
HAKMEM_PROF=1 HAKMEM_PROF_PREFIX=$dir/two env LD_PRELOAD="$lib" "$prog" two || fail_later "prof_sites two failed under prof = 1"
two_sites "two sites at the default rate" two "a + b >= 90 && a >= 50 && a <= 83" "sum >= 90, alpha 50..83"
[ -z "$p" ] || head -1 "$p" | grep -q '@ heap_v2/524288$' || fail_later "header: $(head -1 "$p")"

# Switched on for one program by its section of a configuration file
# (hakmem.conf(5): "best set in the section of the one program to
# profile"), the file named by HAKMEM_CONF; another program's section
# leaves it off.
printf '[prof_sites]\nprof = 1\nprof_prefix = %s/conf\n' "$dir" >"$dir/prof.conf"
HAKMEM_CONF=$dir/prof.conf env LD_PRELOAD="$lib" "$prog" two 2>"$dir/conf.err" ||
  fail_later "prof_sites two failed under [prof_sites] prof = 1: $(cat "$dir/conf.err")"
[ -s "$dir/conf.err" ] && fail_later "[prof_sites] prof = 1: $(cat "$dir/conf.err")"
two_sites "[prof_sites] prof = 1 in a configuration file" conf "a + b >= 90" "sum >= 90"
printf '[someone_else]\nprof = 1\nprof_prefix = %s/notme\n' "$dir" >"$dir/other.conf"
HAKMEM_CONF=$dir/other.conf env LD_PRELOAD="$lib" "$prog" two || fail_later "prof_sites two failed under [someone_else]"
ls "$dir"/notme* >/dev/null 2>&1 && fail_later "another program's section switched profiling on"

# Every block.
HAKMEM_PROF=1 HAKMEM_PROF_SAMPLE_KB=0 HAKMEM_PROF_PREFIX=$dir/exact env LD_PRELOAD="$lib" "$prog" two ||
  fail_later "prof_sites two failed with prof_sample_kb = 0"
two_sites "two sites, every block (prof_sample_kb = 0)" exact "a + b >= 99 && a >= 66 && a <= 67.5" "66.7 and 33.3"

# The share of the profile's in-use bytes on stacks through the functions
# whose names start with $2 (the cumulative column), in per cent.
cumshare() {
  google-pprof --text --cum "$prog" "$1" 2>/dev/null | awk -v want="$2" '
    $2 ~ /%$/ && NF >= 6 { total += $1; if (index($6, want) == 1 && $4 > mine) mine = $4 }
    END { if (total > 0) printf "%.1f\n", 100 * mine / total; else print "none" }'
}

# The stack walk through alloca, a realigned frame and recursion, and
# through a signal frame.
for mode in deep signal; do
  HAKMEM_PROF=1 HAKMEM_PROF_PREFIX=$dir/$mode env LD_PRELOAD="$lib" "$prog" $mode ||
    fail_later "prof_sites $mode failed under prof = 1"
  p=$(ls "$dir"/$mode.*.exit.heap 2>/dev/null)
  if [ -z "$p" ]; then
    fail_later "no exit profile for prof_sites $mode"
    continue
  fi
  case $mode in
    deep) site=deep_site; callers="deep_alloca deep_aligned deep_recurse" ;;
    signal) site=signal_site; callers="signal_raiser" ;;
  esac
  a=$(share "$p" $site)
  line="$site $a %"
  awk -v a="$a" 'BEGIN { exit !(a >= 90) }' || fail_later "prof_sites $mode: $site has $a % of the bytes (want >= 90)"
  for c in $callers; do
    a=$(cumshare "$p" $c)
    line="$line, $c on $a %"
    awk -v a="$a" 'BEGIN { exit !(a >= 90) }' || fail_later "prof_sites $mode: $c is on $a % of the bytes (want >= 90)"
  done
  echo "$me: $mode: $line"
  # On x86-64 the profiler walks every one of these frames itself,
  # signal frames included: backtrace(3), which loads libgcc_s into the
  # process, is for CFI the walk does not follow.  The profile's copy of
  # the process's mappings says whether it was loaded.
  if [ "$(uname -m)" = x86_64 ] && grep -q 'libgcc_s' "$p"; then
    fail_later "prof_sites $mode: libgcc_s was loaded (a frame the profiler's walk did not follow)"
  fi
done

# Profiles by interval: 96 MiB allocated, one every 16 MiB.
HAKMEM_PROF=1 HAKMEM_PROF_INTERVAL_MB=16 HAKMEM_PROF_PREFIX=$dir/int env LD_PRELOAD="$lib" "$prog" two ||
  fail_later "prof_sites two failed with prof_interval_mb"
n=$(ls "$dir"/int.*.[0-9][0-9][0-9][0-9].heap 2>/dev/null | wc -l)
[ "$n" -ge 4 ] || fail_later "prof_interval_mb = 16 over 96 MiB: $n numbered profiles (want >= 4)"

# Threads and fork.  In the parent every block of the two sites was
# freed, most by another thread than the one that allocated it: none is
# in use in its exit profile (a stack's counts are updated without a
# lock, by the sampling thread and by the freeing one).
HAKMEM_PROF=1 HAKMEM_PROF_SAMPLE_KB=16 HAKMEM_PROF_PREFIX=$dir/thr env LD_PRELOAD="$lib" "$prog" threads \
  2>"$dir/thr.err" &
thr_pid=$!
wait $thr_pid || fail_later "prof_sites threads failed: $(cat "$dir/thr.err")"
[ -s "$dir/thr.err" ] && fail_later "prof_sites threads: $(cat "$dir/thr.err")"
n=0
for p in "$dir"/thr.*.exit.heap; do
  [ -f "$p" ] || continue
  n=$((n + 1))
  google-pprof --text --alloc_space "$prog" "$p" 2>/dev/null | grep -q alpha_site || fail_later "$p does not name alpha_site"
done
[ $n = 2 ] || fail_later "prof_sites threads: $n exit profiles (want the parent's and the child's)"
p=$dir/thr.$thr_pid.exit.heap
if [ -f "$p" ]; then
  live=$(google-pprof --text --inuse_objects "$prog" "$p" 2>/dev/null |
    awk '$2 ~ /%$/ && NF >= 6 && $1 > 0 && ($6 ~ /^alpha_site/ || $6 ~ /^beta_site/)')
  if [ -z "$live" ]; then
    echo "$me: threads: nothing of the two sites in use in the parent's exit profile"
  else
    fail_later "prof_sites threads: blocks freed across threads still in use: $live"
  fi
else
  fail_later "prof_sites threads: no exit profile of the parent ($thr_pid)"
fi

# Leak report: planted leak, clean program.
HAKMEM_PROF=1 HAKMEM_PROF_LEAK=1 HAKMEM_PROF_SAMPLE_KB=0 HAKMEM_PROF_PREFIX=$dir/leak \
  env LD_PRELOAD="$lib" "$prog" leak 2>"$dir/leak.err" || fail_later "prof_sites leak failed"
grep -q '^hakmem: leak report: 20 block(s), 20000 bytes never freed, from 1 stack(s)' "$dir/leak.err" ||
  fail_later "planted leak not reported: $(cat "$dir/leak.err")"
[ "$(grep -c '^hakmem: leak: ' "$dir/leak.err")" = 1 ] || fail_later "leak lines: $(cat "$dir/leak.err")"
p=$(ls "$dir"/leak.*.exit.heap 2>/dev/null)
objs=$(google-pprof --text --inuse_objects "$prog" "$p" 2>/dev/null | awk '$6 ~ /^leak_site/ { print $1 }')
[ "$objs" = 20 ] || fail_later "google-pprof puts $objs objects on leak_site (want 20)"
HAKMEM_PROF=1 HAKMEM_PROF_LEAK=1 HAKMEM_PROF_SAMPLE_KB=0 HAKMEM_PROF_PREFIX=$dir/clean \
  env LD_PRELOAD="$lib" "$prog" clean 2>"$dir/clean.err" || fail_later "prof_sites clean failed"
[ "$(cat "$dir/clean.err")" = "hakmem: leak report: no block is still live at exit" ] ||
  fail_later "clean program: $(cat "$dir/clean.err")"

# The same under sampling (prof_sample_kb = 1: most 1000-byte blocks and
# every 300000-byte one sampled): a sampled block is a large block with
# its record just before it, which its free and realloc's move must find
# and clear; a planted leak is still reported, from its one stack.
HAKMEM_PROF=1 HAKMEM_PROF_LEAK=1 HAKMEM_PROF_SAMPLE_KB=1 HAKMEM_PROF_PREFIX=$dir/moved \
  env LD_PRELOAD="$lib" "$prog" moved 2>"$dir/moved.err" || fail_later "prof_sites moved failed"
[ "$(cat "$dir/moved.err")" = "hakmem: leak report: no sampled block is still live at exit" ] ||
  fail_later "sampled blocks freed and moved: $(cat "$dir/moved.err")"
HAKMEM_PROF=1 HAKMEM_PROF_LEAK=1 HAKMEM_PROF_SAMPLE_KB=1 HAKMEM_PROF_PREFIX=$dir/movedleak \
  env LD_PRELOAD="$lib" "$prog" moved leak 2>"$dir/movedleak.err" || fail_later "prof_sites moved leak failed"
grep -q '^hakmem: leak report: [1-9][0-9]* sampled block(s), [1-9][0-9]*000 bytes never freed, from 1 stack(s)' "$dir/movedleak.err" ||
  fail_later "planted leak not reported under sampling: $(cat "$dir/movedleak.err")"

# hakmemctl profile -- prog: the profile and its SVG, beside (in the
# current directory).
(cd "$dir" && HAKMEMCTL_LIBRARY=$lib "$ctl" profile -- "$prog" two 2>"$dir/ctl.err") ||
  fail_later "hakmemctl profile -- prof_sites two: $(cat "$dir/ctl.err")"
p=$(ls "$dir"/hakmem.prof_sites.*.exit.heap 2>/dev/null)
[ -n "$p" ] || fail_later "hakmemctl profile left no profile: $(cat "$dir/ctl.err")"
if command -v dot >/dev/null; then
  s=${p%.heap}.svg
  grep -q '<svg' "$s" 2>/dev/null && grep -q alpha_site "$s" ||
    fail_later "hakmemctl profile left no SVG naming alpha_site: $(cat "$dir/ctl.err")"
else
  echo "$me: dot (graphviz) not found: SVG not checked" >&2
fi

# A program that frees everything before it exits: nothing is live in
# its exit profile, on which google-pprof --svg fails; the graph is then
# of the space allocated, and says so.
if command -v dot >/dev/null; then
  (cd "$dir" && HAKMEMCTL_LIBRARY=$lib "$ctl" profile --prefix "$dir/freed" -- "$prog" clean 2>"$dir/freed.err") ||
    fail_later "hakmemctl profile -- prof_sites clean: $(cat "$dir/freed.err")"
  s=$(ls "$dir"/freed.*.exit.svg 2>/dev/null)
  grep -q '(of the space allocated: nothing was live at exit)$' "$dir/freed.err" && grep -q alpha_site "$s" 2>/dev/null ||
    fail_later "hakmemctl profile -- prof_sites clean: no SVG of the space allocated: $(cat "$dir/freed.err")"
fi

# hakmemctl profile --pid.
HAKMEM_PROF=1 HAKMEM_PROF_PREFIX=$dir/pid env LD_PRELOAD="$lib" "$prog" wait 20 >"$dir/pid.ready" &
pid=$!
wait_ready "$dir/pid.ready"
out=$("$ctl" profile --pid "$pid" --timeout 15 --no-svg 2>"$dir/pid.err")
rc=$?
if [ $rc != 0 ] && grep -q 'permission denied' "$dir/pid.err"; then
  echo "$me: process_vm_writev not permitted here: --pid not checked ($(cat "$dir/pid.err"))" >&2
elif [ $rc != 0 ]; then
  fail_later "hakmemctl profile --pid: $(cat "$dir/pid.err")"
else
  [ "$out" = "$dir/pid.$pid.0001.heap" ] || fail_later "hakmemctl profile --pid printed '$out'"
  a=$(share "$out" alpha_site)
  awk -v a="$a" 'BEGIN { exit !(a >= 50) }' || fail_later "--pid profile: alpha_site $a %"
fi
stop_process

# A request while four threads sample every KiB: each of them finds it
# pending, and one profile answers it (one used to be written per thread
# that saw it).  Counted once the process has exited, all its writes done.
HAKMEM_PROF=1 HAKMEM_PROF_SAMPLE_KB=1 HAKMEM_PROF_PREFIX=$dir/many env LD_PRELOAD="$lib" \
  "$prog" wait 10 4 >"$dir/many.ready" &
pid=$!
wait_ready "$dir/many.ready"
if "$ctl" profile --pid "$pid" --timeout 15 --no-svg >/dev/null 2>"$dir/many.err"; then
  wait "$pid" || fail_later "prof_sites wait 10 4 failed"
  n=$(ls "$dir/many.$pid".0*.heap* 2>/dev/null | wc -l)
  [ "$n" = 1 ] || fail_later "one request, four sampling threads: $n profiles written"
elif ! grep -q 'permission denied' "$dir/many.err"; then
  fail_later "hakmemctl profile --pid, four threads: $(cat "$dir/many.err")"
fi
stop_process
env LD_PRELOAD="$lib" "$prog" wait 10 >"$dir/off.ready" &
pid=$!
wait_ready "$dir/off.ready"
"$ctl" profile --pid "$pid" --timeout 2 2>"$dir/off.err" && fail_later "--pid on a process with prof off succeeded"
grep -q 'heap profiling is off\|permission denied' "$dir/off.err" || fail_later "--pid, prof off: $(cat "$dir/off.err")"
stop_process

exit $failed
