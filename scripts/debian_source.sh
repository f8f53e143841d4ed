#!/usr/bin/env bash
# Download (not build) the source package NAME of Debian trixie into DEST and print the path of its unpacked tree.
#
#   scripts/debian_source.sh NAME DEST
#
# Used by the scripts that build newer tools than Debian bookworm ships (PgBouncer 1.24, CPython 3.13). The
# machine's own apt configuration is left untouched: a private sources list and list cache live under DEST. The
# mirror is the one this machine's apt already uses, so no host name is written here.
set -euo pipefail

name=${1:?usage: debian_source.sh NAME DEST}
dest=${2:?usage: debian_source.sh NAME DEST}
mkdir -p "$dest/apt/lists/partial"
dest=$(cd "$dest" && pwd)

mirror=$(
    { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" {print $2}'
      cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" {print $2}'; } |
        grep -E '/debian/?$' | head -n1 || true
)
if [ -z "$mirror" ]; then
    echo "debian_source.sh: no Debian mirror found in /etc/apt (this needs a Debian machine)" >&2
    exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb-src [signed-by=$keyring] ${mirror%/} trixie main" >"$dest/apt/sources.list"

apt_opts=(
    -o "Dir::Etc::sourcelist=$dest/apt/sources.list"
    -o "Dir::Etc::sourceparts=/dev/null"
    -o "Dir::State::Lists=$dest/apt/lists"
    -o "APT::Get::List-Cleanup=0"
)
apt-get "${apt_opts[@]}" -qq update >&2
# apt-get source writes into the current folder; a non-root run needs no privileges for it.
(cd "$dest" && apt-get "${apt_opts[@]}" -qq source "$name" >&2)
# The unpacked tree is NAME-VERSION/ (dpkg-source is in dpkg-dev; without it only the tarballs are there).
tree=$(find "$dest" -maxdepth 1 -type d -name "$name-[0-9]*" | sort | tail -n1)
if [ -z "$tree" ]; then
    tree=$dest
fi
echo "$tree"
