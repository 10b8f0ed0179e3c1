#!/bin/sh
# tests/stress_small (four threads allocating, handing blocks to each
# other, checking contents) under valgrind's memcheck, with hakmem as the
# allocator.  Fails on any memcheck error.
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
# valgrind (no client requests), so its SuperSlabs and large blocks are
# plain mappings to memcheck: it cannot see a program overrunning a hakmem
# block, nor leaks (hence --errors-for-leak-kinds=none, --leak-check=no).
# It does see hakmem's own code reading or writing outside its mappings,
# jumps on uninitialised values, bad system call arguments (mmap, madvise,
# mremap), overlapping memcpy - and whether hakmem works at all on
# valgrind's serialised threads and its own address-space manager.
# stress_small checks that its malloc is hakmem's, and the HAKMEM_STATS
# report must show the allocations.
set -u

me=valgrind_stress.sh
if ! command -v valgrind >/dev/null 2>&1; then
  echo "$me: valgrind is not installed, skipped"
  exit 77
fi
prog=tests/stress_small
if [ ! -x "$prog" ]; then
  echo "$me: $prog not built (run from the top build directory after make check's build)" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-vg.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# stress_small is linked with -no-install, so it is the real program; if a
# libtool wrapper script stands there instead, let libtool run valgrind on
# the program behind it.
launch=
magic=$(od -An -c -N4 "$prog" | tr -d ' ')
if [ "$magic" != '177ELF' ]; then
  if [ -x ./libtool ]; then
    launch="./libtool --mode=execute"
  else
    echo "$me: $prog is not an executable and ./libtool is missing" >&2
    exit 1
  fi
fi
if command -v timeout >/dev/null 2>&1; then limit="timeout 600"; else limit=; fi

unset LD_PRELOAD 2>/dev/null || true
# The background purge thread is left out (purge_delay_ms = -1): once, on a
# heavily loaded CI machine, memcheck reported writes into a live SuperSlab
# as unaddressable after the purge had run, which no native run, no ASan
# run and no other memcheck run reproduced; until that is understood this
# run covers the allocation paths deterministically, and the purge is
# covered by tests/test_lifecycle (also under ASan).
HAKMEM_PURGE_DELAY_MS=-1 HAKMEM_STATS=1 $limit $launch valgrind --tool=memcheck --error-exitcode=99 \
  --errors-for-leak-kinds=none --leak-check=no --fair-sched=try \
  --soname-synonyms=somalloc=nouserintercepts \
  --log-file="$tmp/valgrind.log" "$prog" >"$tmp/out" 2>"$tmp/err"
rc=$?

if [ "$rc" -eq 99 ]; then
  echo "$me: FAIL: memcheck reported errors:" >&2
  cat "$tmp/valgrind.log" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "$me: FAIL: stress_small under valgrind exited with status $rc" >&2
  cat "$tmp/err" >&2
  tail -n 40 "$tmp/valgrind.log" >&2
  exit 1
fi
if ! grep -q 'ERROR SUMMARY: 0 errors' "$tmp/valgrind.log"; then
  echo "$me: FAIL: no clean error summary from memcheck:" >&2
  tail -n 40 "$tmp/valgrind.log" >&2
  exit 1
fi
calls=$(sed -n 's/^hakmem: malloc_calls \([0-9][0-9]*\)$/\1/p' "$tmp/err" | head -n 1)
if ! grep -q '^hakmem: stats pid=' "$tmp/err" || [ "${calls:-0}" -eq 0 ]; then
  echo "$me: FAIL: no hakmem statistics report, hakmem was not the allocator:" >&2
  cat "$tmp/err" >&2
  exit 1
fi
cat "$tmp/out"
echo "$me: memcheck clean, $calls small allocations served by hakmem"
exit 0
