#!/bin/sh
# Runs every libFuzzer target in tests/fuzz for a bounded time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS is per target (default 60); TARGET is a name such as ws_stream
# (default: all of them). Builds build-fuzz first when needed (clang,
# AddressSanitizer and UndefinedBehaviorSanitizer; BUILD_DIR overrides the
# directory). Each target starts from a copy of its seeds in a temporary
# directory, so the corpus in the repository stays as committed; the new
# inputs found are left there to merge by hand (tests/fuzz/README.md).
#
# Exits 1 when a target crashed, leaked, timed out or ran out of memory,
# after printing the path of each input that did; 2 on a usage or build
# error.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-fuzz}
all="config http_request http_response json_api route ws_handshake ws_stream"

seconds=60
if [ $# -gt 0 ]; then
    case $1 in
    '' | *[!0-9]*) ;;
    *) seconds=$1; shift ;;
    esac
fi
if [ "$seconds" -lt 1 ]; then
    echo "fuzz.sh: SECONDS must be at least 1" >&2
    exit 2
fi
targets=${*:-$all}
for t in $targets; do
    case " $all " in
    *" $t "*) ;;
    *) echo "fuzz.sh: no target \"$t\" (have: $all)" >&2; exit 2 ;;
    esac
done

if [ ! -f "$build/build.ninja" ]; then
    CC=${CC:-clang} meson setup "$build" "$root" -Dfuzz=true -Db_sanitize=address,undefined \
        -Db_lundef=false --buildtype=debug || exit 2
elif ! grep -q '"name": "fuzz", "value": true' "$build/meson-info/intro-buildoptions.json"; then
    meson configure "$build" -Dfuzz=true || exit 2
fi
exes=
for t in $targets; do
    exes="$exes tests/fuzz/fuzz_$t"
done
# Only the fuzz targets: the rest of the tree need not build for this.
# shellcheck disable=SC2086
ninja -C "$build" $exes || exit 2

work=$(mktemp -d "${TMPDIR:-/tmp}/wsgate-fuzz.XXXXXX")
echo "fuzz.sh: ${seconds}s per target; working directory $work"
failed=0
for t in $targets; do
    dir=$work/$t
    mkdir -p "$dir/corpus" "$dir/artifacts"
    cp "$root/tests/fuzz/corpus/$t/"* "$dir/corpus/"
    # -timeout: one input taking 25 s is a hang; -rss_limit_mb: libFuzzer's
    # default, stated. The run goes on in the target's directory so that
    # nothing it might write lands in the tree.
    status=0
    (cd "$dir" && "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=25 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" corpus \
        >"$dir/log" 2>&1) || status=$?
    done_line=$(grep -a 'DONE\|INITED' "$dir/log" | tail -n 1 || true)
    cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
    rate=$(grep -a '^stat::average_exec_per_sec:' "$dir/log" | awk '{print $2}' || true)
    runs=$(grep -a '^stat::number_of_executed_units:' "$dir/log" | awk '{print $2}' || true)
    found=$(find "$dir/artifacts" -type f | sort)
    if [ "$status" -ne 0 ] || [ -n "$found" ]; then
        failed=1
        echo "FAIL $t (exit $status); log: $dir/log"
        grep -a -m 3 'ERROR:\|runtime error\|check failed\|SUMMARY' "$dir/log" | sed 's/^/    /' || true
        for f in $found; do
            echo "    crash input: $f"
        done
    else
        echo "ok   $t: ${runs:-?} runs, ${rate:-?} exec/s, cov ${cov:-?}, corpus $(ls "$dir/corpus" | wc -l) inputs"
    fi
done
exit $failed
