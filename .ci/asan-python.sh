#!/usr/bin/env bash
# The Python-level FrameRing/FrameQueue/SharedFrameRing suites (integrity stress included)
# against an AddressSanitizer build of the extension, in a scratch copy of
# the tracked sources. Usage: .ci/asan-python.sh [PYTHON] (default: .venv).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${1:-$root/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$work")
"$py" -m pip install -q "Cython>=3.1" "setuptools>=68"
cd "$work"
CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -O1" LDFLAGS="-fsanitize=address" \
    "$py" setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }

# CPython itself is not leak-clean at exit; the tests that ask for absurd
# allocations expect MemoryError, not an ASan abort.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1"
LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
    "$py" -m pytest -q -p no:cacheprovider \
    tests/test_framering_stress.py tests/test_framering.py tests/test_framering_parity.py \
    tests/test_manager_framering.py tests/test_queue_semantics.py tests/test_policies.py \
    tests/test_refcounts.py tests/test_concurrency.py \
    tests/test_shm.py tests/test_shm_processes.py
echo "ASan build of bufmgr._ring and bufmgr._shm: Python suites passed"
