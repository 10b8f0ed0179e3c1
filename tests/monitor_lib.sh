# What tests/monitor_live.sh and tests/monitor_compat.sh share (sourced,
# not run): the FAIL and SKIP lines, a scratch directory removed at exit
# with the process under test killed, and waiting for that process.
# Set me (the test's name) before sourcing; then call monitor_setup, and
# keep the process under test's pid in pid.

fail() { echo "$me: FAIL: $*"; exit 1; }
skip() { echo "$me: SKIP: $*"; exit 77; }

monitor_cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$dir"
}

# Makes the scratch directory dir (named after $me) and arranges its
# removal, and the kill of the process under test, at exit.
monitor_setup() {
  pid=
  dir=$(mktemp -d "${TMPDIR:-/tmp}/$me.XXXXXX") || exit 1
  trap monitor_cleanup EXIT
}

# wait_until WHAT COMMAND...: runs COMMAND until it succeeds, every 20 ms;
# fails, naming WHAT, when the process under test exits first or two
# minutes pass (a loaded machine).  Nothing is asserted after a set time.
wait_until() {
  what=$1
  shift
  i=0
  until "$@"; do
    kill -0 "$pid" 2>/dev/null || fail "the process exited before $what"
    i=$((i + 1))
    [ $i -le 6000 ] || fail "$what: not within two minutes"
    sleep 0.02
  done
}

# Stops the process under test and waits for it.
stop_process() {
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=
}
