#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes Source1 of rpm/cvm-attest.spec, cvm-attest-VERSION-vendor.tar.xz: every
# crate of Cargo.lock, vendored with `cargo vendor --locked --versioned-dirs`,
# so that rpmbuild builds offline (`cargo build --release --locked --offline`).
#
#   rpm/make-vendor.sh [-o OUTDIR] [--offline]
#
# -o       where the tarball goes (default: the current directory).
# --offline  take the crates from cargo's local cache only (as a CI machine that
#          has already run the tests can).
# XZ_OPT   passed to xz (default -T0).
#
# The tarball's top level holds:
#   vendor/                 the crates; crates that no Linux target (x86_64,
#                           aarch64) builds are stubs (Cargo.toml, an empty
#                           src/lib.rs, no file checksums), as
#                           cargo-vendor-filterer makes them: windows-sys and
#                           winapi alone are 250 MB;
#   LICENSE.dependencies    "crate version: SPDX license" of every crate linked
#                           into the binary (build tools and proc-macros left
#                           out, as %cargo_license does);
#   cargo-vendor.txt        "crate version" of every vendored crate;
#   licenses/CRATE-VERSION/ the license files of the crates linked into the
#                           binary.
# The spec unpacks it into the source tree (%setup -a1) and points cargo at
# vendor/ with this .cargo/config.toml (RHEL's %cargo_prep -v vendor writes
# the same):
#   [source.crates-io]
#   replace-with = "vendored-sources"
#   [source.vendored-sources]
#   directory = "vendor"
set -euo pipefail

outdir=.
offline=()
declare -A first
while (($#)); do
    case $1 in
        -o) outdir=$2; shift 2 ;;
        --offline) offline=(--offline); shift ;;
        -h | --help) sed -n '3,/^set -e/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "usage: $0 [-o OUTDIR] [--offline]" >&2; exit 2 ;;
    esac
done
outdir=$(cd "$outdir" && pwd)
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
name=cvm-attest-$version-vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo vendor --locked "${offline[@]}" --versioned-dirs --quiet "$work/vendor" > /dev/null

targets=(--target x86_64-unknown-linux-gnu --target aarch64-unknown-linux-gnu)
tree() { cargo tree --locked "${offline[@]}" "${targets[@]}" --prefix none "$@"; }

# Every crate some Linux build of the workspace compiles (tests included).
tree --workspace --edges normal,build,dev --format '{p}' |
    sed -n 's/^\([^ ]*\) v\([^ ]*\).*$/\1-\2/p' | sort -u > "$work/needed"

for dir in "$work"/vendor/*/; do
    crate=$(basename "$dir")
    if grep -qxF "$crate" "$work/needed"; then
        continue
    fi
    sum=$(sed -n 's/.*"package":"\([0-9a-f]*\)".*/\1/p' "$dir/.cargo-checksum.json")
    find "$dir" -mindepth 1 -maxdepth 1 ! -name Cargo.toml -exec rm -rf {} +
    mkdir "$dir/src"
    : > "$dir/src/lib.rs"
    printf '{"files":{},"package":"%s"}\n' "$sum" > "$dir/.cargo-checksum.json"
done

# What the binary links, with its licenses.
tree -p cvm-attest --edges normal,no-proc-macro --format '{p}|{l}' | sed 's/ (\*)$//' |
    sed -n 's/^\([^ ]*\) v\([^ ]*\)|\(.*\)$/\1 \2: \3/p' | grep -v '^cvm-attest ' |
    sort -u > "$work/LICENSE.dependencies"
(cd "$work/vendor" && ls) | sed 's/-\([0-9][^-]*\(-[^-]*\)\{0,1\}\)$/ \1/' > "$work/cargo-vendor.txt"
while read -r crate ver _; do
    src=$work/vendor/$crate-${ver%:}
    dst=$work/licenses/$crate-${ver%:}
    mkdir -p "$dst"
    find "$src" -maxdepth 1 -type f \( -iname 'LICEN[CS]E*' -o -iname 'COPYING*' \
        -o -iname 'NOTICE*' -o -iname 'UNLICENSE*' -o -iname 'COPYRIGHT*' \) \
        -exec cp -p {} "$dst/" \;
    rmdir --ignore-fail-on-non-empty "$dst"
done < "$work/LICENSE.dependencies"
# Most texts are the same few: keep each once, link the copies to it.
(cd "$work/licenses" && find . -type f -printf '%P\n' | sort | xargs -r sha256sum) |
    while read -r sum file; do
        if [[ -z ${first[$sum]:-} ]]; then
            first[$sum]=$file
        else
            ln -sfn "../${first[$sum]}" "$work/licenses/$file"
        fi
    done

# tar -J passes XZ_OPT on to xz: -T0 uses every core; CI may add -1 for speed.
export XZ_OPT=${XZ_OPT:--T0}
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    -cJf "$outdir/$name.tar.xz" vendor LICENSE.dependencies cargo-vendor.txt licenses
echo "$outdir/$name.tar.xz"
