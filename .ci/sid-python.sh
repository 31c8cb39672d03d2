#!/usr/bin/env bash
# .ci/sid-python.sh [VERSION...] - build bufmgr on CPython 3.14 and 3.15 and
# run the whole suite there (default: both versions).
#
# Debian 12 has no package for these versions and python.org is not
# reachable from CI, but Debian unstable (sid) ships both as binaries built
# against a newer glibc/OpenSSL. So, per version, the packages
#   pythonX.Y-minimal libpythonX.Y-stdlib libpythonX.Y-dev pythonX.Y-venv
# and their whole dependency closure (glibc included) are downloaded with a
# PRIVATE apt configuration (own sources.list / lists / cache, and
# Dir::State::Status=/dev/null so that apt resolves the closure as if nothing
# were installed; the system apt state is neither read nor changed), unpacked
# with `dpkg -x` into a private root OUTSIDE the clone, and the interpreter's
# ELF loader and RPATH are pointed into that root with patchelf:
#
#   $BUFMGR_SID_ROOT/<X.Y>/root/usr/bin/pythonX.Y   (default ~/.cache/bufmgr-sid)
#
# DT_RPATH (--force-rpath), not RUNPATH: RPATH also applies to the libraries
# the stdlib's own extension modules (_ssl, _sqlite3, ...) load. The root is
# reused on later runs (a marker file says it was completed and checked).
#
# Then, on a copy of this checkout: a venv (--without-pip; pip bootstrapped
# from the root's own pip wheel, the host's ensurepip wheel is too old for
# 3.14+), `pip install ".[test,numpy,plot]"` building the extension with the HOST
# gcc and -I of a directory that holds only the multiarch
# x86_64-linux-gnu/pythonX.Y/pyconfig.h (the root's whole /usr/include would
# bring sid's glibc headers, which clash with the host's), the check that the
# installed compiled core is the one imported, and the README's test command
#   pytest tests bench --benchmark-disable
# Extensions built against the host's older glibc load under sid's newer one
# (glibc symbols are forward compatible).
#
# Environment:
#   BUFMGR_SID_ROOT      where interpreters are kept (default ~/.cache/bufmgr-sid)
#   BUFMGR_SID_REFRESH=1 download the interpreter again even if one is cached
#   BUFMGR_SID_MIRROR    Debian mirror (default: the one in /etc/apt/sources*)
#   BUFMGR_SID_JOBS=1    one version after the other (default: side by side)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

SID_ROOT="${BUFMGR_SID_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/bufmgr-sid}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
ARCH_TRIPLET=x86_64-linux-gnu
VERSIONS=("$@")
[ "${#VERSIONS[@]}" -gt 0 ] || VERSIONS=(3.14 3.15)

t_script=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
say() { echo "== [sid] $*"; }
die() { echo "!! [sid] $*" >&2; exit 1; }

[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] || die "amd64 only (the root's loader is ld-linux-x86-64.so.2)"

work="$(mktemp -d "${TMPDIR:-/tmp}/bufmgr-sid.XXXXXX")"
trap 'rm -rf "$work"' EXIT

debian_mirror() {
    if [ -n "${BUFMGR_SID_MIRROR:-}" ]; then echo "$BUFMGR_SID_MIRROR"; return; fi
    local u
    u=$({
        grep -hE '^[[:space:]]*deb(-src)?[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -E 's/\[[^]]*\]//' | awk '{print $2}'
        grep -hiE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
            sed -E 's/^[[:space:]]*URIs:[[:space:]]*//I' | tr ' ' '\n'
    } | grep -E '/debian/?$' | grep -v security | head -n1 || true)
    echo "${u:-http://deb.debian.org/debian}"
}

host_tools() {
    local missing=() p
    for p in gcc libc6-dev patchelf; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "installing host tools: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# A usable interpreter: the right version, and the stdlib extension modules
# that need the root's shared libraries (ssl -> libssl, sqlite3, ctypes ->
# libffi, lzma/bz2/zlib) plus venv.
sid_ok() { # VERSION PYTHON
    [ -x "$2" ] && "$2" - "$1" <<'EOF' >/dev/null 2>&1
import sys
assert sys.version_info[:2] == tuple(map(int, sys.argv[1].split("."))), sys.version
import ssl, sqlite3, ctypes, zlib, bz2, lzma, venv, sysconfig  # noqa
assert not sysconfig.get_config_var("Py_GIL_DISABLED")
EOF
}

fetch_interpreter() { # VERSION DIR
    local ver="$1" dir="$2" t0 apt mirror
    t0=$(date +%s.%N)
    [ -r "$KEYRING" ] || die "$KEYRING missing (apt-get install debian-archive-keyring)"
    rm -rf "$dir"
    mkdir -p "$dir/root"
    apt="$work/apt-$ver"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    mirror="$(debian_mirror)"
    echo "deb [signed-by=$KEYRING] $mirror sid main" >"$apt/sources.list"
    local apt_opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=-"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
        -o "Dir::State::Status=/dev/null" -o "Debug::NoLocking=1"
        -o "APT::Sandbox::User=root" -o "Acquire::Languages=none")
    say "$ver: apt (private lists, empty status): deb $mirror sid main"
    apt-get "${apt_opts[@]}" -qq update
    apt-get "${apt_opts[@]}" -qq install --download-only -y --no-install-recommends \
        "python$ver-minimal" "libpython$ver-stdlib" "libpython$ver-dev" "python$ver-venv" >/dev/null
    local debs=("$apt"/cache/archives/*.deb) d
    [ -e "${debs[0]}" ] || die "apt downloaded nothing for python$ver"
    for d in "${debs[@]}"; do dpkg -x "$d" "$dir/root"; done
    local R="$dir/root" L="$dir/root/usr/lib/$ARCH_TRIPLET" py="$dir/root/usr/bin/python$ver"
    [ -x "$py" ] && [ -e "$L/ld-linux-x86-64.so.2" ] || die "python$ver or sid's loader missing from the unpacked packages"
    patchelf --set-interpreter "$L/ld-linux-x86-64.so.2" "$py"
    patchelf --remove-rpath "$py"
    patchelf --force-rpath --set-rpath "$L:$R/lib/$ARCH_TRIPLET" "$py"
    # Only the multiarch pyconfig.h, for the host gcc (see the header).
    mkdir -p "$dir/inc/$ARCH_TRIPLET"
    ln -sfn "$R/usr/include/$ARCH_TRIPLET/python$ver" "$dir/inc/$ARCH_TRIPLET/python$ver"
    [ -f "$dir/inc/$ARCH_TRIPLET/python$ver/pyconfig.h" ] || die "no multiarch pyconfig.h for $ver"
    sid_ok "$ver" "$py" || die "unpacked python$ver does not work: $("$py" -c 'import ssl' 2>&1 | tail -n1)"
    local pkgver
    pkgver=$(ls "$apt"/cache/archives/ | sed -nE "s/^python${ver}-minimal_([^_]+)_.*/\1/p" | head -n1)
    echo "python$ver-minimal $pkgver (${#debs[@]} packages) unpacked $(date -u +%FT%TZ)" >"$dir/.bufmgr-sid-ok"
    say "$ver: interpreter ready in $(elapsed "$t0")s ($(du -sh "$dir" | cut -f1), ${#debs[@]} packages)"
}

run_version() ( # VERSION; a subshell, so that its exports stay in it
    local ver="$1" dir="$SID_ROOT/$1" py t_ver
    t_ver=$(date +%s.%N)
    py="$dir/root/usr/bin/python$ver"
    (
        flock 9 # one download at a time; a second run waits, then reuses it
        if [ "${BUFMGR_SID_REFRESH:-0}" = 1 ] || [ ! -f "$dir/.bufmgr-sid-ok" ] || ! sid_ok "$ver" "$py"; then
            fetch_interpreter "$ver" "$dir"
        else
            say "$ver: reusing $py ($(cat "$dir/.bufmgr-sid-ok"))"
        fi
    ) 9>"$SID_ROOT/.lock-$ver"
    say "$ver: interpreter: $("$py" -VV)"

    # A copy of the checkout: nothing in-tree (bufmgr/_ring.c, build/, an
    # in-place .so of another interpreter) is raced or can shadow the install.
    local src="$work/src-$ver" venv="$work/venv-$ver"
    mkdir -p "$src"
    if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$repo" ls-files -z -co --exclude-standard | (cd "$repo" && tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$src"
    else
        tar -C "$repo" --exclude=.git --exclude='.venv*' --exclude=build --exclude='*.so' -cf - . | tar -xf - -C "$src"
    fi

    local t_pip whl
    t_pip=$(date +%s.%N)
    "$py" -m venv --without-pip "$venv"
    whl=$(ls "$dir"/root/usr/share/python-wheels/pip-*.whl 2>/dev/null | sort -V | tail -n1)
    [ -n "$whl" ] || die "no pip wheel in the $ver root"
    "$venv/bin/python" "$whl/pip" install -q pip 2>&1 | grep -v 'is ignored: it is neither a file nor a directory' >&2 || true
    "$venv/bin/pip" --version >/dev/null || die "pip bootstrap failed on $ver"
    # The README's extras. Dependencies as wheels only (numpy, matplotlib and
    # their compiled dependencies all ship cp314/cp315 wheels): a missing one
    # fails here in seconds instead of a long source build. The project itself
    # is still built from this source, with the host gcc.
    local pip_log="$work/pip-$ver.log"
    if ! (cd "$src" && CC=gcc CFLAGS="-I$dir/inc" PIP_ONLY_BINARY=:all: PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$venv/bin/pip" install -v ".[test,numpy,plot,trio]") >"$pip_log" 2>&1; then
        grep -v 'is ignored: it is neither a file nor a directory' "$pip_log" | tail -n 60
        die "pip install \".[test,numpy,plot,trio]\" failed on $ver"
    fi
    local cython_whl
    cython_whl=$(grep -io 'cython-[0-9][^ /]*\.whl' "$pip_log" | sort -u | head -n1 || true)
    say "$ver: pip install \".[test,numpy,plot,trio]\": $(elapsed "$t_pip")s (build backend used ${cython_whl:-an unknown Cython})"

    # Outside the checkout: the installed, compiled package is what imports.
    # PYTHONSAFEPATH (as in .ci/freethreaded.sh): children the suite starts
    # with `python -c` and cwd = the source copy must import the installed,
    # compiled package, not the uncompiled source one in the cwd.
    unset BUFMGR_NO_EXTENSIONS
    export PYTHONSAFEPATH=1
    (cd / && "$venv/bin/python" -c "
import sys, bufmgr
assert bufmgr.IMPLEMENTATION == 'c', bufmgr.IMPLEMENTATION
import bufmgr._ring as r
assert r.__file__.startswith(sys.prefix), r.__file__
print('   compiled core in use:', bufmgr.FrameQueue, bufmgr.FrameRing, 'from', r.__file__)
")

    local t_suite
    t_suite=$(date +%s.%N)
    say "$ver: pytest tests bench --benchmark-disable"
    (cd "$src" && timeout --kill-after=30 1200 "$venv/bin/pytest" tests bench --benchmark-disable -p no:cacheprovider)
    say "$ver: suite passed in $(elapsed "$t_suite")s; $ver total $(elapsed "$t_ver")s"
)

host_tools
mkdir -p "$SID_ROOT"
for v in "${VERSIONS[@]}"; do
    case "$v" in 3.1[4-9]) ;; *) die "unsupported version $v (3.14 or later)" ;; esac
done
if [ "${BUFMGR_SID_JOBS:-2}" -gt 1 ] && [ "${#VERSIONS[@]}" -gt 1 ]; then
    # The versions side by side: one suite keeps about a third of 2 cores
    # busy (its tests mostly wait on events, joins and deadlines), so two at
    # once take little longer than one. Each one's output is printed whole
    # when both are done.
    pids=() failed=()
    for v in "${VERSIONS[@]}"; do
        run_version "$v" >"$work/log-$v" 2>&1 &
        pids+=($!)
    done
    say "running ${VERSIONS[*]} side by side (BUFMGR_SID_JOBS=1: one after the other)"
    for i in "${!VERSIONS[@]}"; do
        wait "${pids[$i]}" || failed+=("${VERSIONS[$i]}")
    done
    for v in "${VERSIONS[@]}"; do
        echo "---- [sid] $v ----"
        cat "$work/log-$v"
    done
    [ "${#failed[@]}" -eq 0 ] || die "failed on CPython ${failed[*]} (output above)"
else
    for v in "${VERSIONS[@]}"; do run_version "$v"; done
fi
say "CPython ${VERSIONS[*]} passed in $(elapsed "$t_script")s"
