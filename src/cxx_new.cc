/* C++ operators new and delete, all the replaceable forms (plain, array,
 * nothrow, sized, aligned and their mixes), defined by hakmem like the
 * standard C names in override.c: linked (-lhakmem) or preloaded, they
 * come before libstdc++'s in symbol lookup.  new is hak_malloc (or the
 * aligned allocation) behind one test; sized delete is the sized free,
 * which checks the size against the block (alloc_sized.h).
 *
 * The library needs no C++ runtime: a C program that preloads hakmem
 * must not map libstdc++, libm and libgcc_s (hundreds of KiB of resident
 * memory, and the start-up time of their relocations).  So this file has
 * no exceptions and no RTTI of its own, and the one thing that needs the
 * runtime, failure, is handed to it: when hakmem cannot allocate, the
 * operator calls the C++ runtime's own operator of the same kind, which
 * retries the allocation (through malloc or aligned_alloc, that is, through
 * hakmem), runs the std::new_handler loop until the handler frees enough
 * memory or there is none, and then throws std::bad_alloc; its nothrow
 * forms catch that and return NULL.  These frames have unwind tables, so
 * the exception passes through them.  If no C++ runtime is loaded at all,
 * no new_handler can have been set: the nothrow forms return NULL and the
 * others print one line and abort, having nothing to throw with. */
#include <cstddef>
#include <new>

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include "hakmem.h"

#define CXX_HIDDEN __attribute__((visibility("hidden")))
#define CXX_EXPORT __attribute__((visibility("default")))
#define CXX_LIKELY(x) __builtin_expect(!!(x), 1)

/* From the allocator (alloc_sized.h; its headers are C11, not C++). */
extern "C" {
CXX_HIDDEN void alloc_free_sized(void *p, size_t size, size_t align, const char *fn);
}

namespace {

/* The runtime's operators this file hands failures to, by their mangled
 * names (size_t is unsigned long, "m", on LP64 and unsigned int, "j",
 * elsewhere). */
enum runtime_op { OP_NEW, OP_NEW_NOTHROW, OP_NEW_ALIGNED, OP_NEW_ALIGNED_NOTHROW, OP_COUNT };
#define CXX_SIZE_T_CODE (sizeof(std::size_t) == 8 ? "m" : "j")
const char *const runtime_op_suffix[OP_COUNT] = {
  "", "RKSt9nothrow_t", "St11align_val_t", "St11align_val_tRKSt9nothrow_t",
};
void *runtime_op_cache[OP_COUNT];
/* std::nothrow itself is an object of libstdc++. */
const std::nothrow_t nothrow_tag{};

/* The C++ runtime's definition of operator op: the next one after
 * libhakmem in symbol lookup order (libstdc++'s, which a program links
 * after -lhakmem and which a preload comes before), else libstdc++.so.6's
 * own if it was loaded otherwise (dlopen with RTLD_LOCAL); NULL if no C++
 * runtime is loaded.  Found once; a race only finds the same answer twice. */
void *runtime_operator(runtime_op op)
{
  void *f = __atomic_load_n(&runtime_op_cache[op], __ATOMIC_ACQUIRE);
  if (f)
    return f;
  char name[48] = "_Znw";
  size_t n = 4;
  for (const char *s = CXX_SIZE_T_CODE; *s; s++)
    name[n++] = *s;
  for (const char *s = runtime_op_suffix[op]; *s && n + 1 < sizeof name; s++)
    name[n++] = *s;
  name[n] = 0;
  f = dlsym(RTLD_NEXT, name);
  if (!f) {
    void *h = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (h) {
      f = dlsym(h, name);
      dlclose(h);
    }
  }
  if (f)
    __atomic_store_n(&runtime_op_cache[op], f, __ATOMIC_RELEASE);
  return f;
}

[[noreturn]] void no_runtime()
{
  static const char msg[] =
      "hakmem: operator new: out of memory, and no C++ runtime is loaded to throw std::bad_alloc\n";
  ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)r;
  abort();
}

/* The failure paths, out of line: the runtime's operator retries, runs the
 * new_handler loop and throws (or, nothrow, returns NULL). */
__attribute__((noinline, cold)) void *new_failed(std::size_t size)
{
  auto f = reinterpret_cast<void *(*)(std::size_t)>(runtime_operator(OP_NEW));
  if (!f)
    no_runtime();
  return f(size);
}

__attribute__((noinline, cold)) void *new_failed_nothrow(std::size_t size) noexcept
{
  auto f = reinterpret_cast<void *(*)(std::size_t, const std::nothrow_t &) noexcept>(
      runtime_operator(OP_NEW_NOTHROW));
  return f ? f(size, nothrow_tag) : nullptr;
}

__attribute__((noinline, cold)) void *new_aligned_failed(std::size_t size, std::align_val_t al)
{
  auto f = reinterpret_cast<void *(*)(std::size_t, std::align_val_t)>(runtime_operator(OP_NEW_ALIGNED));
  if (!f)
    no_runtime();
  return f(size, al);
}

__attribute__((noinline, cold)) void *new_aligned_failed_nothrow(std::size_t size,
                                                                  std::align_val_t al) noexcept
{
  auto f = reinterpret_cast<void *(*)(std::size_t, std::align_val_t, const std::nothrow_t &) noexcept>(
      runtime_operator(OP_NEW_ALIGNED_NOTHROW));
  return f ? f(size, al, nothrow_tag) : nullptr;
}

inline void *new_plain(std::size_t size)
{
  void *p = hak_malloc(size);
  return CXX_LIKELY(p != nullptr) ? p : new_failed(size);
}

inline void *new_plain_nothrow(std::size_t size) noexcept
{
  void *p = hak_malloc(size);
  return CXX_LIKELY(p != nullptr) ? p : new_failed_nothrow(size);
}

/* An alignment that is not a power of two is undefined behaviour; it fails
 * here (aligned_alloc refuses it) and the runtime's operator decides. */
inline void *new_aligned(std::size_t size, std::align_val_t al)
{
  void *p = hak_aligned_alloc(static_cast<std::size_t>(al), size);
  return CXX_LIKELY(p != nullptr) ? p : new_aligned_failed(size, al);
}

inline void *new_aligned_nothrow(std::size_t size, std::align_val_t al) noexcept
{
  void *p = hak_aligned_alloc(static_cast<std::size_t>(al), size);
  return CXX_LIKELY(p != nullptr) ? p : new_aligned_failed_nothrow(size, al);
}

const char delete_name[] = "operator delete()";

}  // namespace

CXX_EXPORT void *operator new(std::size_t size) { return new_plain(size); }
CXX_EXPORT void *operator new[](std::size_t size) { return new_plain(size); }
CXX_EXPORT void *operator new(std::size_t size, const std::nothrow_t &) noexcept
{
  return new_plain_nothrow(size);
}
CXX_EXPORT void *operator new[](std::size_t size, const std::nothrow_t &) noexcept
{
  return new_plain_nothrow(size);
}
CXX_EXPORT void *operator new(std::size_t size, std::align_val_t al) { return new_aligned(size, al); }
CXX_EXPORT void *operator new[](std::size_t size, std::align_val_t al) { return new_aligned(size, al); }
CXX_EXPORT void *operator new(std::size_t size, std::align_val_t al, const std::nothrow_t &) noexcept
{
  return new_aligned_nothrow(size, al);
}
CXX_EXPORT void *operator new[](std::size_t size, std::align_val_t al, const std::nothrow_t &) noexcept
{
  return new_aligned_nothrow(size, al);
}

CXX_EXPORT void operator delete(void *p) noexcept { hak_free(p); }
CXX_EXPORT void operator delete[](void *p) noexcept { hak_free(p); }
CXX_EXPORT void operator delete(void *p, const std::nothrow_t &) noexcept { hak_free(p); }
CXX_EXPORT void operator delete[](void *p, const std::nothrow_t &) noexcept { hak_free(p); }
CXX_EXPORT void operator delete(void *p, std::size_t size) noexcept
{
  alloc_free_sized(p, size, 0, delete_name);
}
CXX_EXPORT void operator delete[](void *p, std::size_t size) noexcept
{
  alloc_free_sized(p, size, 0, delete_name);
}
CXX_EXPORT void operator delete(void *p, std::align_val_t) noexcept { hak_free(p); }
CXX_EXPORT void operator delete[](void *p, std::align_val_t) noexcept { hak_free(p); }
CXX_EXPORT void operator delete(void *p, std::align_val_t, const std::nothrow_t &) noexcept { hak_free(p); }
CXX_EXPORT void operator delete[](void *p, std::align_val_t, const std::nothrow_t &) noexcept
{
  hak_free(p);
}
CXX_EXPORT void operator delete(void *p, std::size_t size, std::align_val_t al) noexcept
{
  alloc_free_sized(p, size, static_cast<std::size_t>(al), delete_name);
}
CXX_EXPORT void operator delete[](void *p, std::size_t size, std::align_val_t al) noexcept
{
  alloc_free_sized(p, size, static_cast<std::size_t>(al), delete_name);
}
