#!/bin/sh
# hakmemctl: config with a section and an environment override, check's
# output and exit status (a named file, or the file programs read), run and
# stats with the library of the build tree, enable and disable of a
# systemd drop-in under --root, and config --sample (the installed
# etc/hakmem.conf: valid, every line commented, the defaults it shows true).
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

echo "== hakmemctl check without a file: the file programs read"
HAKMEM_CONF="$dir/good.conf" "$ctl" check >"$dir/out" 2>&1 || fail "check (HAKMEM_CONF=good.conf) exited $?"
grep -qx "$dir/good.conf: OK" "$dir/out" || fail "check without a file printed: $(cat "$dir/out")"
HAKMEM_CONF="$dir/bad.conf" "$ctl" check >"$dir/out" 2>&1
[ $? = 1 ] || fail "check (HAKMEM_CONF=bad.conf) did not exit 1"
grep -q "^$dir/bad.conf:1: unknown key" "$dir/out" || fail "check without a file: $(cat "$dir/out")"
HAKMEM_CONF="$dir/missing.conf" "$ctl" check >"$dir/out" 2>&1
[ $? = 1 ] || fail "check accepted a missing HAKMEM_CONF file (the library warns about it)"
# The system file (sysconfdir/hakmem.conf) may be absent: that is fine.
env -u HAKMEM_CONF "$ctl" check >"$dir/out" 2>&1 || fail "check of the system file exited $?: $(cat "$dir/out")"
grep -qE '/hakmem\.conf: (OK|absent \(programs use the built-in defaults\))$' "$dir/out" ||
  fail "check of the system file printed: $(cat "$dir/out")"
cat "$dir/out"

echo "== misspelled values, CR LF, a NUL byte"
printf 'mode = balnced\nthp = atuo\n' >"$dir/typo.conf"
"$ctl" check "$dir/typo.conf" >"$dir/out" 2>&1 && fail "check accepted mode = balnced"
cat "$dir/out"
grep -qx "$dir/typo.conf:1: mode = balnced: expected minimal|fast|balanced|learning|research; did you mean 'balanced'?" \
  "$dir/out" || fail "no suggestion for mode = balnced"
grep -q "thp = atuo: .*did you mean 'auto'?" "$dir/out" || fail "no suggestion for thp = atuo"
"$ctl" run --mode fsat -- true 2>"$dir/err" && fail "run accepted --mode fsat"
grep -q "did you mean 'fast'?" "$dir/err" || fail "run --mode fsat: $(cat "$dir/err")"
# CR LF line ends are fine, in check and in what the library loads.
printf 'mode = fast\r\n[prog]\r\nthp = on\r\n' >"$dir/crlf.conf"
"$ctl" check "$dir/crlf.conf" >"$dir/out" 2>&1 || fail "check of a CR LF file: $(cat "$dir/out")"
"$ctl" config --conf "$dir/crlf.conf" --program prog >"$dir/out" 2>"$dir/err" || fail "config of a CR LF file"
[ ! -s "$dir/err" ] || fail "config warned about a CR LF file: $(cat "$dir/err")"
grep -qE "^thp +on +$dir/crlf.conf:\[prog\]:3\$" "$dir/out" || fail "CR LF file not read: $(cat "$dir/out")"
# A NUL byte costs its line only.
printf 'thp = on\nmo\000de = minimal\nmode = fast\n' >"$dir/nul.conf"
"$ctl" check "$dir/nul.conf" >"$dir/out" 2>&1
[ $? = 1 ] || fail "check of a file with a NUL byte did not exit 1"
grep -qx "$dir/nul.conf:2: NUL byte in line (ignored)" "$dir/out" || fail "NUL: $(cat "$dir/out")"
"$ctl" config --conf "$dir/nul.conf" >"$dir/out" 2>/dev/null
grep -qE "^mode +fast +$dir/nul.conf:3\$" "$dir/out" || fail "the line after a NUL byte was lost"
grep -qE "^thp +on +$dir/nul.conf:1\$" "$dir/out" || fail "the line before a NUL byte was lost"

echo "== config --sample: etc/hakmem.conf sets nothing, and each key's line loads as it reads"
# (tests/options_generated.sh checks etc/hakmem.conf is this output.)
"$ctl" config --sample >"$dir/sample.conf" || fail "config --sample exited $?"
grep -v '^#' "$dir/sample.conf" | grep -q '[^[:space:]]' && fail "config --sample printed uncommented lines"
# Uncommented, every key line gives the default it shows: the same values,
# the source now the file.
# (Up to the example sections at the end.)
sed -n -e '/^#\[/q' -e 's/^#\([a-z_]* =.*\)$/\1/p' "$dir/sample.conf" >"$dir/defaults.conf"
options=$("$ctl" config --list | grep -vc '^#')
[ "$(wc -l <"$dir/defaults.conf")" = "$options" ] || fail "config --sample has not one key line per option"
: >"$dir/empty.conf"
"$ctl" config --conf "$dir/empty.conf" | awk 'NR > 3 { print $1, $2 }' >"$dir/builtin"
"$ctl" config --conf "$dir/defaults.conf" 2>"$dir/err" | awk 'NR > 3 { print $1, $2 }' >"$dir/fromfile"
[ ! -s "$dir/err" ] || fail "the sample's key lines warn: $(cat "$dir/err")"
cmp -s "$dir/builtin" "$dir/fromfile" || { diff "$dir/builtin" "$dir/fromfile"; fail "the sample's defaults are not the built-in ones"; }

echo "== hakmemctl run / stats"
"$ctl" run 2>"$dir/err"
[ $? = 2 ] || fail "run without a command did not exit 2"
grep -q 'no command to run' "$dir/err" || fail "run without a command: $(cat "$dir/err")"
"$ctl" run --frobnicate true 2>"$dir/err"
[ $? = 2 ] || fail "run accepted --frobnicate"
grep -q "unknown option '--frobnicate'" "$dir/err" || fail "run --frobnicate: $(cat "$dir/err")"
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
  grep -q '^hakmem: config: mode fast, bigcache, prewarm,' "$dir/err" || fail "run: mode fast without prewarm: $(cat "$dir/err")"
  # The line gives the effective configuration: no prewarm in memory-lean mode.
  HAKMEMCTL_LIBRARY="$lib" "$ctl" run --mode fast --set ss_mem_lean=1 --set verbose=1 -- true 2>"$dir/err" ||
    fail "run exited $?"
  grep -q '^hakmem: config: mode fast, memory-lean, bigcache, no purge,' "$dir/err" ||
    fail "run: memory-lean mode fast: $(cat "$dir/err")"
  # Without "--": the command starts at the first argument that is not an option.
  out=$(HAKMEMCTL_LIBRARY="$lib" "$ctl" run --mode minimal sh -c 'echo "$HAKMEM_MODE $LD_PRELOAD"') ||
    fail "run without -- exited $?"
  [ "$out" = "minimal $lib" ] || fail "run without --: $out"
  HAKMEMCTL_LIBRARY="$lib" "$ctl" stats -- sh -c 'exit 3' 2>/dev/null
  [ $? = 3 ] || fail "stats did not pass the exit status on"
  HAKMEMCTL_LIBRARY="$lib" "$ctl" stats -- true 2>"$dir/err" || fail "stats exited $?"
  [ "$(grep -c '^hakmem: ' "$dir/err")" -ge 3 ] || fail "stats: no report: $(cat "$dir/err")"
else
  echo "($lib not built: run and stats not exercised)"
fi

echo "== hakmemctl enable / disable (--root)"
root=$dir/root
unitdir=$root/etc/systemd/system/demo.service.d
HAKMEMCTL_LIBRARY= "$ctl" enable demo --mode balnced --root "$root" 2>"$dir/err" && fail "enable accepted --mode balnced"
grep -q "did you mean 'balanced'" "$dir/err" || fail "enable --mode balnced: $(cat "$dir/err")"
[ ! -e "$unitdir" ] || fail "a refused enable left $unitdir"
for bad in ../etc/passwd '' -x .hidden; do
  HAKMEMCTL_LIBRARY= "$ctl" enable "$bad" --root "$root" 2>/dev/null && fail "enable accepted unit '$bad'"
done
[ ! -e "$root" ] || fail "a refused enable created $root"
"$ctl" enable demo --root "$root" --now 2>/dev/null && fail "enable accepted --now with --root"
HAKMEMCTL_LIBRARY= "$ctl" enable demo --mode fast --set stats_file=/tmp/100%.log --root "$root" >"$dir/out" ||
  fail "enable exited $?"
cat "$dir/out"
grep -qx "hakmemctl: wrote $unitdir/hakmem.conf" "$dir/out" || fail "enable did not say what it wrote"
grep -qx "hakmemctl: to apply it: systemctl daemon-reload && systemctl restart demo.service" "$dir/out" ||
  fail "enable did not say how to apply it"
cat "$unitdir/hakmem.conf"
# The bare soname when ld.so finds the library by it (the usual prefixes),
# else the full path (make distcheck's prefix).
[ "$(grep -v '^#' "$unitdir/hakmem.conf" | sed -E 's,^(Environment="LD_PRELOAD=)/.*/(libhakmem\.so\.0"),\1\2,')" = '[Service]
Environment="LD_PRELOAD=libhakmem.so.0"
Environment="HAKMEM_MODE=fast"
Environment="HAKMEM_STATS_FILE=/tmp/100%%.log"' ] || fail "the drop-in is not as expected"
[ "$(stat -c %a "$unitdir/hakmem.conf")" = 644 ] || fail "the drop-in is not mode 644"
# Enabling again replaces the file; the mode goes when not given.
HAKMEMCTL_LIBRARY= "$ctl" enable demo.service --root "$root" >/dev/null || fail "enable again exited $?"
grep -q HAKMEM_MODE "$unitdir/hakmem.conf" && fail "enable without --mode kept the old mode"
[ "$(ls -A "$unitdir")" = hakmem.conf ] || fail "enable left other files: $(ls -A "$unitdir")"
# disable removes the file, and the directory unless something else is in it.
touch "$unitdir/other.conf"
"$ctl" disable demo --root "$root" >"$dir/out" || fail "disable exited $?"
[ ! -e "$unitdir/hakmem.conf" ] && [ -e "$unitdir/other.conf" ] || fail "disable removed the wrong files"
rm "$unitdir/other.conf"
HAKMEMCTL_LIBRARY= "$ctl" enable demo --root "$root" >/dev/null || fail "enable exited $?"
"$ctl" disable demo --root "$root" >"$dir/out" || fail "disable exited $?"
cat "$dir/out"
[ ! -e "$unitdir" ] || fail "disable left $unitdir"
"$ctl" disable demo --root "$root" >"$dir/out" || fail "disable of a unit not on hakmem exited $?"
grep -q "demo.service is not on hakmem" "$dir/out" || fail "disable again: $(cat "$dir/out")"
echo PASS
