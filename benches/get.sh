#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds the release binaries, then runs the benchmark (benches/get.py).
set -eu
cd "$(dirname "$0")/.."
cargo build --release --locked --quiet -p cvm-attest -p refkbs
exec python3 benches/get.py
