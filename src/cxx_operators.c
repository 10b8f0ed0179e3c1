/* C++ operators new and delete, all twenty replaceable forms (new and
 * new[], each plain, nothrow, aligned and aligned nothrow; delete and
 * delete[], each plain, nothrow, sized, aligned, aligned nothrow and sized
 * aligned), defined by hakmem like the standard C names in override.c:
 * linked (-lhakmem) or preloaded, they come before libstdc++'s in symbol
 * lookup.  new is the malloc fast path behind one test, delete the free
 * fast path, sized delete the sized free (alloc_sized.h), all inline, so
 * that a C++ program skips libstdc++'s operator, its PLT call to malloc
 * and the retry loop around it.
 *
 * Written in C, under the operators' mangled names (asm labels), for two
 * reasons.  The fast paths are C11 inline functions (atomics included)
 * that a C++ compiler cannot take in.  And the library must not need a
 * C++ runtime: a C program that preloads hakmem must not map libstdc++,
 * libm and libgcc_s (hundreds of KiB of resident memory, and the
 * start-up time of their relocations; tests/exports.sh checks that the
 * library needs libc alone).  The one thing that needs the runtime is
 * failure, and it is handed to the runtime: when hakmem cannot allocate,
 * the operator calls the C++ runtime's own operator of the same kind,
 * which retries the allocation (through malloc or aligned_alloc, that is,
 * hakmem), runs the std::new_handler loop until the handler frees enough
 * memory or there is none, then throws std::bad_alloc; its nothrow forms
 * catch that and return NULL.  These frames have unwind tables
 * (-funwind-tables), so the exception passes through them.  If no C++
 * runtime is loaded at all, no new_handler can have been set: the nothrow
 * forms return NULL, the others print one line and abort, having nothing
 * to throw with.  tests/test_cxx.cc checks each behaviour. */
#include "alloc_sized.h"
#include "hakmem.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

/* The Itanium C++ ABI's mangling of size_t: unsigned long ("m") on LP64,
 * unsigned int ("j") on ILP32. */
#if __SIZEOF_SIZE_T__ == 8 && __SIZEOF_LONG__ == 8
#define CXX_SZ "m"
#elif __SIZEOF_SIZE_T__ == 4 && __SIZEOF_INT__ == 4
#define CXX_SZ "j"
#else
#error "no mangling known for size_t"
#endif
#define CXX_NOTHROW "RKSt9nothrow_t"
#define CXX_ALIGN "St11align_val_t"

/* An operator: a C function under the C++ name. */
#define CXX_OPERATOR(ret, cname, mangled, ...) \
  ret cname(__VA_ARGS__) __asm__(mangled);     \
  HAK_EXPORT ret cname(__VA_ARGS__)

/* std::nothrow_t is an empty class, passed by reference. */
typedef struct { char unused; } nothrow_t;

/* ---- failure: handed to the C++ runtime ---- */

enum runtime_op { OP_NEW, OP_NEW_NOTHROW, OP_NEW_ALIGNED, OP_NEW_ALIGNED_NOTHROW, OP_COUNT };
static const char *const runtime_op_name[OP_COUNT] = {
  "_Znw" CXX_SZ, "_Znw" CXX_SZ CXX_NOTHROW, "_Znw" CXX_SZ CXX_ALIGN,
  "_Znw" CXX_SZ CXX_ALIGN CXX_NOTHROW,
};
static void *runtime_op_cache[OP_COUNT];

/* The C++ runtime's definition of operator op: the next one after
 * libhakmem in symbol lookup order (libstdc++'s: a program links it after
 * -lhakmem, and a preload comes before it), else libstdc++.so.6's own if
 * it was loaded out of that order (dlopen with RTLD_LOCAL); NULL if no
 * C++ runtime is loaded.  Found once; a race finds the same answer twice. */
static void *runtime_operator(enum runtime_op op)
{
  void *f = __atomic_load_n(&runtime_op_cache[op], __ATOMIC_ACQUIRE);
  if (f)
    return f;
  f = dlsym(RTLD_NEXT, runtime_op_name[op]);
  if (!f) {
    void *h = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (h) {
      f = dlsym(h, runtime_op_name[op]);
      dlclose(h);
    }
  }
  if (f)
    __atomic_store_n(&runtime_op_cache[op], f, __ATOMIC_RELEASE);
  return f;
}

static __attribute__((noreturn)) void no_runtime(void)
{
  static const char msg[] =
      "hakmem: operator new: out of memory, and no C++ runtime is loaded to throw std::bad_alloc\n";
  ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)r;
  abort();
}

static const nothrow_t nothrow_tag;

static HAK_COLD void *new_failed(size_t size)
{
  void *(*f)(size_t) = (void *(*)(size_t))runtime_operator(OP_NEW);
  if (!f)
    no_runtime();
  return f(size);
}

static HAK_COLD void *new_failed_nothrow(size_t size)
{
  void *(*f)(size_t, const nothrow_t *) =
      (void *(*)(size_t, const nothrow_t *))runtime_operator(OP_NEW_NOTHROW);
  return f ? f(size, &nothrow_tag) : NULL;
}

static HAK_COLD void *new_aligned_failed(size_t size, size_t align)
{
  void *(*f)(size_t, size_t) = (void *(*)(size_t, size_t))runtime_operator(OP_NEW_ALIGNED);
  if (!f)
    no_runtime();
  return f(size, align);
}

static HAK_COLD void *new_aligned_failed_nothrow(size_t size, size_t align)
{
  void *(*f)(size_t, size_t, const nothrow_t *) =
      (void *(*)(size_t, size_t, const nothrow_t *))runtime_operator(OP_NEW_ALIGNED_NOTHROW);
  return f ? f(size, align, &nothrow_tag) : NULL;
}

/* ---- new ---- */

/* The ways out of malloc's fast path (alloc_malloc_via), each followed
 * by the test for failure, which the fast path itself never needs: its
 * pop always yields a block. */
#define CXX_NEW_EXIT(name, path, failed)               \
  static HAK_NOINLINE void *name(size_t size)          \
  {                                                    \
    void *p = path(size);                              \
    return HAK_LIKELY(p != NULL) ? p : failed(size);   \
  }
CXX_NEW_EXIT(new_refill, alloc_malloc_tiny_slow, new_failed)
CXX_NEW_EXIT(new_counted, alloc_malloc_small_counted, new_failed)
CXX_NEW_EXIT(new_generic, alloc_malloc_generic, new_failed)
CXX_NEW_EXIT(new_refill_nothrow, alloc_malloc_tiny_slow, new_failed_nothrow)
CXX_NEW_EXIT(new_counted_nothrow, alloc_malloc_small_counted, new_failed_nothrow)
CXX_NEW_EXIT(new_generic_nothrow, alloc_malloc_generic, new_failed_nothrow)

HAK_INLINE void *cxx_new(size_t size)
{
  return alloc_malloc_via(size, new_refill, new_counted, new_generic);
}

HAK_INLINE void *cxx_new_nothrow(size_t size)
{
  return alloc_malloc_via(size, new_refill_nothrow, new_counted_nothrow, new_generic_nothrow);
}

/* std::align_val_t is a size_t enum.  An alignment that is not a power of
 * two is undefined behaviour; it fails here (aligned_alloc refuses it) and
 * the runtime's operator decides. */
HAK_INLINE void *cxx_new_aligned(size_t size, size_t align)
{
  void *p = hak_aligned_alloc(align, size);
  return HAK_LIKELY(p != NULL) ? p : new_aligned_failed(size, align);
}

HAK_INLINE void *cxx_new_aligned_nothrow(size_t size, size_t align)
{
  void *p = hak_aligned_alloc(align, size);
  return HAK_LIKELY(p != NULL) ? p : new_aligned_failed_nothrow(size, align);
}

CXX_OPERATOR(void *, cxx_op_new, "_Znw" CXX_SZ, size_t size) { return cxx_new(size); }
CXX_OPERATOR(void *, cxx_op_new_array, "_Zna" CXX_SZ, size_t size) { return cxx_new(size); }
CXX_OPERATOR(void *, cxx_op_new_nothrow, "_Znw" CXX_SZ CXX_NOTHROW, size_t size, const nothrow_t *t)
{
  (void)t;
  return cxx_new_nothrow(size);
}
CXX_OPERATOR(void *, cxx_op_new_array_nothrow, "_Zna" CXX_SZ CXX_NOTHROW, size_t size, const nothrow_t *t)
{
  (void)t;
  return cxx_new_nothrow(size);
}
CXX_OPERATOR(void *, cxx_op_new_aligned, "_Znw" CXX_SZ CXX_ALIGN, size_t size, size_t align)
{
  return cxx_new_aligned(size, align);
}
CXX_OPERATOR(void *, cxx_op_new_array_aligned, "_Zna" CXX_SZ CXX_ALIGN, size_t size, size_t align)
{
  return cxx_new_aligned(size, align);
}
CXX_OPERATOR(void *, cxx_op_new_aligned_nothrow, "_Znw" CXX_SZ CXX_ALIGN CXX_NOTHROW, size_t size,
             size_t align, const nothrow_t *t)
{
  (void)t;
  return cxx_new_aligned_nothrow(size, align);
}
CXX_OPERATOR(void *, cxx_op_new_array_aligned_nothrow, "_Zna" CXX_SZ CXX_ALIGN CXX_NOTHROW,
             size_t size, size_t align, const nothrow_t *t)
{
  (void)t;
  return cxx_new_aligned_nothrow(size, align);
}

/* ---- delete ---- */

static const char delete_name[] = "operator delete()";

CXX_OPERATOR(void, cxx_op_delete, "_ZdlPv", void *p) { alloc_free(p); }
CXX_OPERATOR(void, cxx_op_delete_array, "_ZdaPv", void *p) { alloc_free(p); }
CXX_OPERATOR(void, cxx_op_delete_nothrow, "_ZdlPv" CXX_NOTHROW, void *p, const nothrow_t *t)
{
  (void)t;
  alloc_free(p);
}
CXX_OPERATOR(void, cxx_op_delete_array_nothrow, "_ZdaPv" CXX_NOTHROW, void *p, const nothrow_t *t)
{
  (void)t;
  alloc_free(p);
}
CXX_OPERATOR(void, cxx_op_delete_sized, "_ZdlPv" CXX_SZ, void *p, size_t size)
{
  alloc_free_sized(p, size, 0, delete_name);
}
CXX_OPERATOR(void, cxx_op_delete_array_sized, "_ZdaPv" CXX_SZ, void *p, size_t size)
{
  alloc_free_sized(p, size, 0, delete_name);
}
CXX_OPERATOR(void, cxx_op_delete_aligned, "_ZdlPv" CXX_ALIGN, void *p, size_t align)
{
  (void)align;
  alloc_free(p);
}
CXX_OPERATOR(void, cxx_op_delete_array_aligned, "_ZdaPv" CXX_ALIGN, void *p, size_t align)
{
  (void)align;
  alloc_free(p);
}
CXX_OPERATOR(void, cxx_op_delete_aligned_nothrow, "_ZdlPv" CXX_ALIGN CXX_NOTHROW, void *p,
             size_t align, const nothrow_t *t)
{
  (void)align;
  (void)t;
  alloc_free(p);
}
CXX_OPERATOR(void, cxx_op_delete_array_aligned_nothrow, "_ZdaPv" CXX_ALIGN CXX_NOTHROW, void *p,
             size_t align, const nothrow_t *t)
{
  (void)align;
  (void)t;
  alloc_free(p);
}
CXX_OPERATOR(void, cxx_op_delete_sized_aligned, "_ZdlPv" CXX_SZ CXX_ALIGN, void *p, size_t size,
             size_t align)
{
  alloc_free_sized(p, size, align, delete_name);
}
CXX_OPERATOR(void, cxx_op_delete_array_sized_aligned, "_ZdaPv" CXX_SZ CXX_ALIGN, void *p, size_t size,
             size_t align)
{
  alloc_free_sized(p, size, align, delete_name);
}
