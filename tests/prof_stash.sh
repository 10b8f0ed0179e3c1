#!/bin/sh
# The profiler's stash of sampled slots (prof = 1), on tests/prof_stash
# under LD_PRELOAD=libhakmem.so.0 with a sample every KiB:
#  - a freed sample's mapping serves the next sample (200 rounds, the
#    same address each time) without BigCache: the stats report counts
#    no BigCache hit and one miss (the first sample's mapping);
#  - a second free of a sampled block, stashed, aborts with hakmem's
#    "free(): double free" line;
#  - malloc_trim unmaps the stashed mapping, and the purge thread does
#    once the stash goes unused for a purge period (purge_delay_ms = 20),
#    twice: a freed sample kicks the purge only when it raises the
#    stash's purge flag, so the second round checks that the purge's
#    pass left the next one to raise it and kick.
# Except for the last, without the purge thread (purge_delay_ms = -1):
# its creation allocates, and that allocation, sampled, could take the
# stashed slot the case looks at.
# Run by 'make check' from the top build directory.
set -u
me=prof_stash.sh
lib=${HAKMEM_LIB:-$(pwd)/src/.libs/libhakmem.so.0}
case $lib in /*) ;; *) lib=$(pwd)/$lib ;; esac
prog=$(pwd)/tests/prof_stash
for f in "$lib" "$prog"; do
  [ -f "$f" ] || { echo "$me: $f not found (run from the top build directory after make)" >&2; exit 1; }
done
. "${srcdir:-.}/tests/lib.sh"
scratch_setup
clear_hakmem_env

# run MODE [VAR=VALUE...]: the program with profiling on, a sample every
# KiB, profiles into $dir; its output in $dir/out, its errors in $dir/err.
run() {
  mode=$1
  shift
  env HAKMEM_PROF=1 HAKMEM_PROF_SAMPLE_KB=1 HAKMEM_PROF_PREFIX="$dir/p" "$@" \
    LD_PRELOAD="$lib" "$prog" "$mode" >"$dir/out" 2>"$dir/err"
}

run reuse HAKMEM_STATS=1 HAKMEM_PURGE_DELAY_MS=-1
status=$?
cat "$dir/out"
[ $status -eq 0 ] || fail_later "reuse: exit status $status: $(cat "$dir/err")"
hits=$(sed -n 's/^hakmem: bigcache_hits \([0-9]*\)$/\1/p' "$dir/err")
misses=$(sed -n 's/^hakmem: bigcache_misses \([0-9]*\)$/\1/p' "$dir/err")
allocs=$(sed -n 's/^hakmem: large_allocs \([0-9]*\)$/\1/p' "$dir/err")
echo "reuse: large_allocs ${allocs:-?}, bigcache_hits ${hits:-?}, bigcache_misses ${misses:-?}"
if [ -z "$hits" ] || [ -z "$misses" ] || [ -z "$allocs" ]; then
  fail_later "reuse: no counters in the stats report"
elif [ "$allocs" -lt 201 ] || [ "$hits" -ne 0 ] || [ "$misses" -gt 1 ]; then
  fail_later "reuse: the samples went through BigCache"
fi

run double HAKMEM_PURGE_DELAY_MS=-1
status=$?
if [ $status -ne 134 ] || ! grep -q '^hakmem: free(): double free 0x' "$dir/err"; then
  fail_later "double: exit status $status (134 expected), stderr: $(cat "$dir/err")"
else
  echo "ok: a second free of a stashed sample aborts: $(cat "$dir/err")"
fi

run trim HAKMEM_PURGE_DELAY_MS=-1
status=$?
cat "$dir/out"
[ $status -eq 0 ] || fail_later "trim: exit status $status: $(cat "$dir/err")"

run purge HAKMEM_PURGE_DELAY_MS=20
status=$?
cat "$dir/out"
[ $status -eq 0 ] || fail_later "purge: exit status $status: $(cat "$dir/err")"

exit $failed
