#!/bin/sh
# Real programs on hakmem: each runs twice, on the system allocator and
# with LD_PRELOAD=libhakmem.so.0, and the two outputs must be identical byte
# for byte.  The preloaded run has HAKMEM_STATS=1, and the reports at exit
# must show that hakmem served allocations (malloc_calls > 0).  The reports
# go to a file (HAKMEM_STATS_FILE, appended by every process) rather than
# stderr: coreutils programs close stderr before exit, and a script may
# send stderr into the output under comparison.
#
# Programs: python3, sort, sqlite3, git, gcc.  One that is not installed is
# reported and skipped; if none is installed the test is skipped (77).
#
# Run by 'make check' from the top build directory; by hand:
#   HAKMEM_LIB=/path/to/libhakmem.so.0 tests/real_programs.sh
set -u

me=real_programs.sh
lib=${HAKMEM_LIB:-$(pwd)/src/.libs/libhakmem.so.0}
case $lib in /*) ;; *) lib=$(pwd)/$lib ;; esac
if [ ! -f "$lib" ]; then
  echo "$me: $lib not found (run from the top build directory after make)" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/hakmem-real.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# A fixed environment: outputs must not depend on the caller's locale,
# time zone or git configuration.
LC_ALL=C TZ=UTC HOME=$tmp/home GIT_CONFIG_NOSYSTEM=1 PYTHONHASHSEED=0
export LC_ALL TZ HOME GIT_CONFIG_NOSYSTEM PYTHONHASHSEED
unset LD_PRELOAD HAKMEM_STATS MALLOC_CHECK_ MALLOC_PERTURB_ 2>/dev/null || true
mkdir "$tmp/home"

# A hung program fails the test instead of hanging make check.
if command -v timeout >/dev/null 2>&1; then limit="timeout 300"; else limit=; fi

ran=0
failed=0
skipped=

# run NAME DIR CMD...: runs CMD in DIR/sys (system malloc) and DIR/hak
# (hakmem), each a fresh copy of DIR/in if that exists; compares.
run() {
  name=$1 dir=$2
  shift 2
  for side in sys hak; do
    if [ -d "$dir/in" ]; then cp -R "$dir/in" "$dir/$side"; else mkdir -p "$dir/$side"; fi
  done
  (cd "$dir/sys" && $limit "$@") >"$dir/sys.out" 2>"$dir/sys.err"
  sys_rc=$?
  (cd "$dir/hak" && HAKMEM_STATS=1 HAKMEM_STATS_FILE=$dir/hak.stats LD_PRELOAD=$lib $limit "$@") \
    >"$dir/hak.out" 2>"$dir/hak.err"
  hak_rc=$?
  ran=$((ran + 1))
  if [ "$sys_rc" -ne 0 ]; then
    echo "$me: $name: FAIL: exits with status $sys_rc even without hakmem:" >&2
    tail -n 20 "$dir/sys.err" >&2
    failed=$((failed + 1))
    return
  fi
  if [ "$hak_rc" -ne 0 ]; then
    echo "$me: $name: FAIL: exits with status $hak_rc on hakmem (0 without):" >&2
    tail -n 20 "$dir/hak.err" >&2
    failed=$((failed + 1))
    return
  fi
  if ! cmp -s "$dir/sys.out" "$dir/hak.out"; then
    echo "$me: $name: FAIL: output differs on hakmem (- system, + hakmem):" >&2
    diff -u "$dir/sys.out" "$dir/hak.out" | head -n 30 >&2
    failed=$((failed + 1))
    return
  fi
  if [ ! -s "$dir/sys.out" ]; then
    echo "$me: $name: FAIL: no output to compare" >&2
    failed=$((failed + 1))
    return
  fi
  # The stats report proves hakmem was the allocator: at least one process
  # reported, and its malloc_calls counter is positive.
  touch "$dir/hak.stats"
  reports=$(grep -c '^hakmem: stats pid=[0-9]' "$dir/hak.stats")
  calls=$(sed -n 's/^hakmem: malloc_calls \([0-9][0-9]*\)$/\1/p' "$dir/hak.stats" |
          awk '{ s += $1 } END { print s + 0 }')
  if [ "$reports" -eq 0 ] || [ "$calls" -eq 0 ]; then
    echo "$me: $name: FAIL: hakmem was not used (stats reports: $reports, malloc_calls: $calls):" >&2
    tail -n 20 "$dir/hak.stats" "$dir/hak.err" >&2
    failed=$((failed + 1))
    return
  fi
  echo "$me: $name: ok ($(wc -c <"$dir/sys.out") bytes of output identical;" \
       "$reports hakmem process(es), $calls small allocations)"
}

have() {
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  echo "$me: $1: not installed, skipped"
  skipped="$skipped $1"
  return 1
}

# --- python3: dicts, lists, strings, sorting; a digest of the results.
# PYTHONMALLOC=malloc sends every object to malloc instead of pymalloc's
# arenas, so hakmem serves all of them.
if have python3; then
  d=$tmp/python3 && mkdir -p "$d/in"
  cat >"$d/in/work.py" <<'EOF'
import hashlib, json
h = hashlib.sha256()
words = {}
for i in range(150000):
    k = "k%07d" % ((i * 7919) % 150000)
    words.setdefault(k, []).append(i)
h.update(json.dumps(sorted(words.items())[:2000]).encode())
strings = ["".join(chr(97 + (i * j) % 26) for j in range(i % 40 + 1)) for i in range(60000)]
strings.sort(key=lambda s: (len(s), s))
h.update("\n".join(strings).encode())
tree = {}
for i in range(40000):
    node = tree
    for part in ("%06d" % (i * 31 % 99991))[:4]:
        node = node.setdefault(part, {})
    node[i] = bytes(range(i % 200)) * 3
h.update(repr(sorted(tree.keys())).encode())
big = [list(range(i % 500)) for i in range(5000)]
for lst in big:
    lst.reverse()
h.update(str(sum(map(sum, big))).encode())
blob = bytearray()
for i in range(2000):
    blob += bytes([i % 251]) * (i * 13 % 4096)
    if i % 100 == 0:
        blob = blob[len(blob) // 3:]
h.update(bytes(blob))
print(len(words), len(strings), len(tree), len(blob))
print(h.hexdigest())
EOF
  run python3 "$d" env PYTHONMALLOC=malloc python3 work.py
  # The same in learning mode: the learner moves policies while the program
  # runs, and the output must not change.  Its report lines prove it ran.
  d2=$tmp/python3-learning && mkdir -p "$d2" && cp -R "$d/in" "$d2/in"
  run "python3 (learning mode)" "$d2" env HAKMEM_MODE=learning PYTHONMALLOC=malloc python3 work.py
  if ! grep -q '^hakmem: learn superslab_keep phase [A-Z]* value [0-9]* epochs [1-9]' "$d2/hak.stats"; then
    echo "$me: python3 (learning mode): FAIL: no learning epochs in the report" >&2
    grep '^hakmem: learn' "$d2/hak.stats" >&2
    failed=$((failed + 1))
  fi
fi

# --- sort: 200000 generated lines, several keys, two threads.
if have sort && have awk; then
  d=$tmp/sort && mkdir -p "$d/in"
  awk 'BEGIN { x = 12345
    for (i = 0; i < 200000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648
      printf "%010d %s line-%06d %c%c%c\n", x % 1000000007, (x % 3 ? "alpha" : "beta"), i,
        97 + x % 26, 97 + int(x / 26) % 26, 97 + int(x / 676) % 26
    } }' >"$d/in/lines.txt"
  cat >"$d/in/sort.sh" <<'EOF'
set -e
sort --parallel=2 -S 8M lines.txt | cksum
sort -k2,2 -k1,1n lines.txt | head -n 1000
sort -r -k4 lines.txt | tail -n 1000
sort -u -k4,4 lines.txt | wc -l
EOF
  run sort "$d" sh sort.sh
fi

# --- sqlite3: 100000 rows inserted in one transaction, aggregates, an
# index and a join.
if have sqlite3; then
  d=$tmp/sqlite3 && mkdir -p "$d/in"
  cat >"$d/in/work.sql" <<'EOF'
CREATE TABLE t (id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL);
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
INSERT INTO t (grp, name, val)
  SELECT i % 97, printf('name-%08d-%s', (i * 7919) % 100003, substr('abcdefghij', i % 10 + 1)),
         (i * 31 % 1000) / 7.0
  FROM n;
COMMIT;
CREATE INDEX t_name ON t (name);
CREATE TABLE g AS SELECT grp, count(*) AS c, sum(val) AS s FROM t GROUP BY grp;
SELECT count(*), sum(grp), printf('%.4f', avg(val)), min(name), max(name) FROM t;
SELECT grp, c, printf('%.3f', s) FROM g ORDER BY s DESC LIMIT 20;
SELECT t.grp, count(*) FROM t JOIN g ON t.grp = g.grp WHERE t.val > g.s / g.c GROUP BY t.grp ORDER BY t.grp;
SELECT name FROM t WHERE name LIKE 'name-0000%' ORDER BY name LIMIT 30;
SELECT group_concat(id, ',') FROM (SELECT id FROM t ORDER BY val DESC, id LIMIT 200);
EOF
  run sqlite3 "$d" sh -c 'sqlite3 db.sqlite <work.sql'
fi

# --- git: a repository of 400 files, two commits with fixed names and
# dates, so every object id is the same on both sides.
if have git; then
  d=$tmp/git && mkdir -p "$d/in"
  cat >"$d/in/work.sh" <<'EOF'
set -e
export GIT_AUTHOR_NAME='A U Thor' GIT_AUTHOR_EMAIL=author@example.com
export GIT_COMMITTER_NAME='C O Mitter' GIT_COMMITTER_EMAIL=committer@example.com
export GIT_AUTHOR_DATE='2005-04-07T22:13:13 +0000' GIT_COMMITTER_DATE='2005-04-07T22:13:13 +0000'
git -c init.defaultBranch=main init -q repo
cd repo
i=0
while [ $i -lt 400 ]; do
  mkdir -p dir$((i % 20))
  awk -v n=$i 'BEGIN { for (l = 0; l < 20 + n % 50; l++) printf "file %d line %d %d\n", n, l, (n * l) % 97 }' \
    >dir$((i % 20))/file$i.txt
  i=$((i + 1))
done
git add -A
git commit -q -m 'first commit'
i=0
while [ $i -lt 400 ]; do
  echo "changed $i" >>dir$((i % 20))/file$i.txt
  i=$((i + 7))
done
git rm -q dir3/file3.txt
git commit -q -a -m 'second commit'
git rev-parse HEAD HEAD^ HEAD^{tree}
git cat-file -p HEAD
git cat-file -p HEAD^{tree}
git ls-tree -r HEAD | head -n 100
git log --format='%H %an %ad %s' --date=iso
git diff --stat HEAD^ HEAD | tail -n 5
git grep -c 'line 1 ' HEAD -- dir1 | head -n 20
git gc -q
git count-objects -v | grep -v size
git fsck --no-progress
EOF
  run git "$d" sh work.sh
fi

# --- gcc: compiles a small C program (cc1, as, ld all on hakmem) and runs
# it; the assembly gcc writes must be identical too.
if have gcc; then
  d=$tmp/gcc && mkdir -p "$d/in"
  cat >"$d/in/prog.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct node { struct node *next; char *key; unsigned long count; };

static unsigned long hash(const char *s)
{
  unsigned long h = 5381;
  while (*s)
    h = h * 33 + (unsigned char)*s++;
  return h;
}

int main(void)
{
  enum { BUCKETS = 4096 };
  struct node **table = calloc(BUCKETS, sizeof *table);
  char buf[64];
  unsigned long total = 0, distinct = 0;
  for (unsigned long i = 0; i < 300000; i++) {
    snprintf(buf, sizeof buf, "word%lu", (i * 2654435761u) % 50021);
    struct node **b = &table[hash(buf) % BUCKETS], *n;
    for (n = *b; n && strcmp(n->key, buf); n = n->next)
      ;
    if (!n) {
      n = malloc(sizeof *n);
      n->key = strdup(buf);
      n->count = 0;
      n->next = *b;
      *b = n;
      distinct++;
    }
    n->count++;
  }
  for (int i = 0; i < BUCKETS; i++)
    for (struct node *n = table[i], *next; n; n = next) {
      next = n->next;
      total += n->count * (hash(n->key) % 1000);
      free(n->key);
      free(n);
    }
  free(table);
  printf("%lu distinct, checksum %lu\n", distinct, total);
  return 0;
}
EOF
  run gcc "$d" sh -c 'gcc -O2 -S -o - prog.c && gcc -O2 -o prog prog.c && ./prog'
fi

if [ "$ran" -eq 0 ]; then
  echo "$me: none of the programs is installed (skipped:$skipped)"
  exit 77
fi
if [ "$failed" -ne 0 ]; then
  echo "$me: $failed of $ran programs failed" >&2
  exit 1
fi
echo "$me: $ran programs ran identically on hakmem${skipped:+ (not installed:$skipped)}"
exit 0
