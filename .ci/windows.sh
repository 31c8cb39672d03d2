#!/usr/bin/env bash
# .ci/windows.sh - the C stress harnesses on the _WIN32 branch of
# include/bufmgr/platform.h (SRWLOCK + CONDITION_VARIABLE, deadlines on
# QueryPerformanceCounter), cross-compiled with mingw-w64 and run under wine.
#
# tests/c/ring_stress_win.c compiles tests/c/ring_stress.c (and, with
# -DBM_WIN_HARNESS, tests/c/pool_stress.c) unchanged -- same scenarios, same
# checks as tests/c/run.sh on Linux -- mapping the harness's own
# pthread/nanosleep/alarm calls to Win32; ring.h/pool.h use platform.h only.
# The binary's import table is checked too: it must call the SRW/condition
# variable/QPC API and must not contain any pthread code.
#
# This verifies the Windows code path of the ring; it does not build the
# Python extension with MSVC.
#
# Environment: RING_STRESS_SCALE, RING_STRESS_ROUNDS, POOL_STRESS_SCALE (passed
# to the harnesses), HARNESSES (default "ring_stress pool_stress"),
# RING_TIMEOUT (seconds per wine run, default 600), WINE (launcher path).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

CC_WIN=x86_64-w64-mingw32-gcc
OBJDUMP_WIN=x86_64-w64-mingw32-objdump
t_script=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
say() { echo "== [win] $*"; }
die() { echo "!! [win] $*" >&2; exit 1; }

find_wine() {
    local w
    for w in "${WINE:-}" "$(command -v wine64 2>/dev/null || true)" /usr/lib/wine/wine64 \
        "$(command -v wine 2>/dev/null || true)" /usr/lib/wine/wine; do
        if [ -n "$w" ] && [ -x "$w" ]; then echo "$w"; return 0; fi
    done
    # wherever the wine64 package put its launcher
    w=$(dpkg -L wine64 2>/dev/null | grep -E '/wine64$' | head -n1 || true)
    if [ -n "$w" ] && [ -x "$w" ]; then echo "$w"; return 0; fi
    return 1
}

# ---- toolchain ---------------------------------------------------------------
if ! command -v "$CC_WIN" >/dev/null 2>&1 || ! find_wine >/dev/null; then
    t0=$(date +%s.%N)
    say "installing gcc-mingw-w64-x86-64 and wine64 (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64 wine64 >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64 wine >/dev/null
    say "toolchain installed in $(elapsed "$t0")s"
fi
WINE_BIN="$(find_wine)" || die "no wine launcher found (dpkg -L wine64)"
say "$("$CC_WIN" --version | head -n1); wine: $WINE_BIN ($("$WINE_BIN" --version 2>/dev/null || echo '?'))"

# ---- build -------------------------------------------------------------------
build="$root/tests/c/build"
mkdir -p "$build"

# The headers the extension compiles (ring.h, pool.h when present) on their
# _WIN32 branch, strict: what MSVC would also reject (VLAs, GNU extensions)
# fails here. (An approximation of MSVC; the extension itself is not built.)
hdr_tu="$build/win_headers_check.c"
{
    [ -f "$root/include/bufmgr/pool.h" ] && echo '#include "bufmgr/pool.h"'
    echo '#include "bufmgr/ring.h"'
    echo 'int bm_win_headers_check(void);'
    echo 'int bm_win_headers_check(void) {'
    echo '    bm_ring r;'
    echo '    if (bm_ring_init(&r, 4, BM_POLICY_BLOCK) != BM_OK) return 1;'
    echo '    bm_ring_lock(&r);'
    echo '    bm_ring_unlock(&r);'
    echo '    bm_ring_destroy(&r);'
    echo '    return bm_now_ns() > 0 ? 0 : 1;'
    echo '}'
} >"$hdr_tu"
"$CC_WIN" -std=c11 -pedantic -Wall -Wextra -Wvla -Werror -I"$root/include" -c "$hdr_tu" -o "$build/win_headers_check.o"
say "headers compile for _WIN32 with -std=c11 -pedantic -Wvla -Werror"
harnesses=()
for h in ${HARNESSES:-ring_stress pool_stress}; do
    [ -f "$root/tests/c/$h.c" ] && harnesses+=("$h")
done
[ "${#harnesses[@]}" -gt 0 ] || die "no harness sources in tests/c"

for h in "${harnesses[@]}"; do
    exe="$build/${h}_win.exe"
    t0=$(date +%s.%N)
    "$CC_WIN" -std=c11 -Wall -Wextra -O2 -g -static -I"$root/include" -I"$root/tests/c" \
        -DBM_WIN_HARNESS="\"$h.c\"" "$root/tests/c/ring_stress_win.c" -o "$exe"
    say "built $exe in $(elapsed "$t0")s"

    # The ring must be running on the Win32 primitives, and the harness on
    # Win32 threads: no pthread code may be linked in.
    imports="$("$OBJDUMP_WIN" -p "$exe")"
    for sym in InitializeSRWLock AcquireSRWLockExclusive ReleaseSRWLockExclusive \
        InitializeConditionVariable SleepConditionVariableSRW WakeConditionVariable \
        WakeAllConditionVariable QueryPerformanceCounter QueryPerformanceFrequency; do
        grep -qw "$sym" <<<"$imports" || die "$exe does not import $sym: platform.h's _WIN32 branch not used?"
    done
    if grep -qi 'winpthread' <<<"$imports" || x86_64-w64-mingw32-nm "$exe" 2>/dev/null | grep -q ' T pthread_'; then
        die "$exe links pthread code: the Windows build must use Win32 threads only"
    fi
done
say "imports: SRWLOCK, CONDITION_VARIABLE and QueryPerformanceCounter from KERNEL32; no pthreads"

# ---- run under wine ------------------------------------------------------------
prefix="$(mktemp -d "${TMPDIR:-/tmp}/bufmgr-wine.XXXXXX")"
export WINEPREFIX="$prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
wineserver_bin="$(dirname "$WINE_BIN")/wineserver"
cleanup() {
    if [ -x "$wineserver_bin" ]; then "$wineserver_bin" -k >/dev/null 2>&1 || true; fi
    rm -rf "$prefix"
}
trap cleanup EXIT

first=1
for h in "${harnesses[@]}"; do
    exe="$build/${h}_win.exe"
    log="$build/run_${h}_win.log"
    if [ "$first" = 1 ]; then
        say "run $h under wine (fresh WINEPREFIX: this first start creates it)"
    else
        say "run $h under wine"
    fi
    first=0
    t0=$(date +%s.%N)
    set +e
    timeout --kill-after=10 "${RING_TIMEOUT:-600}" "$WINE_BIN" "$exe" >"$log" 2>&1
    rc=$?
    set -e
    secs=$(elapsed "$t0")
    # wine's own start-up chatter (prefix creation) is not the harness's output
    grep -v -E '^wine: |^[0-9a-f]{4}:(err|fixme|warn):' "$log" | tr -d '\r' || true
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then die "$h TIMED OUT under wine after ${RING_TIMEOUT:-600}s"; fi
    [ "$rc" = 0 ] || die "$h FAILED under wine with exit status $rc (${secs}s)"
    tr -d '\r' <"$log" | grep -q "^$h: all scenarios passed" || die "$h did not print its final line"
    say "$h passed under wine in ${secs}s (wall, including wine start-up)"
done
say "windows harnesses (${harnesses[*]}) passed in $(elapsed "$t_script")s"
