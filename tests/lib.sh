# What the shell tests share (sourced, not run): the FAIL and SKIP lines,
# a scratch directory removed at exit with any process under test killed,
# a clean HAKMEM_* environment, and waiting for a process.
# Set me (the test's name) before sourcing; then call scratch_setup, and
# keep the pid of a process under test, if any, in pid.

fail() { echo "$me: FAIL: $*"; exit 1; }
skip() { echo "$me: SKIP: $*"; exit 77; }
# A failure that lets the other cases run; the test ends with
# `exit $failed`.
failed=0
fail_later() { echo "$me: FAIL: $*"; failed=1; }

scratch_cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$dir"
}

# Makes the scratch directory dir (named after $me) and arranges its
# removal, and the kill of the process under test, at exit, on a signal
# too.
scratch_setup() {
  pid=
  dir=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-$me.XXXXXX") || exit 1
  trap scratch_cleanup EXIT
  trap 'exit 1' HUP INT TERM
}

# Unsets every HAKMEM_* variable, so that only what a case sets applies
# (HAKMEM_CONF too: point it at a file when the test must not read
# /etc/hakmem.conf).
clear_hakmem_env() {
  for v in $(env | sed -n 's/^\(HAKMEM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
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
