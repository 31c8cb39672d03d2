#!/usr/bin/env bash
# tests/c/run.sh - build each C stress harness (ring_stress.c, pool_stress.c, shm_stress.c) three ways and run it:
#   tsan   : -fsanitize=thread
#   asan   : -fsanitize=address,undefined (leak checking on)
#   plain  : -O2, and again under valgrind --leak-check=full when installed
# Any sanitizer report, valgrind error, failed check or hang fails the script.
#
# Environment: CC (default gcc), RING_STRESS_SCALE (item-count multiplier,
# default 1), RING_TIMEOUT (seconds per run, default 300),
# RING_VALGRIND_SCALE (default 0.1: valgrind serialises the threads).
# Outputs (binaries, build and run logs) go to tests/c/build/ (gitignored).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$here/build"
mkdir -p "$build"

CC="${CC:-gcc}"
per_run_timeout="${RING_TIMEOUT:-300}"
common=(-std=c11 -Wall -Wextra -pthread -I"$root/include")

# Sanitizer reports must fail the run even if an option were ignored: the
# output is also scanned for their banners.
report_re='WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Thread|Address|Leak|UndefinedBehavior)Sanitizer'

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 exitcode=66"
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:exitcode=67:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

failures=0
passed=0
t_start=$(date +%s.%N)

have_timeout=0
command -v timeout >/dev/null 2>&1 && have_timeout=1

run_capture() { # log cmd...
    local log="$1"; shift
    if [ "$have_timeout" = 1 ]; then
        timeout --kill-after=10 "$per_run_timeout" "$@" >"$log" 2>&1
    else
        "$@" >"$log" 2>&1
    fi
}

# build NAME FLAGS... -> $build/ring_stress_NAME
build_one() {
    local name="$1"; shift
    local out="$build/${harness}_$name"
    echo "== build $harness $name: $CC $* $harness.c"
    rm -f "$out" # never run a stale binary after a failed build
    # $CC unquoted on purpose: CC="gcc -m32" or CC="ccache gcc" must work
    # shellcheck disable=SC2086
    local libs=()
    [ "$harness" = shm_stress ] && libs=(-lrt) # shm_open on glibc < 2.34
    if ! $CC "${common[@]}" "$@" "$here/$harness.c" -o "$out" "${libs[@]}" 2>"$build/build_${harness}_$name.log"; then
        cat "$build/build_${harness}_$name.log"
        echo "!! build $name FAILED (for a sanitizer build: is its runtime installed for $CC?)"
        return 1
    fi
    if [ -s "$build/build_${harness}_$name.log" ]; then cat "$build/build_${harness}_$name.log"; fi
    return 0
}

# check_run NAME LOG RC T0 -> 0 when clean
check_run() {
    local name="$1" log="$2" rc="$3" t0="$4"
    local secs
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    cat "$log"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "!! run $name TIMED OUT after ${per_run_timeout}s"
        return 1
    fi
    if [ "$rc" != 0 ]; then
        echo "!! run $name FAILED with exit status $rc (${secs}s)"
        return 1
    fi
    if grep -Eq "$report_re" "$log"; then
        echo "!! run $name printed a sanitizer report (exit status was 0)"
        return 1
    fi
    if ! grep -q "^$harness: all scenarios passed" "$log"; then
        echo "!! run $name did not print its final line"
        return 1
    fi
    echo "== run $name passed (${secs}s)"
    return 0
}

run_one() { # NAME [wrapper...]
    local name="$1"; shift
    local exe="$build/${harness}_$name" log="$build/run_${harness}_$name.log" rc t0
    echo "== run $name"
    t0=$(date +%s.%N)
    run_capture "$log" "$@" "$exe"
    rc=$?
    # TSan of older toolchains cannot map its shadow under a kernel with
    # high ASLR entropy ("unexpected memory mapping"): retry without ASLR.
    if [ "$rc" != 0 ] && grep -q 'unexpected memory mapping' "$log" && command -v setarch >/dev/null; then
        echo "   (TSan shadow mapping failed under ASLR; retrying with setarch -R)"
        t0=$(date +%s.%N)
        run_capture "$log" setarch "$(uname -m)" -R "$@" "$exe"
        rc=$?
    fi
    check_run "$name" "$log" "$rc" "$t0"
}

harnesses=(${HARNESSES:-ring_stress pool_stress shm_stress})
nbuilds=0
for harness in "${harnesses[@]}"; do
for variant in tsan asan plain; do
    nbuilds=$((nbuilds + 1))
    case "$variant" in
        tsan) flags=(-fsanitize=thread -fno-omit-frame-pointer -g -O1) ;;
        asan) flags=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1) ;;
        plain) flags=(-O2 -g) ;;
    esac
    if build_one "$variant" "${flags[@]}" && run_one "$variant"; then
        passed=$((passed + 1))
    else
        failures=$((failures + 1))
    fi
done
done

valgrind_note="valgrind not installed, skipped"
if command -v valgrind >/dev/null 2>&1; then
    valgrind_note="valgrind clean"
    for harness in "${harnesses[@]}"; do
        if [ -x "$build/${harness}_plain" ]; then
            echo "== run $harness plain under valgrind"
            log="$build/run_${harness}_valgrind.log"
            t0=$(date +%s.%N)
            RING_STRESS_SCALE="${RING_VALGRIND_SCALE:-0.1}" POOL_STRESS_SCALE="${RING_VALGRIND_SCALE:-0.1}" \
                RING_STRESS_ROUNDS=2 \
                run_capture "$log" valgrind --error-exitcode=1 --leak-check=full \
                --errors-for-leak-kinds=definite,indirect,possible --track-origins=yes --quiet \
                "$build/${harness}_plain"
            rc=$?
            if ! check_run valgrind "$log" "$rc" "$t0"; then
                valgrind_note="valgrind FAILED"
                failures=$((failures + 1))
            fi
        else
            valgrind_note="valgrind skipped (no plain build of $harness)"
        fi
    done
else
    echo "== valgrind not installed: skipping the valgrind run"
fi

total=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
if [ "$failures" != 0 ]; then
    echo "C harnesses: FAILED ($passed of $nbuilds builds passed, $valgrind_note, ${total}s)"
    exit 1
fi
echo "C harnesses (${harnesses[*]}): $nbuilds builds passed ($valgrind_note, ${total}s)"
exit 0
