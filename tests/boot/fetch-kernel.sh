#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Fetches Debian's current stock kernel for tests/boot.rs into DIR/kernel
# (extracted, modules indexed), without installing it: no initramfs-tools,
# nothing written to /boot. Then: export CVM_ATTEST_BOOT_KERNEL=DIR/kernel.
# Needs apt (Debian's archive); about 5 s and 405 MB.
set -eu
dir=${1:?usage: fetch-kernel.sh DIR}
mkdir -p "$dir"
cd "$dir"
if [ -d kernel/boot ]; then
    exit 0
fi
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
# apt warns that its sandbox user cannot write here; the download is a plain .deb.
apt-get download "$pkg"
rm -rf kernel.tmp
dpkg -x "$pkg"_*.deb kernel.tmp
rm -f "$pkg"_*.deb
depmod -b kernel.tmp "$(ls kernel.tmp/lib/modules)"
mv kernel.tmp kernel
