#!/bin/sh
# The man pages: hakmem(3)'s SYNOPSIS has every function of
# include/hakmem.h (from include/hakmem.h.in) and its STATISTICS every field
# of hak_stats_t; the three pages, README.md and doc/internals.md name no
# HAKMEM_ variable that is neither an option (hakmemctl config --list),
# HAKMEM_CONF nor a macro of the header; a page's title names this
# version; every abort message they quote is printed by the sources; the
# settings they give as examples are valid, and the warnings they quote
# are printed as quoted; and man and lexgrog accept each page.  The option entries
# themselves are written from src/options.def and checked by
# tests/options_generated.sh.
# Automake harness: exit 0 pass, 1 fail.  The man and lexgrog checks are
# skipped, with a note, when the tools are not installed.  Works in a VPATH
# build: the sources are found through $srcdir (exported by the harness),
# or relative to this script when it is run by hand.
set -u
me=man_pages.sh

if [ -z "${srcdir:-}" ]; then
  srcdir=$(dirname "$0")/..
fi
ctl=tools/hakmemctl
header=$srcdir/include/hakmem.h.in
page=$srcdir/man/hakmem.3
pages="$page $srcdir/man/hakmem.conf.5 $srcdir/man/hakmemctl.1"
docs="$srcdir/README.md $srcdir/doc/internals.md"
for f in "$header" $pages $docs; do
  [ -r "$f" ] || { echo "$me: cannot read $f" >&2; exit 1; }
done
[ -x "$ctl" ] || { echo "$me: $ctl not built" >&2; exit 1; }

failed=0
fail() {
  echo "$me: FAIL: $*" >&2
  failed=1
}

# hakmem(3) without its comments.
text=$(sed 's/\\".*//' "$page")

# The variables: HAKMEM_ + the key of each option, and HAKMEM_CONF; the
# README and doc/internals.md are held to the same list.
vars=$("$ctl" config --list | awk -F '\t' '!/^#/ { print $2 }')
[ -n "$vars" ] || { echo "$me: hakmemctl config --list printed no option" >&2; exit 1; }
header_macros=$(sed -n 's/^#define[[:space:]]\{1,\}\(HAKMEM_[A-Z0-9_]*[A-Z0-9]\).*/\1/p' "$header" | sort -u)
for p in $pages $docs; do
  named=$(sed 's/\\".*//' "$p" | grep -o 'HAKMEM_[A-Z0-9_]*[A-Z0-9]' | sort -u)
  for v in $named; do
    printf '%s\n' $vars HAKMEM_CONF $header_macros | grep -qx "$v" ||
      fail "$p names $v, which is not an option"
  done
done

# The version a page's title line names is this release's.
version=$("$ctl" --version | sed -n 's/^hakmemctl //p')
[ -n "$version" ] || fail "hakmemctl --version printed no version"
for p in $pages; do
  named=$(sed -n 's/^\.TH.*"hakmem \([0-9][0-9.]*\)".*/\1/p' "$p")
  [ -z "$named" ] || [ "$named" = "$version" ] ||
    fail "$p is titled for hakmem $named, this is $version"
done

# The messages an abort prints, as the pages and the README quote them
# ("hakmem: free(): double free of 0x..."): the text after the function's
# name is in the sources, where the function's name may be a variable.
quoted=$(for p in $pages $docs; do sed 's/\\".*//; s/\\f[BIRP]//g; s/\\(lq//g; s/\\(rq//g' "$p"; done |
  grep -o 'hakmem: [a-z_]*(): [^"`]* 0x[.0-9a-f]*' | sed 's/^hakmem: [a-z_]*()//; s/ 0x[.0-9a-f]*$//' | sort -u)
[ -n "$quoted" ] || fail "no abort message quoted in the pages"
printf '%s\n' "$quoted" | while IFS= read -r m; do
  cat "$srcdir"/src/*.c | grep -qF -- "$m\"" ||
    { echo "$me: FAIL: the pages quote the message '...()$m', which no source file prints" >&2; echo x; }
done | grep -q x && failed=1

# The settings the pages and the README show as examples are valid: each
# HAKMEM_KEY=value (not those quoted in a warning, "HAKMEM_THP=maybe:")
# draws no warning from hakmemctl config, and the README's key = value,
# in its text and its configuration blocks, passes hakmemctl check.
scratch=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-man.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
: >"$scratch/empty.conf"
settings=$(for p in $pages $docs; do sed 's/\\".*//; s/\\-/-/g; s/\\&//g' "$p"; done |
  grep -oE 'HAKMEM_[A-Z0-9_]+=[A-Za-z0-9_.-]+:?' | grep -v ':$' | sort -u)
[ -n "$settings" ] || fail "no HAKMEM_KEY=value example found"
# Each alone: the caller's HAKMEM_ variables are left out.
unset_hakmem=$(env | sed -n 's/^\(HAKMEM_[A-Za-z0-9_]*\)=.*/-u \1/p')
for a in $settings; do
  warned=$(env $unset_hakmem HAKMEM_CONF="$scratch/empty.conf" "$a" "$ctl" config 2>&1 >/dev/null)
  [ -z "$warned" ] || fail "the example setting $a is not valid: $warned"
done
{
  grep -o '`[a-z_]* = [^`]*`' "$srcdir/README.md" | tr -d '`'
  awk '/^```/ { inb = !inb; next } inb && /^[a-z_]+ *= / { print }' "$srcdir/README.md"
} >"$scratch/readme.conf"
[ -s "$scratch/readme.conf" ] || fail "no key = value example found in README.md"
"$ctl" check "$scratch/readme.conf" >"$scratch/check.out" 2>&1 ||
  fail "README.md's key = value examples do not pass hakmemctl check: $(sed "s|$scratch/||" "$scratch/check.out")"

# The warnings the pages quote are the ones printed: each "hakmem:
# HAKMEM_KEY=value: message" line is what hakmemctl config prints for
# that setting, and each "/etc/hakmem.conf:N: message" line what
# hakmemctl check prints for a file with that line at N (an unknown key
# 'k' as "k = 1", a bad value as the "key = value" the message begins
# with).
unroff() { sed 's/\\".*//; s/\\-/-/g; s/\\&//g; s/\\(aq/'"'"'/g; s/\\f[BIRP]//g'; }
for p in $pages; do unroff <"$p"; done | sort -u >"$scratch/pages.txt"
grep '^hakmem: HAKMEM_[A-Z0-9_]*=[^ :]*: ' "$scratch/pages.txt" >"$scratch/env.quoted"
[ -s "$scratch/env.quoted" ] || fail "no environment warning quoted in the pages"
while IFS= read -r line; do
  a=${line#hakmem: }
  a=${a%%: *}
  warned=$(env $unset_hakmem HAKMEM_CONF="$scratch/empty.conf" "$a" "$ctl" config 2>&1 >/dev/null)
  printf '%s\n' "$warned" | grep -qxF -- "$line" ||
    fail "the pages quote '$line'; hakmemctl config prints '$warned'"
done <"$scratch/env.quoted"
sed -n 's|^\(hakmem: \)\{0,1\}/etc/hakmem.conf:\([0-9]*\): \(.*\)$|\2 \3|p' "$scratch/pages.txt" |
  sort -u >"$scratch/conf.quoted"
[ -s "$scratch/conf.quoted" ] || fail "no configuration file warning quoted in the pages"
awk '{
    n = $1; msg = substr($0, length(n) + 2)
    if (msg ~ /^unknown key \047/) { split(msg, q, "\047"); line = q[2] " = 1" }
    else if (match(msg, /^[a-z_]+ = [^:]*: /)) line = substr(msg, 1, RLENGTH - 2)
    else next
    if (n in at && at[n] != line) { print "line " n " quoted as both \047" at[n] "\047 and \047" line "\047" > "/dev/stderr"; bad = 1 }
    at[n] = line; if (n + 0 > max) max = n + 0
  }
  END { for (i = 1; i <= max; i++) print (i in at) ? at[i] : ""; exit bad }' \
  "$scratch/conf.quoted" >"$scratch/quoted.conf" || fail "the pages quote two lines at one line number"
"$ctl" check "$scratch/quoted.conf" >/dev/null 2>"$scratch/check.err"
while read -r n msg; do
  grep -qxF -- "$scratch/quoted.conf:$n: $msg" "$scratch/check.err" ||
    fail "the pages quote '/etc/hakmem.conf:$n: $msg'; hakmemctl check prints: $(sed "s|$scratch/||" "$scratch/check.err")"
done <"$scratch/conf.quoted"

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

# man: no warning at all; lexgrog: the NAME section parses (and names
# every function, in hakmem(3)).
man_checked=no
for p in $pages; do
  if command -v man >/dev/null 2>&1 && command -v groff >/dev/null 2>&1; then
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$p" 2>&1 >/dev/null)
    status=$?
    if [ $status -ne 0 ] || [ -n "$warnings" ]; then
      fail "man --warnings -l $p (exit $status):"
      printf '%s\n' "$warnings" >&2
    fi
    man_checked=yes
  fi
  if command -v lexgrog >/dev/null 2>&1; then
    whatis=$(lexgrog "$p" 2>&1) || { fail "lexgrog finds no NAME section in $p:"; printf '%s\n' "$whatis" >&2; }
    if [ "$p" = "$page" ]; then
      for f in hakmem $funcs; do
        printf '%s\n' "$whatis" | grep -q "\"$f - " || fail "$f is not in the NAME section of $p"
      done
    fi
  fi
done
[ $man_checked = yes ] || echo "$me: man or groff not installed; formatting not checked" >&2
command -v lexgrog >/dev/null 2>&1 || echo "$me: lexgrog not installed; NAME sections not checked" >&2

[ $failed -eq 0 ] || exit 1
count() { printf '%s\n' "$1" | grep -c .; }
echo "$me: $(count "$funcs") functions, $(count "$fields") counters documented;" \
  "man checked: $man_checked"
exit 0
