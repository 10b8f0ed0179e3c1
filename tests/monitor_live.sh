#!/bin/sh
# hakmemctl stats --pid and top on a running process (tests/stats_daemon):
# the figures read from outside agree with what hakmem_stats_get and
# mallinfo2 said inside, they move when the daemon allocates more, the
# JSON parses, top lists the daemon with its mode, and a reader without
# permission gets one clear line, not a crash.
set -u
: "${srcdir:=.}"
ctl=tools/hakmemctl
daemon=tests/stats_daemon
me=monitor_live
. "$srcdir/tests/lib.sh"
[ -x "$ctl" ] || fail "$ctl not built"
[ -x "$daemon" ] || fail "$daemon not built"
command -v python3 >/dev/null 2>&1 || skip "python3 not found"
scratch_setup
chmod 755 "$dir"

# The kernel may refuse process_vm_readv altogether (a container's seccomp
# profile, Yama ptrace_scope 3): then there is nothing to test.
scope=$(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo 0)
[ "$scope" = 3 ] && skip "Yama ptrace_scope is 3 (no process may read another)"

# mode fast: no purge thread, so nothing changes while the daemon sleeps.
HAKMEM_MODE=fast "$daemon" "$dir" 2 &
pid=$!
wait_for() { # file the daemon writes
  wait_until "the daemon wrote $1" test -e "$1"
}

# Compares an outside reading (JSON) with the daemon's own phase file.
compare() { # json phase
  python3 - "$1" "$2" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
inside = dict(l.split() for l in open(sys.argv[2]))
inside = {k: int(v) for k, v in inside.items()}
c = out["counters"]
b = out["bytes"]
errors = []
def same(what, outside, ins):
    if outside != ins:
        errors.append("%s: outside %d, inside %d" % (what, outside, ins))
same("pid", out["pid"], inside["pid"])
same("mapped bytes", b["mapped"], inside["mapped_bytes"])
same("large bytes", b["large_in_use"], inside["large_bytes"])
same("bytes in use", b["in_use"], inside["uordblks"])
same("free slab bytes", b["slab_free"], inside["fordblks"])
same("BigCache bytes", b["bigcache"], inside["bigcache_bytes"])
for k in ("os_mmap", "os_munmap", "os_madvise", "large_allocs", "refills",
          "superslabs_live", "superslabs_empty", "mapped_bytes"):
    same(k, c[k], inside[k])
# Allocations of slabs since re-formatted for another class or unmapped
# are counted inside only (see hakmem(3), MONITORING).
if not 0 < c["malloc_calls"] <= inside["malloc_calls"]:
    errors.append("malloc_calls: outside %d, inside %d" % (c["malloc_calls"], inside["malloc_calls"]))
if out["mode"] != "fast" or out["mode_source"] != "env HAKMEM_MODE":
    errors.append("mode %r from %r" % (out["mode"], out["mode_source"]))
if sum(k["in_use"] for k in out["classes"]) != b["slab_in_use"]:
    errors.append("the per-class rows do not add up to the slab bytes in use")
if not b["resident"] or b["peak_resident"] < b["resident"]:
    errors.append("resident %d, peak %d" % (b["resident"], b["peak_resident"]))
for e in errors:
    print("  " + e)
sys.exit(1 if errors else 0)
PY
}

echo "== phase 1: stats --pid --json agrees with the daemon's own figures"
wait_for "$dir/ready.1"
if ! "$ctl" stats --pid "$pid" --json >"$dir/s1.json" 2>"$dir/err"; then
  # A sandbox may forbid reading even one's own processes (seccomp,
  # a missing /proc): nothing to test then, but say why.
  if grep -q 'permission denied' "$dir/err"; then
    skip "this system refuses process_vm_readv on our own child: $(cat "$dir/err")"
  fi
  fail "stats --pid failed: $(cat "$dir/err")"
fi
python3 -m json.tool "$dir/s1.json" >/dev/null || fail "stats --json is not JSON: $(cat "$dir/s1.json")"
compare "$dir/s1.json" "$dir/phase.1" || fail "phase 1: outside and inside disagree"

echo "== phase 1: text report and top --once"
"$ctl" stats --pid "$pid" >"$dir/s1.txt" 2>"$dir/err" || fail "stats --pid exited $?"
cat "$dir/s1.txt" | head -n 10
grep -q "^hakmem: stats pid=$pid program=stats_daemon " "$dir/s1.txt" || fail "no header line"
grep -q '^hakmem: mode  *fast (env HAKMEM_MODE)$' "$dir/s1.txt" || fail "no mode line"
grep -Eq '^hakmem: in use  *[0-9.]+ (KiB|MiB)  \(slab blocks' "$dir/s1.txt" || fail "no bytes-in-use line"
grep -Eq '^hakmem: +block +in use +free +allocations +refills$' "$dir/s1.txt" || fail "no class table"
"$ctl" top --once --delay 0.2 >"$dir/top" 2>"$dir/err" || fail "top --once exited $?: $(cat "$dir/err")"
cat "$dir/top"
grep -Eq "^ *$pid +stats_daemon +fast +[0-9.]+ [KMG]?i?B" "$dir/top" || fail "top --once does not list the daemon with its mode"
# Root is never refused for being another user; kernel threads (no
# address space) are not counted as unreadable at all.
if [ "$(id -u)" = 0 ]; then
  grep -q "another user's" "$dir/top" && fail "top as root blames another user: $(head -1 "$dir/top")"
fi
"$ctl" top --once --delay 0 --json >"$dir/top.json" || fail "top --json exited $?"
python3 - "$dir/top.json" "$pid" <<'PY' || fail "top --json: the daemon's line is missing or not JSON"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
sys.exit(0 if any(r["pid"] == int(sys.argv[2]) and r["mode"] == "fast" for r in rows) else 1)
PY

echo "== phase 2: the figures moved"
touch "$dir/go.1"
wait_for "$dir/ready.2"
"$ctl" stats --pid "$pid" --json >"$dir/s2.json" || fail "stats --pid exited $?"
compare "$dir/s2.json" "$dir/phase.2" || fail "phase 2: outside and inside disagree"
python3 - "$dir/s1.json" "$dir/s2.json" <<'PY' || fail "the figures did not move between phases"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
moved = (b["bytes"]["in_use"] > a["bytes"]["in_use"] and
         b["bytes"]["large_in_use"] > a["bytes"]["large_in_use"] and
         b["counters"]["malloc_calls"] > a["counters"]["malloc_calls"])
print("  in use %d -> %d bytes, malloc_calls %d -> %d" % (
    a["bytes"]["in_use"], b["bytes"]["in_use"],
    a["counters"]["malloc_calls"], b["counters"]["malloc_calls"]))
sys.exit(0 if moved else 1)
PY
"$ctl" stats --pid "$pid" --watch 0.1 --count 2 --json >"$dir/watch" || fail "--watch exited $?"
[ "$(wc -l <"$dir/watch")" = 2 ] || fail "--watch --count 2 did not print two reports"
python3 -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]' "$dir/watch" ||
  fail "--watch --json lines are not JSON"

echo "== an exec between two --watch readings: no rate, not 2^64 calls per second"
# The daemon's second image (same pid) has made fewer OS calls than its
# first had: the count went down, which is no rate.  The readings are ten
# seconds apart; the exec and the new image's first phase take well under
# that, so the second reading sees the new image.
mkdir "$dir/x" "$dir/x/after"
HAKMEM_MODE=fast "$daemon" "$dir/x" 3 exec &
xpid=$!
for k in 1 2; do
  wait_for "$dir/x/ready.$k"
  touch "$dir/x/go.$k"
done
wait_for "$dir/x/ready.3"
"$ctl" stats --pid "$xpid" --watch 10 --count 2 --json >"$dir/xwatch" 2>"$dir/err" &
wpid=$!
wait_until "the first --watch reading" test -s "$dir/xwatch"
touch "$dir/x/go.3"
wait_for "$dir/x/after/ready.1"
wait "$wpid" || fail "--watch across an exec exited $?: $(cat "$dir/err")"
python3 - "$dir/xwatch" <<'PY' || fail "--watch across an exec"
import json, sys
a, b = (json.loads(l) for l in open(sys.argv[1]))
calls = [sum(v for k, v in r["counters"].items() if k.startswith("os_") and k != "os_refused")
         for r in (a, b)]
print("  OS calls %d before the exec, %d after; rate %s" % (calls[0], calls[1], b.get("os_calls_per_s")))
if calls[1] >= calls[0]:
    sys.exit("  the second reading is not of the new image")
if "os_calls_per_s" in b:
    sys.exit("  a rate across the exec: %d calls per second" % b["os_calls_per_s"])
PY
touch "$dir/x/after/go.1"
wait "$xpid" || fail "the daemon's second image exited $?"

echo "== permission denied"
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 &&
   [ "$(setpriv --reuid=65534 --regid=65534 --clear-groups id -u 2>/dev/null)" = 65534 ]; then
  # The daemon runs as root; nobody may not read it.
  cp "$ctl" "$dir/hakmemctl" && chmod 755 "$dir/hakmemctl"
  setpriv --reuid=65534 --regid=65534 --clear-groups "$dir/hakmemctl" stats --pid "$pid" \
    >"$dir/out" 2>"$dir/err"
  rc=$?
  cat "$dir/err"
  [ $rc = 1 ] || fail "a denied read exited $rc (want 1)"
  grep -q "^hakmemctl: cannot read process $pid: permission denied (needs the same user and ptrace permission" "$dir/err" ||
    fail "no clear message for a denied read"
  [ ! -s "$dir/out" ] || fail "a denied read printed a report"
  setpriv --reuid=65534 --regid=65534 --clear-groups "$dir/hakmemctl" top --once --delay 0 \
    >"$dir/out" 2>"$dir/err" || fail "top as nobody exited $?"
  grep -q " $pid " "$dir/out" && fail "top as nobody listed a root process"
  grep -q "not readable: [0-9]* another user's" "$dir/out" || fail "top as nobody does not say why: $(head -1 "$dir/out")"
elif [ "$(id -u)" != 0 ] && [ -r /proc/1/status ] && [ "$(stat -c %u /proc/1)" = 0 ]; then
  "$ctl" stats --pid 1 >"$dir/out" 2>"$dir/err"
  rc=$?
  cat "$dir/err"
  [ $rc = 1 ] || fail "a denied read exited $rc (want 1)"
  grep -Eq "^hakmemctl: (cannot read process 1: permission denied|process 1 does not run libhakmem)" "$dir/err" ||
    fail "no clear message for a denied read"
else
  echo "(not root and no root process to read: denied access not exercised)"
fi
"$ctl" stats --pid 2147483647 2>"$dir/err"
[ $? = 1 ] && grep -q '^hakmemctl: no process 2147483647$' "$dir/err" || fail "no message for a missing process"
"$ctl" stats --pid $$ 2>"$dir/err"
[ $? = 1 ] && grep -q "^hakmemctl: process $$ does not run libhakmem" "$dir/err" ||
  fail "no message for a process without hakmem: $(cat "$dir/err")"

touch "$dir/go.2"
wait "$pid" || fail "the daemon exited $?"
pid=
echo PASS
