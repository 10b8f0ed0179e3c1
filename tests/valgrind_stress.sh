#!/bin/sh
# Two programs under valgrind's memcheck; fails on any memcheck error.
#
# tests/stress_small: four threads allocating, handing blocks to each
# other, checking contents, with hakmem as the allocator.
#
# tests/valgrind_move: the OS layer's growing page moves (mremap with
# MREMAP_FIXED) in the layouts where memcheck itself lost track of the
# grown pages: it took their access from whatever segment held the
# source's place in its table after the move, a PROT_NONE guard or the
# freed range, and reported every use of a moved and grown large block as
# an invalid read or write (hundreds of thousands of errors, "in a rw-
# anonymous segment").  src/os.c tells memcheck the truth after such a
# move (memcheck_grown_by_mremap); without that this program fails on
# every run.
#
# Which allocator valgrind sees: by default memcheck replaces the
# allocation functions wherever they are exported - libc, but also any other
# shared library, libhakmem included - with its own, and hakmem would not
# run at all.  --soname-synonyms=somalloc=nouserintercepts (a library name
# that does not exist) limits the replacement to the system libraries.
# stress_small is linked with libhakmem, which comes before libc in symbol
# lookup, so every malloc in the process, libc's own included, then goes to
# hakmem.  (The opposite choice, somalloc=libhakmem.so*, would hand every
# allocation to valgrind and test nothing of hakmem.)
#
# What memcheck can find this way: hakmem does not describe its blocks to
# valgrind (its one client request restates what a growing mremap mapped,
# see above), so its SuperSlabs and large blocks are plain mappings to
# memcheck: it cannot see a program overrunning a hakmem block, nor leaks
# (hence --errors-for-leak-kinds=none, --leak-check=no).  It does see
# hakmem's own code reading or writing outside its mappings, jumps on
# uninitialised values, bad system call arguments (mmap, madvise, mremap),
# overlapping memcpy - and whether hakmem works at all on valgrind's
# serialised threads and its own address-space manager.  stress_small
# checks that its malloc is hakmem's, and the HAKMEM_STATS report must show
# the allocations.
set -u

me=valgrind_stress.sh
if ! command -v valgrind >/dev/null 2>&1; then
  echo "$me: valgrind is not installed, skipped"
  exit 77
fi
for prog in tests/stress_small tests/valgrind_move; do
  if [ ! -x "$prog" ]; then
    echo "$me: $prog not built (run from the top build directory after make check's build)" >&2
    exit 1
  fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-vg.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# Both programs are linked with -no-install, so they are the real
# programs; if a libtool wrapper script stands there instead, let libtool
# run valgrind on the program behind it.
launcher()
{
  magic=$(od -An -c -N4 "$1" | tr -d ' ')
  if [ "$magic" = '177ELF' ]; then
    echo ""
  elif [ -x ./libtool ]; then
    echo "./libtool --mode=execute"
  else
    echo "$me: $1 is not an executable and ./libtool is missing" >&2
    exit 1
  fi
}
if command -v timeout >/dev/null 2>&1; then limit="timeout 600"; else limit=; fi

unset LD_PRELOAD 2>/dev/null || true

# Runs program $1 under memcheck, with the environment settings that
# follow (output in $tmp/$1.*); fails the test on any memcheck error or
# exit status other than 0.
memcheck_run()
{
  name=$1
  shift
  launch=$(launcher "tests/$name") || exit 1
  env "$@" $limit $launch valgrind --tool=memcheck --error-exitcode=99 \
    --errors-for-leak-kinds=none --leak-check=no --fair-sched=try \
    --soname-synonyms=somalloc=nouserintercepts \
    --log-file="$tmp/$name.log" "tests/$name" >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
  if [ "$rc" -eq 99 ]; then
    echo "$me: FAIL: memcheck reported errors in $name:" >&2
    head -n 200 "$tmp/$name.log" >&2
    grep 'ERROR SUMMARY' "$tmp/$name.log" >&2
    exit 1
  fi
  if [ "$rc" -ne 0 ]; then
    echo "$me: FAIL: $name under valgrind exited with status $rc" >&2
    cat "$tmp/$name.err" >&2
    tail -n 40 "$tmp/$name.log" >&2
    exit 1
  fi
  if ! grep -q 'ERROR SUMMARY: 0 errors' "$tmp/$name.log"; then
    echo "$me: FAIL: no clean error summary from memcheck for $name:" >&2
    tail -n 40 "$tmp/$name.log" >&2
    exit 1
  fi
  cat "$tmp/$name.out"
}

memcheck_run valgrind_move

# stress_small twice: without the background purge thread
# (purge_delay_ms = -1), whose timing decides what the allocation paths
# find cached, and with it at a short delay, so that it decommits and
# unmaps free memory during the run.  (The purge was once left out of this
# test after memcheck's false reports of a moved block's grown part broke a
# CI run with it; the purge's unmapping only made the layout for them.)
for purge in -1 20; do
  memcheck_run stress_small HAKMEM_PURGE_DELAY_MS=$purge HAKMEM_STATS=1
  calls=$(sed -n 's/^hakmem: malloc_calls \([0-9][0-9]*\)$/\1/p' "$tmp/stress_small.err" | head -n 1)
  if ! grep -q '^hakmem: stats pid=' "$tmp/stress_small.err" || [ "${calls:-0}" -eq 0 ]; then
    echo "$me: FAIL: no hakmem statistics report, hakmem was not the allocator:" >&2
    cat "$tmp/stress_small.err" >&2
    exit 1
  fi
  if [ "$purge" -ge 0 ] && ! grep -q '^hakmem: purge_threads [1-9]' "$tmp/stress_small.err"; then
    echo "$me: FAIL: the purge thread never ran (purge_delay_ms $purge):" >&2
    cat "$tmp/stress_small.err" >&2
    exit 1
  fi
  echo "$me: memcheck clean (purge_delay_ms $purge), $calls small allocations served by hakmem"
done
exit 0
