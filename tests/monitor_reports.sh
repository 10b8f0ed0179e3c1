#!/bin/sh
# The report at exit and glibc's introspection calls: malloc_info's XML is
# well-formed and its totals agree with mallinfo2; mallopt answers as
# documented (tests/monitor_glibc); stats_format = json parses; the report
# is one block; stats_scope = top, stats_program and a [program] section
# with stats = 1 each limit the reports of a process tree; hakmemctl stats
# reports the top process only, or the programs stats_program names.
set -u
: "${srcdir:=.}"
lib=$PWD/src/.libs/libhakmem.so.0
ctl=tools/hakmemctl
me=monitor_reports
. "$srcdir/tests/lib.sh"
[ -e "$lib" ] || fail "$lib not built"
command -v python3 >/dev/null 2>&1 || skip "python3 not found"
scratch_setup
# The tree's own settings only.
clear_hakmem_env
: >"$dir/empty.conf"
export HAKMEM_CONF="$dir/empty.conf"

echo "== malloc_info and mallopt"
tests/monitor_glibc "$dir/info.xml" >"$dir/mallinfo2" || fail "monitor_glibc exited $?"
if command -v xmllint >/dev/null 2>&1; then
  xmllint --noout "$dir/info.xml" || fail "malloc_info's XML is not well-formed"
fi
python3 - "$dir/info.xml" "$dir/mallinfo2" <<'PY' || fail "malloc_info's totals disagree with mallinfo2"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
mi = {k: int(v) for k, v in (l.split() for l in open(sys.argv[2]))}
top = {(e.tag, e.get("type")): e for e in root if e.tag in ("total", "system", "aspace")}
sizes = root.find("heap").find("sizes")
errors = []
def same(what, xml, want):
    print("  %-28s %12d  mallinfo2 %12d" % (what, xml, want))
    if xml != want:
        errors.append(what)
same("total rest size (fordblks)", int(top[("total", "rest")].get("size")), mi["fordblks"])
same("total mmap count (hblks)", int(top[("total", "mmap")].get("count")), mi["hblks"])
same("total mmap size (hblkhd)", int(top[("total", "mmap")].get("size")), mi["hblkhd"])
same("system current (arena)", int(top[("system", "current")].get("size")), mi["arena"])
same("sum of <size> totals", sum(int(s.get("total")) for s in sizes), mi["fordblks"])
if sum(int(s.get("count")) for s in sizes) != int(top[("total", "rest")].get("count")):
    errors.append("the <size> counts do not add up to total rest")
if root.tag != "malloc" or root.get("version") != "1":
    errors.append("root element")
sys.exit(1 if errors else 0)
PY

echo "== stats_format = json at exit"
HAKMEM_STATS=1 HAKMEM_STATS_FORMAT=json HAKMEM_STATS_FILE="$dir/exit.json" LD_PRELOAD="$lib" \
  tests/monitor_glibc "$dir/x.xml" >/dev/null || fail "monitor_glibc under LD_PRELOAD exited $?"
python3 -m json.tool "$dir/exit.json" >/dev/null || fail "the JSON report does not parse: $(cat "$dir/exit.json")"
python3 - "$dir/exit.json" <<'PY' || fail "the JSON report lacks figures"
import json, sys
r = json.load(open(sys.argv[1]))
ok = (r["program"] == "monitor_glibc" and r["mode"] == "balanced" and r["mode_source"] == "default"
      and r["bytes"]["in_use"] > 0 and r["bytes"]["mapped"] >= r["bytes"]["in_use"]
      and r["classes"] and r["counters"]["malloc_calls"] > 0)
sys.exit(0 if ok else 1)
PY

echo "== the text report is one block after the program's output"
HAKMEM_STATS=1 LD_PRELOAD="$lib" sh -c 'echo before >&2; exec tests/monitor_glibc "$0" >&2' \
  "$dir/y.xml" 2>"$dir/text" || fail "the program exited $?"
grep -q '^hakmem: stats pid=[0-9]* program=monitor_glibc time=' "$dir/text" || fail "no report header"
grep -Eq '^hakmem: (in use|held free|mapped|resident|peak resident) +[0-9.]+ (B|KiB|MiB|GiB)' "$dir/text" ||
  fail "no figures in human units"
# "held free" and its parts: free slab blocks, BigCache, and the rest; the
# parts add up to the total, each rounded to a tenth of its unit.
awk '/^hakmem: held free/ {
  n = 0; err = 0
  for (i = 1; i <= NF; i++) {
    if ($i !~ /^\(?[0-9.]+$/ || $(i + 1) !~ /^(B|KiB|MiB|GiB)[,)]?$/) continue
    v = $i; sub(/^\(/, "", v); u = $(i + 1); sub(/[,)]$/, "", u)
    m = u == "GiB" ? 2^30 : u == "MiB" ? 2^20 : u == "KiB" ? 2^10 : 1
    x[n++] = v * m; err += m / 20
  }
  found = 1
  if (n != 4 || x[1] + x[2] + x[3] < x[0] - err || x[1] + x[2] + x[3] > x[0] + err) bad = 1
}
END { exit !found || bad }' "$dir/text" ||
  fail "the parts of held free do not add up: $(grep '^hakmem: held free' "$dir/text")"
first=$(grep -n '^hakmem: stats pid=.*program=monitor_glibc' "$dir/text" | cut -d: -f1)
last=$(grep -n '^hakmem: ' "$dir/text" | tail -n 1 | cut -d: -f1)
body=$(sed -n "${first},${last}p" "$dir/text" | grep -vc '^hakmem: ')
[ "$body" = 0 ] || fail "the report is interrupted by other lines"

count_reports() { grep -c '^hakmem: stats pid=' "$1" 2>/dev/null || true; }
# A parent that ends through exit() (dash ends with _exit, which runs no
# report) and two children: xargs running true twice.
tree() {
  printf 'a\nb\n' | env "$@" xargs -n1 /bin/true
}

echo "== stats_scope"
tree HAKMEM_STATS=1 HAKMEM_STATS_FILE="$dir/all" LD_PRELOAD="$lib"
[ "$(count_reports "$dir/all")" = 3 ] || fail "scope all: want 3 reports, got $(count_reports "$dir/all")"
tree HAKMEM_STATS=1 HAKMEM_STATS_SCOPE=top HAKMEM_STATS_FILE="$dir/top" LD_PRELOAD="$lib"
[ "$(count_reports "$dir/top")" = 1 ] || fail "scope top: want 1 report, got $(count_reports "$dir/top")"
grep -q '^hakmem: stats pid=[0-9]* program=xargs ' "$dir/top" || fail "scope top: not the shell's report"

echo "== stats_program"
tree HAKMEM_STATS=1 HAKMEM_STATS_PROGRAM='tru[e]' HAKMEM_STATS_FILE="$dir/prog" LD_PRELOAD="$lib"
[ "$(count_reports "$dir/prog")" = 2 ] || fail "stats_program: want 2 reports, got $(count_reports "$dir/prog")"
[ "$(grep -c '^hakmem: stats pid=[0-9]* program=true ' "$dir/prog")" = 2 ] || fail "stats_program: reports of other programs"

echo "== a [program] section with stats = 1"
printf '[true]\nstats = 1\nstats_file = %s\n' "$dir/section" >"$dir/conf"
tree HAKMEM_CONF="$dir/conf" LD_PRELOAD="$lib"
[ "$(count_reports "$dir/section")" = 2 ] || fail "[true] stats = 1: want 2 reports, got $(count_reports "$dir/section")"

echo "== hakmemctl stats: the top process only"
printf 'a\nb\n' | HAKMEMCTL_LIBRARY="$lib" "$ctl" stats -- xargs -n1 /bin/true 2>"$dir/ctl" || fail "hakmemctl stats exited $?"
[ "$(count_reports "$dir/ctl")" = 1 ] || fail "hakmemctl stats: want 1 report, got $(count_reports "$dir/ctl")"
# Naming the programs that report is a limit of its own: hakmemctl(1)
# offers it for a parent that prints no report (a dash script), so the
# top-only scope must not also apply and silence them.
printf 'a\nb\n' | HAKMEMCTL_LIBRARY="$lib" "$ctl" stats --set stats_program=true -- xargs -n1 /bin/true \
  2>"$dir/ctlprog" || fail "hakmemctl stats --set stats_program=true exited $?"
[ "$(grep -c '^hakmem: stats pid=[0-9]* program=true ' "$dir/ctlprog")" = 2 ] && [ "$(count_reports "$dir/ctlprog")" = 2 ] ||
  fail "hakmemctl stats --set stats_program=true: want the 2 reports of true, got $(count_reports "$dir/ctlprog")"
echo PASS
