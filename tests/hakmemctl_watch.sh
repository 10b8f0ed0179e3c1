#!/bin/sh
# hakmemctl stats --pid --watch on a process that changes under it:
#
# - one pid through three images (sh on libhakmem, sh without it, sh on
#   it again), as a process in an execve is between two images: the
#   reading taken while the process has no libhakmem says so once, the
#   watch goes on and reads the third image, and ends with status 0 when
#   the process exits;
# - a process that exits while watched but is not reaped by its parent (a
#   zombie, whose /proc maps read empty): the watch ends with "no process"
#   and status 0, not "permission denied";
# - a kernel thread (empty maps too): "does not run libhakmem".
#
# Every step waits for a file or a reading, with the long deadline of
# tests/lib.sh; nothing is asserted after a set time.
set -u
: "${srcdir:=.}"
ctl=tools/hakmemctl
me=hakmemctl_watch
. "$srcdir/tests/lib.sh"
lib=$(pwd)/src/.libs/libhakmem.so.0
[ -x "$ctl" ] || fail "$ctl not built"
[ -f "$lib" ] || fail "$lib not built"
scratch_setup
clear_hakmem_env
unset LD_PRELOAD 2>/dev/null || true

# stage.sh K: marks stage K, waits for go.K, then becomes stage K+1 in
# the same process: stage 2 runs without libhakmem, stage 3 with it.
cat >"$dir/stage.sh" <<'EOF'
d=$(dirname "$0")
k=$1
touch "$d/at.$k"
i=0
while [ ! -e "$d/go.$k" ]; do
  i=$((i + 1))
  [ $i -le 15000 ] || exit 3
  sleep 0.02
done
# The shell itself changes LD_PRELOAD: an env in between would be one
# more image (on libhakmem after stage 1, read between two gaps).
case $k in
  1) unset LD_PRELOAD; exec /bin/sh "$0" 2 ;;
  2) LD_PRELOAD=$HAK_LIB; export LD_PRELOAD; exec /bin/sh "$0" 3 ;;
esac
exit 0
EOF

lines() { wc -l <"$1" | tr -d ' '; }
# Succeeds once file $2 has more than $1 lines, or the watch has ended.
more_lines_or_ended() {
  [ "$(lines "$2")" -gt "$1" ] || ! kill -0 "$wpid" 2>/dev/null
}
watch_ended_early() {
  wait "$wpid"
  rc=$?
  if grep -q 'permission denied' "$dir/err" && [ "$(lines "$dir/watch")" = 0 ]; then
    skip "this system refuses process_vm_readv on a sibling process: $(cat "$dir/err")"
  fi
  fail "the watch ended with status $rc $1: $(cat "$dir/err")"
}

# Starts a watch of process $1 in the background (its pid in $wpid),
# readings into $dir/watch, messages into $dir/err, and waits for its
# first reading.
start_watch() {
  : >"$dir/watch"
  "$ctl" stats --pid "$1" --watch 0.05 --json >"$dir/watch" 2>"$dir/err" &
  wpid=$!
  wait_until "the first reading" more_lines_or_ended 0 "$dir/watch"
  kill -0 "$wpid" 2>/dev/null || watch_ended_early "at the first reading"
}

echo "== a watch across execve into a program without libhakmem and back"
HAK_LIB=$lib LD_PRELOAD=$lib /bin/sh "$dir/stage.sh" 1 &
pid=$!
wait_until "stage 1" test -e "$dir/at.1"
start_watch "$pid"
touch "$dir/go.1"
wait_until "stage 2" test -e "$dir/at.2"
wait_until "a reading without libhakmem" \
  sh -c 'grep -q "watching on" "$1" || ! kill -0 "$2" 2>/dev/null' sh "$dir/err" "$wpid"
kill -0 "$wpid" 2>/dev/null || watch_ended_early "while the process ran without libhakmem"
# The first reading that fails says why, once: the image without
# libhakmem, or, when the reading fell inside the execve (on a loaded
# machine), the library mapped but not yet relocated.
grep -Eq "^hakmemctl: process $pid( does not run libhakmem|: .* is loaded but not yet started)" "$dir/err" ||
  fail "the reading without libhakmem does not say why: $(cat "$dir/err")"
before=$(lines "$dir/watch")
touch "$dir/go.2"
wait_until "stage 3" test -e "$dir/at.3"
wait_until "a reading of the third image" more_lines_or_ended "$before" "$dir/watch"
kill -0 "$wpid" 2>/dev/null || watch_ended_early "before the third image was read"
touch "$dir/go.3"
watched=$pid
wait "$pid" || fail "the watched process exited $?"
pid=
wait "$wpid"
rc=$?
[ "$rc" = 0 ] || fail "the watch ended with status $rc when the process exited: $(cat "$dir/err")"
# A gap is announced once, however many ticks it lasts.  Under load a
# reading has been seen to succeed between the two execve calls (a second
# announcement means one did: see had_gap in hakmemctl), which ends the
# first gap; so one gap per execve at most.
gaps=$(grep -c 'watching on' "$dir/err")
[ "$gaps" -ge 1 ] && [ "$gaps" -le 2 ] || fail "$gaps gaps announced (want 1 or 2, one per execve at most): $(cat "$dir/err")"
grep -q "^hakmemctl: no process" "$dir/err" || fail "the end of the process is not reported"
while read -r line; do
  case $line in
    "{\"program\":"*"\"pid\":$watched,"*) ;;
    *) fail "not a report of process $watched: $line" ;;
  esac
done <"$dir/watch"
echo "  $(lines "$dir/watch") readings; the gap: $(grep -v 'watching on' "$dir/err" | head -n 1)"

echo "== a watched process that exits and stays a zombie"
# The child's parent execs sleep, which never reaps it.
rm -f "$dir"/go.* "$dir"/at.*
HAK_LIB=$lib sh -c 'LD_PRELOAD=$HAK_LIB /bin/sh "$1" 3 & echo $! >"$2"; exec sleep 600' \
  sh "$dir/stage.sh" "$dir/child" &
pid=$!
wait_until "the child" test -s "$dir/child"
child=$(cat "$dir/child")
wait_until "the child's start" test -e "$dir/at.3"
start_watch "$child"
touch "$dir/go.3"
wait "$wpid"
rc=$?
state=$(sed 's/.*) \(.\).*/\1/' "/proc/$child/stat" 2>/dev/null)
[ "$state" = Z ] || fail "the child is not a zombie (state '$state'); the case tests nothing"
[ "$rc" = 0 ] || fail "the watch of an exited process ended with status $rc: $(cat "$dir/err")"
grep -q "^hakmemctl: no process $child\$" "$dir/err" ||
  fail "the end of the process is not reported as such: $(cat "$dir/err")"
stop_process

echo "== readings across a run of execve"
# One process execs itself 300 times, with and without libhakmem in
# turn, while it is read again and again.  A reading whose block the
# execve replaced under it (the maps read before, the memory after) must
# say what the maps say now, not report a block of another version or a
# failed read.
cat >"$dir/flip.sh" <<'EOF'
n=$1
[ "$n" -gt 0 ] || { touch "$3"; exit 0; }
if [ $((n % 2)) = 1 ]; then exec env LD_PRELOAD="$2" /bin/sh "$0" $((n - 1)) "$2" "$3"; fi
exec env -u LD_PRELOAD /bin/sh "$0" $((n - 1)) "$2" "$3"
EOF
: >"$dir/err"
/bin/sh "$dir/flip.sh" 300 "$lib" "$dir/flipped" &
pid=$!
readings=0
while [ ! -e "$dir/flipped" ] && kill -0 "$pid" 2>/dev/null; do
  "$ctl" stats --pid "$pid" >/dev/null 2>>"$dir/err"
  readings=$((readings + 1))
done
wait "$pid" || fail "the process that execs itself exited $?"
pid=
test -e "$dir/flipped" || fail "the process that execs itself did not finish"
if grep -E "not understood|reading its memory failed" "$dir/err" >"$dir/bad"; then
  fail "$(lines "$dir/bad") of $readings readings across execve reported the old image's block: $(head -n 3 "$dir/bad")"
fi
echo "  $readings readings"

echo "== a kernel thread"
# Its maps read empty, as a refused reader's do: it must not be reported
# as a refusal.  Kernel threads are visible only outside a pid namespace.
kthread=
for f in /proc/[0-9]*/stat; do
  flags=$(sed 's/.*) //' "$f" 2>/dev/null | awk '{ print $7 }')
  [ -n "$flags" ] && [ $((flags & 0x200000)) != 0 ] && { kthread=${f#/proc/}; kthread=${kthread%/stat}; break; }
done
if [ -n "$kthread" ]; then
  "$ctl" stats --pid "$kthread" >"$dir/out" 2>"$dir/err"
  rc=$?
  cat "$dir/err"
  [ "$rc" = 1 ] || fail "reading kernel thread $kthread exited $rc (want 1)"
  grep -q "^hakmemctl: process $kthread does not run libhakmem" "$dir/err" ||
    fail "kernel thread $kthread is not reported as a process without libhakmem"
else
  echo "  no kernel thread is visible here; not tested"
fi
echo "$me: ok"
