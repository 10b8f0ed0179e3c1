#!/bin/sh
# Secure execution for real: a setuid-root copy of a helper linked with the
# allocator core, run as nobody, must ignore every HAKMEM_* variable and
# HAKMEM_CONF; a plain copy run the same way must honour them.  Then, with
# a conf file given to the helper (see config_secure_helper.c): started
# under another argv[0] (exec -a redis-server), the setuid copy applies the
# section of its executable's name, not [redis-server], which the plain
# copy applies; and it refuses a root-owned conf file in a directory
# anyone may write (/tmp).
# Exit 77 (skip) when that cannot be set up: not root, no setpriv, or a
# nosuid file system.
set -u
helper=tests/config_secure_helper
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "not root: cannot make a setuid-root helper"
command -v setpriv >/dev/null 2>&1 || skip "setpriv (util-linux) not found"
[ -x "$helper" ] || { echo "FAIL: $helper not built"; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-setuid.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
cp "$helper" "$dir/plain"
cp "$helper" "$dir/setuid"
chown root:root "$dir/setuid" && chmod 4755 "$dir/setuid" || exit 1
printf 'mode = research\nsuperslab_lg = 19\n' >"$dir/evil.conf"
chmod 644 "$dir/evil.conf"

run() {
  env -i PATH=/usr/bin:/bin HAKMEM_MODE=fast HAKMEM_STATS=1 HAKMEM_THP=on \
    HAKMEM_STATS_FILE="$dir/report" HAKMEM_BOGUS=1 HAKMEM_CONF="$dir/evil.conf" \
    setpriv --reuid=65534 --regid=65534 --clear-groups "$1"
}

out=$(run "$dir/plain" 2>"$dir/plain.err") || { echo "FAIL: plain helper failed"; cat "$dir/plain.err"; exit 1; }
echo "plain copy as nobody:"; echo "$out" | sed 's/^/  /'
echo "$out" | grep -qx 'secure 0' || { echo "FAIL: plain copy ran in secure execution"; exit 1; }
echo "$out" | grep -qx 'thp on env HAKMEM_THP' || { echo "FAIL: plain copy ignored HAKMEM_THP"; exit 1; }
echo "$out" | grep -qx "superslab_lg 19 $dir/evil.conf:2" || { echo "FAIL: plain copy ignored HAKMEM_CONF"; exit 1; }
grep -q 'HAKMEM_BOGUS=1: unknown variable' "$dir/plain.err" || { echo "FAIL: no warning for HAKMEM_BOGUS"; exit 1; }

out=$(run "$dir/setuid" 2>"$dir/setuid.err") || { echo "FAIL: setuid helper failed"; cat "$dir/setuid.err"; exit 1; }
echo "setuid-root copy as nobody:"; echo "$out" | sed 's/^/  /'
echo "$out" | grep -qx 'secure 1' ||
  skip "the setuid helper did not run in secure execution (nosuid mount or no_new_privs?)"
if echo "$out" | grep -q 'env HAKMEM_'; then echo "FAIL: an HAKMEM_* variable was used"; exit 1; fi
if echo "$out" | grep -q 'evil.conf'; then echo "FAIL: HAKMEM_CONF was used"; exit 1; fi
echo "$out" | grep -q '^stats_file "" ' || { echo "FAIL: stats_file set"; exit 1; }
if [ -s "$dir/setuid.err" ]; then echo "FAIL: warnings about ignored variables:"; cat "$dir/setuid.err"; exit 1; fi
[ ! -e "$dir/report" ] || { echo "FAIL: stats_file was opened"; exit 1; }
echo "PASS: secure execution ignored HAKMEM_* and HAKMEM_CONF"

# Whether every directory from / down to $1 is root's and not writable by
# group or others, as secure execution asks of a conf file's path.
trusted() {
  p=$1
  while :; do
    set -- $(stat -L -c '%u %a' "$p") || return 1
    [ "$1" = 0 ] && [ $(( 0$2 & 022 )) = 0 ] || return 1
    [ "$p" = / ] && return 0
    p=$(dirname "$p")
  done
}
command -v bash >/dev/null 2>&1 || skip "bash not found (for exec -a)"
printf '[redis-server]\nthp = on\n[setuid]\nsuperslab_lg = 19\n' >"$dir/hakmem.conf"
chmod 644 "$dir/hakmem.conf"
# As argv[0] redis-server, with the conf file $2.
run_as_redis() {
  env -i PATH=/usr/bin:/bin setpriv --reuid=65534 --regid=65534 --clear-groups \
    bash -c 'exec -a redis-server "$0" "$1"' "$1" "$2"
}

out=$(run_as_redis "$dir/plain" "$dir/hakmem.conf") || { echo "FAIL: plain helper failed"; exit 1; }
echo "$out" | grep -q '^thp on .*\[redis-server\]' ||
  { echo "FAIL: plain copy as redis-server did not apply [redis-server]"; echo "$out"; exit 1; }

out=$(run_as_redis "$dir/setuid" "$dir/hakmem.conf") || { echo "FAIL: setuid helper failed"; exit 1; }
echo "$out" | grep -qx 'secure 1' || { echo "FAIL: not in secure execution"; exit 1; }
echo "$out" | grep -q '^warning .*/hakmem.conf: directory .* is not owned by root or is writable by group or others: ignored in secure execution$' ||
  { echo "FAIL: conf file under $(dirname "$dir") not refused"; echo "$out"; exit 1; }
echo "$out" | grep -qx 'thp off mode balanced' || { echo "FAIL: a value of the refused file applied"; echo "$out"; exit 1; }

# The same conf file in a trusted directory: read, [setuid] applied.
tests_dir=$PWD/tests # the build tree (the source tree may be read-only)
trusted "$tests_dir" ||
  skip "$tests_dir or a directory above it is not root's or is writable by others: no trusted directory for the conf file"
confdir=$(mktemp -d "$tests_dir/hakmem-setuid.XXXXXX") || exit 1
trap 'rm -rf "$dir" "$confdir"' EXIT
chmod 755 "$confdir"
cp "$dir/hakmem.conf" "$confdir/hakmem.conf"
out=$(run_as_redis "$dir/setuid" "$confdir/hakmem.conf") || { echo "FAIL: setuid helper failed"; exit 1; }
echo "setuid-root copy as nobody, argv[0] redis-server:"; echo "$out" | sed 's/^/  /'
if echo "$out" | grep -q '^warning '; then echo "FAIL: warnings"; exit 1; fi
echo "$out" | grep -q '^superslab_lg 19 .*\[setuid\]' ||
  { echo "FAIL: the section of the executable's name not applied"; exit 1; }
echo "$out" | grep -qx 'thp off mode balanced' || { echo "FAIL: [redis-server] applied in secure execution"; exit 1; }
echo "PASS: in secure execution argv[0] chose no section and /tmp was not trusted"
exit 0
