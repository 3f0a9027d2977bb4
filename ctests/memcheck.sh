#!/usr/bin/env bash
# Runs C tests under valgrind memcheck, children included (workers, restarted workers and
# exec'd programs): every ctests/*.c, or the names given as arguments.
#
#   PASS name | FAIL name (test) | FAIL name (memcheck: N report(s)) | SKIP name (known failure: ...)
#   ...
#   memcheck: N passed, M failed, K skipped
#
# Known failures (a "CTEST_XFAIL:" line in the source, see run.sh) are skipped here, with
# their reason: the failure may be a hang (300 s under valgrind) or the very memory error
# valgrind would report. Whether one passes again (XPASS, which fails the run) is run.sh's
# job in `make ctest`, which runs them.
#
# A test fails when it fails on its own terms (exit status, including valgrind's 99 for the
# top process) or when any of its processes got a valgrind error report: one log file per
# process under $TARGET_DIR/memcheck/<test>/, and a process's report lines start with
# "==pid==" (valgrind's own warnings, "--pid--", are not errors).
#
# Leaks: only definite and indirect losses count. Rust's process-wide state (the handler
# tables, the master record, retired handler entries kept on purpose) is still reachable at
# exit and does not count; "possibly lost" is not reported (interior pointers of glibc's
# thread and stdio structures). ctests/valgrind.supp holds the suppressions (see there).
#
# Environment: as ctests/run.sh; VALGRIND (valgrind), CTEST_TIMEOUT (300 s here),
# MEMCHECK_JOBS (tests run at once; default: the number of processors).
# MEMCHECK_FDS=1: also --track-fds=yes (always for ctests/fds_*.c). Valgrind then lists every descriptor a process has
# open at exit; a listed descriptor counts as a report (a leak) when it came from recvmsg
# (received through a channel) or from fcntl/dup (a copy, as the library makes of the
# descriptors it sends). Others are not reports: the library's own (loop, wake-up eventfd,
# channel: a worker exits with them open), Melon's log, what valgrind's parent passed down,
# and the tests' own (a test that forks after making a pipe leaves copies in its children).
# CTEST_BUILD=melon (`make memcheck-melon`): the melon build, as run.sh does it; tests
# marked CTEST_STANDALONE_ONLY or CTEST_MELON_XFAIL are skipped and logs go to
# $TARGET_DIR/melon/memcheck/<test>/. Against Melon 270f2c8 nothing in libmelon needed a
# suppression either.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

VALGRIND=${VALGRIND:-valgrind}
TARGET_DIR=${TARGET_DIR:-target}
export CTEST_TIMEOUT=${CTEST_TIMEOUT:-300}
if ! command -v "$VALGRIND" >/dev/null 2>&1; then
    echo "error: $VALGRIND not found (apt-get install valgrind)" >&2
    exit 2
fi

CTEST_BUILD=${CTEST_BUILD:-standalone}
export CTEST_BUILD
logroot="$TARGET_DIR/memcheck"
[ "$CTEST_BUILD" = melon ] && logroot="$TARGET_DIR/melon/memcheck"

if [ $# -gt 0 ]; then
    names=("$@")
else
    names=()
    for src in ctests/*.c; do names+=("$(basename "$src" .c)"); done
fi

# One test under memcheck; prints its result line (PASS / FAIL / SKIP, then details).
one() {
    local name=$1 logs out rc reports why m f leaks=""
    if grep -q 'CTEST_XFAIL:' "ctests/$name.c"; then
        why=$(sed -n 's/.*CTEST_XFAIL: *\(.*\)/\1/p' "ctests/$name.c" | head -n 1 | sed 's| *\*/$||')
        echo "SKIP $name (known failure: $why; CTEST_XFAIL in ctests/$name.c)"
        return
    fi
    if [ "$CTEST_BUILD" = melon ]; then
        for m in CTEST_STANDALONE_ONLY CTEST_MELON_XFAIL; do
            if grep -q "$m:" "ctests/$name.c"; then
                echo "SKIP $name (see $m in ctests/$name.c)"
                return
            fi
        done
    fi
    logs="$logroot/$name"
    rm -rf "$logs"
    mkdir -p "$logs"
    # ipc_spawn_fds's exec'd program ignores valgrind's own log descriptors by this prefix.
    export CTEST_VALGRIND_LOGS="$root/$logs/"
    export CTEST_WRAP="$VALGRIND -q --vgdb=no --trace-children=yes --error-exitcode=99 \
--leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
--suppressions=$root/ctests/valgrind.supp --log-file=$root/$logs/%p.log"
    # The descriptor-passing tests always track descriptors (issue 23: none leaked anywhere).
    local track=${MEMCHECK_FDS:-}
    case "$name" in fds_*) track=1 ;; esac
    [ -n "$track" ] && CTEST_WRAP="$CTEST_WRAP --track-fds=yes"
    out=$(./ctests/run.sh "$name" 2>&1)
    rc=$?
    if [ -n "$track" ]; then
        leaks=$(fd_leaks "$logs"/*.log)
        reports=$(fd_listing_out "$logs"/*.log | grep -c '^==[0-9]*==')
        reports=$((reports + $(grep -c '== Open ' <<<"$leaks")))
    else
        reports=$(cat "$logs"/*.log 2>/dev/null | grep -c '^==[0-9]*==')
    fi
    if [ "$rc" -eq 0 ] && [ "$reports" -eq 0 ]; then
        echo "PASS $name"
        return
    fi
    if [ "$rc" -ne 0 ]; then
        echo "FAIL $name (test)"
        grep -v '^[0-9]* passed' <<<"$out" | tail -n 30 | sed 's/^/    /'
    else
        echo "FAIL $name (memcheck: $reports report line(s))"
    fi
    if [ -n "$leaks" ]; then
        echo "    --- descriptors leaked (open at exit, received or copied):"
        head -n 120 <<<"$leaks" | sed 's/^/    /'
    fi
    for f in "$logs"/*.log; do
        if fd_listing_out "$f" | grep -q '^==[0-9]*=='; then
            echo "    --- $f"
            fd_listing_out "$f" | head -n 60 | sed 's/^/    /'
        fi
    done
}

# The logs without valgrind's listing of the descriptors open at exit (--track-fds): its
# header, each "Open ..." entry down to the blank "==pid== " line that ends it, blank lines.
fd_listing_out() {
    awk '/^==[0-9]+== FILE DESCRIPTORS: / { next }
         /^==[0-9]+== Open / { entry = 1; next }
         /^==[0-9]+== $/ { entry = 0; next }
         !entry { print }' "$@" 2>/dev/null
}

# The entries of that listing that are leaks (see MEMCHECK_FDS above): those whose first
# stack frame is recvmsg, fcntl or dup*, printed whole, a blank line after each.
fd_leaks() {
    awk '/^==[0-9]+== Open / { entry = $0; first = ""; next }
         entry != "" && /^==[0-9]+== $/ {
             if (first ~ /: (__)?(recvmsg|__recvmsg_syscall|__libc_recvmsg|fcntl|fcntl64|__libc_fcntl64|dup|dup2|dup3) /)
                 print entry "\n" body "\n"
             entry = ""; body = ""; next }
         entry != "" { if (first == "") first = $0; body = body (body == "" ? "" : "\n") $0 }' "$@" 2>/dev/null
}

# MEMCHECK_JOBS tests at a time (default: the number of processors); each result is
# printed whole, in the order of the names, as soon as it and those before it are done.
jobs_max=${MEMCHECK_JOBS:-$(nproc 2>/dev/null || echo 1)}
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
i=0
for name in "${names[@]}"; do
    name=${name%.c}
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
    one "$name" >"$results/$i" 2>&1 &
    i=$((i + 1))
done
wait
passed=0
failed=0
skipped=0
for ((k = 0; k < i; k++)); do
    cat "$results/$k"
    case $(head -c 4 "$results/$k") in
    PASS) passed=$((passed + 1)) ;;
    SKIP) skipped=$((skipped + 1)) ;;
    *) failed=$((failed + 1)) ;;
    esac
done

echo "memcheck: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ $((passed + failed + skipped)) -gt 0 ]
