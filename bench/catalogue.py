"""The benchmark catalogue of bench/compare and bench/callgrind-ops: each
benchmark's name, program and arguments, how many repetitions it takes and
what it measures; the allocators compared; the learning section's variants.

A benchmark is declared here once: the runner (runner.py) runs what this
file lists, the front end (bench/compare) selects rows by name or program
for --only and lists them with their `what` in its --help. Data only.
"""

import collections

# The allocator every ratio is to (glibc if it is missing).
REFERENCE = "mimalloc"

# Peers, by soname, looked up in the multiarch library directory.
PEERS = [
    ("mimalloc", "libmimalloc.so.2"),
    ("jemalloc", "libjemalloc.so.2"),
    ("tcmalloc", "libtcmalloc_minimal.so.4"),
]

# --cxx-stdnew: hakmem's malloc under libstdc++'s operators new and delete
# (preloaded first, libstdc++ wins the operators and leaves malloc alone).
CXX_RUNTIME = "libstdc++.so.6"


class Bench:
    """One table row: a program with its arguments for a quick and a full run.

    {seed} and {csv} in the arguments are filled in per run; `probe` is the
    short run that checks the preload. `output` is the name the program's
    result line starts with. `by_ops` marks a fixed-length run, whose speed
    is its ops/s rather than its wall time; `same_checksum` says whether
    every allocator must print the same checksum (true unless the amount of
    work depends on speed); `max_reps` caps the repetitions of a long run.
    `extra` names fields of the result line shown as more columns
    (medians). `what` is its line in bench/compare --help.
    """

    def __init__(self, name, prog, output, quick, full, probe, what, by_ops=False,
                 same_checksum=True, max_reps=None, extra=()):
        self.name, self.prog, self.output = name, prog, output
        self.quick, self.full, self.probe = quick.split(), full.split(), probe.split()
        self.by_ops, self.same_checksum, self.max_reps = by_ops, same_checksum, max_reps
        self.extra = list(extra)
        self.what = what

    def args(self, quick):
        """The arguments of a quick or a full run, {seed} and {csv} unfilled."""
        return self.quick if quick else self.full


# Sized so that a full run takes about a second under mimalloc on a 2-core
# machine (glibc takes up to 15 times longer on larson and realloc, glibc
# and jemalloc 25 to 30 times on vm_mixed, which therefore runs at most 3
# times), and a quick one a tenth of that: about 12 minutes for the whole
# default run, under a minute for --quick.
BENCHES = [
    Bench("random_mixed/ws400", "random_mixed", "random_mixed",
          "4000000 400 {seed}", "40000000 400 {seed}", "1000 400 1",
          "random churn of 16-1040 B blocks, 400 of them live"),
    Bench("random_mixed/ws8192", "random_mixed", "random_mixed",
          "2000000 8192 {seed}", "20000000 8192 {seed}", "1000 8192 1",
          "the same with 8192 live blocks"),
    Bench("tiny_hot", "tiny_hot", "tiny_hot",
          "5000000 {seed}", "60000000 {seed}", "1000 1",
          "16-64 B malloc-free pairs"),
    Bench("tiny_hot_batch", "tiny_hot", "tiny_hot_batch",
          "--batch 100 5000000 {seed}", "--batch 100 60000000 {seed}", "--batch 100 1000 1",
          "16-64 B blocks in batches: allocate 100, then free them"),
    Bench("cache_thrash", "cache_thrash", "cache_thrash",
          "200000 8 {seed} 2", "2000000 8 {seed} 2", "1000 8 1 2",
          "small blocks written by 2 threads (false sharing)"),
    Bench("larson", "larson", "larson",
          "500000 1000 {seed} 2", "5000000 1000 {seed} 2", "2000 1000 1 2",
          "server-style cross-thread frees"),
    Bench("xthread", "xthread", "xthread",
          "400000 4096 {seed} 2", "4000000 4096 {seed} 2", "1000 256 1 2",
          "producer allocates, consumer frees (column queue_peak: the most "
          "blocks the queue held at once, which sets most of the peak RSS "
          "and differs from run to run)",
          extra=("queue_peak",)),
    Bench("vm", "vm", "vm", "6000 1 {seed}", "60000 1 {seed}", "10 1 1",
          "2 MiB blocks allocated, touched and freed"),
    # 80000 iterations, about half a second under mimalloc: at 1000 the
    # run took 25 ms, mostly the first faults of each allocator's
    # mappings, and its peak RSS came before the sizes had reached their
    # largest live total.  glibc (trimming its heap) and jemalloc
    # (purging) give freed pages back and fault them in again, some
    # 150 us an operation: about 12 s a run, hence at most 3 runs.
    Bench("vm_mixed", "vm", "vm_mixed",
          "--mixed 8000 4 {seed}", "--mixed 80000 4 {seed}", "--mixed 10 4 1",
          "64 KiB-8 MiB blocks, 4 of them live", max_reps=3),
    Bench("realloc", "realloc", "realloc",
          "5000 16 {seed}", "50000 16 {seed}", "1000 16 1",
          "vectors grown by realloc"),
    Bench("soak", "soak", "soak", "1 4000 {seed} {csv}", "20 4000 {seed} {csv}",
          "0.2 100 1",
          "a shifting working set for a fixed time (columns rss_drift_pct and "
          "throughput_cv; at most 2 repetitions)",
          by_ops=True, same_checksum=False, max_reps=2,
          extra=("rss_drift_pct", "throughput_cv")),
    Bench("burst", "burst", "burst", "400 4096 {seed}", "4000 4096 {seed}", "2 64 1",
          "bursts that allocate 16 B-4 KiB blocks until 4 MiB are live, then "
          "free all but 1 in 20: the live heap swings, and an allocator that "
          "gives its free memory back to the kernel after each burst pays "
          "system calls and page faults on the next (column minflt: minor "
          "faults after the first burst)",
          extra=("minflt",)),
    Bench("thread_stress", "thread_stress", "thread_stress",
          "100000 1000 {seed} 2 10", "10000000 1000 {seed} 2 10", "1000 100 1 2 2",
          "2 threads re-created for each of 10 rounds, replacing blocks of "
          "16 B-1 KiB, some up to 64 KiB and now and then of 256 KiB-4 MiB; a "
          "quarter of the replaced blocks go through a mutex-guarded exchange "
          "array to be freed by another thread, and blocks left live at a "
          "round's end are freed by the next round's threads (column minflt: "
          "minor faults)",
          extra=("minflt",)),
    Bench("interp", "interp", "interp",
          "100000 20000 {seed}", "300000 100000 {seed}", "1000 100 1",
          "an interpreter's heap: 40-byte objects in 64 KiB aligned pages, "
          "their strings and arrays malloc'd, a search tree of 100000 nodes "
          "churned, dead objects swept by a collector in page order and "
          "emptied pages freed"),
    Bench("cxx_objects", "cxx_objects", "cxx_objects",
          "250000 1000 {seed}", "2500000 1000 {seed}", "1000 100 1",
          "a C++ program's pattern through operators new and delete: objects "
          "of 24-200 B deleted through a virtual destructor (sized delete), "
          "std::map<std::string, std::string> inserts and erases, a "
          "std::vector rebuilt now and then"),
    Bench("cxx_pairs", "cxx_objects", "cxx_pairs",
          "--pairs 2000000 1000 {seed}", "--pairs 20000000 1000 {seed}", "--pairs 1000 100 1",
          "new of one of those objects and its delete at once: the operators' "
          "fast paths alone (cxx_objects --pairs)"),
    Bench("large_replace", "large_replace", "large_replace",
          "30 20 {seed}", "300 20 {seed}", "2 2 1",
          "20 live blocks of 5-25 MiB; each iteration frees one at random, "
          "allocates a new one of a new size and writes all of it: an "
          "allocator that does not reuse freed mappings with their pages "
          "pays a fault per 4 KiB (column minflt: minor faults in the loop)",
          extra=("minflt",)),
]

# hakmem's system calls per operation, steady state, counted on a run long
# enough for the start-up mappings to be amortised the way the budget
# assumes.
SYSCALL_BUDGET = 1.25e-7
SYSCALL_RUN = ["random_mixed", "50000000", "400", "1"]
# hakmem's HAKMEM_STATS=1 counters of the system calls counted.
OS_COUNTERS = ("os_mmap", "os_munmap", "os_madvise", "os_mremap")

# The learning section's variants of hakmem: the learner, the balanced
# default, each of the other candidate values the learner chooses among
# (balanced itself is bigcache_max_mb 128 and superslab_keep 256), and the
# fast and minimal modes; the peers follow them.
LEARN_VARIANTS = [
    ("learning", {"HAKMEM_MODE": "learning"}),
    ("balanced", {}),
    ("bigcache=16", {"HAKMEM_BIGCACHE_MAX_MB": "16"}),
    ("bigcache=1024", {"HAKMEM_BIGCACHE_MAX_MB": "1024"}),
    ("keep=16", {"HAKMEM_SUPERSLAB_KEEP": "16"}),
    ("keep=1024", {"HAKMEM_SUPERSLAB_KEEP": "1024"}),
    ("fast", {"HAKMEM_MODE": "fast"}),
    ("minimal", {"HAKMEM_MODE": "minimal"}),
]
# The fixed values the learner chooses among (best_ratio's reference).
LEARN_FIXED = ["balanced", "bigcache=16", "bigcache=1024", "keep=16", "keep=1024"]
# Per learned decision: the fixed variants that set it, with their values.
LEARN_KNOBS = collections.OrderedDict([
    ("bigcache_max_mb", [("bigcache=16", 16), ("balanced", 128), ("bigcache=1024", 1024)]),
    ("superslab_keep", [("keep=16", 16), ("balanced", 256), ("keep=1024", 1024)]),
])

# The learning section's workloads, named learn/WORKLOAD. Sized so that a
# full run takes 0.5 to 3 s for most variants on a 2-core machine
# (bigcache=16 takes up to 5 s on large-churn and 10 s on switch, whose
# second half must be long enough for canaries to see the change); bursty
# is mostly its 200 ms pauses. A learn_bench round of large-churn is one
# BigCache epoch, one of small-burst about six superslab_keep epochs.
LEARN_BENCHES = [
    Bench("learn/large-churn", "learn_bench", "learn_large-churn",
          "large-churn 12 {seed}", "large-churn 96 {seed}", "large-churn 1 1",
          "rounds of 64 blocks of 2-4 MiB allocated, touched and freed: a "
          "large BigCache saves the mappings and faults"),
    Bench("learn/small-burst", "learn_bench", "learn_small-burst",
          "small-burst 10 {seed}", "small-burst 40 {seed}", "small-burst 1 1",
          "rounds of 48 MiB of 64-512 B blocks allocated and freed: keeping "
          "many free SuperSlabs saves remapping them"),
    Bench("learn/bursty", "learn_bench", "learn_bursty",
          "bursty 4 {seed}", "bursty 10 {seed}", "bursty 1 1",
          "small-burst with 16 MiB rounds and a 200 ms pause after each: "
          "memory kept over the pause only costs"),
    Bench("learn/switch", "learn_bench", "learn_switch",
          "switch 30 {seed}", "switch 100 {seed}", "switch 2 1",
          "small-burst, then large-churn: the workload changes under a "
          "frozen choice"),
    Bench("learn/steady", "learn_bench", "learn_steady",
          "steady 10 {seed}", "steady 60 {seed}", "steady 1 1",
          "random replacement among 4000 blocks of 16-1024 B: nothing to "
          "learn, so it shows what learning costs"),
    Bench("learn/tiny_hot", "tiny_hot", "tiny_hot",
          "5000000 {seed}", "60000000 {seed}", "1000 1",
          "the learner's overhead on tiny_hot"),
    Bench("learn/random_mixed/ws400", "random_mixed", "random_mixed",
          "4000000 400 {seed}", "40000000 400 {seed}", "1000 400 1",
          "the learner's overhead on random_mixed/ws400"),
]

# bench/callgrind-ops: name, program, arguments ({n}: the iteration count).
CALLGRIND_BENCHES = [
    ("tiny_hot", "tiny_hot", "{n} 1"),
    ("random_mixed/ws400", "random_mixed", "{n} 400 1"),
]
