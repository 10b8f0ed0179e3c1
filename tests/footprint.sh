#!/bin/sh
# The library's fixed footprint (doc/internals.md, "The library's own
# memory"): no object of more than a page in .rodata (file pages are
# resident as soon as a neighbouring page is read) and none of a page or
# more in .bss (the small variables every process writes must share a few
# pages): such objects are declared HAK_BSS_APART and live in .lbss.
# x86-64 only, the one target whose assembler knows .lbss.
set -eu
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
# The tables that must be apart are.
for sym in registry_empty_leaf registry_l1 guard_l1; do
  case " $apart " in
    *" $sym "*) ;;
    *) echo "footprint.sh: $sym is not in .lbss" >&2; exit 1 ;;
  esac
done
echo "footprint.sh: ok"
