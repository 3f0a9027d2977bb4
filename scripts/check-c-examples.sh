#!/usr/bin/env bash
# `make examples-c` (a stage of `make test`): every C program README.md and docs/*.md
# show, and examples/demo.c, compiles with -Wall -Wextra -Werror against include/ and the
# static library, and runs to exit status 0 within a timeout.
#
# A block fenced as ```c is one complete program; each is written to
# $TARGET_DIR/examples-c/<page>_<n>.c (readme_1.c, c-api_1.c, ...). Snippets that are not
# complete programs are fenced otherwise (```text), so nothing a reader may copy goes
# unchecked by accident.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CC=${CC:-gcc}
TARGET_DIR=${TARGET_DIR:-target}
if [ -z "${LIBS:-}" ]; then
    LIBS=$(sed -n 's/^LIBS *= *//p' Makefile | head -n 1)
fi
lib="$TARGET_DIR/release/libmln_ipc.a"
out="$TARGET_DIR/examples-c"
mkdir -p "$out"
rm -f "$out"/*.c

for page in README.md docs/*.md; do
    [ -f "$page" ] || continue
    stem=$(basename "$page" .md | tr '[:upper:]' '[:lower:]')
    awk -v out="$out" -v stem="$stem" '
        /^```c *$/ { n++; file = sprintf("%s/%s_%d.c", out, stem, n); inside = 1; next }
        /^```/ && inside { inside = 0; close(file); next }
        inside { print > file }
    ' "$page"
done

failed=0
total=0
for src in examples/demo.c "$out"/*.c; do
    [ -f "$src" ] || continue
    total=$((total + 1))
    name=$(basename "$src" .c)
    bin="$out/$name"
    # shellcheck disable=SC2086 # LIBS is a list of flags
    if ! "$CC" -std=gnu11 -Wall -Wextra -Werror -Iinclude "$src" "$lib" $LIBS -o "$bin" 2>"$bin.log"; then
        echo "FAIL $src (compile)"
        sed 's/^/    /' "$bin.log" | head -n 30
        failed=$((failed + 1))
        continue
    fi
    if ! grep -q 'int main' "$src"; then
        echo "FAIL $src (not a complete program: fence snippets as \`\`\`text)"
        failed=$((failed + 1))
        continue
    fi
    if timeout -k 5 60 "./$bin" >"$bin.out" 2>&1; then
        echo "PASS $src"
    else
        echo "FAIL $src (exit $?)"
        tail -n 20 "$bin.out" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
echo "examples-c: $((total - failed)) of $total C programs compile warning-free and run"
[ "$failed" -eq 0 ] && [ "$total" -gt 0 ]
