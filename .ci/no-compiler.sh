#!/usr/bin/env bash
# .ci/no-compiler.sh - installing bufmgr where no C compiler works (CC=/bin/false).
# 1. The build must fail, and say what to do: name BUFMGR_NO_EXTENSIONS=1.
# 2. With BUFMGR_NO_EXTENSIONS=1 it must build a pure wheel (no compiled
#    module, no generated C) that installs and runs as the pure twin.
# Builds from a copy of the files git knows, in a temp dir, with pip's
# isolated build env (setuptools and Cython from the package index).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "== [no-compiler] $*"; }
die() { echo "!! [no-compiler] $*" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/bufmgr-nocc.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/src"
python3 -m venv "$work/tools"

if CC=/bin/false "$work/tools/bin/pip" wheel --no-deps -w "$work/wheels" "$work/src" >"$work/fail.log" 2>&1; then
    die "a build with CC=/bin/false succeeded: it cannot have compiled anything"
fi
grep -q "BUFMGR_NO_EXTENSIONS=1" "$work/fail.log" \
    || { tail -40 "$work/fail.log"; die "the failed build does not name BUFMGR_NO_EXTENSIONS=1"; }
say "without a compiler the build fails with:"
grep -A3 "bufmgr: could not build" "$work/fail.log" | head -6 | sed 's/^/    /'

BUFMGR_NO_EXTENSIONS=1 CC=/bin/false "$work/tools/bin/pip" wheel --no-deps -w "$work/wheels" "$work/src" \
    >"$work/pure.log" 2>&1 || { tail -40 "$work/pure.log"; die "BUFMGR_NO_EXTENSIONS=1 build failed"; }
wheel="$(ls "$work"/wheels/bufmgr-*.whl)"
case "$wheel" in *-py3-none-any.whl) ;; *) die "pure build is not a py3-none-any wheel: $wheel" ;; esac
! python3 -m zipfile -l "$wheel" | grep -qE '\.(so|pyd|c|html) ' || die "pure wheel carries compiled/generated files"
python3 -m venv "$work/user"
"$work/user/bin/pip" install -q "$wheel"
(cd "$work" && "$work/user/bin/python" -c '
import bufmgr
assert bufmgr.IMPLEMENTATION == "python", bufmgr.IMPLEMENTATION
q = bufmgr.FrameQueue(2, "drop_oldest")
assert [q.put(i) for i in range(3)] == [None, None, 0]
print("pure wheel works:", bufmgr.FrameQueue)
')
say "passed"
