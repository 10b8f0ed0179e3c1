#!/bin/sh
# hakmemctl: config with a section and an environment override, check's
# output and exit status, run and stats with the library of the build tree,
# and the installed etc/hakmem.conf (valid, every key documented).
set -u
: "${srcdir:=.}"
ctl=tools/hakmemctl
lib=src/.libs/libhakmem.so.0
fail() { echo "FAIL: $*"; exit 1; }
[ -x "$ctl" ] || fail "$ctl not built"
dir=$(mktemp -d "${TMPDIR:-/tmp}/hakmemctl.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT

cat >"$dir/good.conf" <<'CONF'
# a system-wide choice
mode = fast
thp = off
[redis-server]
ss_mem_lean = 1
ss_mem_lean_target_mb = 64MiB
[python3*]
bigcache = 0
CONF
echo "== hakmemctl config --program redis-server (HAKMEM_THP=auto)"
HAKMEM_THP=auto "$ctl" config --conf "$dir/good.conf" --program redis-server >"$dir/out" 2>"$dir/err" ||
  fail "config exited $?"
cat "$dir/out"
[ ! -s "$dir/err" ] || { cat "$dir/err"; fail "config warned"; }
expect() { grep -qE "$1" "$dir/out" || fail "no line matching '$1'"; }
expect "^mode +fast +$dir/good.conf:2\$"
expect "^prewarm +1 +mode fast\$"
expect "^ss_mem_lean +1 +$dir/good.conf:\\[redis-server\\]:5\$"
expect "^ss_mem_lean_target_mb +64 +$dir/good.conf:\\[redis-server\\]:6\$"
expect "^thp +auto +env HAKMEM_THP\$"
expect "^bigcache +1 +mode fast\$"
expect "^superslab_lg +21 +default\$"
HAKMEM_CONF="$dir/good.conf" "$ctl" config --program python3.11 >"$dir/out" || fail "config exited $?"
expect "^bigcache +0 +$dir/good.conf:\\[python3\\*\\]:8\$"
expect "^ss_mem_lean +0 +default\$"
HAKMEM_THP=maybe "$ctl" config --conf "$dir/good.conf" >/dev/null 2>"$dir/err"
grep -qx 'hakmem: HAKMEM_THP=maybe: expected off|auto|on' "$dir/err" || fail "no warning for HAKMEM_THP=maybe"

echo "== hakmemctl check"
"$ctl" check "$dir/good.conf" >"$dir/out" 2>&1 || fail "check of a good file exited $?"
grep -qx "$dir/good.conf: OK" "$dir/out" || fail "check printed: $(cat "$dir/out")"
printf 'ss_mem_leen = 1\n[redis\nthp = maybe\n' >"$dir/bad.conf"
"$ctl" check "$dir/bad.conf" >"$dir/out" 2>&1
rc=$?
cat "$dir/out"
[ $rc = 1 ] || fail "check of a bad file exited $rc"
grep -qx "$dir/bad.conf:1: unknown key 'ss_mem_leen' (ignored); did you mean 'ss_mem_lean'?" "$dir/out" || fail "no unknown-key line"
grep -q "^$dir/bad.conf:2: unterminated section header" "$dir/out" || fail "no section line"
grep -qx "$dir/bad.conf:3: thp = maybe: expected off|auto|on" "$dir/out" || fail "no value line"
"$ctl" check "$dir/missing.conf" >/dev/null 2>&1 && fail "check of a missing file succeeded"
"$ctl" check "$srcdir/etc/hakmem.conf" || fail "etc/hakmem.conf does not check"

echo "== etc/hakmem.conf documents every key"
"$ctl" config --list | grep -v '^#' | cut -f1 >"$dir/keys"
[ "$(wc -l <"$dir/keys")" -ge 20 ] || fail "--list printed too few options"
while read -r key; do
  grep -q "^#$key =\( \|$\)" "$srcdir/etc/hakmem.conf" || fail "etc/hakmem.conf lacks '#$key = '"
done <"$dir/keys"
grep -v '^#' "$srcdir/etc/hakmem.conf" | grep -q '[^[:space:]]' && fail "etc/hakmem.conf has uncommented lines"

echo "== hakmemctl run / stats"
"$ctl" run --set thp=maybe -- true 2>"$dir/err" && fail "run accepted thp=maybe"
grep -q 'thp=maybe: expected off|auto|on' "$dir/err" || fail "run: no message for thp=maybe"
"$ctl" run --set nosuch=1 -- true 2>/dev/null && fail "run accepted an unknown key"
HAKMEMCTL_LIBRARY="$dir/none.so" "$ctl" run -- true 2>/dev/null
[ $? = 127 ] || fail "run without the library did not exit 127"
if [ -e "$lib" ]; then
  HAKMEMCTL_LIBRARY="$lib" "$ctl" run --mode fast --set verbose=1 -- sh -c 'echo "$HAKMEM_MODE $LD_PRELOAD"' \
    >"$dir/out" 2>"$dir/err" || fail "run exited $?"
  grep -q "^fast .*libhakmem.so.0" "$dir/out" || fail "run: environment not set: $(cat "$dir/out")"
  grep -q '^hakmem: config: mode fast' "$dir/err" || fail "run: the library did not start in mode fast: $(cat "$dir/err")"
  HAKMEMCTL_LIBRARY="$lib" "$ctl" stats -- sh -c 'exit 3' 2>/dev/null
  [ $? = 3 ] || fail "stats did not pass the exit status on"
  HAKMEMCTL_LIBRARY="$lib" "$ctl" stats -- true 2>"$dir/err" || fail "stats exited $?"
  [ "$(grep -c '^hakmem: ' "$dir/err")" -ge 3 ] || fail "stats: no report: $(cat "$dir/err")"
else
  echo "($lib not built: run and stats not exercised)"
fi
echo PASS
