# Benchmarks: small programs that use only the standard malloc API and get
# the allocator under test by LD_PRELOAD (see bench/compare). Built by
# `make`, never installed.
BENCH_PROGS = bench/random_mixed bench/tiny_hot bench/cache_thrash bench/larson \
	bench/xthread bench/vm bench/realloc bench/soak bench/learn_bench bench/burst \
	bench/thread_stress bench/interp bench/large_replace
noinst_PROGRAMS += $(BENCH_PROGS)
bench_random_mixed_SOURCES = bench/random_mixed.c bench/bench.h
bench_tiny_hot_SOURCES = bench/tiny_hot.c bench/bench.h
bench_cache_thrash_SOURCES = bench/cache_thrash.c bench/bench.h
bench_larson_SOURCES = bench/larson.c bench/bench.h
bench_xthread_SOURCES = bench/xthread.c bench/bench.h
bench_vm_SOURCES = bench/vm.c bench/bench.h
bench_realloc_SOURCES = bench/realloc.c bench/bench.h
bench_soak_SOURCES = bench/soak.c bench/bench.h
bench_soak_LDADD = -lm
bench_learn_bench_SOURCES = bench/learn_bench.c bench/bench.h
bench_burst_SOURCES = bench/burst.c bench/bench.h
bench_thread_stress_SOURCES = bench/thread_stress.c bench/bench.h
bench_interp_SOURCES = bench/interp.c bench/bench.h
bench_large_replace_SOURCES = bench/large_replace.c bench/bench.h

# bench/compare and bench/callgrind-ops import the Python modules beside
# them (catalogue, runner, chart, learning); bench/README says which does
# what.
EXTRA_DIST += bench/compare bench/build-unhardened bench/callgrind-ops \
	bench/catalogue.py bench/runner.py bench/chart.py bench/learning.py bench/README

# Each program once under hakmem, and the comparison runner on one
# benchmark. Needs the preloadable library, which the sanitizer build does
# not make.
dist_check_SCRIPTS += bench/bench-smoke.sh
if !SANITIZE
TESTS += bench/bench-smoke.sh
endif

# The comparison with glibc, mimalloc, jemalloc and tcmalloc; results in
# bench-results/. Options pass through BENCH_FLAGS, e.g.
#   make bench BENCH_FLAGS='--quick --only tiny_hot'
bench: all
	$(srcdir)/bench/compare --builddir $(abs_top_builddir) $(BENCH_FLAGS)

.PHONY: bench

# The C++ workload (operators new and delete, standard containers).
BENCH_PROGS += bench/cxx_objects
bench_cxx_objects_SOURCES = bench/cxx_objects.cc bench/bench.h
bench_cxx_objects_CXXFLAGS = $(AM_CXXFLAGS) -std=gnu++17
