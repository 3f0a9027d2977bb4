#!/usr/bin/env bash
# `make bench-melon`: the benchmark of benches/ against Melon's own IPC, with the Melon
# installed at MELON_PREFIX (docs/performance.md, "Against Melon"). Without a Melon there it
# says so and exits 0. The same program is built three ways, and only the link line decides
# whose IPC it measures:
#   ipc_bench                melon-ipc standalone (make bench-build)
#   ipc_bench_melon          Melon's own IPC: compiled against Melon's headers
#                            (-DBENCH_MELON), linked with libmelon_static.a alone
#   ipc_bench_mlnipc_melon   melon-ipc's melon build on Melon's event loop: the same, with
#                            our melon archive forced in before libmelon_static.a
# then runs bursts, windowed streams and ping-pong with the last two (a row whose IPC dies
# reads FAILED and the run goes on), and an interleaved round-trip comparison of all four
# (raw included). Prints when, where and what was measured first.
#
# Environment: CC, LIBS, TARGET_DIR, MELON_PREFIX (/usr/local/melon), MELON_COMMIT (printed
# when given: an install does not record Melon's commit), BENCH_REPS (3), BENCH_ROUNDS (9).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CC=${CC:-gcc}
TARGET_DIR=${TARGET_DIR:-target}
MELON_PREFIX=${MELON_PREFIX:-/usr/local/melon}
if [ -z "${LIBS:-}" ]; then
    LIBS=$(sed -n 's/^LIBS *= *//p' Makefile | head -n 1)
fi
rounds=${BENCH_ROUNDS:-9}
export BENCH_REPS=${BENCH_REPS:-3}
export BENCH_TIMEOUT=${BENCH_TIMEOUT:-60}

if [ ! -f "$MELON_PREFIX/include/mln_framework.h" ] || [ ! -f "$MELON_PREFIX/lib/libmelon_static.a" ]; then
    echo "bench-melon: skipped (no Melon install at MELON_PREFIX=$MELON_PREFIX)"
    exit 0
fi

out="$TARGET_DIR/bench"
mkdir -p "$out"
standalone="$out/ipc_bench"
melon="$out/ipc_bench_melon"
ours="$out/ipc_bench_mlnipc_melon"
src=(benches/ipc_bench.c benches/common.c benches/raw.c benches/mlnipc.c)
cflags=(-O2 -std=gnu11 -Wall -Wextra -Werror -DBENCH_MELON -isystem "$MELON_PREFIX/include")
for f in "$standalone" "$TARGET_DIR/melon/release/libmln_ipc.a"; do
    [ -f "$f" ] || { echo "error: $f not found (make bench-build melon)" >&2; exit 2; }
done

# shellcheck disable=SC2086 # LIBS is a list of flags
"$CC" "${cflags[@]}" "${src[@]}" "$MELON_PREFIX/lib/libmelon_static.a" $LIBS \
    -Wl,-Map="$melon.map" -o "$melon" || exit 1
# shellcheck disable=SC2086
"$CC" "${cflags[@]}" "${src[@]}" -Wl,-u,mln_fork_prepare "$TARGET_DIR/melon/release/libmln_ipc.a" \
    "$MELON_PREFIX/lib/libmelon_static.a" $LIBS -Wl,-Map="$ours.map" -o "$ours" || exit 1
# Whose IPC each one has, from the link maps.
melons_ipc='libmelon_static\.a(mln_\(fork\|ipc\)\.o)'
grep -q "$melons_ipc" "$melon.map" || { echo "error: $melon did not link Melon's mln_fork.o / mln_ipc.o" >&2; exit 1; }
if grep -q "$melons_ipc" "$ours.map"; then
    echo "error: $ours linked Melon's mln_fork.o / mln_ipc.o (see $ours.map)" >&2
    exit 1
fi

echo "== bench-melon: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm), $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== melon-ipc $(git rev-parse --short HEAD 2>/dev/null || echo '(no git)')$(git diff --quiet HEAD 2>/dev/null || echo ' (modified)'); Melon at $MELON_PREFIX${MELON_COMMIT:+, commit $MELON_COMMIT}; $("$CC" --version | head -n 1)"
echo "== $BENCH_REPS interleaved repetitions per program, median; BENCH_TIMEOUT=$BENCH_TIMEOUT s"

export BENCH_ONLY=raw64,raw16k,raw256k,raw1m,rawpp,pp,w2m64,m2w64,w2m16k,m2w16k,bw2m64,bw2m16k,bw2m256k,bw2m1m,bm2w64,bm2w16k,bm2w256k,bm2w1m
status=0
echo
echo "== Melon's own IPC ($melon)"
"$melon" || status=1
echo
echo "== melon-ipc's melon build on Melon's loop ($ours)"
"$ours" || status=2
unset BENCH_ONLY

# Round trip, interleaved: one measurement of each per round, microseconds per round trip,
# sorted; with 9 rounds the 5th value is the median.
echo
echo "== round trip, 16 B, $rounds interleaved rounds of 30,000 round trips, microseconds, sorted"
for _ in $(seq "$rounds"); do
    echo "raw $("$standalone" one rawpp 16 30000)"
    echo "melon $("$melon" one pp 16 30000)"
    echo "mlnipc-on-melon $("$ours" one pp 16 30000)"
    echo "mlnipc-standalone $("$standalone" one pp 16 30000)"
done | awk '{split($2, n, "="); split($3, m, "="); if (m[2] > 0) printf "%s %.2f\n", $1, n[2] / 1000 / m[2]; else print $1, "FAILED"}' |
    sort -k1,1 -k2,2n |
    awk '{t[$1] = t[$1] sprintf(" %s", $2); c[$1]++; v[$1, c[$1]] = $2}
         END {
             split("raw melon mlnipc-on-melon mlnipc-standalone", order, " ");
             for (i = 1; i <= 4; i++) {
                 k = order[i]; m = v[k, int((c[k] + 1) / 2)];
                 printf "  %-18s median %6s us:%s\n", k ":", m, t[k];
             }
         }'
# Melon's own rows are expected to fail (its first EAGAIN closes the channel): only the
# melon-ipc program's status counts.
[ "$status" = 2 ] && { echo "bench-melon: rows of melon-ipc's melon build failed"; exit 1; }
exit 0
