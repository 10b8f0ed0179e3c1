#!/bin/sh
# The library's fixed footprint (doc/internals.md, "The library's own
# memory"): no object of more than a page in .rodata (file pages are
# resident as soon as a neighbouring page is read) and none of a page or
# more in .bss (the small variables every process writes must share a few
# pages): such objects are declared HAK_BSS_APART and live in .lbss.
# x86-64 only, the one target whose assembler knows .lbss.
#
# First, from the sources: the four locks the fork handlers take are
# taken through lock_take (locks.h), which the lazy registration of the
# handlers depends on.  Then what a small program keeps resident
# (tests/footprint_probe, run with and without hakmem preloaded): hakmem
# must not bring in a page of
# libc's read-only data that the program does not touch itself (as
# pthread_atfork and glibc's fstat did, 64 KiB each time: fault-around),
# and must not run code beyond the first 64 KiB of its text: the code
# every process runs is linked first (Makefile.am) and the text starts on
# a 64 KiB boundary, where a window of fault-around starts.
set -eu
data_seen=
srcdir=${srcdir:-.}
# The locks the fork handlers take are taken through lock_take (locks.h),
# which registers the handlers first once a second thread exists; only
# the prefork handlers themselves call pthread_mutex_lock on them.
direct=$(awk '/^[a-z].*\(/ { fn = $0 }
  /pthread_mutex_lock\(&(pool_lock|bigcache_lock|registry_lock|prof_lock)\)/ &&
  fn !~ /prefork|superslab_registry_lock/ { print FILENAME ":" FNR ": " $0 }' "$srcdir"/src/*.c)
if [ -n "$direct" ]; then
  echo "footprint.sh: a fork-handled lock taken without lock_take (locks.h):" >&2
  echo "$direct" >&2
  exit 1
fi
lib=src/.libs/libhakmem.so.0
[ -f "$lib" ] || { echo "footprint.sh: $lib not built" >&2; exit 1; }
command -v objdump >/dev/null || { echo "footprint.sh: objdump not found, skipped" >&2; exit 77; }
case "$(objdump -f "$lib")" in
  *x86-64*) ;;
  *) echo "footprint.sh: not x86-64, skipped" >&2; exit 77 ;;
esac

# objdump -t, symbol lines: ADDRESS FLAGS... SECTION SIZE NAME
table=$(objdump -t "$lib" | awk 'NF >= 4 && $(NF-1) ~ /^[0-9a-f]+$/ { print $(NF-2), $(NF-1), $NF }')
big=
apart=
while read -r section size name; do
  bytes=$((0x$size))
  case $section in
    .rodata) [ "$bytes" -le 4096 ] || big="$big $section:$name" ;;
    .bss) [ "$bytes" -lt 4096 ] || big="$big $section:$name" ;;
    .lbss) apart="$apart $name" ;;
  esac
done <<EOT
$table
EOT
if [ -n "$big" ]; then
  echo "footprint.sh: objects too large for their section (see doc/internals.md):$big" >&2
  exit 1
fi
# The tables that must be apart are, and so are the arrays that only a
# rare event writes (a [section] of the conf file, a large block cached,
# a thread that exits holding blocks, a slab re-formatted or unmapped).
for sym in registry_empty_leaf registry_l1 guard_l1 config_source_sections bucket orphan_list retired_allocs; do
  case " $apart " in
    *" $sym "*) ;;
    *) echo "footprint.sh: $sym is not in .lbss" >&2; exit 1 ;;
  esac
done

# .data and .bss, which every process writes, fit in two pages: a third
# is 4 KiB more in every process.  Where .lbss follows .bss (GNU ld's
# x86-64 script) .bss ends where the written variables end.
span=$(objdump -h "$lib" | awk '$2 == ".data" { d = $4 } $2 == ".bss" { b = $4; size = $3 }
  END { if (d != "" && b != "") print d, b, size }')
set -- $span
if [ -n "${3:-}" ]; then
  first=$(( 0x$1 / 4096 * 4096 ))
  end=$(( 0x$2 + 0x$3 ))
  if [ $(( end - first )) -gt 8192 ]; then
    echo "footprint.sh: .data and .bss span $(( end - first )) bytes from their first page, more than two pages: is a new array written only by a rare event declared HAK_BSS_APART? (nm -S --size-sort $lib)" >&2
    exit 1
  fi
  data_seen="; .data and .bss $(( end - first )) of 8192 bytes"
fi

probe=tests/footprint_probe
[ -x "$probe" ] || { echo "footprint.sh: $probe not built" >&2; exit 1; }
[ -r /proc/self/smaps ] || { echo "footprint.sh: no /proc/self/smaps, runtime checks skipped" >&2; echo "footprint.sh: ok"; exit 0; }
# The Rss (KiB) of libc's read-only data: its first read-only mapping
# after the executable one.  Minimum and maximum over five runs: where
# the windows of fault-around fall depends on the load address.
libc_rodata() {
  "$@" | awk '$1 == "libc.so.6" && $2 == "r-xp" { text = 1; next }
              $1 == "libc.so.6" && text && $2 == "r--p" { print $5; exit }'
}
range() { sort -n | awk 'NR == 1 { min = $1 } { max = $1 } END { print min, max }'; }
plain=$(for i in 1 2 3 4 5; do libc_rodata "$probe"; done | range)
hakmem=$(for i in 1 2 3 4 5; do libc_rodata env LD_PRELOAD="$PWD/$lib" "$probe"; done | range)
case "$plain" in
  [0-9]*) ;;
  *) echo "footprint.sh: libc's mappings not found, runtime checks skipped" >&2; echo "footprint.sh: ok"; exit 0 ;;
esac
set -- $plain $hakmem
if [ "$3" -gt "$2" ]; then
  echo "footprint.sh: libc's read-only data: $3..$4 KiB resident with hakmem, $1..$2 without" >&2
  exit 1
fi
libc_seen="$3..$4"
# hakmem's text: SIZE RSS per run.  The library's segments start on
# 64 KiB boundaries (-z max-page-size, Makefile.am), so fault-around's
# windows fall at the same place in every run: the code every process
# runs is linked first (Makefile.am, HAK_STARTUP_TEXT, HAK_COMMON_TEXT)
# and must fit the first window, the rest staying out of memory.
# Without the alignment (a linker that does not take the flag) the
# windows fall where the load address puts them: nothing to check.
case "$(objdump -p "$lib" | awk '$1 == "LOAD" { a = $NF; getline; if ($NF ~ /x/) { print a; exit } }')" in
  2\*\*1[6-9]|2\*\*2[0-9]) ;;
  *)
    # Unaligned: the ordered text leaves 12 KiB or more out in some of
    # nine runs; a text spread over the whole file a page or two at most.
    text=$(for i in 1 2 3 4 5 6 7 8 9; do
      env LD_PRELOAD="$PWD/$lib" "$probe" | awk '$1 ~ /^libhakmem/ && $2 == "r-xp" { size += $4; rss += $5 } END { if (size) print size, rss }'
    done)
    least=$(printf '%s\n' "$text" | awk 'NR == 1 || $2 < min { min = $2; size = $1 } END { print size, min }')
    set -- $least
    if [ -z "${2:-}" ] || [ "$2" -gt $(($1 - 12)) ]; then
      echo "footprint.sh: $2 KiB or more of hakmem's text ($1 KiB) resident in each of nine runs: is code every process runs linked among the rare files? (Makefile.am, HAK_STARTUP_TEXT)" >&2
      exit 1
    fi
    echo "footprint.sh: ok (libc read-only data $libc_seen KiB; hakmem text $2 of $1 KiB in the best of nine runs, not 64 KiB-aligned)"
    exit 0 ;;
esac
text=$(for i in 1 2 3; do
  env LD_PRELOAD="$PWD/$lib" "$probe" | awk '$1 ~ /^libhakmem/ && $2 == "r-xp" { size += $4; rss += $5 } END { if (size) print size, rss }'
done)
most=$(printf '%s\n' "$text" | awk 'NR == 1 || $2 > max { max = $2; size = $1 } END { print size, max }')
set -- $most
if [ -z "${2:-}" ] || [ "$2" -gt 64 ]; then
  echo "footprint.sh: ${2:-?} KiB of hakmem's text ($1 KiB) resident: the code every process runs must fit the text's first 64 KiB (is a function every process runs linked among the rare files, or taken from a static library?  doc/internals.md, HAK_COMMON_TEXT)" >&2
  exit 1
fi
text_seen="$2 of $1"
# The code after the large blocks' (diag.c on, Makefile.am) is a mapping
# of its own (os_advise_rare_text), which fault-around does not cross: a
# program that allocates a large block keeps the large blocks' code
# resident, none of the rare code after it.
rare=$(env LD_PRELOAD="$PWD/$lib" "$probe" large | awk '$1 ~ /^libhakmem/ && $2 == "r-xp" { n++; size = $4; rss = $5 }
  END { print n + 0, size, rss }')
set -- $rare
if [ "$1" -lt 2 ] || [ "$3" -ne 0 ]; then
  echo "footprint.sh: hakmem's text is $1 mapping(s), the last $2 KiB with $3 KiB resident after a large block: the rare code is not a mapping of its own, or the large blocks' paths run some of it (os_advise_rare_text, Makefile.am)" >&2
  exit 1
fi
text_seen="$text_seen KiB; rare code $3 of $2"
# hakmem's read-only data: linked after the unwind tables, on a 64 KiB
# boundary of its own (src/libhakmem.ld), .rodata is all that a program
# that unwinds nothing keeps resident of the segment.  Without the script
# (a linker that does not take it) .rodata comes first: nothing to check.
rodata=$(objdump -h "$lib" | awk '$2 == ".rodata" { r = $4; size = $3 } $2 == ".eh_frame" { e = $4 }
  END { if (r != "" && e != "") print r, e, size }')
set -- $rodata
if [ -n "${3:-}" ] && [ $((0x$1)) -gt $((0x$2)) ]; then
  limit=$(( (0x$3 + 4095) / 4096 * 4 ))
  ro=$(for i in 1 2 3; do
    env LD_PRELOAD="$PWD/$lib" "$probe" | awk '$1 ~ /^libhakmem/ && $2 == "r-xp" { text = 1; next }
      $1 ~ /^libhakmem/ && text && $2 == "r--p" { print $5; exit }'
  done | sort -n | tail -n 1)
  if [ -z "$ro" ] || [ "$ro" -gt "$limit" ]; then
    echo "footprint.sh: ${ro:-?} KiB of hakmem's read-only data resident, more than .rodata's $limit KiB: are the unwind tables in its window? (src/libhakmem.ld)" >&2
    exit 1
  fi
  text_seen="$text_seen KiB; read-only data $ro of $limit"
fi
# The dynamic symbols and relocations, read by the loader in every
# process: three pages with the relative relocations packed (.relr.dyn,
# LIB_RELOC_LDFLAGS in configure.ac), four without.
if objdump -h "$lib" | awk '$2 == ".relr.dyn" { found = 1 } END { exit !found }'; then
  dyn=$(env LD_PRELOAD="$PWD/$lib" "$probe" | awk '$1 ~ /^libhakmem/ && $2 == "r--p" { print $5; exit }')
  if [ -z "$dyn" ] || [ "$dyn" -gt 12 ]; then
    echo "footprint.sh: ${dyn:-?} KiB of hakmem's dynamic symbols and relocations resident, more than 12 KiB: a new exported symbol or relocated pointer table?" >&2
    exit 1
  fi
  text_seen="$text_seen KiB; dynamic symbols and relocations $dyn"
fi
echo "footprint.sh: ok (libc read-only data $libc_seen KiB; hakmem text $text_seen KiB${data_seen:-})"
