#!/bin/sh
# Forks from a multithreaded program while its threads allocate blocks of
# every kind, under the library preloaded (tests/fork_stress.c): each
# child and grandchild allocates a lot, runs threads, calls malloc_trim
# and checks the heap, under a deadline.  The child of such a fork
# inherits every layer as the other threads left it, stopped anywhere.
#
#   tests/fork_stress.sh          the short set 'make check' runs: 100
#                                 forks under the default options, 30
#                                 under each other mode (a few seconds
#                                 each on an idle machine)
#   tests/fork_stress.sh --long   'make fork-stress': seeds and modes in
#                                 turn for FORK_SECONDS (default 600)
#
# HAKMEM_LIB picks another build of the library.  A child that dies, hangs
# or finds the heap or a block wrong, or any "hakmem: " line, fails the
# test with the command that replays it.  Run from the top build directory.
set -u

me=fork_stress.sh
prog=./tests/fork_stress
lib=${HAKMEM_LIB:-$(pwd)/src/.libs/libhakmem.so.0}
case $lib in /*) ;; *) lib=$(pwd)/$lib ;; esac
for f in "$prog" "$lib"; do
  if [ ! -f "$f" ]; then
    echo "$me: $f not found (run from the top build directory after make)" >&2
    exit 1
  fi
done

. "${srcdir:-.}/tests/lib.sh"
scratch_setup
tmp=$dir
unset LD_PRELOAD MALLOC_CHECK_ MALLOC_PERTURB_ 2>/dev/null || true
clear_hakmem_env

if command -v timeout >/dev/null 2>&1; then limit="timeout 600"; else limit=; fi

runs=0
forks=0

# run FORKS THREADS SEED [VAR=VALUE...]
run() {
  n=$1 threads=$2 seed=$3
  shift 3
  # Profiles and reports at exit go to the scratch directory.
  (cd "$tmp" && $limit env "$@" HAKMEM_PROF_PREFIX="$tmp/prof" \
     HAKMEM_STATS_FILE="$tmp/stats" LD_PRELOAD="$lib" \
     "$OLDPWD/$prog" "$n" "$threads" "$seed") >"$tmp/out" 2>&1
  rc=$?
  if [ $rc -ne 0 ] || grep -q '^hakmem: ' "$tmp/out"; then
    echo "$me: FAIL: env $* LD_PRELOAD=$lib $prog $n $threads $seed: exit status $rc" >&2
    grep -v '^fork_stress: fork ' "$tmp/out" | sort | uniq -c | sort -rn | head -n 10 >&2
    grep '^fork_stress: fork ' "$tmp/out" | head -n 5 >&2
    exit 1
  fi
  runs=$((runs + 1))
  forks=$((forks + n))
  rm -f "$tmp"/prof* "$tmp"/stats
}

modes="HAKMEM_CHECK=1 HAKMEM_PROF=1 HAKMEM_MODE=fast HAKMEM_MODE=minimal
HAKMEM_SS_MEM_LEAN=1 HAKMEM_PURGE_DELAY_MS=1 HAKMEM_MODE=learning HAKMEM_STATS=1"

if [ "${1:-}" = --long ]; then
  total=${FORK_SECONDS:-600}
  seed=${FORK_SEED:-$(date +%s)}
  echo "$me: forking for $total s from seed $seed"
  start=$(date +%s)
  while [ $(($(date +%s) - start)) -lt "$total" ]; do
    run 200 $((seed % 4 + 1)) "$seed"
    for m in $modes; do
      run 100 $((seed % 4 + 1)) "$seed" "$m"
    done
    seed=$((seed + 1))
  done
else
  # 100 forks catch a fault in 3 % of them with a probability of 95 %.
  # purge_delay_ms = 1 runs with --long only: one such run, in a package
  # build on a busy 2-core machine, had a grandchild fail, which nothing
  # has reproduced since (doc/internals.md, "Fork").
  run 100 3 1
  seed=2
  for m in $(printf '%s\n' $modes | grep -v '^HAKMEM_PURGE_DELAY_MS='); do
    run 30 $((seed % 4 + 1)) "$seed" "$m"
    seed=$((seed + 1))
  done
fi
echo "$me: ok: $runs runs, $forks forks"
