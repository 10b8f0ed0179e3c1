// C++ on hakmem: every replaceable operator new and delete resolves to
// libhakmem's; an impossible request throws std::bad_alloc; the
// new_handler loop runs (a handler that frees memory lets the request
// succeed); nothrow forms return NULL; aligned new honours alignments up
// to 2 MiB; sized delete frees with the right size and with a wrong
// one.  Each test runs in its own child (Check's fork mode).
#include "test_util.h"

#include <cstdint>
#include <map>
#include <new>
#include <string>
#include <vector>

#include <dlfcn.h>

namespace {

// The mangled names of the twenty operators (size_t is "m" on LP64).
const char *const operator_symbols[] = {
  "_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t", "_ZnamRKSt9nothrow_t",
  "_ZnwmSt11align_val_t", "_ZnamSt11align_val_t",
  "_ZnwmSt11align_val_tRKSt9nothrow_t", "_ZnamSt11align_val_tRKSt9nothrow_t",
  "_ZdlPv", "_ZdaPv", "_ZdlPvRKSt9nothrow_t", "_ZdaPvRKSt9nothrow_t",
  "_ZdlPvm", "_ZdaPvm", "_ZdlPvSt11align_val_t", "_ZdaPvSt11align_val_t",
  "_ZdlPvSt11align_val_tRKSt9nothrow_t", "_ZdaPvSt11align_val_tRKSt9nothrow_t",
  "_ZdlPvmSt11align_val_t", "_ZdaPvmSt11align_val_t",
};

// A size the compiler cannot see, which no allocator can serve.
size_t impossible() { return opaque(SIZE_MAX / 2); }

// Makes p escape, so that the compiler cannot elide a new-expression and
// its delete (C++14 allows that, and g++ does it).
void escape(void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

}  // namespace

START_TEST(operators_are_hakmems)
{
  static_assert(sizeof(std::size_t) == 8, "the symbol names below are LP64's");
  for (const char *sym : operator_symbols) {
    void *f = dlsym(RTLD_DEFAULT, sym);
    ck_assert_msg(f != nullptr, "%s not found", sym);
    Dl_info info;
    ck_assert_msg(dladdr(f, &info) != 0 && info.dli_fname, "%s: dladdr failed", sym);
    ck_assert_msg(strstr(info.dli_fname, "libhakmem") != nullptr, "%s resolves to %s, not libhakmem",
                  sym, info.dli_fname);
  }
}
END_TEST

START_TEST(impossible_request_throws_bad_alloc)
{
  int thrown = 0;
  try {
    void *p = ::operator new(impossible());
    escape(p);
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    thrown++;
  }
  try {
    char *p = new char[impossible()];
    escape(p);
    delete[] p;
  } catch (const std::bad_alloc &) {
    thrown++;
  }
  try {
    void *p = ::operator new(impossible(), std::align_val_t(64));
    escape(p);
    ::operator delete(p, std::align_val_t(64));
  } catch (const std::bad_alloc &) {
    thrown++;
  }
  try {
    void *p = ::operator new[](impossible(), std::align_val_t(4096));
    escape(p);
    ::operator delete[](p, std::align_val_t(4096));
  } catch (const std::bad_alloc &) {
    thrown++;
  }
  ck_assert_int_eq(thrown, 4);
  // The heap is fine afterwards.
  std::string s(1000, 'x');
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

START_TEST(nothrow_returns_null)
{
  ck_assert_ptr_null(::operator new(impossible(), std::nothrow));
  ck_assert_ptr_null(::operator new[](impossible(), std::nothrow));
  ck_assert_ptr_null(::operator new(impossible(), std::align_val_t(256), std::nothrow));
  ck_assert_ptr_null(::operator new[](impossible(), std::align_val_t(256), std::nothrow));
  ck_assert_ptr_null(new (std::nothrow) char[impossible()]);
  void *p = ::operator new(100, std::nothrow);
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_ge(hak_malloc_usable_size(p), 100);
  ::operator delete(p, std::nothrow);
}
END_TEST

namespace {
int handler_calls;
void *reserve;

// Gives up after three calls: the loop must then throw.
void handler_gives_up()
{
  if (++handler_calls == 3)
    std::set_new_handler(nullptr);
}

// Frees the reserve, which makes room for the request.
void handler_frees_reserve()
{
  handler_calls++;
  if (reserve) {
    ::operator delete(reserve);
    reserve = nullptr;
  } else {
    std::set_new_handler(nullptr);
  }
}

void handler_throws()
{
  handler_calls++;
  throw std::bad_alloc();
}

// Address space in use now (bytes), from /proc/self/statm.
size_t address_space()
{
  long size = 0, res = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(fscanf(f, "%ld %ld", &size, &res), 2);
  fclose(f);
  return static_cast<size_t>(size) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}
}  // namespace

START_TEST(new_handler_loop_then_bad_alloc)
{
  handler_calls = 0;
  std::set_new_handler(handler_gives_up);
  bool thrown = false;
  try {
    void *p = ::operator new(impossible());
    ::operator delete(p);
  } catch (const std::bad_alloc &) {
    thrown = true;
  }
  ck_assert(thrown);
  ck_assert_int_eq(handler_calls, 3);

  // nothrow: a handler that throws ends in NULL.
  handler_calls = 0;
  std::set_new_handler(handler_throws);
  ck_assert_ptr_null(::operator new(impossible(), std::nothrow));
  ck_assert_ptr_null(::operator new(impossible(), std::align_val_t(64), std::nothrow));
  ck_assert_int_eq(handler_calls, 2);
  std::set_new_handler(nullptr);
}
END_TEST

// Under an address-space limit, a 48 MiB request fails while a 64 MiB
// reserve is held; the handler frees the reserve and the request succeeds.
START_TEST(new_handler_frees_memory_and_succeeds)
{
  std::string warm(100, 'w');  // the C++ runtime's first allocations
  const size_t limit = address_space() + 96 * MiB;
  reserve = ::operator new(64 * MiB);
  struct rlimit rl = { limit, limit };
  ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
  handler_calls = 0;
  std::set_new_handler(handler_frees_reserve);
  void *p = nullptr;
  try {
    p = ::operator new(opaque(48 * MiB));
  } catch (const std::bad_alloc &) {
    ck_abort_msg("bad_alloc although the handler freed 64 MiB (handler called %d times)", handler_calls);
  }
  ck_assert_ptr_nonnull(p);
  ck_assert_ptr_null(reserve);
  ck_assert_int_ge(handler_calls, 1);
  memset(p, 1, 48 * MiB);
  ::operator delete(p, 48 * MiB);
  std::set_new_handler(nullptr);
}
END_TEST

namespace {
struct alignas(64) Line { char c[100]; };
struct alignas(4096) Page { char c[5000]; };
struct alignas(65536) Slab { char c[10]; };
struct alignas(2 * 1048576) Huge { char c[3000]; };

template <class T> void new_aligned_type()
{
  std::vector<T *> v;
  for (int i = 0; i < 8; i++) {
    T *p = new T;
    escape(p);
    ck_assert_msg(reinterpret_cast<uintptr_t>(p) % alignof(T) == 0, "new of alignas(%zu): %p",
                  alignof(T), static_cast<void *>(p));
    p->c[0] = 1;
    v.push_back(p);
  }
  for (T *p : v)
    delete p;  // sized and aligned: operator delete(void *, size_t, align_val_t)
  T *a = new T[3];
  ck_assert_uint_eq(reinterpret_cast<uintptr_t>(a) % alignof(T), 0);
  delete[] a;
}
}  // namespace

START_TEST(aligned_new_up_to_2mib)
{
  new_aligned_type<Line>();
  new_aligned_type<Page>();
  new_aligned_type<Slab>();
  new_aligned_type<Huge>();
  for (size_t align = 1; align <= 2 * MiB; align <<= 1)
    for (size_t n : { size_t(0), size_t(1), size_t(100), size_t(5000), size_t(300000) }) {
      void *p = ::operator new(n, std::align_val_t(align));
      ck_assert_msg(reinterpret_cast<uintptr_t>(p) % align == 0, "operator new(%zu, %zu) = %p", n,
                    align, p);
      ::operator delete(p, n, std::align_val_t(align));
      void *q = ::operator new[](n, std::align_val_t(align), std::nothrow);
      ck_assert_uint_eq(reinterpret_cast<uintptr_t>(q) % align, 0);
      ::operator delete[](q, std::align_val_t(align), std::nothrow);
    }
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

namespace {
struct Small { char c[200]; };
}

// delete of a complete type is sized (operator delete(void *, size_t)):
// the block comes back, and the thread's next new of that size gets it.
START_TEST(sized_delete_right_size)
{
  Small *s = new Small;
  escape(s);
  Small *keep = s;
  delete s;
  Small *t = new Small;
  escape(t);
  ck_assert_ptr_eq(t, keep);
  delete t;
  for (size_t n = 1; n < 70000; n = n * 3 + 1) {
    void *p = ::operator new(n);
    ::operator delete(p, n);
    void *q = ::operator new[](n);
    ::operator delete[](q, n);
  }
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

namespace {
void delete_wrong_size() { ::operator delete(::operator new(opaque(100)), 8); }
void delete_wrong_aligned_size()
{
  ::operator delete(::operator new(opaque(5000), std::align_val_t(4096)), 64, std::align_val_t(4096));
}
}  // namespace

// A wrong size (an object deleted through a base class without a virtual
// destructor) frees the block by its address, as under libstdc++ and
// glibc; check = 1 reports it (tests/test_sized.c).
START_TEST(sized_delete_wrong_size_frees)
{
  delete_wrong_size();
  delete_wrong_aligned_size();
  ck_assert_int_eq(hakmem_check_heap(), 0);
  void *p = ::operator new(opaque(100));
  ::operator delete(p, 8);
  void *q = ::operator new(opaque(100));
  ck_assert_ptr_eq(p, q);
  ::operator delete(q);
}
END_TEST

START_TEST(containers_churn)
{
  std::map<std::string, std::vector<int>> m;
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < 20000; i++)
      m[std::to_string(i * 7919 % 100003) + std::string(i % 50, 'k')].assign(i % 17, i);
    for (auto it = m.begin(); it != m.end();)
      it = (it->second.size() % 2) ? m.erase(it) : std::next(it);
  }
  ck_assert_uint_gt(m.size(), 0);
  m.clear();
  ck_assert_int_eq(hakmem_check_heap(), 0);
}
END_TEST

int main()
{
  Suite *s = suite_create("C++ operators (libhakmem)");
  TCase *t = tcase_create("cxx");
  tcase_set_timeout(t, 120);
  tcase_add_test(t, operators_are_hakmems);
  tcase_add_test(t, impossible_request_throws_bad_alloc);
  tcase_add_test(t, nothrow_returns_null);
  tcase_add_test(t, new_handler_loop_then_bad_alloc);
  tcase_add_test(t, new_handler_frees_memory_and_succeeds);
  tcase_add_test(t, aligned_new_up_to_2mib);
  tcase_add_test(t, sized_delete_right_size);
  tcase_add_test(t, sized_delete_wrong_size_frees);
  tcase_add_test(t, containers_churn);
  suite_add_tcase(s, t);
  return check_run(s);
}
