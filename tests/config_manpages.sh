#!/bin/sh
# The man pages and the option table agree: hakmem.conf(5) documents every
# key (an OPTIONS entry each) and every HAKMEM_* variable and nothing else;
# hakmem(3), if present, names every variable.  Each page formats without
# groff warnings and lexgrog finds its NAME section.
set -u
: "${srcdir:=.}"
ctl=tools/hakmemctl
conf5="$srcdir/man/hakmem.conf.5"
fail() { echo "FAIL: $*"; status=1; }
status=0
dir=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-man.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
"$ctl" config --list | grep -v '^#' | cut -f1,2 >"$dir/table" || { echo "FAIL: hakmemctl --list"; exit 1; }
cut -f1 "$dir/table" | sort >"$dir/keys"
{ cut -f2 "$dir/table"; echo HAKMEM_CONF; } | sort >"$dir/vars"
# The macros of <hakmem.h> (HAKMEM_VERSION...) are not variables.
sed -n 's/^#define[[:space:]]\{1,\}\(HAKMEM_[A-Z0-9_]*[A-Z0-9]\).*/\1/p' \
  "$srcdir/include/hakmem.h.in" | sort -u >"$dir/macros"

# Keys: the tag line of each .TP entry in the OPTIONS section.
awk '/^\.SH /{ in_opts = ($2 == "OPTIONS") } in_opts && tp { split($2, w, /[^a-z0-9_]/); print w[1]; tp = 0; next }
     in_opts && /^\.TP/ { tp = 1 }' "$conf5" | sort >"$dir/man-keys"
missing=$(comm -23 "$dir/keys" "$dir/man-keys")
extra=$(comm -13 "$dir/keys" "$dir/man-keys")
[ -z "$missing" ] || fail "hakmem.conf.5 does not document: $missing"
[ -z "$extra" ] || fail "hakmem.conf.5 documents keys that do not exist: $extra"
for page in "$conf5" "$srcdir/man/hakmem.3"; do
  [ -f "$page" ] || { echo "($page absent: not compared)"; continue; }
  grep -o 'HAKMEM_[A-Z0-9_]*[A-Z0-9]' "$page" | sort -u >"$dir/man-vars"
  missing=$(comm -23 "$dir/vars" "$dir/man-vars")
  extra=$(comm -13 "$dir/vars" "$dir/man-vars" | comm -23 - "$dir/macros" | grep -v '^HAKMEM_H$')
  [ -z "$missing" ] || fail "$page does not name: $missing"
  [ -z "$extra" ] || fail "$page names variables that do not exist: $extra"
done

for page in "$conf5" "$srcdir/man/hakmemctl.1"; do
  if command -v man >/dev/null 2>&1 && command -v groff >/dev/null 2>&1; then
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    [ -z "$warnings" ] || fail "$page: $warnings"
  else
    echo "(man or groff absent: formatting not checked)"
  fi
  if command -v lexgrog >/dev/null 2>&1; then
    lexgrog "$page" >/dev/null 2>&1 || fail "$page: lexgrog finds no NAME section"
  fi
done
[ $status = 0 ] && echo PASS
exit $status
