#!/usr/bin/env bash
# `make test`: runs the stages named as arguments (make targets) one after the other, then
# prints one summary block, each stage passed, skipped (why) or failed, ending with
#
#   make test: all N stages passed (K skipped)     or     make test: FAILED: <stages>
#
# and exits non-zero if a stage failed. Each stage's own output streams as it runs, after a
# "== make test: <stage>" line; rerun one stage alone with `make <stage>`.
#
# A stage is `$MAKE <stage>` and fails by a non-zero exit status. It is skipped when it exits
# 0 after writing a reason to the file named by $TEST_STAGE_SKIP (`make miri` does when
# nightly or its miri component is missing); run outside this script, $TEST_STAGE_SKIP is
# unset and the target only prints the reason.
#
# The run stops at the first failed stage (the summary lists the rest as not run): later
# stages mostly depend on earlier ones (nothing works without a build) and a failure is
# reported minutes sooner. TEST_KEEP_GOING=1 runs every stage anyway, for the full picture.
set -uo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 STAGE..." >&2
    exit 2
fi
MAKE=${MAKE:-make}
keep_going=${TEST_KEEP_GOING:-}

skip_file=$(mktemp)
trap 'rm -f "$skip_file"' EXIT
export TEST_STAGE_SKIP=$skip_file

summary=()
failed=()
skipped=0
stopped_by=
started=$SECONDS

row() { # status stage detail
    summary+=("$(printf '  %-8s %-22s %s' "$1" "$2" "$3")")
}

for stage in "$@"; do
    if [ -n "$stopped_by" ]; then
        row "not run" "$stage" "(stopped after $stopped_by failed; TEST_KEEP_GOING=1 runs every stage)"
        continue
    fi
    echo "== make test: $stage"
    : >"$skip_file"
    t0=$SECONDS
    "$MAKE" --no-print-directory "$stage"
    rc=$?
    took="$((SECONDS - t0)) s"
    if [ "$rc" -ne 0 ]; then
        row failed "$stage" "(exit $rc, $took)"
        failed+=("$stage")
        [ -n "$keep_going" ] || stopped_by=$stage
    elif [ -s "$skip_file" ]; then
        row skipped "$stage" "($(head -n 1 "$skip_file"))"
        skipped=$((skipped + 1))
    else
        row passed "$stage" "($took)"
    fi
done

echo
echo "== make test summary ($((SECONDS - started)) s)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "make test: FAILED: ${failed[*]}"
    exit 1
fi
echo "make test: all $# stages passed ($skipped skipped)"
