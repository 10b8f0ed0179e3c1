#!/bin/sh
# Runs the differential heap fuzzer (tests/fuzz_heap.c) on hakmem and, with
# the same seeds, on glibc (tests/fuzz_heap_glibc), which shows the harness
# itself is right.
#
#   tests/fuzz_heap.sh           the short set 'make check' runs: a few
#                                seeds, a few seconds
#   tests/fuzz_heap.sh --long    'make fuzz': seeds one after another for
#                                FUZZ_SECONDS (default 600), with 1 to 8
#                                threads, one in three under a memory limit
#                                (fixed or cycle, see the fuzzer's MEMLIMIT);
#                                FUZZ_SEED picks the first seed (default:
#                                from the clock, printed)
#
# Every run has a deadline (the fuzzer's own alarm, and timeout(1) as a
# backstop); a mismatch, a crash, a hang or any "hakmem: " line on its
# stderr stops everything with the
# command to replay it and exit status 1.  The last line gives the seeds
# and operations run.  Run from the top build directory.
set -u

me=fuzz_heap.sh
hak=./tests/fuzz_heap
glibc=./tests/fuzz_heap_glibc
for p in "$hak" "$glibc"; do
  if [ ! -x "$p" ]; then
    echo "$me: $p not found (run from the top build directory after make)" >&2
    exit 1
  fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

if command -v timeout >/dev/null 2>&1; then
  backstop() { t=$1; shift; timeout -s KILL "$((t + 30))" "$@"; }
else
  backstop() { shift; "$@"; }
fi

seeds=0
ops=0
hak_runs=0
glibc_runs=0

# run PROGRAM SEED OPS THREADS DEADLINE [MEMLIMIT]
run() {
  prog=$1 seed=$2 n=$3 threads=$4 deadline=$5 limit=${6:-none}
  backstop "$deadline" "$prog" "$seed" "$n" "$threads" "$deadline" "$limit" >"$tmp/out" 2>&1
  rc=$?
  # A "hakmem: " line is a failure too: a warning (e.g. "munmap refused")
  # means the allocator's own bookkeeping went wrong.
  if [ $rc -ne 0 ] || ! grep -q '^fuzz_heap: ok ' "$tmp/out" || grep -q '^hakmem: ' "$tmp/out"; then
    echo "$me: FAIL: $prog $seed $n $threads $deadline $limit: exit status $rc" \
      "$( [ $rc -gt 128 ] && echo "(signal $((rc - 128)))")" >&2
    tail -n 20 "$tmp/out" >&2
    echo "$me: FAIL after $seeds seeds, $ops operations" >&2
    exit 1
  fi
  done_ops=$(sed -n 's/^fuzz_heap: ok .* ops \([0-9]*\) .*/\1/p' "$tmp/out")
  ops=$((ops + ${done_ops:-0}))
  case $prog in
    "$hak") hak_runs=$((hak_runs + 1)) ;;
    *) glibc_runs=$((glibc_runs + 1)) ;;
  esac
  if [ "${FUZZ_VERBOSE:-0}" != 0 ]; then cat "$tmp/out"; fi
}

if [ "${1:-}" = --long ]; then
  total=${FUZZ_SECONDS:-600}
  seed=${FUZZ_SEED:-$(date +%s)}
  echo "$me: fuzzing for $total s from seed $seed"
  start=$(date +%s)
  while [ $(($(date +%s) - start)) -lt "$total" ]; do
    case $((seeds % 4)) in
      0) threads=4 ;; 1) threads=1 ;; 2) threads=2 ;; *) threads=8 ;;
    esac
    # One seed in three where memory runs out (see MEMLIMIT in the
    # fuzzer): one limit for the run, or limits lowered and lifted.
    case $((seeds % 6)) in
      2) limit=fixed ;; 5) limit=cycle ;; *) limit=none ;;
    esac
    if [ $((seeds % 4)) -eq 3 ]; then
      # Every fourth seed with check = 1 (canaries, free-block fills).
      HAKMEM_CHECK=1 run "$hak" "$seed" 100000 "$threads" 300 "$limit"
    else
      run "$hak" "$seed" 400000 "$threads" 300 "$limit"
    fi
    # Every eighth seed once more on glibc: the harness stays honest.
    if [ $((seeds % 8)) -eq 0 ]; then
      run "$glibc" "$seed" 400000 "$threads" 300 "$limit"
    fi
    seeds=$((seeds + 1))
    seed=$((seed + 1))
  done
else
  for seed in 1 2 3; do
    run "$hak" "$seed" 60000 4 60
    run "$glibc" "$seed" 60000 4 60
    seeds=$((seeds + 1))
  done
  # One thread: the seed replays exactly.
  run "$hak" 4 40000 1 60
  run "$glibc" 4 40000 1 60
  seeds=$((seeds + 1))
  # Seed 10, one thread, replays a cached mapping grown with the pages of
  # another one that was cached for an aligned block (its registry units
  # reached past the piece taken): that block lost its registry entry.
  run "$hak" 10 60000 1 60
  seeds=$((seeds + 1))
  # check = 1: canaries and free-block fills must never fire on a correct
  # program.
  HAKMEM_CHECK=1 run "$hak" 5 40000 4 60
  seeds=$((seeds + 1))
  # Out of memory: a refusal is NULL with ENOMEM and changes nothing;
  # once the limit is lifted every call succeeds again.
  run "$hak" 6 30000 2 60 fixed
  run "$glibc" 6 30000 2 60 fixed
  seeds=$((seeds + 1))
  run "$hak" 7 30000 1 60 cycle
  # One thread under a cycling limit: a shrinking realloc of a large block
  # whose mapping is of no BigCache size class (its rounded size larger
  # than the mapping) moved it, and failed with ENOMEM, at op 32415 (in
  # about five runs in six: the limit's cycle follows the clock).
  for try in 1 2 3; do run "$hak" 1795843165 40000 1 300 cycle; done
  run "$hak" 8 30000 4 60 cycle
  run "$glibc" 8 30000 4 60 cycle
  seeds=$((seeds + 3))
  # A few dozen entries short of the kernel's limit on mappings: every
  # request is still granted, as with glibc (one thread: with more, the
  # first requests at the limit can still fail, doc/internals.md).
  for seed in 11 12; do
    run "$hak" "$seed" 20000 1 60 maps
    run "$glibc" "$seed" 20000 1 60 maps
    seeds=$((seeds + 1))
  done
fi
echo "$me: ok: $seeds seeds, $ops operations ($hak_runs runs on hakmem, $glibc_runs on glibc)"
