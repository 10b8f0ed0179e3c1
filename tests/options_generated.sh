#!/bin/sh
# The files made from the option table (src/options.def) are up to date:
# the option entries of man/hakmem.3 and man/hakmem.conf.5, between their
# BEGIN OPTIONS and END OPTIONS lines, and the whole of etc/hakmem.conf.
# Each is written again, by the hakmemctl of the build tree, into a
# temporary directory and compared with the checked-in copy; a difference
# fails, with the diff.  The source tree is only read (VPATH and distcheck
# builds).  With --update (make regen-options) the copies that differ are
# replaced instead.  The regenerated pages must also format without a
# warning from man.
# Automake harness: exit 0 pass, 1 fail.
set -u
me=options_generated.sh
: "${srcdir:=.}"
ctl=tools/hakmemctl
update=no
[ "${1:-}" = --update ] && update=yes
[ -x "$ctl" ] || { echo "$me: $ctl not built" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-options.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
status=0

# compare FILE NEW: FILE (relative to srcdir) against NEW.
compare() {
  if cmp -s "$2" "$srcdir/$1"; then
    return 0
  fi
  if [ $update = yes ]; then
    cp "$2" "$srcdir/$1" && echo "$me: rewrote $1"
    return
  fi
  echo "$me: FAIL: $1 is stale (src/options.def changed?); run 'make regen-options':" >&2
  diff -u "$srcdir/$1" "$2" >&2
  status=1
}

for page in hakmem.3 hakmem.conf.5; do
  "$ctl" config --man "$page" >"$dir/$page.options" || { echo "$me: FAIL: hakmemctl config --man $page" >&2; exit 1; }
  # The page with its generated part replaced; the markers must be there
  # once each, in that order.
  awk -v gen="$dir/$page.options" '
    /^\.\\" BEGIN OPTIONS/ { print; begins++; while ((getline l < gen) > 0) print l; skip = 1; next }
    /^\.\\" END OPTIONS/ { ends++; skip = 0 }
    !skip { print }
    END { if (begins != 1 || ends != 1 || skip) exit 1 }' "$srcdir/man/$page" >"$dir/$page" ||
    { echo "$me: FAIL: man/$page needs one BEGIN OPTIONS line and one END OPTIONS line after it" >&2; exit 1; }
  compare "man/$page" "$dir/$page"
  if command -v man >/dev/null 2>&1 && command -v groff >/dev/null 2>&1; then
    warnings=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$dir/$page" 2>&1 >/dev/null)
    [ -z "$warnings" ] || { echo "$me: FAIL: man --warnings on the regenerated $page:" >&2; echo "$warnings" >&2; status=1; }
  fi
done

"$ctl" config --sample >"$dir/hakmem.conf" || { echo "$me: FAIL: hakmemctl config --sample" >&2; exit 1; }
"$ctl" check "$dir/hakmem.conf" >/dev/null || { echo "$me: FAIL: the sample conf file does not check" >&2; status=1; }
compare etc/hakmem.conf "$dir/hakmem.conf"

[ $status = 0 ] && echo "$me: man/hakmem.3, man/hakmem.conf.5 and etc/hakmem.conf match src/options.def"
exit $status
