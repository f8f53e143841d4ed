#!/usr/bin/env bash
# Build PgBouncer 1.24 (Debian trixie's source package) against this machine's libraries, once, into a cache
# folder, and print the path of the binary. Debian bookworm ships 1.18, which does not track protocol-level
# prepared statements; Neon's pooler does (PgBouncer >= 1.21 with max_prepared_statements), so the pooler tests
# run against both.
#
#   scripts/build_pgbouncer.sh            -> prints .../pgbouncer-1.24/bin/pgbouncer
#
# A second run finds the binary and only prints its path.
set -euo pipefail

cache=${TASK_API_CACHE:-$HOME/.cache/task-api}
prefix="$cache/pgbouncer-1.24"
binary="$prefix/bin/pgbouncer"
if [ -x "$binary" ] && "$binary" --version 2>/dev/null | grep -q '^PgBouncer 1\.24'; then
    echo "$binary"
    exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)

# The -dev packages of bookworm are what the source needs (plus a compiler and dpkg-source to unpack it).
needed=()
for package in build-essential dpkg-dev pkg-config libevent-dev libssl-dev libc-ares-dev; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || needed+=("$package")
done
if [ ${#needed[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo -n)
    else
        echo "build_pgbouncer.sh: ${needed[*]} missing; install them (apt-get, as root) and run this again" >&2
        exit 1
    fi
    echo "build_pgbouncer.sh: installing ${needed[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${needed[@]}" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/task-api-pgbouncer-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$("$here/debian_source.sh" pgbouncer "$work" | tail -n1)
case "$(basename "$tree")" in
    pgbouncer-1.24*) ;;
    *) echo "build_pgbouncer.sh: expected PgBouncer 1.24 from trixie, got $tree" >&2; exit 1 ;;
esac
(
    cd "$tree"
    # Debian's tarball is the upstream release (configure included); no docs (pandoc) needed for the binary.
    ./configure --prefix="$prefix" --with-libevent --with-openssl --with-cares --without-pam --without-systemd >&2
    make -j"$(nproc 2>/dev/null || echo 2)" >&2
    mkdir -p "$prefix/bin"
    install -m 0755 pgbouncer "$binary.tmp"
    mv "$binary.tmp" "$binary"
)
"$binary" --version >&2
echo "$binary"
