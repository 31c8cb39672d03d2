#!/usr/bin/env bash
# .ci/sdist.sh - what a user without a wheel for their platform gets.
# Builds the sdist (PEP 517, isolated build env), checks that it carries the
# C headers and the Cython sources, builds a wheel from the sdist alone, and
# installs that wheel into a fresh venv where a smoke test must find the
# compiled core and exercise it (outside any checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "== [sdist] $*"; }
die() { echo "!! [sdist] $*" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/bufmgr-sdist.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Build from a copy of the files git knows (tracked, or new and not ignored):
# a stale bufmgr.egg-info/SOURCES.txt left in the checkout by an earlier
# install would otherwise fill in for a missing MANIFEST.in entry.
mkdir "$work/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/src"
else
    tar --exclude=.git --exclude='.venv*' --exclude='*.egg-info' --exclude=build --exclude=dist \
        --exclude='*.so' -cf - . | tar -xf - -C "$work/src"
fi

python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q build
"$work/tools/bin/python" -m build --sdist --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; die "sdist build failed"; }
sdist="$(ls "$work"/dist/bufmgr-*.tar.gz)"
say "built $(basename "$sdist")"

tar tzf "$sdist" >"$work/contents"
for f in include/bufmgr/ring.h include/bufmgr/pool.h include/bufmgr/platform.h \
         bufmgr/_ring.pyx bufmgr/_cring.pxd bufmgr/_cpool.pxd bufmgr/_framering.pxi \
         bufmgr/_mgrcore.py bufmgr/_mgrcore.pxd bufmgr/_compat.pxi bufmgr/_pycompat.py bufmgr/_ring.pyi bufmgr/py.typed \
         bufmgr/_shm.pyx bufmgr/_cshm.pxd bufmgr/_shm.pyi include/bufmgr/shmring.h bufmgr/_deadline.pxi bufmgr/_aiolane.pxi \
         setup.py pyproject.toml tests/typing/check_queue.py tests/typing/check_manager.py \
         tests/conftest.py tests/c/ring_stress.c tests/c/run.sh; do
    grep -q "^bufmgr-[^/]*/$f\$" "$work/contents" || die "sdist lacks $f"
done
! grep -qE '\.so$|__pycache__|tests/c/build/' "$work/contents" || die "sdist carries build outputs"

# a wheel from the sdist alone (pip unpacks it in a temp dir: no checkout around)
"$work/tools/bin/pip" wheel -q --no-deps -w "$work/wheels" "$sdist" >"$work/wheel.log" 2>&1 \
    || { tail -40 "$work/wheel.log"; die "wheel from the sdist failed"; }
# the wheel: the compiled module and the sources, never Cython's generated C or HTML
python3 -m zipfile -l "$work"/wheels/bufmgr-*.whl | awk 'NR > 1 {print $1}' >"$work/wheel-contents"
for f in bufmgr/_ring.pyi bufmgr/py.typed bufmgr/_ring.pyx bufmgr/_compat.pxi; do
    grep -qx "$f" "$work/wheel-contents" || die "wheel lacks $f"
done
grep -qE '^bufmgr/_ring\..*(so|pyd)$' "$work/wheel-contents" || die "wheel lacks the compiled module"
! grep -qE '\.(c|html)$' "$work/wheel-contents" \
    || die "wheel carries generated files: $(grep -E '\.(c|html)$' "$work/wheel-contents" | tr '\n' ' ')"
say "wheel: $(wc -l <"$work/wheel-contents") files, no generated C/HTML"
python3 -m venv "$work/user"
"$work/user/bin/pip" install -q "$work"/wheels/bufmgr-*.whl
(cd "$work" && "$work/user/bin/python" - <<'PY'
import queue
import bufmgr
assert bufmgr.IMPLEMENTATION == "c", bufmgr.IMPLEMENTATION
from bufmgr import manager
assert manager.CORE_IMPLEMENTATION == "c", manager.CORE_IMPLEMENTATION  # bufmgr._mgrcore compiled
q = bufmgr.FrameQueue(2, overflow="drop_oldest")
for i in range(3):
    q.put(i)
assert [q.get_nowait(), q.get_nowait()] == [1, 2]
try:
    q.get_nowait()
except queue.Empty:
    pass
else:
    raise AssertionError("empty queue returned an item")
s = q.stats()
assert (s["puts"], s["gets"], s["dropped"]) == (3, 2, 1), s
with bufmgr.SharedFrameRing(2, 16) as ring:  # bufmgr._shm compiled and linked (Linux)
    ring.put(b"frame")
    with ring.get() as f:
        assert bytes(f) == b"frame", bytes(f)
print("wheel from the sdist works:", bufmgr.__file__)
PY
)
say "passed"
