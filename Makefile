# SPDX-License-Identifier: Apache-2.0
CARGO ?= cargo

.PHONY: all demo test bench lint fmt

all:
	$(CARGO) build --release --locked --workspace

# The main job: the full attestation flow against the reference KBS, no TEE needed.
demo:
	sh tests/demo.sh

# Every test (unit, reference-KBS integration, recorded vectors).
test:
	$(CARGO) test --workspace --locked

# Wall time, peak RSS and binary size (prints figures; never part of `test`).
bench:
	sh benches/get.sh
	$(CARGO) bench --locked --bench hcl_poll

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all
