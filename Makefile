# SPDX-License-Identifier: Apache-2.0
CARGO ?= cargo
INSTALL ?= install

# Install layout (GNU/FHS names; rpm/cvm-attest.spec passes the distribution's).
DESTDIR ?=
PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
MANDIR ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
DRACUTDIR ?= $(PREFIX)/lib/dracut/modules.d
DRACUTCONFDIR ?= $(PREFIX)/lib/dracut/dracut.conf.d
SYSCONFDIR ?= /etc
# The binaries `install` copies; it never builds (run `make` first). The
# agent runs its helpers (TPM, units) from LIBEXECDIR, compiled in by `make`:
# build and install with the same PREFIX/LIBEXECDIR.
BIN ?= target/release/cvm-attest
TPM_HELPER ?= $(dir $(BIN))cvm-attest-tpm
UNITS_HELPER ?= $(dir $(BIN))cvm-attest-units

.PHONY: all demo test bench lint fmt install uninstall

# The agent alone, as the RPM builds it: built with the test crates, cargo would
# unify their dependencies' features into it.
all:
	CVM_ATTEST_LIBEXECDIR=$(LIBEXECDIR) $(CARGO) build --release --locked

# The main job: the full attestation flow against the reference KBS, no TEE needed.
demo:
	sh tests/demo.sh

# Every test (unit, reference-KBS integration, recorded vectors, packaging).
test:
	$(CARGO) test --workspace --locked

# Wall time, peak RSS and binary size (prints figures; never part of `test`).
# get.sh last: it rebuilds the agent alone, so that target/release holds the
# agent as shipped, not the one `cargo bench` built with the test crates.
bench:
	$(CARGO) bench --locked --bench hcl_poll
	sh benches/get.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

# The binary, the real-root unit, the dracut module (with the initramfs unit,
# which only means something there) and its dracut.conf.d snippet, the man
# page, and the example configuration (0600, never over an existing one).
install:
	@for f in $(BIN) $(TPM_HELPER) $(UNITS_HELPER); do \
		test -x $$f || { echo "$$f is missing: run 'make' first" >&2; exit 1; }; done
	$(INSTALL) -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/cvm-attest
	$(INSTALL) -D -m 0755 $(TPM_HELPER) $(DESTDIR)$(LIBEXECDIR)/cvm-attest-tpm
	$(INSTALL) -D -m 0755 $(UNITS_HELPER) $(DESTDIR)$(LIBEXECDIR)/cvm-attest-units
	$(INSTALL) -D -m 0644 systemd/cvm-attest.service $(DESTDIR)$(UNITDIR)/cvm-attest.service
	$(INSTALL) -D -m 0644 systemd/cvm-attest-cleanup.service \
		$(DESTDIR)$(UNITDIR)/cvm-attest-cleanup.service
	$(INSTALL) -D -m 0644 systemd/cryptsetup.target.d/cvm-attest.conf \
		$(DESTDIR)$(UNITDIR)/cryptsetup.target.d/cvm-attest.conf
	for m in sev_guest tdx_guest; do \
		$(INSTALL) -D -m 0644 systemd/modprobe@$$m.service.d/cvm-attest.conf \
			$(DESTDIR)$(UNITDIR)/modprobe@$$m.service.d/cvm-attest.conf || exit 1; done
	$(INSTALL) -D -m 0755 dracut/91cvm-attest/module-setup.sh \
		$(DESTDIR)$(DRACUTDIR)/91cvm-attest/module-setup.sh
	sed -i 's|/usr/libexec/cvm-attest-|$(LIBEXECDIR)/cvm-attest-|g' \
		$(DESTDIR)$(DRACUTDIR)/91cvm-attest/module-setup.sh
	$(INSTALL) -D -m 0644 systemd/cvm-attest-initrd.service \
		$(DESTDIR)$(DRACUTDIR)/91cvm-attest/cvm-attest-initrd.service
	$(INSTALL) -D -m 0644 dracut/dracut.conf.d/91-cvm-attest.conf \
		$(DESTDIR)$(DRACUTCONFDIR)/91-cvm-attest.conf
	$(INSTALL) -D -m 0644 docs/cvm-attest.8 $(DESTDIR)$(MANDIR)/man8/cvm-attest.8
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/cvm-attest
	$(INSTALL) -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/cvm-attest/config.d
	test -e $(DESTDIR)$(SYSCONFDIR)/cvm-attest/config.toml || \
		$(INSTALL) -m 0600 etc/config.toml $(DESTDIR)$(SYSCONFDIR)/cvm-attest/config.toml

# Leaves /etc/cvm-attest alone: it is the administrator's.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/cvm-attest $(DESTDIR)$(LIBEXECDIR)/cvm-attest-tpm \
		$(DESTDIR)$(LIBEXECDIR)/cvm-attest-units \
		$(DESTDIR)$(UNITDIR)/cvm-attest.service \
		$(DESTDIR)$(UNITDIR)/cvm-attest-cleanup.service \
		$(DESTDIR)$(UNITDIR)/cryptsetup.target.d/cvm-attest.conf \
		$(DESTDIR)$(UNITDIR)/modprobe@sev_guest.service.d/cvm-attest.conf \
		$(DESTDIR)$(UNITDIR)/modprobe@tdx_guest.service.d/cvm-attest.conf \
		$(DESTDIR)$(DRACUTCONFDIR)/91-cvm-attest.conf $(DESTDIR)$(MANDIR)/man8/cvm-attest.8
	rm -rf $(DESTDIR)$(DRACUTDIR)/91cvm-attest
