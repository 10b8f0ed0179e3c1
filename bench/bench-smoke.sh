#!/bin/sh
# Every benchmark program runs under hakmem with tiny arguments and prints
# one well-formed result line (and a usage message, exit status 2, on bad
# arguments); then bench/compare runs tiny_hot under every allocator found
# and a copy of hakmem as another build, and prints a numeric ratio for
# each and for hakmem over the copy, and its learning section runs
# tiny_hot under hakmem's variants; then, with valgrind,
# bench/callgrind-ops prints hakmem's instructions per operation.
#
# `make check` runs this from the top build directory and exports srcdir.
# By hand: cd BUILDDIR && srcdir=SRCDIR SRCDIR/bench/bench-smoke.sh
# Exit status: 0 pass, 1 fail, 77 skip (no python3 for bench/compare).
set -u

builddir=$(pwd)
srcdir=${srcdir:-$(dirname "$0")/..}
lib=$builddir/src/.libs/libhakmem.so.0

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

[ -e "$lib" ] || fail "$lib is not built"
tmp=$(mktemp -d) || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

# check_line NAME OUTPUT [EXTRA_KEY...]: OUTPUT is exactly one line
# "NAME ops/s=<float> peak_rss_kb=<int> ... checksum=<hex>" with ops/s and
# peak_rss_kb above zero and a number for each extra key.
check_line() {
	name=$1 out=$2
	shift 2
	printf '%s\n' "$out" | awk -v name="$name" -v extra="$*" '
		{ lines++ }
		lines == 1 && $1 == name {
			for (i = 2; i <= NF; i++) {
				split($i, kv, "=")
				v[kv[1]] = kv[2]
			}
		}
		END {
			num = "^-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?$"
			if (lines != 1 || !(v["ops/s"] ~ num) || v["ops/s"] + 0 <= 0 ||
			    !(v["peak_rss_kb"] ~ /^[0-9]+$/) || v["peak_rss_kb"] + 0 <= 0 ||
			    !(v["checksum"] ~ /^[0-9a-f]+$/))
				exit 1
			n = split(extra, keys, " ")
			for (i = 1; i <= n; i++)
				if (!(v[keys[i]] ~ num))
					exit 1
		}' || fail "bad result line from $name: '$out'"
}

# bench NAME PROGRAM ARGS...: runs PROGRAM under hakmem, checks its line.
bench() {
	name=$1 prog=bench/$2
	shift 2
	[ -x "$prog" ] || fail "$prog is not built"
	out=$(LD_PRELOAD=$lib timeout 120 "$prog" "$@" 2>"$tmp/err") ||
		fail "$prog $* exited with status $?: $(tail -n 3 "$tmp/err")"
	check_line "$name" "$out"
	echo "ok: $out"
}

bench random_mixed random_mixed 20000 400 1
bench random_mixed random_mixed 20000 8192 1
bench tiny_hot tiny_hot 100000 1
bench tiny_hot_batch tiny_hot --batch 64 100000 1
bench cache_thrash cache_thrash 2000 8 1 2
bench larson larson 20000 100 1 2
bench xthread xthread 20000 256 1 2
bench vm vm 20 1 1
bench vm_mixed vm --mixed 10 4 1
bench realloc realloc 2000 16 1
bench learn_switch learn_bench switch 2 1
bench burst burst 20 256 1
check_line burst "$out" minflt
bench burst burst 3 64 1 1000
bench thread_stress thread_stress 4000 100 1 2 2
check_line thread_stress "$out" minflt
bench interp interp 5000 1000 1
check_line interp "$out" gcs
bench cxx_objects cxx_objects 2000 100 1
bench cxx_pairs cxx_objects --pairs 2000 100 1
bench large_replace large_replace 3 2 1
check_line large_replace "$out" minflt
out=$(LD_PRELOAD=$lib timeout 60 bench/soak 1 1000 1 "$tmp/soak.csv" 2>"$tmp/err") ||
	fail "bench/soak exited with status $?: $(tail -n 3 "$tmp/err")"
check_line soak "$out" rss_drift_pct throughput_cv
echo "ok: $out"
[ "$(head -n 1 "$tmp/soak.csv")" = "epoch,ops,rss_kb" ] &&
	[ "$(wc -l <"$tmp/soak.csv")" -ge 3 ] || fail "bad soak CSV: $(cat "$tmp/soak.csv")"

for p in random_mixed tiny_hot cache_thrash larson xthread vm realloc soak learn_bench burst \
	thread_stress interp cxx_objects large_replace; do
	bench/$p >/dev/null 2>"$tmp/err"
	st=$?
	[ $st -eq 2 ] && grep -q "^usage: $p " "$tmp/err" ||
		fail "bench/$p without arguments: status $st, '$(cat "$tmp/err")'"
done

command -v python3 >/dev/null || {
	echo "SKIP: no python3 to run bench/compare" >&2
	exit 77
}

# The allocators bench/compare should find: hakmem and glibc always, the
# others when their library is installed.
expect="hakmem glibc"
cache=$(PATH=$PATH:/sbin:/usr/sbin ldconfig -p 2>/dev/null)
for pair in mimalloc:libmimalloc.so.2 jemalloc:libjemalloc.so.2 tcmalloc:libtcmalloc_minimal.so.4; do
	printf '%s\n' "$cache" | grep -q "^[[:space:]]*${pair#*:} " && expect="$expect ${pair%%:*}"
done

# A copy of the library stands for another build of hakmem (--lib hakmem-*).
cp "$lib" "$tmp/libhakmem-copy.so.0" || fail "cannot copy $lib"
timeout 300 "$srcdir/bench/compare" --quick --only tiny_hot --reps 1 \
	--lib "hakmem-copy:$tmp/libhakmem-copy.so.0" \
	--builddir "$builddir" --out "$tmp/results" >"$tmp/compare.out" 2>"$tmp/compare.err" ||
	fail "bench/compare exited with status $?: $(tail -n 5 "$tmp/compare.err")"
cat "$tmp/compare.out"
for a in $expect hakmem-copy; do
	awk -v a="$a" '
		/^== / { table = ($2 == "tiny_hot:") }
		table && $1 == a && $5 ~ /^[0-9]+\.[0-9]+$/ { ok = 1 }
		END { exit !ok }' "$tmp/compare.out" ||
		fail "no row with a numeric time ratio for $a in the tiny_hot table"
done
grep -Eq '^hakmem against hakmem-copy: [-+][0-9]+\.[0-9] % time, [-+][0-9]+\.[0-9] % RSS \(geomean over 2 of 2 benchmarks\)$' \
	"$tmp/compare.out" || fail "no geomean line for hakmem over hakmem-copy"
[ -s "$tmp/results/compare.csv" ] || fail "bench/compare wrote no compare.csv"
echo "ok: bench/compare rows for $expect hakmem-copy"

# The learning section, through the same runner: one workload under the
# learner, balanced and the fixed values (peers left out, glibc kept).
timeout 300 "$srcdir/bench/compare" --quick --learning --only learn/tiny_hot --reps 1 \
	--lib mimalloc= --lib jemalloc= --lib tcmalloc= \
	--builddir "$builddir" --out "$tmp/learning" >"$tmp/learning.out" 2>"$tmp/learning.err" ||
	fail "bench/compare --learning exited with status $?: $(tail -n 5 "$tmp/learning.err")"
cat "$tmp/learning.out"
for v in learning balanced bigcache=16 keep=1024 fast minimal glibc; do
	awk -v v="$v" '
		/^== / { table = ($2 == "learning:" && $3 == "tiny_hot:") }
		table && $1 == v && $4 ~ /^[0-9]+\.[0-9]+$/ { ok = 1 }
		END { exit !ok }' "$tmp/learning.out" ||
		fail "no row with a numeric time ratio for $v in the learning table"
done
[ "$(grep -c '^tiny_hot,' "$tmp/learning/learning.csv")" -eq 9 ] ||
	fail "learning.csv has not the 9 rows of tiny_hot: $(cat "$tmp/learning/learning.csv")"
echo "ok: bench/compare --learning"

if ! command -v valgrind >/dev/null; then
	echo "no valgrind: bench/callgrind-ops not run"
	exit 0
fi
timeout 300 "$srcdir/bench/callgrind-ops" --counts 20000,60000 --builddir "$builddir" \
	>"$tmp/callgrind.out" 2>"$tmp/callgrind.err" ||
	fail "bench/callgrind-ops exited with status $?: $(tail -n 5 "$tmp/callgrind.err")"
cat "$tmp/callgrind.out"
for b in tiny_hot random_mixed/ws400; do
	awk -v b="$b" '$1 == "hakmem" && $2 == b && $3 ~ /^[0-9]+\.[0-9]+$/ && $3 > 0 { ok = 1 }
		END { exit !ok }' "$tmp/callgrind.out" ||
		fail "no Ir/op of hakmem on $b from bench/callgrind-ops"
done
echo "ok: bench/callgrind-ops"
