#!/bin/sh
# make install DESTDIR=... puts the library, header, hakmem.pc, the CMake
# package and man pages in place; a program built with pkg-config's flags
# against the installed tree links with hakmem and runs on it, and so does
# a C++ program of a CMake project that uses find_package(hakmem).
set -eu
: "${MAKE:=make}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$MAKE -s install DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log" >&2; exit 1; }

prefix=$(sed -n 's/^prefix=//p' hakmem.pc)
libdir=$(PKG_CONFIG_PATH= pkg-config --variable=libdir hakmem.pc 2>/dev/null || true)
[ -n "$libdir" ] || libdir=$prefix/lib
root=$tmp/root
for f in "$libdir/libhakmem.so.0" "$libdir/libhakmem.so" "$libdir/libhakmem.a" \
         "$prefix/include/hakmem.h" "$libdir/pkgconfig/hakmem.pc" \
         "$libdir/cmake/hakmem/hakmemConfig.cmake" "$libdir/cmake/hakmem/hakmemConfigVersion.cmake"; do
  [ -e "$root$f" ] || { echo "install.sh: $f not installed" >&2; exit 1; }
done
if [ -d "${srcdir:-.}/man" ] && ls "${srcdir:-.}"/man/*.3 >/dev/null 2>&1; then
  [ -e "$root$prefix/share/man/man3/hakmem.3" ] || { echo "install.sh: hakmem.3 not installed" >&2; exit 1; }
fi

export PKG_CONFIG_PATH="$root$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root"
libs=$(pkg-config --libs hakmem)
cflags=$(pkg-config --cflags hakmem)
case " $libs " in *" -lhakmem "*) ;; *) echo "install.sh: pkg-config --libs gave '$libs'" >&2; exit 1;; esac

cp "${srcdir:-.}/tests/hello_hakmem.c" "$tmp/prog.c"
${CC:-cc} $cflags "$tmp/prog.c" -o "$tmp/prog" $libs
out=$(LD_LIBRARY_PATH="$root$libdir" "$tmp/prog")
case "$out" in "hello from hakmem "*) ;; *) echo "install.sh: program printed '$out'" >&2; exit 1;; esac
echo "install.sh: installed tree works: $out"

# CMake: find_package(hakmem 0.1) finds the installed package through
# CMAKE_PREFIX_PATH; the imported target hakmem::hakmem brings the include
# directory and the library; a C++ program's new is hakmem's (the block's
# usable size is answered, which aborts for a pointer hakmem did not hand
# out).  A request for a later version must not be satisfied.
if ! command -v cmake >/dev/null 2>&1 || ! command -v "${CXX:-c++}" >/dev/null 2>&1; then
  echo "install.sh: cmake or a C++ compiler not found; find_package(hakmem) not tried" >&2
  exit 0
fi
mkdir "$tmp/cmake-src"
cat >"$tmp/cmake-src/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.13)
project(hakmem_consumer CXX)
find_package(hakmem 0.1 REQUIRED)
add_executable(consumer main.cc)
target_link_libraries(consumer PRIVATE hakmem::hakmem)
CMAKE
cat >"$tmp/cmake-src/main.cc" <<'CXX'
#include <hakmem.h>
#include <cstdio>
#include <string>
int main()
{
  std::string *s = new std::string("cmake: hello from hakmem ");
  if (hak_malloc_usable_size(s) < sizeof *s)
    return 1;
  std::printf("%s%s (header %s)\n", s->c_str(), hakmem_version(), HAKMEM_VERSION);
  delete s;
  return 0;
}
CXX
cmake_log=$tmp/cmake.log
if ! (cd "$tmp" && cmake -S cmake-src -B cmake-build -DCMAKE_PREFIX_PATH="$root$prefix" \
        -DCMAKE_CXX_COMPILER="${CXX:-c++}" && cmake --build cmake-build) >"$cmake_log" 2>&1; then
  cat "$cmake_log" >&2
  echo "install.sh: the CMake project using find_package(hakmem) did not build" >&2
  exit 1
fi
out=$(LD_LIBRARY_PATH="$root$libdir" "$tmp/cmake-build/consumer")
case "$out" in "cmake: hello from hakmem "*) ;; *) echo "install.sh: CMake program printed '$out'" >&2; exit 1;; esac
sed -i 's/find_package(hakmem 0.1 REQUIRED)/find_package(hakmem 99 REQUIRED)/' "$tmp/cmake-src/CMakeLists.txt"
if (cd "$tmp" && cmake -S cmake-src -B cmake-build-99 -DCMAKE_PREFIX_PATH="$root$prefix") >"$cmake_log" 2>&1; then
  echo "install.sh: find_package(hakmem 99) accepted version $(sed -n 's/^Version: //p' hakmem.pc)" >&2
  exit 1
fi
echo "install.sh: find_package(hakmem) works: $out"
