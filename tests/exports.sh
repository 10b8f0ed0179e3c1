#!/bin/sh
# libhakmem.so exports the public API, the standard allocation names (C23's
# free_sized and free_aligned_sized among them), C++'s operators new and
# delete, unshare and setns (which end the purge thread for the call),
# and hakmem_prof_control, the block hakmemctl profile --pid writes its
# requests into (src/prof.h); nothing else.  It holds no test hook.
set -eu
lib=src/.libs/libhakmem.so.0
[ -f "$lib" ] || { echo "exports.sh: $lib not built" >&2; exit 1; }
command -v nm >/dev/null || { echo "exports.sh: nm not found, skipped" >&2; exit 77; }

expected='__libc_calloc __libc_free __libc_malloc __libc_memalign __libc_pvalloc
__libc_realloc __libc_valloc aligned_alloc calloc free free_aligned_sized
free_sized hak_aligned_alloc hak_calloc hak_free hak_free_aligned_sized
hak_free_sized hak_good_size hak_good_size_aligned hak_malloc
hak_malloc_usable_size hak_memalign
hak_posix_memalign hak_pvalloc hak_realloc hak_reallocarray hak_trim
hak_valloc hakmem_check_heap hakmem_live_stats hakmem_prof_control hakmem_stats_get
hakmem_stats_print hakmem_stats_read hakmem_version mallinfo mallinfo2 malloc malloc_info malloc_stats
malloc_trim malloc_usable_size mallopt memalign
posix_memalign pvalloc realloc reallocarray setns unshare valloc'
# C++: new and new[], each plain, nothrow, aligned and aligned nothrow;
# delete and delete[], each plain, nothrow, sized, aligned, aligned nothrow
# and sized aligned (size_t is "m" on LP64, "j" elsewhere).
z=$(if [ "$(getconf LONG_BIT)" = 64 ]; then echo m; else echo j; fi)
for op in _Znw _Zna; do
  for form in '' RKSt9nothrow_t St11align_val_t St11align_val_tRKSt9nothrow_t; do
    expected="$expected $op$z$form"
  done
done
for op in _ZdlPv _ZdaPv; do
  for form in '' RKSt9nothrow_t "$z" St11align_val_t St11align_val_tRKSt9nothrow_t "${z}St11align_val_t"; do
    expected="$expected $op$form"
  done
done

want=$(echo $expected | tr ' ' '\n' | sort)
have=$(nm -D --defined-only "$lib" | awk '{print $3}' | sort)
if [ "$want" != "$have" ]; then
  echo "exports.sh: exported symbols differ (< expected, > exported):" >&2
  printf '%s\n' "$want" >/tmp/exports.want.$$
  printf '%s\n' "$have" >/tmp/exports.have.$$
  diff /tmp/exports.want.$$ /tmp/exports.have.$$ >&2 || true
  rm -f /tmp/exports.want.$$ /tmp/exports.have.$$
  exit 1
fi
# The soname is versioned, and malloc is not: a versioned malloc would not
# interpose glibc's.
readelf -d "$lib" | grep -q 'SONAME.*\[libhakmem\.so\.0\]' || { echo "exports.sh: soname is not libhakmem.so.0" >&2; exit 1; }
# It needs libc alone: every program that preloads it maps what it needs
# (libm alone added 300 KB to a small program's resident set).  The C++
# operators too: they need no libstdc++ (see src/cxx_operators.c).
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
case "$needed" in
  "libc.so.6 "|"ld-linux-x86-64.so.2 libc.so.6 ") ;;
  *) echo "exports.sh: libhakmem.so.0 needs more than libc: $needed" >&2; exit 1 ;;
esac
if nm -D --defined-only "$lib" | grep -q '@'; then
  echo "exports.sh: symbols carry versions" >&2
  exit 1
fi
# No test hook, exported or not: the tests reach internals through the
# core library and link-time wraps (doc/internals.md, Tests).
hooks=$(nm "$lib" 2>/dev/null | awk '{print $NF}' | grep -Ei 'inject|test|hook' || true)
if [ -n "$hooks" ]; then
  echo "exports.sh: test hooks in the library: $hooks" >&2
  exit 1
fi
echo "exports.sh: $(echo "$have" | wc -l) symbols, as expected"
