// SPDX-License-Identifier: Apache-2.0
//! The boot itself: a QEMU guest (TCG, direct kernel boot of Debian's stock
//! kernel) whose LUKS2 root is unlocked by cvm-attest in a dracut initramfs
//! built with our module, with the key the reference KBS releases to the
//! sample TEE. `tests/boot/boot.sh` builds the world (installed tree,
//! initramfs, busybox root on a LUKS2 disk) and boots it; the guest reaches
//! only the KBS on the host's loopback (QEMU user networking, restricted,
//! one forwarded port).
//!
//! - The key arrives, systemd-cryptsetup unlocks the root on its own
//!   (`/run/cryptsetup-keys.d/cvmroot.key`), the unit wipes the key file when
//!   it stops, switch-root happens and the root prints the marker it was
//!   built with and the key files /run still holds (none). The unit the configuration names
//!   for a restart is the real root's: the initramfs run leaves it.
//! - The KBS policy denies the key: the agent says so on the console, the
//!   root stays locked, and the guest powers itself off (headless, no
//!   emergency shell) well before the host's timeout.
//! - With a TPM 2.0 in the guest (swtpm behind QEMU's CRB device) and
//!   `tee = "tpm"`: the TPM helper runs under the initramfs unit's
//!   hardening, creates an AK under the EK, and the KBS accepts the quote.
//!
//! It needs root, QEMU, swtpm, cryptsetup, dracut, busybox-static and a kernel:
//! `CVM_ATTEST_BOOT_KERNEL` names an extracted `linux-image-*` package
//! (`.ci/run` fetches one with `tests/boot/fetch-kernel.sh`). Without them it
//! prints `SKIPPED` and returns. About 25 s per boot on a 2-core machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use refkbs::{Config, Policy, RefKbs, Rule};

use crate::util::TempDir;

const KERNEL_ENV: &str = "CVM_ATTEST_BOOT_KERNEL";

fn ready(name: &str) -> Option<PathBuf> {
    let tools = [
        "qemu-system-x86_64",
        "cryptsetup",
        "mkfs.ext4",
        "dracut",
        "make",
        "strip",
        "unshare",
        "timeout",
        "zstd",
        "swtpm",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing = tools
        .iter()
        .find(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let kernel = std::env::var_os(KERNEL_ENV).map(PathBuf::from);
    let why = if !root {
        Some("needs root".to_owned())
    } else if let Some(tool) = missing {
        Some(format!("needs {tool}"))
    } else if !Path::new("/bin/busybox").is_file() {
        Some("needs busybox-static".to_owned())
    } else if !kernel.as_ref().is_some_and(|k| k.join("boot").is_dir()) {
        Some(format!("needs {KERNEL_ENV} (tests/boot/fetch-kernel.sh)"))
    } else {
        None
    };
    match why {
        Some(why) => {
            eprintln!("SKIPPED {name}: {why}");
            None
        }
        None => kernel,
    }
}

/// Serves `key` as `default/luks/cvmroot`, boots with `tee` configured,
/// returns boot.sh's output (its own lines, then the guest's console) and
/// the marker the root holds.
fn boot(name: &str, kernel: &Path, tee: &str, policy: Policy) -> (Output, String) {
    let dir = TempDir::new(name);
    let key: Vec<u8> = (0..64u32).map(|i| (i * 37 + 11) as u8 ^ 0x5a).collect();
    let resources = dir.path().join("resources");
    std::fs::create_dir_all(resources.join("default/luks")).unwrap();
    std::fs::write(resources.join("default/luks/cvmroot"), &key).unwrap();
    let key_file = dir.path().join("luks.key");
    std::fs::write(&key_file, &key).unwrap();
    let mut config = Config::new(&resources);
    config.quiet = true;
    config.policy = policy;
    let kbs = RefKbs::start(config).expect("start the reference KBS");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/boot/boot.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("WORK", &work)
        .env("KERNEL_DIR", kernel)
        .env("AGENT", env!("CARGO_BIN_EXE_cvm-attest"))
        .env("HELPER", env!("CARGO_BIN_EXE_cvm-attest-tpm"))
        .env("KBS_PORT", kbs.addr().port().to_string())
        .env("KEY", &key_file)
        .env("TEE", tee)
        .output()
        .unwrap();
    let marker = std::fs::read_to_string(work.join("expected-marker")).unwrap_or_default();
    (out, marker.trim().to_owned())
}

fn console(out: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_luks_root_unlocks_at_boot_with_the_key_from_the_kbs() {
    let name = "a_luks_root_unlocks_at_boot_with_the_key_from_the_kbs";
    let Some(kernel) = ready(name) else {
        return;
    };
    let (out, marker) = boot("boot-ok", &kernel, "sample", Policy::allow_all());
    let log = console(&out);
    assert!(out.status.success(), "{log}");
    assert!(!marker.is_empty(), "{log}");
    for line in [
        "cvm-attest[".to_owned(),
        "attest: the KBS accepted the sample evidence".to_owned(),
        "wrote /run/cryptsetup-keys.d/cvmroot.key".to_owned(),
        // The configuration names a unit of the real root: not acted on here.
        "in the initramfs: 1 unit action(s) left to the real root".to_owned(),
        "Finished systemd-cryptsetup@cvmroot.service".to_owned(),
        // Stopped before switch-root, the unit wiped the key the volume
        // has read: the real root finds none (keys=[] below).
        "volume 'cvmroot' is open: wiped and removed /run/cryptsetup-keys.d/cvmroot.key".to_owned(),
        // The TEE drivers' instances ran first; on this hardware they skip.
        "ConditionPathExists=/sys/devices/platform/sev-guest".to_owned(),
        format!("CVMTEST-RESULT marker={marker} keys=[] root=[/dev/mapper/cvmroot / ext4"),
        "qemu exit status 0".to_owned(),
    ] {
        assert!(log.contains(&line), "missing `{line}`:\n{log}");
    }
    assert!(!log.contains("emergency.target"), "{log}");
}

#[test]
fn a_denied_key_leaves_the_root_locked_and_the_guest_powers_off() {
    let name = "a_denied_key_leaves_the_root_locked_and_the_guest_powers_off";
    let Some(kernel) = ready(name) else {
        return;
    };
    let policy = Policy::from_rules(vec![Rule::deny("sample", "default/luks/cvmroot").unwrap()]);
    let (out, marker) = boot("boot-deny", &kernel, "sample", policy);
    let log = console(&out);
    assert!(out.status.success(), "{log}");
    assert!(!marker.is_empty(), "{log}");
    for line in [
        "the KBS policy denied default/luks/cvmroot for TEE sample",
        "Failed to start cvm-attest-initrd.service",
        "Failed to start systemd-cryptsetup@cvmroot.service",
        "reboot: Power down",
        // On its own: the host's timeout (300 s) would end with 124.
        "qemu exit status 0",
    ] {
        assert!(log.contains(line), "missing `{line}`:\n{log}");
    }
    assert!(!log.contains("CVMTEST-RESULT"), "{log}");
    assert!(!log.contains("cryptsetup-keys.d/cvmroot.key"), "{log}");
}

#[test]
fn a_tpm_quote_through_the_helper_unlocks_the_root_at_boot() {
    let name = "a_tpm_quote_through_the_helper_unlocks_the_root_at_boot";
    let Some(kernel) = ready(name) else {
        return;
    };
    let (out, marker) = boot("boot-tpm", &kernel, "tpm", Policy::allow_all());
    let log = console(&out);
    assert!(out.status.success(), "{log}");
    assert!(!marker.is_empty(), "{log}");
    for line in [
        "challenged TEE tpm".to_owned(),
        // The helper's own log line: it ran, under the unit's sandbox.
        "no AK at 0x81010002: creating one under the endorsement key".to_owned(),
        "attest: the KBS accepted the tpm evidence".to_owned(),
        "Finished systemd-cryptsetup@cvmroot.service".to_owned(),
        format!("CVMTEST-RESULT marker={marker} keys=[] root=[/dev/mapper/cvmroot / ext4"),
        "qemu exit status 0".to_owned(),
    ] {
        assert!(log.contains(&line), "missing `{line}`:\n{log}");
    }
}
