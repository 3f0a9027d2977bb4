#!/usr/bin/env bash
# `make check-install` / `make check-install-melon` (stages of `make test`): installs into
# a temporary prefix and links programs the way the documentation says, through
# pkg-config, then runs them.
#
#   check-install.sh          `make install`: headers under include/mln_ipc/ only, the
#                             shared library's SONAME (readelf), examples/demo.c linked
#                             statically (-Wl,-Bstatic $(pkg-config --static --libs mln_ipc):
#                             no NEEDED entry for libmln_ipc) and shared (NEEDED
#                             libmln_ipc.so.0, found in the prefix), both run.
#   check-install.sh melon    `make install install-melon` into one prefix, with the Melon
#                             at MELON_PREFIX: ctests/install/melon_framework_only.c, a
#                             framework program that calls no IPC function itself, linked
#                             through mln_ipc_melon.pc (shared, and melon-ipc static), must
#                             run melon-ipc's IPC, not Melon's.
#
# Environment: CC (gcc), MAKE (make), TARGET_DIR (target), MELON_PREFIX (/usr/local/melon).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CC=${CC:-gcc}
MAKE=${MAKE:-make}
TARGET_DIR=${TARGET_DIR:-target}
MELON_PREFIX=${MELON_PREFIX:-/usr/local/melon}
mode=${1:-standalone}
for tool in pkg-config readelf; do
    command -v "$tool" >/dev/null 2>&1 || { echo "check-install: $tool not found (apt-get install pkg-config binutils)" >&2; exit 1; }
done

work="$root/$TARGET_DIR/check-install-$mode"
prefix="$work/prefix"
rm -rf "$work"
mkdir -p "$work"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
major=${version%%.*}

failed=0
fail() {
    echo "FAIL $*"
    failed=1
}
pass() { echo "PASS $*"; }

# The library file, its SONAME and the two links. $1: libmln_ipc or libmln_ipc_melon.
check_lib() {
    local lib=$1 so soname
    so="$prefix/lib/$lib.so.$version"
    [ -f "$so" ] && [ ! -L "$so" ] || { fail "$so is not installed"; return; }
    soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    [ "$soname" = "$lib.so.$major" ] || fail "SONAME of $so is '$soname', not $lib.so.$major"
    [ "$(readlink "$prefix/lib/$lib.so.$major")" = "$lib.so.$version" ] ||
        fail "$lib.so.$major is not a link to $lib.so.$version"
    [ "$(readlink "$prefix/lib/$lib.so")" = "$lib.so.$major" ] ||
        fail "$lib.so is not a link to $lib.so.$major"
    [ -f "$prefix/lib/$lib.a" ] || fail "$lib.a is not installed"
    [ "$failed" = 0 ] && pass "$lib.so.$version, SONAME $soname, links $lib.so.$major and $lib.so"
}

# needed BIN LIBRARY yes|no: whether BIN has a NEEDED entry for LIBRARY.
needed() {
    local has=no
    readelf -d "$1" | grep -q "(NEEDED).*\[$2\]" && has=yes
    [ "$has" = "$3" ] || fail "$(basename "$1"): NEEDED $2: $has (expected $3)"
}

# run NAME BIN: runs it with a timeout, output in $work/NAME.out.
run() {
    if timeout -k 5 60 "$2" >"$work/$1.out" 2>&1; then
        pass "$1 runs"
    else
        fail "$1 (exit $?)"
        tail -n 20 "$work/$1.out" | sed 's/^/    /'
    fi
}

# compile NAME SRC FLAGS...: warning-free, into $work/NAME.
compile() {
    local name=$1 src=$2
    shift 2
    if "$CC" -std=gnu11 -Wall -Wextra -Werror "$src" "$@" -o "$work/$name" >"$work/$name.log" 2>&1; then
        return 0
    fi
    fail "$name (compile: $CC $src $*)"
    sed 's/^/    /' "$work/$name.log" | head -n 30
    return 1
}

if [ "$mode" = standalone ]; then
    "$MAKE" --no-print-directory install PREFIX="$prefix" >"$work/install.log" 2>&1 ||
        { cat "$work/install.log"; echo "check-install: make install failed"; exit 1; }
    loose=$(find "$prefix/include" -maxdepth 1 -type f)
    [ -z "$loose" ] && pass "headers only under include/mln_ipc/" ||
        fail "headers straight in $prefix/include: $loose"
    check_lib libmln_ipc
    libdir=$(pkg-config --variable=libdir mln_ipc)
    # shellcheck disable=SC2046 # pkg-config prints lists of flags
    if compile demo_static examples/demo.c $(pkg-config --cflags mln_ipc) \
        -Wl,-Bstatic $(pkg-config --static --libs mln_ipc); then
        needed "$work/demo_static" "libmln_ipc.so.$major" no
        run demo_static "$work/demo_static"
    fi
    # shellcheck disable=SC2046
    if compile demo_shared examples/demo.c $(pkg-config --cflags --libs mln_ipc) \
        -Wl,-rpath,"$libdir"; then
        needed "$work/demo_shared" "libmln_ipc.so.$major" yes
        ldd "$work/demo_shared" | grep -q "libmln_ipc.so.$major => $libdir/" ||
            fail "demo_shared does not load $libdir/libmln_ipc.so.$major: $(ldd "$work/demo_shared" | grep mln_ipc)"
        run demo_shared "$work/demo_shared"
    fi
elif [ "$mode" = melon ]; then
    if [ ! -f "$MELON_PREFIX/include/mln_framework.h" ] || [ ! -f "$MELON_PREFIX/lib/libmelon_static.a" ]; then
        echo "error: no Melon install at MELON_PREFIX=$MELON_PREFIX" >&2
        exit 2
    fi
    "$MAKE" --no-print-directory install install-melon PREFIX="$prefix" MELON_PREFIX="$MELON_PREFIX" \
        >"$work/install.log" 2>&1 ||
        { cat "$work/install.log"; echo "check-install: make install install-melon failed"; exit 1; }
    check_lib libmln_ipc_melon
    [ "$(find "$prefix/include/mln_ipc_melon" -type f -printf '%f\n')" = mln_ipc_ext.h ] &&
        pass "include/mln_ipc_melon/ holds mln_ipc_ext.h only" ||
        fail "include/mln_ipc_melon/ holds more than mln_ipc_ext.h"
    cat >"$work/melon.conf" <<CONF
log_level "error";
daemon off;
framework "multiprocess";
worker_proc 1;
log_path "$work/melon.log";
CONF
    export MELON_FRAMEWORK_CONF="$work/melon.conf"
    src=ctests/install/melon_framework_only.c
    rpath="-Wl,-rpath,$prefix/lib:$MELON_PREFIX/lib"
    # shellcheck disable=SC2046
    if compile framework_shared "$src" $(pkg-config --cflags --libs mln_ipc_melon) "$rpath"; then
        needed "$work/framework_shared" "libmln_ipc_melon.so.$major" yes
        run framework_shared "$work/framework_shared"
    fi
    # shellcheck disable=SC2046
    if compile framework_static "$src" $(pkg-config --cflags mln_ipc_melon) \
        -Wl,-Bstatic $(pkg-config --static --libs mln_ipc_melon) "$rpath"; then
        needed "$work/framework_static" "libmln_ipc_melon.so.$major" no
        run framework_static "$work/framework_static"
    fi
else
    echo "usage: $0 [melon]" >&2
    exit 2
fi

if [ "$failed" = 0 ]; then
    echo "check-install${1:+ $1}: passed (installed into $prefix)"
else
    echo "check-install${1:+ $1}: FAILED"
fi
exit "$failed"
