#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes Source0 of rpm/cvm-attest.spec, cvm-attest-VERSION.tar.gz, with the
# top directory cvm-attest-VERSION/.
#
#   rpm/make-source.sh [-o OUTDIR] [--ref REF]
#
# --ref REF  `git archive` of a commit or tag (releases).
# Without it, the working tree as git sees it: tracked files and untracked ones
# that .gitignore does not exclude (what CI tests, uncommitted changes
# included).
set -euo pipefail

outdir=.
ref=
while (($#)); do
    case $1 in
        -o) outdir=$2; shift 2 ;;
        --ref) ref=$2; shift 2 ;;
        -h | --help) sed -n '3,/^set -e/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "usage: $0 [-o OUTDIR] [--ref REF]" >&2; exit 2 ;;
    esac
done
outdir=$(cd "$outdir" && pwd)
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
name=cvm-attest-$version
if [[ $ref ]]; then
    git archive --format=tar.gz --prefix="$name/" -o "$outdir/$name.tar.gz" "$ref"
else
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
        tar --null -T - --sort=name --owner=0 --group=0 --numeric-owner \
            --transform "s,^,$name/," -czf "$outdir/$name.tar.gz"
fi
echo "$outdir/$name.tar.gz"
