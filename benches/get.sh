#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds the release binaries, then runs the benchmark (benches/get.py).
set -eu
cd "$(dirname "$0")/.."
# One package per build: built together, cargo would unify their features and
# the agent measured would not be the agent shipped.
cargo build --release --locked --quiet -p cvm-attest
cargo build --release --locked --quiet -p refkbs
exec python3 benches/get.py
