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
# reads FAILED and the run goes on), and an interleaved round-trip comparison of all three
# and the raw round trips (blocking, and through epoll_wait: the floor of any event loop),
# with its targets: the melon build's round trip at most Melon's own, and both builds' at
# most 1.1x the raw one through epoll. Prints when, where and what was measured first.
# Every sample lasts at least 0.3 s (ipc_bench calibrates its own; the round trips' count
# is calibrated here so that the fastest, raw, lasts 0.5 s).
#
# Environment: CC, LIBS, TARGET_DIR, MELON_PREFIX (/usr/local/melon), MELON_COMMIT (printed
# when given: an install does not record Melon's commit), BENCH_REPS (5), BENCH_ROUNDS (9).
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
export BENCH_REPS=${BENCH_REPS:-5}
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
echo "== $BENCH_REPS interleaved repetitions per program, median [min .. max]; samples of at least 0.3 s; BENCH_TIMEOUT=$BENCH_TIMEOUT s"

export BENCH_ONLY=raw64,raw16k,raw256k,raw1m,rawpp,rawepp,pp,w2m64,m2w64,w2m16k,m2w16k,bw2m64,bw2m16k,bw2m256k,bw2m1m,bm2w64,bm2w16k,bm2w256k,bm2w1m
status=0
echo
echo "== Melon's own IPC ($melon)"
"$melon" || status=1
echo
echo "== melon-ipc's melon build on Melon's loop ($ours)"
"$ours" || status=2
unset BENCH_ONLY

# Round trip, interleaved: one sample of each per round, microseconds per round trip,
# sorted, median and [min .. max]. The count of round trips is the same for all: the one
# that makes the fastest (raw, blocking; the quickest of two calibration runs) last 0.5 s.
cal_us=$(for _ in 1 2; do "$standalone" one rawpp 16 10000; done |
    awk '{split($1, n, "="); split($2, m, "="); u = n[2] / 1000 / m[2]; if (b == "" || u < b) b = u} END {printf "%.3f\n", b}')
count=$(awk -v u="$cal_us" 'BEGIN {c = u > 0 ? int(500000 / u) + 1 : 30000; if (c < 1000) c = 1000; print c}')
echo
echo "== round trip, 16 B, $rounds interleaved rounds of $count round trips (a sample lasts >= 0.5 s at raw's pace, ${cal_us} us), microseconds"
for _ in $(seq "$rounds"); do
    echo "raw $("$standalone" one rawpp 16 "$count")"
    echo "raw-epoll $("$standalone" one rawepp 16 "$count")"
    echo "melon $("$melon" one pp 16 "$count")"
    echo "mlnipc-on-melon $("$ours" one pp 16 "$count")"
    echo "mlnipc-standalone $("$standalone" one pp 16 "$count")"
done | awk '{split($2, n, "="); split($3, m, "="); if (m[2] > 0) printf "%s %.2f %.3f\n", $1, n[2] / 1000 / m[2], n[2] / 1e9; else print $1, "FAILED", 0}' |
    sort -k1,1 -k2,2n |
    awk '{c[$1]++; v[$1, c[$1]] = $2; t[$1] = t[$1] " " $2; if ($2 == "FAILED") bad[$1] = 1;
          if ($3 < 0.3) short[$1]++}
         END {
             split("raw raw-epoll melon mlnipc-on-melon mlnipc-standalone", order, " ");
             for (i = 1; i <= 5; i++) {
                 k = order[i];
                 if (c[k] == 0 || bad[k]) { printf "  %-19s FAILED:%s\n", k ":", t[k]; continue }
                 med[k] = c[k] % 2 ? v[k, (c[k] + 1) / 2] : (v[k, c[k] / 2] + v[k, c[k] / 2 + 1]) / 2;
                 printf "  %-19s median %6.2f us [%.2f .. %.2f]%s:%s\n", k ":", med[k], v[k, 1], v[k, c[k]],
                     short[k] ? sprintf(" (%d sample(s) under 0.3 s)", short[k]) : "", t[k];
             }
             print "  targets (on the medians):";
             check("melon build round trip <= Melon'"'"'s own", med["mlnipc-on-melon"], med["melon"], 1);
             check("melon build round trip <= 1.1x raw epoll", med["mlnipc-on-melon"], med["raw-epoll"], 1.1);
             check("standalone round trip <= 1.1x raw epoll", med["mlnipc-standalone"], med["raw-epoll"], 1.1);
         }
         function check(what, a, b, lim) {
             if (a == "" || b == "") { printf "    %-44s     -  FAIL (a row failed)\n", what; return }
             printf "    %-44s %5.2fx  %s\n", what, a / b, a <= lim * b ? "PASS" : "FAIL";
         }'
# Melon's own rows are expected to fail (its first EAGAIN closes the channel): only the
# melon-ipc program's status counts.
[ "$status" = 2 ] && { echo "bench-melon: rows of melon-ipc's melon build failed"; exit 1; }
exit 0
