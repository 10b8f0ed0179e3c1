/* cxx_objects: a C++ program's allocation pattern, through operator new
 * and delete.  A working set of slots holds objects of a small class
 * hierarchy (24 to 200 bytes, deleted through a virtual destructor, which
 * calls the sized operator delete); a std::map from std::string keys to
 * std::string values (longer than the small-string buffer, so each is a
 * heap block) takes inserts and erases, and a std::vector is rebuilt now
 * and then.  Each operation replaces one object (three in four) or
 * inserts one map entry and erases another (one in four).
 *
 * Under LD_PRELOAD=libhakmem.so.0 new and delete are hakmem's own
 * operators; with LD_PRELOAD="libstdc++.so.6 libhakmem.so.0" they are
 * libstdc++'s, which call hakmem's malloc and free: the difference is
 * what hakmem's operators save (or cost).
 *
 * With --pairs, each operation is one new of a random class of the
 * hierarchy and its delete at once: operator new and sized delete alone,
 * the C++ counterpart of tiny_hot.
 *
 * usage: cxx_objects [--pairs] iterations [working-set=1000] [seed=1]
 *
 * Output name: cxx_objects, or cxx_pairs with --pairs. */
#include "bench.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#define USAGE "cxx_objects [--pairs] iterations [working-set=1000] [seed=1]"

namespace {

struct Shape {
  explicit Shape(uint64_t v) : value(v) {}
  virtual ~Shape() = default;
  virtual uint64_t weight() const = 0;
  uint64_t value;
};

template <size_t Bytes> struct Blob final : Shape {
  explicit Blob(uint64_t v) : Shape(v) { pad[0] = static_cast<unsigned char>(v); }
  uint64_t weight() const override { return value ^ pad[0] ^ Bytes; }
  unsigned char pad[Bytes - sizeof(Shape)];
};

std::unique_ptr<Shape> make_shape(bench_rng_t *rng)
{
  uint64_t v = bench_rng_next(rng);
  switch (v % 5) {
    case 0: return std::make_unique<Blob<24>>(v);
    case 1: return std::make_unique<Blob<48>>(v);
    case 2: return std::make_unique<Blob<64>>(v);
    case 3: return std::make_unique<Blob<120>>(v);
    default: return std::make_unique<Blob<200>>(v);
  }
}

std::string make_key(uint64_t k)
{
  std::string s = "key-of-some-length-";
  s += std::to_string(k);
  return s;
}

/* One new and one delete per iteration; the class comes from a table drawn
 * once, so that the loop pays a load instead of a PRNG step. */
uint64_t run_pairs(uint64_t iters, bench_rng_t *rng)
{
  uint8_t kinds[256];
  for (auto &k : kinds)
    k = static_cast<uint8_t>(bench_rng_next(rng));
  uint64_t sum = 0;
  for (uint64_t i = 0; i < iters; i++) {
    bench_rng_t r = { (static_cast<uint64_t>(kinds[i % 256]) << 8) | 1 };
    std::unique_ptr<Shape> s = make_shape(&r);
    bench_escape(s.get());
    sum += s->weight();
  }
  return sum;
}

}  // namespace

int main(int argc, char **argv)
{
  bool pairs = argc > 1 && strcmp(argv[1], "--pairs") == 0;
  if (pairs) {
    argc--;
    argv++;
  }
  if (argc < 2 || argc > 4)
    bench_usage(USAGE);
  uint64_t iters = bench_arg_u64(argv[1], "iterations", 1, UINT64_C(1) << 40, USAGE);
  size_t ws = argc > 2 ? bench_arg_u64(argv[2], "working-set", 1, 1 << 24, USAGE) : 1000;
  uint64_t seed = argc > 3 ? bench_arg_u64(argv[3], "seed", 0, UINT64_MAX, USAGE) : 1;
  bench_rng_t rng;
  bench_rng_seed(&rng, seed);

  if (pairs) {
    double t0 = bench_now();
    uint64_t sum = run_pairs(iters, &rng);
    double t1 = bench_now();
    bench_report_extra("cxx_pairs", static_cast<double>(iters), t1 - t0, "", sum);
    return 0;
  }

  std::vector<std::unique_ptr<Shape>> slots(ws);
  for (auto &s : slots)
    s = make_shape(&rng);
  std::map<std::string, std::string> map;
  std::vector<uint64_t> scratch;
  uint64_t sum = 0;

  double t0 = bench_now();
  for (uint64_t i = 0; i < iters; i++) {
    uint64_t r = bench_rng_next(&rng);
    if (r % 4 != 0) {
      auto &slot = slots[bench_rng_range(&rng, 0, ws - 1)];
      sum += slot->weight();
      slot = make_shape(&rng);
    } else {
      uint64_t k = bench_rng_range(&rng, 0, 4 * ws);
      auto [it, fresh] = map.emplace(make_key(k), std::string(24 + k % 40, static_cast<char>('a' + k % 26)));
      sum += fresh + it->second.size();
      auto victim = map.lower_bound(make_key(bench_rng_range(&rng, 0, 4 * ws)));
      if (victim != map.end())
        map.erase(victim);
    }
    if (i % 4096 == 0) {
      scratch.clear();
      scratch.shrink_to_fit();
      for (uint64_t j = 0; j < 200; j++)
        scratch.push_back(j ^ r);
      sum += scratch.back();
    }
  }
  double t1 = bench_now();
  sum += map.size();
  bench_report_extra("cxx_objects", static_cast<double>(iters), t1 - t0, "", sum);
  return 0;
}
