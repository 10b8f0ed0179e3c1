#!/bin/sh
# make install DESTDIR=... puts the library, header, hakmem.pc and man
# pages in place, and a program built with pkg-config's flags against the
# installed tree links with hakmem and runs on it.
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
         "$prefix/include/hakmem.h" "$libdir/pkgconfig/hakmem.pc"; do
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
