#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Boots a QEMU guest whose LUKS2 root is unlocked by cvm-attest in the
# initramfs, with a key from the reference KBS. Run by tests/boot.rs, which
# starts the KBS on 127.0.0.1 and passes (all required):
#   WORK        an empty scratch directory
#   KERNEL_DIR  an extracted Debian kernel package (boot/vmlinuz-*, lib/modules/*)
#   AGENT HELPER  the cvm-attest and cvm-attest-tpm binaries to install
#   KBS_PORT    the KBS's port on 127.0.0.1
#   KEY         the file holding the LUKS key (the KBS serves the same bytes
#               as default/luks/cvmroot)
#   TEE         what the initramfs configuration names as [tee] type; with
#               "tpm" the guest gets a TPM 2.0 (CRB) backed by a swtpm of
#               this run, which the agent reaches through its TPM helper
# Prints the guest's console; the caller asserts on it.
#
# The guest's only network is QEMU's user-mode stack with restrict=on: it
# reaches nothing but 10.0.2.100:8080, which QEMU forwards (one busybox nc per
# connection) to the KBS on the host's loopback. Direct kernel boot under TCG
# (this machine kind's KVM runs only PVM kernels, see docs), the root disk a
# snapshot, the whole run under a host timeout.
set -eu
: "${WORK:?}" "${KERNEL_DIR:?}" "${AGENT:?}" "${HELPER:?}" "${KBS_PORT:?}" "${KEY:?}" "${TEE:?}"
repo=$(cd "$(dirname "$0")/../.." && pwd)
kver=$(ls "$KERNEL_DIR/lib/modules")
cd "$WORK"

# 1. The installed tree, with a configuration for this guest.
make -s -C "$repo" install DESTDIR="$WORK/stage" BIN="$AGENT" TPM_HELPER="$HELPER"
# The test build is unoptimized and carries debug info: strip the copies.
strip "$WORK/stage/usr/bin/cvm-attest" "$WORK/stage/usr/libexec/cvm-attest-tpm"
cat > "$WORK/stage/etc/cvm-attest/config.d/10-boot-test.toml" <<EOF
[kbs]
url = "http://10.0.2.100:8080"
insecure-http = true
timeout = 120
[tee]
type = "$TEE"
[[secret]]
name = "root-luks"
resource = "default/luks/cvmroot"
# The real root's consumer: the initramfs run must leave it alone.
restart = ["cvm-attest-boot-consumer.service"]
  [[secret.cryptsetup]]
  volume = "cvmroot"
EOF

# A test-only dracut module: the guest is no CVM, so the drop-in the unit
# describes lifts ConditionSecurity=cvm (the configuration names the sample TEE).
test_module="$WORK/stage/usr/lib/dracut/modules.d/99cvm-attest-boot-test"
mkdir -p "$test_module"
cat > "$test_module/module-setup.sh" <<'EOF'
#!/bin/bash
check() { return 255; }
depends() { echo cvm-attest; }
install() {
    local d="$initdir/etc/systemd/system/cvm-attest-initrd.service.d"
    mkdir -p "$d"
    printf '[Unit]\nConditionSecurity=\n' > "$d/boot-test.conf"
}
EOF
chmod 0755 "$test_module/module-setup.sh"

# 2. The initramfs, built from the installed tree (tests/dracut-staged.sh).
"$repo/tests/dracut-staged.sh" "$WORK/stage" "$WORK" --quiet \
    --kver "$kver" --kmoddir "$KERNEL_DIR/lib/modules/$kver" \
    --modules 'systemd systemd-initrd dracut-systemd systemd-networkd crypt dm rootfs-block udev-rules base fs-lib cvm-attest cvm-attest-boot-test' \
    --drivers 'virtio_pci virtio_blk virtio_net dm_crypt ext4' --filesystems ext4 \
    "$WORK/initramfs.img" > dracut.log 2>&1 || { cat dracut.log; exit 1; }

# 3. The root: busybox, an os-release (switch-root wants one), a marker, and
# an init that reports and powers off.
mkdir -p rootfs/bin rootfs/sbin rootfs/etc rootfs/proc rootfs/sys rootfs/dev rootfs/run
cp /bin/busybox rootfs/bin/busybox
for tool in sh mount cat ls poweroff sleep; do ln -s busybox "rootfs/bin/$tool"; done
printf 'ID=cvmtest\nNAME="cvm-attest boot test"\n' > rootfs/etc/os-release
marker=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$marker" > rootfs/etc/cvm-marker
echo "$marker" > expected-marker
cat > rootfs/sbin/init <<'EOF'
#!/bin/sh
mount -t proc proc /proc
# /run is the initramfs's, moved here by switch-root: what it left behind.
keys=$(ls -A /run/cryptsetup-keys.d 2>&1)
echo "CVMTEST-RESULT marker=$(cat /etc/cvm-marker) keys=[$keys] root=[$(grep ' / ' /proc/mounts)]" > /dev/console
poweroff -f
EOF
chmod 0755 rootfs/sbin/init
truncate -s 64M disk.img
mkfs.ext4 -q -F -L cvmroot -d rootfs disk.img 32M
cryptsetup reencrypt --encrypt --type luks2 --batch-mode --reduce-device-size 32M \
    --key-file "$KEY" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 disk.img
uuid=$(cryptsetup luksUUID disk.img)

# 4. Boot, with a software TPM when the TEE is the TPM.
tpm_args=()
if [ "$TEE" = tpm ]; then
    mkdir -p "$WORK/tpm"
    swtpm socket --tpm2 --tpmstate "dir=$WORK/tpm" --ctrl "type=unixio,path=$WORK/swtpm.sock" \
        --terminate --log "file=$WORK/swtpm.log,level=1" &
    swtpm_pid=$!
    trap 'kill $swtpm_pid 2>/dev/null || true' EXIT
    for _ in $(seq 100); do [ -S "$WORK/swtpm.sock" ] && break; sleep 0.05; done
    tpm_args=(-chardev "socket,id=chrtpm,path=$WORK/swtpm.sock"
        -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-crb,tpmdev=tpm0)
fi
append="console=ttyS0 root=/dev/mapper/cvmroot rootfstype=ext4 ro rd.luks.name=$uuid=cvmroot"
append="$append ip=10.0.2.15::10.0.2.2:255.255.255.0:cvmguest:eth0:off net.ifnames=0"
append="$append rd.luks.options=headless=true ipv6.disable=1 rd.shell=0 rd.emergency=poweroff panic=1"
append="$append systemd.journald.forward_to_console=1"
status=0
timeout --kill-after=5 300 qemu-system-x86_64 \
    -machine q35 -accel tcg,thread=multi -cpu max -smp 2 -m 1024 \
    -nodefaults -no-user-config -display none -no-reboot \
    -serial "file:$WORK/console.log" \
    -kernel "$KERNEL_DIR/boot/vmlinuz-$kver" -initrd initramfs.img -append "$append" \
    -drive file=disk.img,if=virtio,format=raw,snapshot=on \
    -netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:8080-cmd:/bin/busybox nc 127.0.0.1 $KBS_PORT" \
    -device virtio-net-pci,netdev=n0 "${tpm_args[@]}" || status=$?
echo "qemu exit status $status"
cat console.log
