#!/usr/bin/bash
# SPDX-License-Identifier: Apache-2.0
# dracut module for cvm-attest: attest to the Trustee KBS in the initramfs and
# deliver the configured secrets (LUKS keys in /run/cryptsetup-keys.d or root's
# keyring) before any volume is unlocked. /run and root's user keyring survive
# the switch to the real root.
#
# Installed as /usr/lib/dracut/modules.d/91cvm-attest/ by the cvm-attest-dracut
# package, beside cvm-attest-initrd.service (the unit lives here, not in the
# real root's unit directory: it only means something in the initramfs).
# The package enables the module with
# /usr/lib/dracut/dracut.conf.d/91-cvm-attest.conf; rebuild the initramfs
# (`dracut -f`) after installing it or after changing /etc/cvm-attest: the
# configuration and the KBS CA are copied into the image.

# Opt-in (afterburn, cryptpilot): the module needs the KBS configured and a
# network in the initramfs, so it is included only when asked for
# (add_dracutmodules+=" cvm-attest ", --add cvm-attest, or a module that
# depends on it), and never when the binary is missing.
check() {
    require_binaries cvm-attest /usr/libexec/cvm-attest-tpm || return 1
    return 255
}

# systemd: the unit; network: rd.neednet=1 and network-online.target (the
# network module picks NetworkManager on RHEL, systemd-networkd or
# network-legacy elsewhere); crypt: systemd-cryptsetup, the consumer of
# /run/cryptsetup-keys.d.
depends() {
    echo systemd network crypt
    return 0
}

# The TEE and TPM drivers. RHEL and Debian build the TPM core in; sev-guest,
# tdx-guest and the configfs-tsm provider (tsm, tsm_report in newer kernels)
# are modules. instmods without -c skips the names a kernel does not have.
installkernel() {
    hostonly='' instmods tpm_crb tpm_tis sev-guest tdx-guest configfs tsm tsm_report
}

# The last `ca = "…"` of the [kbs] table in config.toml and then the config.d
# drop-ins in lexical order: the precedence cvm-attest itself applies.
cvm_attest_pinned_ca() {
    local -a files=("$dracutsysrootdir/etc/cvm-attest/config.toml")
    local f
    for f in "$dracutsysrootdir"/etc/cvm-attest/config.d/*.toml; do
        [[ -f $f ]] && files+=("$f")
    done
    LC_ALL=C awk '
        /^[[:space:]]*\[/ {
            t = $0
            sub(/^[[:space:]]*\[+[[:space:]]*/, "", t)
            sub(/[[:space:]]*\].*$/, "", t)
            table = t
            next
        }
        table == "kbs" && /^[[:space:]]*ca[[:space:]]*=/ {
            v = $0
            sub(/^[^=]*=[[:space:]]*/, "", v)
            q = substr(v, 1, 1)
            if (q == "\"" || q == "\047") {
                v = substr(v, 2)
                sub(q ".*$", "", v)
                ca = v
            }
        }
        END { if (ca != "") print ca }
    ' "${files[@]}" 2> /dev/null
}

install() {
    local ca f
    local -a conf=()

    inst_multiple cvm-attest
    # The TPM helper, with tpm2-tss and libcrypto (dracut follows its ELF deps).
    # `make install` rewrites the helpers' paths to the LIBEXECDIR it uses.
    inst_binary /usr/libexec/cvm-attest-tpm
    # Not the units helper: in the initramfs the agent leaves the units it
    # would reload to the real root, whose units have not started yet.
    inst_simple "$moddir/cvm-attest-initrd.service" \
        "$systemdsystemunitdir/cvm-attest-initrd.service"
    # The unit starts after modprobe@sev_guest and modprobe@tdx_guest; our
    # drop-ins skip each on other hardware. The template itself: dracut's
    # systemd module installs it only from dracut 058 on (RHEL 9 has 057).
    inst_multiple -o "$systemdsystemunitdir"/modprobe@.service \
        "$systemdsystemunitdir"/modprobe@sev_guest.service.d/cvm-attest.conf \
        "$systemdsystemunitdir"/modprobe@tdx_guest.service.d/cvm-attest.conf

    # Configuration: no secrets in it (the initramfs on /boot is readable by
    # anyone with the disk), only where the KBS is and what to fetch.
    for f in "$dracutsysrootdir"/etc/cvm-attest/config.toml \
        "$dracutsysrootdir"/etc/cvm-attest/config.d/*.toml; do
        [[ -f $f ]] && conf+=("${f#"$dracutsysrootdir"}")
    done
    ((${#conf[@]})) && inst_multiple -o "${conf[@]}"

    # The KBS CA: the one the configuration pins, or else the system roots
    # (rustls-native-certs reads the bundle the way OpenSSL would find it).
    ca=$(cvm_attest_pinned_ca)
    if [[ $ca ]]; then
        if [[ -f $dracutsysrootdir$ca ]]; then
            inst_simple "$ca"
        else
            derror "cvm-attest: the KBS CA $ca named in /etc/cvm-attest is missing"
        fi
    else
        inst_multiple -o /etc/pki/tls/certs/ca-bundle.crt \
            /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem \
            /etc/ssl/certs/ca-certificates.crt
    fi

    # The helper links libtss2-tctildr, which dlopen()s the TCTI at run time:
    # dracut's ELF walk cannot see it (clevis-pin-tpm2 does the same).
    inst_libdir_file "libtss2-tctildr.so*" "libtss2-tcti-device.so*"

    # The KBS is remote: bring the network up in the initramfs.
    mkdir -p "$initdir/etc/cmdline.d"
    echo "rd.neednet=1" > "$initdir/etc/cmdline.d/91cvm-attest.conf"

    # Feed the LUKS volumes (ordered before cryptsetup-pre.target by the unit)
    # and run in every initramfs boot, encrypted root or not.
    $SYSTEMCTL -q --root "$initdir" add-wants cryptsetup.target cvm-attest-initrd.service
    $SYSTEMCTL -q --root "$initdir" add-wants initrd.target cvm-attest-initrd.service
}
