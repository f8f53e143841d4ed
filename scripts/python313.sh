#!/usr/bin/env bash
# Print the path of a CPython 3.13 interpreter for the project, building it first when there is none.
#
#   scripts/python313.sh            # prints e.g. ~/.cache/task-api/python3.13/bin/python3.13
#   scripts/python313.sh --no-build # the same, or exit status 3 when it would have to build
#
# Which interpreter, in this order:
#   1. $PYTHON313, when set: the user's choice, used as given (it must be 3.13).
#   2. The cached build, ${TASK_API_CACHE:-$HOME/.cache/task-api}/python3.13 (made by step 3 of an earlier run).
#   3. A build from Debian trixie's `python3.13` source package (scripts/debian_source.sh): the upstream tarball
#      inside it, configure + make + make install into the cache. ~4 min on 2 free cores, without PGO (PGO
#      runs the whole CPython test suite: far too long for CI, and the tests need no faster interpreter).
#
# A `python3.13` on PATH is deliberately not picked up: which patch release and which build options it has is
# the machine's accident. The build is the same on every machine that runs this script, so "passes on 3.13"
# means the same thing in CI and on a laptop. Set PYTHON313=$(command -v python3.13) to use a system one.
set -euo pipefail

cache=${TASK_API_CACHE:-$HOME/.cache/task-api}
prefix=$cache/python3.13
interpreter=$prefix/bin/python3.13

is_313() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }

if [ -n "${PYTHON313:-}" ]; then
    if ! is_313 "$PYTHON313"; then
        echo "python313.sh: PYTHON313=$PYTHON313 is not a CPython 3.13 interpreter" >&2
        exit 1
    fi
    command -v "$PYTHON313"
    exit 0
fi

# The build installs this file last, so its presence means a complete install.
if [ -f "$prefix/.complete" ] && is_313 "$interpreter"; then
    echo "$interpreter"
    exit 0
fi

if [ "${1:-}" = --no-build ]; then
    exit 3
fi

# The -dev libraries the standard modules the app and its tests use need (ssl, ctypes for cffi, zlib, bz2,
# lzma, sqlite3, readline, uuid). Without them configure quietly leaves the module out.
needed=(libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev uuid-dev
        pkg-config build-essential)
missing=()
for package in "${needed[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); else sudo=(false); fi
    echo "python313.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/python313-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
tree=$("$here/debian_source.sh" python3.13 "$work/src")
# Debian's source package carries the upstream tarball (python3.13_3.13.x.orig.tar.xz); build that, not
# Debian's patched tree, which expects Debian's own multiarch layout.
tarball=$(find "$work/src" -maxdepth 1 -name 'python3.13_*.orig.tar.xz' | head -n1)
if [ -z "$tarball" ]; then
    echo "python313.sh: no upstream tarball in Debian's source package (got $tree)" >&2
    exit 1
fi
mkdir "$work/build"
tar -xf "$tarball" -C "$work/build" --strip-components=1

rm -rf "$prefix"
jobs=$(nproc 2>/dev/null || echo 2)
echo "python313.sh: building $(basename "$tarball") into $prefix (make -j$jobs)" >&2
(
    cd "$work/build"
    # --with-ensurepip: `python -m venv` needs pip. --disable-test-modules: CPython's own test helpers.
    ./configure --prefix="$prefix" --with-ensurepip=install --disable-test-modules >"$work/configure.log" 2>&1 ||
        { tail -n 40 "$work/configure.log" >&2; exit 1; }
    make -j"$jobs" >"$work/make.log" 2>&1 || { tail -n 60 "$work/make.log" >&2; exit 1; }
    make install >"$work/install.log" 2>&1 || { tail -n 40 "$work/install.log" >&2; exit 1; }
)
# A module configure could not build is a missing -dev library: fail now rather than in a test later.
"$interpreter" -c 'import ssl, ctypes, zlib, bz2, lzma, sqlite3, readline, uuid, _uuid' ||
    { echo "python313.sh: the build lacks a standard module (see above)" >&2; exit 1; }
touch "$prefix/.complete"
echo "$interpreter"
