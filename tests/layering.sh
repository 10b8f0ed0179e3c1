#!/bin/sh
# The layers of src/, bottom first: a file may include the headers of, and
# call the functions defined in, only its own module and the layers below
# it.  One line is one layer; its modules (a module is a .c with its .h)
# do not use each other unless the pair is listed in PEERS below, with the
# reason (a listed pair may use each other whatever their layers: these
# are the cycles the design keeps).  A new source file must be placed
# here, or this test fails.
#
# Two graphs are checked: the includes of src/*.c and src/*.h (from the
# source), and the references between the library's object files (from
# nm: a declaration written by hand in a lower file is caught too).
LAYERS='
hakmem_internal live_stats
diag
locks
size_class secret
counters
options
config config_parse
os os_limit
learn learn_machine
slab
superslab
shared_pool
large_hdr
bigcache
large
prof_stash
purge
prof_unwind
prof
checkmode
tcache
alloc init
alloc_sized
cxx_operators
report
stats
override
'
# Pairs that use each other, and why (no quote marks in the text).
PEERS='
config config_parse: the loader (config.c) runs the parsers, which fill the fields of the option table it declares
os os_limit: the placement at the mapping-count limit works on the ownership map and the hint cursor of os.c, which calls it on its failure paths
learn learn_machine: the phase machine of learn.c, declared apart so that the tests can drive it; only learn.c includes it
alloc init: lazy start-up: the first call of the allocation entry points starts the library, and starting it configures those entry points (alloc_configure)
tcache purge: memory back by time: the thread cache kicks the purge when it frees memory and starts its thread at a refill, and the purge takes back the blocks an idle thread holds (tcache_reclaim_idle)
tcache init: lazy start-up: the first refill of a thread starts the library and arms the thread-exit hook, which flushes the cache of the thread
'

set -u
LC_ALL=C
export LC_ALL
srcdir=${srcdir:-.}
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT

module() { b=${1##*/}; b=${b%.*}; b=${b#libhakmem_core_la-}; b=${b#libhakmem_la-}; echo "$b"; }

# The include graph, from the sources.
for f in "$srcdir"/src/*.c "$srcdir"/src/*.h; do
  [ -e "$f" ] || continue
  m=$(module "$f")
  sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" |
  while read -r h; do
    case $h in hakmem.h) continue ;; esac   # the public header
    echo "$m $(module "$h") includes ${h} (${f##*/})"
  done
done >"$tmp/edges"

# The reference graph, from the library's object files (libtool keeps the
# PIC objects under .libs).
objs=$(ls src/.libs/libhakmem_core_la-*.o src/.libs/libhakmem_la-*.o 2>/dev/null ||
       ls src/libhakmem_core_la-*.o src/libhakmem_la-*.o 2>/dev/null)
if [ -z "$objs" ]; then
  echo "layering: no object files of the library under src/ (build first)"
  exit 99
fi
for o in $objs; do
  nm --defined-only -g "$o" | awk -v m="$(module "$o")" 'NF == 3 { print $3, m }'
done | sort -u >"$tmp/defs"
for o in $objs; do
  nm -u "$o" | awk '{ print $2 }' | sort -u | join - "$tmp/defs" |
    awk -v m="$(module "$o")" '{ print m, $2, "calls " $1 }'
done >>"$tmp/edges"

printf '%s\n' "$LAYERS" | awk 'NF { n++; for (i = 1; i <= NF; i++) print $i, n }' >"$tmp/layers"
printf '%s\n' "$PEERS" | awk -F: 'NF > 1 { split($1, p, " "); print p[1], p[2]; print p[2], p[1] }' >"$tmp/peers"

awk -v layers="$tmp/layers" -v peers="$tmp/peers" '
  BEGIN {
    while ((getline l < layers) > 0) { split(l, a, " "); layer[a[1]] = a[2] }
    while ((getline l < peers) > 0) peer[l] = 1
  }
  $1 == $2 { next }
  {
    from = $1; to = $2; how = $0; sub(/^[^ ]+ [^ ]+ /, "", how)
    if (!(from in layer)) { if (!unplaced[from]++) print "layering: " from " is in no layer of tests/layering.sh"; bad = 1; next }
    if (!(to in layer)) { if (!unplaced[to]++) print "layering: " to " is in no layer of tests/layering.sh"; bad = 1; next }
    if (layer[to] < layer[from]) { edges++; next }
    if ((from " " to) in peer) { edges++; next }
    if (seen[from " " to]++) next
    print "layering: " from " -> " to " goes " (layer[to] == layer[from] ? "across its layer" : "up") ": " how
    bad = 1
  }
  END {
    if (!bad) print "layering: " edges " edges between modules, all downward"
    exit bad
  }' "$tmp/edges"
