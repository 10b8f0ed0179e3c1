#!/bin/sh
# Real programs on hakmem: each runs twice, on the system allocator and
# with LD_PRELOAD=libhakmem.so.0, and the two outputs must be identical byte
# for byte.  The preloaded run has HAKMEM_STATS=1, and the reports at exit
# must show that hakmem served allocations (malloc_calls > 0).  The reports
# go to a file (HAKMEM_STATS_FILE, appended by every process) rather than
# stderr: coreutils programs close stderr before exit, and a script may
# send stderr into the output under comparison.
#
# Programs: python3 (also with threads and fork), perl (also with
# threads), tar, gzip, xz and bash, sort, sqlite3, git, gcc, redis-server.  One that is not installed is reported and
# skipped; if none is installed the test is skipped (77).
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

# --- python3 with threads and fork: rounds of six threads that build and
# drop dicts while a seventh forks; the child allocates, runs a thread of
# its own and reports through a pipe.  A child that hangs is killed after a
# minute and fails the test.
if have python3; then
  d=$tmp/python3-fork && mkdir -p "$d/in"
  cat >"$d/in/fork.py" <<'EOF'
import hashlib, os, sys, threading, time

def churn(n, results):
    # Builds and tears down dicts and lists of many sizes: the allocations
    # a fork can land in the middle of.
    d = {}
    for i in range(6000):
        d["t%d-%d" % (n, i % 1500)] = [i] * (i % 40)
        if i % 5 == 0:
            d.pop("t%d-%d" % (n, i * 7 % 1500), None)
    results[n] = hashlib.sha256(repr(sorted((k, len(v)) for k, v in d.items())).encode()).hexdigest()[:16]

def child_work():
    # Runs in the forked child: allocates, sorts, starts a thread of its own.
    out = {}
    t = threading.Thread(target=churn, args=(99, out))
    t.start()
    words = sorted("".join(chr(97 + (i * j) % 26) for j in range(i % 30 + 1)) for i in range(20000))
    t.join()
    return "%d %s %s" % (len(words), hashlib.sha256("\n".join(words).encode()).hexdigest()[:16], out[99])

def fork_from_thread(rnd, report):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.write(w, child_work().encode())
            code = 0
        except BaseException:
            code = 1
        os._exit(code)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    os.close(r)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            report[rnd] = "child hung"
            return
        time.sleep(0.01)
    report[rnd] = "child exit %d: %s" % (os.waitstatus_to_exitcode(status), data.decode())

report = {}
for rnd in range(8):
    results = {}
    threads = [threading.Thread(target=churn, args=(n, results)) for n in range(6)]
    threads.append(threading.Thread(target=fork_from_thread, args=(rnd, report)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        if t.is_alive():
            print("a thread hangs")
            sys.exit(1)
    print("round", rnd, " ".join(results[n] for n in sorted(results)))
    print("round", rnd, report[rnd])
ok = all(v.startswith("child exit 0:") for v in report.values())
print("children:", "all exit 0" if ok else "FAILED")
sys.exit(0 if ok else 1)
EOF
  run "python3 (threads and fork)" "$d" env PYTHONMALLOC=malloc python3 fork.py
fi

# --- perl: 100000 generated words in hashes, sorted, matched and rewritten
# by regular expressions (Debian's perl calls the system malloc).
if have perl; then
  d=$tmp/perl && mkdir -p "$d/in"
  cat >"$d/in/work.pl" <<'EOF'
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
my (%seen, %prefix, @words);
for my $i (0 .. 99999) {
    my $w = sprintf "w%06d-%s", ($i * 7919) % 100003,
        join '', map { chr(97 + ($i * $_) % 26) } 1 .. $i % 12 + 1;
    push @words, $w;
    $seen{$w}++;
    $prefix{substr $w, 0, 4} .= substr $w, -1;
}
my @sorted = sort { length($a) <=> length($b) or $a cmp $b } keys %seen;
my $doubled = grep { /^w0*([1-9])\1/ } @words;
my %vowels;
$vowels{ ($_ =~ tr/aeiou//) }++ for @words;
my $text = join ' ', @sorted[0 .. 9999];
(my $upper = $text) =~ s/-(\w)(\w*)/-\U$1\E$2/g;
my @fields = split /[-\s]+/, $upper;
my %by_len;
push @{ $by_len{ length $_ } }, $_ for @fields;
delete $prefix{$_} for grep { /[13579]$/ } keys %prefix;
print scalar(@sorted), " words, $doubled doubled, ", scalar(keys %prefix), " prefixes\n";
print "$_ vowels: $vowels{$_}\n" for sort { $a <=> $b } keys %vowels;
print "$_: ", scalar(@{ $by_len{$_} }), "\n" for sort { $a <=> $b } keys %by_len;
print md5_hex(join "\n", @sorted), "\n";
print md5_hex($upper), "\n";
print md5_hex(join ',', map { "$_=$prefix{$_}" } sort keys %prefix), "\n";
EOF
  run perl "$d" perl work.pl
fi

# --- perl with threads: eight interpreter threads each build and sort a
# hash of 20000 keys (a perl built without threads is skipped).
if have perl && perl -Mthreads -e 1 >/dev/null 2>&1; then
  d=$tmp/perl-threads && mkdir -p "$d/in"
  cat >"$d/in/threads.pl" <<'EOF'
use strict;
use warnings;
use threads;
use threads::shared;
my %total :shared;
my @t = map {
    my $n = $_;
    threads->create(sub {
        my %h;
        $h{"k$n-$_"} = 'v' x ($_ % 100) for 1 .. 20000;
        my $sum = 0;
        $sum += length $h{$_} for sort keys %h;
        lock %total;
        $total{$n} = $sum;
        return $sum;
    });
} 1 .. 8;
my $all = 0;
$all += $_->join for @t;
print "$all\n", join(',', map { "$_=$total{$_}" } sort keys %total), "\n";
EOF
  run perl-threads "$d" perl threads.pl
elif command -v perl >/dev/null 2>&1; then
  echo "$me: perl-threads: perl without threads, skipped"
fi

# --- tar, gzip, xz and bash: a generated tree of 2000 files archived and
# compressed (gzip with no name or time in its header, xz with two
# threads), unpacked again, and a script of many
# subshells and command substitutions.
if have tar && have gzip && have xz && have bash; then
  d=$tmp/archive && mkdir -p "$d/in/tree"
  awk -v dir="$d/in/tree" 'BEGIN { x = 7
    for (f = 0; f < 2000; f++) {
      if (f < 40) system(sprintf("mkdir -p %s/d%02d", dir, f))
      file = sprintf("%s/d%02d/f%04d.txt", dir, f % 40, f)
      for (l = 0; l < f % 50 + 1; l++) {
        x = (x * 1103515245 + 12345) % 2147483648
        printf "%d %s %d\n", x, (x % 3 ? "alpha" : "beta"), l > file
      }
      close(file)
    } }'
  cat >"$d/in/archive.sh" <<'EOF'
set -e
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf tree.tar tree
gzip -6 -n -c tree.tar | cksum
xz -T2 -3 -c tree.tar | cksum
mkdir out
xz -T2 -3 -c tree.tar | xz -d | tar -xf - -C out
diff -r tree out/tree && echo same
s=0
for i in $(seq 1 200); do x=$( (echo "$i" | (read -r a; echo $((a * 2)))) ); s=$((s + x)); done
echo "$s"
f() { local a=( $(seq 1 "$1") ); echo "${#a[@]}"; }
for n in 1 10 100 1000 10000; do f "$n"; done | paste -sd,
EOF
  run archive "$d" bash archive.sh
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

# --- redis-server: a command script over every data type through
# redis-cli, SAVE and DEBUG RELOAD, values freed by the lazy-free thread,
# redis-benchmark while BGSAVE's child (a fork of a threaded server) writes
# the RDB, a restart that loads it, then redis-benchmark again with
# io-threads and a maxmemory that evicts.  The script prints only what must
# not depend on the allocator; figures that do (INFO memory, MEMORY USAGE)
# are checked against bounds instead.
if have redis-server && have redis-cli && have redis-benchmark; then
  d=$tmp/redis && mkdir -p "$d/in"
  cat >"$d/in/redis.sh" <<'EOF'
# Runs in its own directory: the server listens on a unix socket here and
# saves its RDB here; nothing is written anywhere else.
set -u
# The server lives 2 minutes at most; a TERM it does not act on within 5 s
# (the one sent on exit below included) becomes a KILL.
if command -v timeout >/dev/null 2>&1; then t="timeout 30" long="timeout -k 5 120"; else t= long=; fi
cli() { $t redis-cli -s redis.sock "$@"; }
fail() { echo "redis: $*" >&2; tail -n 30 redis.log >&2 2>/dev/null; exit 1; }
# info SECTION FIELD: the field's value in INFO SECTION, "" if absent.
info() { cli info "$1" | tr -d '\r' | sed -n "s/^$2:\(.*\)\$/\1/p"; }
# wait_for TENTHS WHAT CMD...: polls CMD every 0.1 s until it succeeds;
# fails with "WHAT" after TENTHS tries.
wait_for() {
  tries=$1 what=$2
  shift 2
  i=0
  until "$@"; do
    i=$((i + 1))
    [ $i -lt "$tries" ] || fail "$what"
    sleep 0.1
  done
}
answers_ping() { [ "$(cli ping 2>/dev/null)" = PONG ]; }
server=
trap '[ -n "$server" ] && kill $server 2>/dev/null; exit 1' HUP INT TERM
trap '[ -n "$server" ] && kill $server 2>/dev/null' EXIT
# start_server ARGS...: the server on ./redis.sock with no periodic saves;
# waits up to 10 s for its PING.
start_server() {
  $long redis-server --port 0 --unixsocket redis.sock --dir . --dbfilename dump.rdb \
    --save '' --appendonly no --logfile redis.log --enable-debug-command yes \
    --lazyfree-lazy-user-del yes --lazyfree-lazy-user-flush yes "$@" &
  server=$!
  wait_for 100 "server does not answer PING" answers_ping
}
# stop_server: SHUTDOWN NOSAVE; the server must exit with status 0.
stop_server() {
  cli shutdown nosave >/dev/null 2>&1
  wait $server
  rc=$?
  server=
  [ $rc -eq 0 ] || fail "server exits with status $rc on SHUTDOWN NOSAVE"
}

start_server
cli <<'CMDS' || fail "redis-cli exits with status $?"
FLUSHALL
SET greeting "hello world"
APPEND greeting ", again"
SETRANGE greeting 6 WORLD
GET greeting
GETRANGE greeting 0 4
INCRBY counter 41
INCRBYFLOAT fcounter 2.5
MSET k1 v1 k2 v2 k3 v3
MGET k1 k2 k3 missing
SETRANGE big1 1048575 x
APPEND big1 tail
EVAL "redis.call('SET', KEYS[1], string.rep('abcdefgh', 131072)) return redis.call('STRLEN', KEYS[1])" 1 big2
SETRANGE big2 0 XYZ
GETRANGE big2 0 10
GETRANGE big2 524284 524300
EVAL "for i = 1, 20000 do redis.call('SET', 's:' .. i, string.rep(string.char(97 + i % 26), i % 600 + 1)) end for i = 1, 20000, 3 do redis.call('APPEND', 's:' .. i, string.rep('z', i % 1000)) end local n = 0 for i = 1, 20000 do n = n + redis.call('STRLEN', 's:' .. i) end return n" 0
GET s:7
EVAL "for i = 1, 30000 do redis.call('RPUSH', KEYS[1], 'item-' .. i) end for i = 1, 200 do redis.call('LPUSH', KEYS[2], string.rep('q', i * 97)) end return redis.call('LLEN', KEYS[1])" 2 list biglist
LRANGE list 0 4
LINDEX list 15000
LTRIM list 100 20099
LPOP list 3
RPOP list 3
LINSERT list BEFORE item-5000 inserted
LLEN list
EVAL "local n = 0 for _, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do n = n + #v end return n" 1 biglist
HSET small f1 v1 f2 v2 f3 v3
HGETALL small
EVAL "for i = 1, 20000 do redis.call('HSET', KEYS[1], 'f' .. i, i * i) end for i = 1, 20000, 2 do redis.call('HDEL', KEYS[1], 'f' .. i) end return redis.call('HLEN', KEYS[1])" 1 hbig
HGET hbig f778
HINCRBY hbig f778 5
EVAL "for i = 1, 300 do redis.call('SADD', KEYS[1], i * 3) end for i = 1, 5000 do redis.call('SADD', KEYS[2], 'm' .. i) end return redis.call('SCARD', KEYS[2])" 2 iset sset
SMEMBERS iset
SISMEMBER sset m4321
SINTERSTORE both iset sset
SUNIONSTORE either iset sset
SCARD either
SORT sset ALPHA LIMIT 0 5
EVAL "for i = 1, 20000 do redis.call('ZADD', KEYS[1], (i * 7919) % 10007, 'm' .. i) end return redis.call('ZCARD', KEYS[1])" 1 zs
ZRANGE zs 0 4 WITHSCORES
ZRANGEBYSCORE zs 100 102
ZINCRBY zs 0.5 m10
ZREMRANGEBYRANK zs 0 999
ZCARD zs
ZRANK zs m10
ZADD zsmall 1 a 2 b 3 c
ZRANGE zsmall 0 -1 WITHSCORES
EVAL "for i = 1, 10000 do redis.call('SET', 'e:' .. i, string.rep('e', i % 300)) redis.call('PEXPIRE', 'e:' .. i, 100) end for i = 1, 10000, 2 do redis.call('DEL', 'e:' .. i) end return redis.call('EXISTS', 'e:2')" 0
DEBUG SLEEP 0.3
EVAL "local n = 0 for i = 1, 10000 do n = n + redis.call('EXISTS', 'e:' .. i) end return n" 0
EVAL "for r = 1, 5 do for i = 1, 4000 do redis.call('SET', 'c:' .. i, string.rep('c', (i * r) % 2000)) end for i = 1, 4000 do redis.call('UNLINK', 'c:' .. i) end end return redis.call('EXISTS', 'c:1')" 0
UNLINK big1
COPY hbig hcopy
COPY sset scopy
COPY zs zcopy
UNLINK hcopy scopy zcopy
OBJECT ENCODING greeting
OBJECT ENCODING list
OBJECT ENCODING hbig
OBJECT ENCODING small
OBJECT ENCODING iset
OBJECT ENCODING sset
OBJECT ENCODING zs
DEBUG DIGEST-VALUE list biglist hbig iset sset zs big2
DBSIZE
DEBUG DIGEST
SAVE
DEBUG RELOAD
DBSIZE
DEBUG DIGEST
MEMORY PURGE
CONFIG SET activedefrag yes
CMDS

# INFO memory, MEMORY USAGE, STATS and DOCTOR describe the allocator, so
# their figures differ between allocators: check them, print the verdict.
used=$(info memory used_memory)
rss=$(info memory used_memory_rss)
big=$(cli memory usage big2)
if [ -n "$used" ] && [ "$used" -gt 4000000 ] && [ "$used" -lt 400000000 ] &&
   [ -n "$rss" ] && [ "$rss" -gt 4000000 ] &&
   [ -n "$big" ] && [ "$big" -ge 1048576 ] && [ "$big" -lt 2097152 ]; then
  echo "info memory: used_memory, used_memory_rss and MEMORY USAGE in range"
else
  fail "info memory out of range: used_memory '$used', rss '$rss', MEMORY USAGE big2 '$big'"
fi
# UNLINK of the three copies above handed them to the lazy-free thread,
# which frees blocks the main thread allocated.
lazy_free_done() { [ "$(info memory lazyfree_pending_objects)" = 0 ]; }
wait_for 100 "the lazy-free thread does not finish" lazy_free_done
lazy=$(info memory lazyfreed_objects)
[ -n "$lazy" ] && [ "$lazy" -ge 3 ] || fail "lazyfreed_objects is '$lazy', not 3 or more"
echo "lazy free: the background thread freed the unlinked values"
cli memory stats | grep -q '^keys.count$' || fail "MEMORY STATS has no keys.count"
[ -n "$(cli memory doctor)" ] || fail "MEMORY DOCTOR gives no answer"
cli memory malloc-stats >/dev/null || fail "MEMORY MALLOC-STATS fails"
# redis-benchmark: 15 tests from 20 clients, pipelined; threads > 1 runs
# the client's own threads too.
bench() {
  threads=$1 requests=$2
  $t redis-benchmark -s redis.sock -q -n $requests -c 20 -P 16 -r 10000 -d 100 \
      --threads $threads -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,zpopmin,lrange_100,mset \
      >bench$threads.txt 2>&1 ||
    fail "redis-benchmark --threads $threads exits with status $?: $(tail -c 300 bench$threads.txt)"
  tr '\r' '\n' <bench$threads.txt | grep -i error >bench$threads.err &&
    fail "redis-benchmark --threads $threads reports errors: $(head -n 3 bench$threads.err)"
  n=$(tr '\r' '\n' <bench$threads.txt | grep -c ': [0-9.]* requests per second')
  [ "$n" -eq 15 ] || fail "redis-benchmark --threads $threads completes $n of 15 tests"
  [ "$(cli ping)" = PONG ] || fail "no PONG after redis-benchmark --threads $threads"
  echo "redis-benchmark --threads $threads: 15 tests completed without errors, then PONG"
}
# BGSAVE forks the server, which has threads of its own (redis's
# background jobs and lazy free); the child writes the RDB and gives each
# large value it wrote back to the kernel (madvise over the block's
# malloc_usable_size) while the parent serves the benchmark.
digest=$(cli debug digest)
cli bgsave >/dev/null
bench 1 20000
bgsave_done() { [ "$(info persistence rdb_bgsave_in_progress)" = 0 ]; }
wait_for 300 "BGSAVE does not finish" bgsave_done
[ "$(info persistence rdb_last_bgsave_status)" = ok ] ||
  fail "BGSAVE fails: $(cli info persistence | grep bgsave)"
stop_server

# A restart loads the RDB the child wrote.  With io-threads, other threads
# read and parse the queries, so blocks are allocated on one thread and
# freed on another; the I/O threads spin, so this run is short.
start_server --io-threads 2 --io-threads-do-reads yes
[ "$(cli debug digest)" = "$digest" ] || fail "the RDB written by BGSAVE does not hold the dataset"
echo "restart: the RDB written by BGSAVE reloads the same dataset"
# Eviction weighs each value by malloc_usable_size: under a maxmemory
# below the dataset the benchmark's writes evict keys, and what remains
# must fit.
limit=12000000
cli config set maxmemory-policy allkeys-lru >/dev/null
cli config set maxmemory $limit >/dev/null
bench 2 2000
evicted=$(info stats evicted_keys)
used=$(info memory used_memory)
[ -n "$evicted" ] && [ "$evicted" -gt 0 ] && [ -n "$used" ] && [ "$used" -le $((limit + 1048576)) ] ||
  fail "maxmemory $limit: evicted_keys '$evicted', used_memory '$used'"
echo "maxmemory: keys evicted, used_memory within the limit"
io=$(info stats io_threaded_reads_processed)
[ -n "$io" ] && [ "$io" -gt 0 ] || fail "the I/O threads read no query (io_threaded_reads_processed '$io')"
echo "io-threads: the I/O threads read queries"
cli flushall async
stop_server
echo "SHUTDOWN NOSAVE: exit status 0"
EOF
  failed_before=$failed
  run redis-server "$d" sh redis.sh
  # redis-server's own reports (one per server started) prove it, and not
  # only redis-cli, ran on hakmem.
  if [ "$failed" -eq "$failed_before" ]; then
    servers=$(awk '/^hakmem: stats pid=/ { prog = $4 }
                   /^hakmem: malloc_calls [1-9]/ { if (prog == "program=redis-server") n++ }
                   END { print n + 0 }' "$d/hak.stats")
    if [ "$servers" -ne 2 ]; then
      echo "$me: redis-server: FAIL: $servers of 2 servers report allocations served by hakmem" >&2
      failed=$((failed + 1))
    fi
  fi
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
