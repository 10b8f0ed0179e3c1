#!/bin/sh
# hakmem(3) matches the code: every option of the table in src/config.c is
# documented under ENVIRONMENT as HAKMEM_<KEY>, the page names no HAKMEM_
# variable that the table lacks, the SYNOPSIS has every function of
# include/hakmem.h (from include/hakmem.h.in) and STATISTICS every field of
# hak_stats_t; and man and lexgrog accept the page.
# Automake harness: exit 0 pass, 1 fail.  The man and lexgrog checks are
# skipped, with a note, when the tools are not installed; the rest needs
# only the sources.  Works in a VPATH build: the sources are found through
# $srcdir (exported by the harness), or relative to this script when it is
# run by hand.
set -u
me=man_options.sh

if [ -z "${srcdir:-}" ]; then
  srcdir=$(dirname "$0")/..
fi
config=$srcdir/src/config.c
header=$srcdir/include/hakmem.h.in
page=$srcdir/man/hakmem.3
for f in "$config" "$header" "$page"; do
  [ -r "$f" ] || { echo "$me: cannot read $f" >&2; exit 1; }
done

failed=0
fail() {
  echo "$me: FAIL: $*" >&2
  failed=1
}

# The keys of config_options[].  A row is written '{ "key", CONFIG_...',
# '{ .key = "key", ...' or through a macro of config.c whose body makes the
# key from its first parameter ('#define BOOL(k, ...) { .key = #k, ...' used
# as 'BOOL(key, ...)'); rows may span lines.  Comments are dropped first.
# config.c with continuation lines joined: one preprocessor directive a line.
joined=$(sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ba' -e '}' "$config")
# The whole file on one line, without comments.
src=$(printf '%s\n' "$joined" | tr '\n' ' ' | sed 's:/\*\([^*]\|\*[^/]\)*\*/: :g')
table=$(printf '%s\n' "$src" | sed -n 's/.*config_options\[\][[:space:]]*=[[:space:]]*{\(.*\)/\1/p' |
  sed 's/};.*//')
if [ -z "$table" ]; then
  echo "$me: no config_options[] table found in $config" >&2
  exit 1
fi
# Macros whose body stringifies their first parameter (#k): row makers.
macros=$(printf '%s\n' "$joined" | awk '
  match($0, /^[ \t]*#[ \t]*define[ \t]+[A-Za-z_][A-Za-z0-9_]*\([ \t]*[A-Za-z_][A-Za-z0-9_]*/) {
    d = substr($0, RSTART, RLENGTH); body = substr($0, RSTART + RLENGTH)
    name = d; sub(/^[ \t]*#[ \t]*define[ \t]+/, "", name); sub(/\(.*/, "", name)
    p = d; sub(/.*\([ \t]*/, "", p)
    if (body ~ ("#[ \t]*" p "([^A-Za-z0-9_]|$)")) print name
  }')
keys=$( {
  printf '%s\n' "$table" | grep -o '{[[:space:]]*"[A-Za-z0-9_]*"[[:space:]]*,[[:space:]]*CONFIG_' |
    sed 's/^{[[:space:]]*"\([A-Za-z0-9_]*\)".*/\1/'
  printf '%s\n' "$table" | grep -o '\.key[[:space:]]*=[[:space:]]*"[A-Za-z0-9_]*"' |
    sed 's/.*"\([A-Za-z0-9_]*\)"/\1/'
  for m in $macros; do
    printf '%s\n' "$table" | grep -o "\\(^\\|[^A-Za-z0-9_]\\)$m([[:space:]]*[A-Za-z0-9_]*" |
      sed 's/.*([[:space:]]*//'
  done
} | sort -u)
if [ -z "$keys" ]; then
  echo "$me: no option found in config_options[] of $config" >&2
  exit 1
fi
vars=$(for k in $keys; do echo "HAKMEM_$k"; done | tr '[:lower:]' '[:upper:]' | sort -u)
# Variables the loader reads by name besides the options ("HAKMEM_CONF").
extra_vars=$(printf '%s\n' "$src" | grep -o '"HAKMEM_[A-Z0-9_]*[A-Z0-9]"' | tr -d '"' | sort -u)

# The page without its comments.
text=$(sed 's/\\".*//' "$page")

# Entries of ENVIRONMENT: a '.B HAKMEM_X' line right after '.TP'.
entries=$(printf '%s\n' "$text" | awk '
  /^\.SH/ { env = ($0 ~ /^\.SH[[:space:]]+"?ENVIRONMENT"?[[:space:]]*$/); prev = ""; next }
  env && prev ~ /^\.TP/ && $1 == ".B" && $2 ~ /^HAKMEM_[A-Z0-9_]+$/ { print $2 }
  { prev = $0 }' | sort -u)

for v in $vars $extra_vars; do
  printf '%s\n' "$entries" | grep -qx "$v" ||
    fail "$v (read by src/config.c) has no entry under ENVIRONMENT in man/hakmem.3"
done

# Every HAKMEM_ name anywhere in the page must be an option, a variable the
# loader reads by name, or a macro of the header.
header_macros=$(sed -n 's/^#define[[:space:]]\{1,\}\(HAKMEM_[A-Z0-9_]*[A-Z0-9]\).*/\1/p' "$header" | sort -u)
named=$(printf '%s\n' "$text" | grep -o 'HAKMEM_[A-Z0-9_]*[A-Z0-9]' | sort -u)
for v in $named; do
  printf '%s\n' "$vars" "$extra_vars" "$header_macros" | grep -qx "$v" ||
    fail "man/hakmem.3 documents $v, which is not an option of src/config.c"
done

# The public functions: 'HAKMEM_API type name(' lines of the header.
funcs=$(sed -n 's/^HAKMEM_API[^(]*[^A-Za-z0-9_(]\([A-Za-z_][A-Za-z0-9_]*\)(.*/\1/p' "$header")
[ -n "$funcs" ] || fail "no HAKMEM_API function found in $header"
synopsis=$(printf '%s\n' "$text" | sed -n '/^\.SH[[:space:]]*"\{0,1\}SYNOPSIS/,/^\.SH[[:space:]]*"\{0,1\}DESCRIPTION/p')
for f in $funcs; do
  printf '%s\n' "$synopsis" | grep -q "[^A-Za-z0-9_]$f(" ||
    fail "$f (include/hakmem.h) is not in the SYNOPSIS of man/hakmem.3"
done

# The counters: the uint64_t fields of hak_stats_t, each an entry of STATISTICS.
fields=$(sed -n '/^typedef struct hak_stats {/,/^} hak_stats_t;/s/^[[:space:]]*uint64_t[[:space:]]*\([a-z0-9_]*\);.*/\1/p' "$header")
[ -n "$fields" ] || fail "no field of hak_stats_t found in $header"
stats=$(printf '%s\n' "$text" | awk '
  /^\.SH/ { st = ($0 ~ /^\.SH[[:space:]]+"?STATISTICS"?[[:space:]]*$/); prev = ""; next }
  st && prev ~ /^\.TP/ && $1 == ".B" { print $2 }
  { prev = $0 }')
for f in $fields; do
  printf '%s\n' "$stats" | grep -qx "$f" ||
    fail "hak_stats_t field $f has no entry under STATISTICS in man/hakmem.3"
done

# man: no warning at all.
if command -v man >/dev/null 2>&1 && command -v groff >/dev/null 2>&1; then
  warnings=$(LC_ALL=C MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  status=$?
  if [ $status -ne 0 ] || [ -n "$warnings" ]; then
    fail "man --warnings -l man/hakmem.3 (exit $status):"
    printf '%s\n' "$warnings" >&2
  fi
  man_checked=yes
else
  echo "$me: man or groff not installed; formatting not checked" >&2
  man_checked=no
fi

# lexgrog: the NAME section parses, and names every function.
if command -v lexgrog >/dev/null 2>&1; then
  whatis=$(lexgrog "$page" 2>&1)
  status=$?
  if [ $status -ne 0 ]; then
    fail "lexgrog finds no NAME section in man/hakmem.3:"
    printf '%s\n' "$whatis" >&2
  else
    for f in hakmem $funcs; do
      printf '%s\n' "$whatis" | grep -q "\"$f - " ||
        fail "$f is not in the NAME section of man/hakmem.3"
    done
  fi
else
  echo "$me: lexgrog not installed; NAME section not checked" >&2
fi

[ $failed -eq 0 ] || exit 1
count() { printf '%s\n' "$1" | grep -c .; }
echo "$me: $(count "$vars") options, $(count "$funcs") functions," \
  "$(count "$fields") counters documented; man checked: $man_checked"
exit 0
