#!/usr/bin/env bash
# C test harness: compiles each ctests/*.c (or the names given as arguments) against the
# release static library, runs it, prints one line per test and a summary.
#
#   PASS name | FAIL name (exit N) | FAIL name (compile) | XFAIL name (...) | FAIL name (XPASS: ...)
#   ...
#   N passed, M failed
#
# Exits non-zero if any test failed or no test was found. Tests run one at a time.
# A test whose source has a line containing "CTEST_XFAIL:" (followed by the reason) is a
# known failure waiting for a fix elsewhere: it still runs. If it fails it prints XFAIL
# with the reason and is counted as skipped ("N passed, M failed, K skipped"); if it passes
# it prints "FAIL name (XPASS: ...)" and is counted as failed: the fix has landed, so the
# marker must go (left behind, it would hide the next regression of that test).
# Environment: CC (gcc), LIBS (default: the pinned LIBS of the Makefile), TARGET_DIR
# (target), CTEST_TIMEOUT (60 s), CTEST_WRAP (a command prefix, e.g. "valgrind -q
# --error-exitcode=99"), MLN_IPC_LOG (error unless set). Run from anywhere; `make ctest`
# builds the library first.
#
# CTEST_BUILD=melon runs the same sources against the melon build (`make ctest-melon`):
# each test is compiled with -DCTEST_MELON against Melon's installed headers
# ($MELON_PREFIX/include, default /usr/local/melon) and linked with
# $TARGET_DIR/melon/release/libmln_ipc.a before $MELON_PREFIX/lib/libmelon_static.a. Each
# test gets its own Melon configuration, $TARGET_DIR/melon/ctests/<name>.d/melon.conf
# (framework "multiprocess", daemon off, worker_proc 1, log_level $CTEST_MELON_LOG_LEVEL
# (default error), log_path in that directory, where Melon also writes melon.pid), named
# in CTEST_MELON_CONF (ctest.h points Melon at it). Markers read only in this mode:
#   CTEST_STANDALONE_ONLY: reason   not applicable to the melon build: SKIP, not compiled
#   CTEST_MELON_XFAIL: reason       a known failure of the melon build: XFAIL / XPASS
# Flags of this mode: -isystem for Melon's headers (their own warnings are not ours);
# -Wno-nonnull -fno-delete-null-pointer-checks because Melon declares handler and buffer
# arguments non-NULL where melon-ipc accepts NULL (a one-sided handler, an empty payload,
# the bad-argument checks), so the compiler must neither refuse those calls nor assume
# the pointers non-NULL afterwards.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

CC=${CC:-gcc}
if [ -z "${LIBS:-}" ]; then
    LIBS=$(sed -n 's/^LIBS *= *//p' Makefile | head -n 1)
fi
TARGET_DIR=${TARGET_DIR:-target}
CTEST_TIMEOUT=${CTEST_TIMEOUT:-60}
CTEST_WRAP=${CTEST_WRAP:-}
export MLN_IPC_LOG=${MLN_IPC_LOG:-error}

CTEST_BUILD=${CTEST_BUILD:-standalone}
case "$CTEST_BUILD" in
standalone)
    lib="$TARGET_DIR/release/libmln_ipc.a"
    out="$TARGET_DIR/ctests"
    cflags=(-Iinclude)
    link=("$lib")
    build_hint="make build"
    ;;
melon)
    MELON_PREFIX=${MELON_PREFIX:-/usr/local/melon}
    lib="$TARGET_DIR/melon/release/libmln_ipc.a"
    out="$TARGET_DIR/melon/ctests"
    cflags=(-DCTEST_MELON -isystem "$MELON_PREFIX/include" -Wno-nonnull -fno-delete-null-pointer-checks)
    # -u: a test that calls no IPC function itself (only the framework) would otherwise
    # pull nothing from our archive and get Melon's IPC (docs/melon-build.md); the
    # link map then proves that Melon's mln_fork.o / mln_ipc.o were left out.
    # CTEST_MELON_LDFLAGS= (empty) links without it, to see which tests would get Melon's.
    read -r -a ldflags <<<"${CTEST_MELON_LDFLAGS--Wl,-u,mln_fork_prepare}"
    link=("${ldflags[@]}" "$lib" "$MELON_PREFIX/lib/libmelon_static.a")
    build_hint="make melon"
    if [ ! -f "$MELON_PREFIX/include/mln_framework.h" ] || [ ! -f "$MELON_PREFIX/lib/libmelon_static.a" ]; then
        echo "error: no Melon install at MELON_PREFIX=$MELON_PREFIX" >&2
        exit 2
    fi
    ;;
*)
    echo "error: CTEST_BUILD must be standalone or melon, not '$CTEST_BUILD'" >&2
    exit 2
    ;;
esac
if [ ! -f "$lib" ]; then
    echo "error: $lib not found; run '$build_hint' first" >&2
    exit 2
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The reason after a marker line ("MARKER: reason */"), or nothing.
marker() {
    sed -n "s/.*$1: *\(.*\)/\1/p" "$2" | head -n 1 | sed 's| *\*/$||'
}

if [ $# -gt 0 ]; then
    srcs=()
    for name in "$@"; do srcs+=("ctests/${name%.c}.c"); done
else
    shopt -s nullglob
    srcs=(ctests/*.c)
fi

passed=0
failed=0
skipped=0
n_only=0
n_xfail=0
for src in "${srcs[@]}"; do
    name=$(basename "$src" .c)
    bin="$out/$name"
    log="$out/$name.log"
    xfail=$(marker CTEST_XFAIL "$src")
    if [ "$CTEST_BUILD" = melon ]; then
        if grep -q 'CTEST_STANDALONE_ONLY:' "$src"; then
            echo "SKIP $name (standalone build only: $(marker CTEST_STANDALONE_ONLY "$src"))"
            skipped=$((skipped + 1))
            n_only=$((n_only + 1))
            continue
        fi
        if [ -z "$xfail" ] && grep -q 'CTEST_MELON_XFAIL:' "$src"; then
            xfail="melon build: $(marker CTEST_MELON_XFAIL "$src")"
        fi
        conf_dir="$out/$name.d"
        rm -rf "$conf_dir"
        mkdir -p "$conf_dir"
        cat >"$conf_dir/melon.conf" <<EOF
log_level "${CTEST_MELON_LOG_LEVEL:-error}";
daemon off;
framework "multiprocess";
worker_proc 1;
log_path "$conf_dir/melon.log";
EOF
        export CTEST_MELON_CONF="$conf_dir/melon.conf"
    fi
    # shellcheck disable=SC2086 # LIBS is a list of flags
    if ! "$CC" -std=gnu11 -Wall -Wextra -Werror "${cflags[@]}" "$src" "${link[@]}" $LIBS \
        -Wl,-Map="$bin.map" -o "$bin" >"$log" 2>&1; then
        echo "FAIL $name (compile)"
        sed 's/^/    /' "$log" | head -n 40
        failed=$((failed + 1))
        continue
    fi
    if [ "$CTEST_BUILD" = melon ] && grep -q 'libmelon_static\.a(mln_\(fork\|ipc\)\.o)' "$bin.map"; then
        echo "FAIL $name (link: Melon's own mln_fork.o / mln_ipc.o were linked, see $bin.map)"
        failed=$((failed + 1))
        continue
    fi
    # shellcheck disable=SC2086 # CTEST_WRAP is a command prefix
    timeout -k 5 "$CTEST_TIMEOUT" $CTEST_WRAP "$bin" >"$log" 2>&1
    rc=$?
    # Processes of the test still running once it ended (a worker that did not notice
    # its master's end): give them 3 s, then kill them and fail the test.
    left=
    for _ in $(seq 30); do
        left=$(pgrep -f -- "$bin\b" | tr '\n' ' ')
        [ -z "$left" ] && break
        sleep 0.1 # polling for processes we have no handle on
    done
    if [ -n "$left" ]; then
        # shellcheck disable=SC2086 # a list of pids
        kill -KILL $left 2>/dev/null
        echo "processes left behind and killed: $left" >>"$log"
        [ "$rc" -eq 0 ] && rc=70
    fi
    if [ -n "$xfail" ]; then
        if [ "$rc" -eq 0 ]; then
            echo "FAIL $name (XPASS: passes although marked as a known failure: $xfail;" \
                "remove the marker from $src)"
            failed=$((failed + 1))
        else
            echo "XFAIL $name (exit $rc; known failure: $xfail)"
            tail -n 5 "$log" | sed 's/^/    /'
            skipped=$((skipped + 1))
            n_xfail=$((n_xfail + 1))
        fi
        continue
    fi
    if [ "$rc" -eq 0 ]; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        if [ "$rc" -eq 124 ]; then
            echo "FAIL $name (exit $rc, timeout after ${CTEST_TIMEOUT}s)"
        else
            echo "FAIL $name (exit $rc)"
        fi
        tail -n 40 "$log" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done

if [ $((passed + failed + skipped)) -eq 0 ]; then
    echo "no C tests found"
fi
if [ "$skipped" -gt 0 ]; then
    why=""
    [ "$n_only" -gt 0 ] && why="$n_only standalone only"
    [ "$n_xfail" -gt 0 ] && why="${why:+$why, }$n_xfail known failure(s)"
    echo "$passed passed, $failed failed, $skipped skipped ($why)"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ $((passed + failed + skipped)) -gt 0 ]
