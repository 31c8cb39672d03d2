#!/usr/bin/env bash
# .ci/freethreaded.sh - run the whole test suite on a free-threaded CPython.
#
# No Debian or PyPI package ships a free-threaded (PEP 703, "3.13t")
# interpreter, so this builds one from Debian trixie's python3.13 source
# package (the upstream orig tarball, verified by apt against the signed
# trixie Sources index) with ./configure --disable-gil, installs it OUTSIDE
# the clone and reuses it on later runs:
#
#   $BUFMGR_FT_ROOT/cpython-<version>-ft/       (default ~/.cache/bufmgr-ft)
#
# apt is used with a private sources.list / lists / cache directory, so the
# system apt configuration is neither read for deb-src nor changed. Only a
# missing build dependency is installed into the system (apt-get install).
#
# Then: a venv on that interpreter, `pip install ".[test,numpy,trio]"` from a copy of
# this checkout (Cython has no cp313t wheel and runs as pure Python), and
#   pytest tests -W error::RuntimeWarning -p no:cacheprovider
# (tests/test_freethreading.py asserts the GIL stays off once every bufmgr
# module is imported), then the thread-safe test files once more under
# pytest-run-parallel (4 threads per test) when that plugin installs.
#
# Environment:
#   BUFMGR_FT_ROOT      where interpreters are kept (default ~/.cache/bufmgr-ft)
#   BUFMGR_FT_PYTHON    use this free-threaded python instead of building one
#   BUFMGR_FT_REBUILD=1 build even if a working interpreter is cached
#   BUFMGR_FT_MIRROR    Debian mirror (default: the one in /etc/apt/sources*)
#   BUFMGR_FT_RUN_PARALLEL=0  skip the pytest-run-parallel pass
#   BUFMGR_FT_JOBS      make -j (default: nproc)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

FT_ROOT="${BUFMGR_FT_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/bufmgr-ft}"
JOBS="${BUFMGR_FT_JOBS:-$(nproc 2>/dev/null || echo 2)}"
DEBIAN_SUITE=trixie
SRC_PKG=python3.13
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

t_script=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
say() { echo "== [ft] $*"; }
die() { echo "!! [ft] $*" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/bufmgr-ft.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A usable free-threaded interpreter? (GIL disabled at build time, and the
# pieces a venv + pip + our tests need.)
ft_ok() {
    [ -x "$1" ] && "$1" - <<'EOF' >/dev/null 2>&1
import sys, sysconfig
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1
assert not sys._is_gil_enabled()
import ssl, zlib, bz2, lzma, sqlite3, ctypes, venv, ensurepip, test.support  # noqa
EOF
}

# ---- 1. find or build the interpreter -------------------------------------

find_cached() {
    local d
    for d in $(ls -1d "$FT_ROOT"/cpython-*-ft 2>/dev/null | sort -rV); do
        if [ -f "$d/.bufmgr-ft-ok" ] && ft_ok "$d/bin/python3t"; then
            echo "$d/bin/python3t"
            return 0
        fi
    done
    return 1
}

debian_mirror() {
    if [ -n "${BUFMGR_FT_MIRROR:-}" ]; then echo "$BUFMGR_FT_MIRROR"; return; fi
    local u
    u=$({
        grep -hE '^[[:space:]]*deb(-src)?[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -E 's/\[[^]]*\]//' | awk '{print $2}'
        grep -hiE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
            sed -E 's/^[[:space:]]*URIs:[[:space:]]*//I' | tr ' ' '\n'
    } | grep -E '/debian/?$' | grep -v security | head -n1 || true)
    echo "${u:-http://deb.debian.org/debian}"
}

install_build_deps() {
    local pkgs=(gcc make pkg-config xz-utils libc6-dev libssl-dev zlib1g-dev libffi-dev
        libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev uuid-dev)
    local missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing build dependencies: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

fetch_source() { # -> prints the path of the orig tarball
    local aptdir="$work/apt" mirror
    mirror="$(debian_mirror)"
    [ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install debian-archive-keyring)"
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$work/src"
    echo "deb-src [signed-by=$KEYRING] $mirror $DEBIAN_SUITE main" >"$aptdir/sources.list"
    local apt_opts=(-o "Dir::Etc::sourcelist=$aptdir/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
        -o "APT::Sandbox::User=root" -o "Acquire::Languages=none")
    say "apt (private lists): deb-src $mirror $DEBIAN_SUITE" >&2
    apt-get "${apt_opts[@]}" -qq update >&2
    (cd "$work/src" && apt-get "${apt_opts[@]}" -qq source --download-only "$SRC_PKG/$DEBIAN_SUITE" >&2)
    local orig
    orig=$(ls "$work/src/${SRC_PKG}"_*.orig.tar.* 2>/dev/null | head -n1)
    [ -n "$orig" ] || die "apt-get source did not fetch an orig tarball"
    echo "$orig"
}

build_interpreter() {
    install_build_deps
    local t0 orig ver prefix srcdir
    t0=$(date +%s.%N)
    orig="$(fetch_source)"
    ver="$(basename "$orig" | sed -E "s/^${SRC_PKG}_([^.]+\.[^.]+\.[^.]+)\.orig\..*/\1/")"
    prefix="$FT_ROOT/cpython-$ver-ft"
    say "building CPython $ver --disable-gil into $prefix (fetched in $(elapsed "$t0")s)"
    tar -xf "$orig" -C "$work"
    srcdir=$(ls -1d "$work"/Python-*/ | head -n1)
    rm -rf "$prefix"
    local log="$work/build.log"
    if ! (cd "$srcdir" && t1=$(date +%s.%N) &&
        ./configure --disable-gil --prefix="$prefix" --with-ensurepip=install >"$log" 2>&1 &&
        echo "   configure: $(elapsed "$t1")s" && t1=$(date +%s.%N) &&
        make -j"$JOBS" >>"$log" 2>&1 &&
        echo "   make -j$JOBS: $(elapsed "$t1")s" && t1=$(date +%s.%N) &&
        # bytecode for the stdlib minus its test package (which stays installed)
        make install COMPILEALL_OPTS="-j0 -x '(bad_coding|badsyntax|site-packages|/test/)'" >>"$log" 2>&1 &&
        echo "   make install: $(elapsed "$t1")s"); then
        tail -n 60 "$log"
        rm -rf "$prefix"
        die "CPython build failed (log above)"
    fi
    grep -A3 'following modules' "$log" || true
    ln -sf python3.13t "$prefix/bin/python3t"
    ft_ok "$prefix/bin/python3t" || { rm -rf "$prefix"; die "built interpreter is not a usable free-threaded python"; }
    echo "$ver built $(date -u +%FT%TZ) from $(basename "$orig")" >"$prefix/.bufmgr-ft-ok"
    say "interpreter built in $(elapsed "$t0")s (fetch + configure + make + install)"
}

mkdir -p "$FT_ROOT"
t_interp=$(date +%s.%N)
if [ -n "${BUFMGR_FT_PYTHON:-}" ]; then
    ft_ok "$BUFMGR_FT_PYTHON" || die "BUFMGR_FT_PYTHON=$BUFMGR_FT_PYTHON is not a usable free-threaded python"
    PY="$BUFMGR_FT_PYTHON"
else
    exec 9>"$FT_ROOT/.lock"
    flock 9 # one build at a time; a second run waits, then reuses it
    if [ "${BUFMGR_FT_REBUILD:-0}" != 1 ] && PY="$(find_cached)"; then
        say "reusing $PY"
    else
        build_interpreter
        PY="$(find_cached)" || die "no usable interpreter after the build"
    fi
    flock -u 9
fi
say "interpreter: $("$PY" -VV) (ready in $(elapsed "$t_interp")s)"

# ---- 2. venv + install from a copy of this checkout ------------------------
# A copy, so that the in-tree Cython/setuptools outputs (bufmgr/_ring.c,
# build/) of a concurrent .ci/run are not raced, and nothing stale in the
# clone (an in-place .so) can shadow the installed package.
src="$work/bufmgr-src"
mkdir -p "$src"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$repo" ls-files -z -co --exclude-standard | (cd "$repo" && tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$src"
else
    tar -C "$repo" --exclude=.git --exclude='.venv*' --exclude=build --exclude='*.so' -cf - . | tar -xf - -C "$src"
fi

t_pip=$(date +%s.%N)
venv="$work/venv"
"$PY" -m venv "$venv"
# Some test dependencies (e.g. recent hypothesis) have no cp313t wheel and
# their sdists need a Rust toolchain plus network: take the newest release
# that has a wheel (pure-Python ones are fine). The local project itself is
# still built from source; Cython comes as its py3-none-any (pure) wheel.
export PIP_ONLY_BINARY=:all: PIP_DISABLE_PIP_VERSION_CHECK=1
pip_log="$work/pip.log"
if ! (cd "$src" && "$venv/bin/pip" install -v ".[test,numpy,trio]") >"$pip_log" 2>&1; then
    grep -v 'is ignored: it is neither a file nor a directory' "$pip_log" | tail -n 60
    die "pip install \".[test,numpy,trio]\" failed on the free-threaded interpreter"
fi
cython_whl=$(grep -io 'cython-[0-9][^ /]*\.whl' "$pip_log" | sort -u | head -n1 || true)
say "pip install \".[test,numpy,trio]\": $(elapsed "$t_pip")s (build backend used ${cython_whl:-an unknown Cython}; the extension was compiled from source)"

# The suite must see the GIL off and the compiled FrameQueue. PYTHON_GIL
# would override the build's default; PYTHONSAFEPATH keeps `python -m
# bufmgr` subprocesses (tests/test_cli.py runs them with cwd = the source
# tree) from importing the uninstalled source package instead of the
# installed, compiled one.
unset PYTHON_GIL BUFMGR_NO_EXTENSIONS
export PYTHONSAFEPATH=1
(cd / && "$venv/bin/python" -W error::RuntimeWarning -c "
import sys, bufmgr
assert bufmgr.IMPLEMENTATION == 'c', bufmgr.IMPLEMENTATION
assert not sys._is_gil_enabled(), 'GIL enabled after import bufmgr'
print('   compiled FrameQueue in use, GIL disabled:', bufmgr.FrameQueue)
")

# ---- 3. the suite ------------------------------------------------------------
t_suite=$(date +%s.%N)
say "pytest tests -W error::RuntimeWarning -p no:cacheprovider"
(cd "$src" && timeout --kill-after=30 1500 "$venv/bin/pytest" tests -W error::RuntimeWarning -p no:cacheprovider)
suite_s=$(elapsed "$t_suite")
say "suite passed on the free-threaded build in ${suite_s}s"

# ---- 4. optional: the same tests from 4 threads at once ----------------------
# pytest-run-parallel runs every test body in N threads simultaneously. Only
# files whose tests keep their state local are listed: others share one
# fixture instance between the threads or swap process-global hooks
# (sys.unraisablehook, caplog), which fails for reasons unrelated to bufmgr.
par_note="skipped"
if [ "${BUFMGR_FT_RUN_PARALLEL:-1}" != 0 ]; then
    if "$venv/bin/pip" install -q pytest-run-parallel >/dev/null 2>&1; then
        t_par=$(date +%s.%N)
        say "pytest-run-parallel: 4 threads per test"
        (cd "$src" && timeout --kill-after=30 900 "$venv/bin/pytest" -p no:cacheprovider -q \
            -W error::RuntimeWarning --parallel-threads=4 \
            tests/test_queue_semantics.py tests/test_policies.py tests/test_errors.py \
            tests/test_concurrency.py)
        par_note="passed in $(elapsed "$t_par")s"
    else
        par_note="pytest-run-parallel not installable, skipped"
    fi
fi
say "run-parallel pass: $par_note"
say "free-threaded CI passed in $(elapsed "$t_script")s (suite ${suite_s}s)"
