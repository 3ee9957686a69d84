// SPDX-License-Identifier: Apache-2.0
//! `probe` and platform detection against fake roots made of plain files
//! (`CVM_ATTEST_ROOT`); the FUSE-backed kernel emulators are in `tee.rs`.

use std::path::Path;

use crate::util::{agent_cmd, assert_exit, assert_not_logged, TempDir};

fn probe(root: &Path, json: bool) -> (std::process::Output, serde_json::Value) {
    let mut args = vec!["probe"];
    if json {
        args.push("--json");
    }
    let out = agent_cmd(&args)
        .env("CVM_ATTEST_ROOT", root)
        .output()
        .unwrap();
    let value = if json {
        serde_json::from_slice(&out.stdout).expect("probe --json prints JSON")
    } else {
        serde_json::Value::Null
    };
    (out, value)
}

/// The state and detail `probe --json` gives `interface`.
pub(crate) fn state(v: &serde_json::Value, interface: &str) -> (String, String) {
    let c = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["interface"] == interface)
        .expect(interface);
    (
        c["state"].as_str().unwrap().to_owned(),
        c["detail"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn nothing_found_says_why_and_exits_5() {
    let root = TempDir::new("probe-empty");
    let (out, v) = probe(root.path(), true);
    assert_exit(&out, 5);
    assert_eq!(v["platform"], serde_json::Value::Null);
    assert!(v["reason"]
        .as_str()
        .unwrap()
        .contains("no TEE interface found"));
    assert_eq!(
        state(&v, "configfs-tsm").1,
        "no /sys/kernel/config: kernel without configfs (CONFIG_CONFIGFS_FS)"
    );
    assert_eq!(state(&v, "sev-guest device").0, "absent");
    // The text form says the same, one line per interface.
    let (out, _) = probe(root.path(), false);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("platform: none (no TEE interface found"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(out.stderr.is_empty(), "probe's answer is on stdout only");
}

/// A kernel with configfs makes /sys/kernel/config in sysfs; until configfs
/// is mounted there, it is a sysfs directory (here: another one, as this
/// host has no configfs).
#[test]
fn configfs_left_unmounted_is_named() {
    let root = TempDir::new("probe-configfs-unmounted");
    std::fs::create_dir_all(root.path().join("sys/kernel")).unwrap();
    std::os::unix::fs::symlink("/sys/kernel", root.path().join("sys/kernel/config")).unwrap();
    let (_, v) = probe(root.path(), true);
    assert_eq!(
        state(&v, "configfs-tsm").1,
        "configfs is not mounted on /sys/kernel/config (mount -t configfs none /sys/kernel/config)"
    );
}

#[test]
fn kernel_without_tsm_reports_and_unloaded_driver_are_named() {
    let root = TempDir::new("probe-hints");
    std::fs::create_dir_all(root.path().join("sys/kernel/config")).unwrap();
    std::fs::create_dir_all(root.path().join("sys/devices/platform/sev-guest")).unwrap();
    let (_, v) = probe(root.path(), true);
    assert_eq!(
        state(&v, "configfs-tsm").1,
        "no tsm/report directory: kernel without CONFIG_TSM_REPORTS"
    );
    assert!(state(&v, "sev-guest device")
        .1
        .contains("modprobe sev-guest"));
}

#[test]
fn tdx_without_configfs_cannot_quote() {
    let root = TempDir::new("probe-tdx");
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    std::fs::write(root.path().join("dev/tdx_guest"), b"").unwrap();
    let (out, v) = probe(root.path(), true);
    assert_exit(&out, 5);
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("without configfs-tsm: this kernel cannot produce quotes"),
        "{v}"
    );
    // And `get` without --tee stops before any traffic with the same reason.
    let out = agent_cmd(&["get", "--kbs", "https://127.0.0.1:1", "a/b/c"])
        .env("CVM_ATTEST_ROOT", root.path())
        .output()
        .unwrap();
    crate::util::assert_fails_with(&out, 5, "no TEE platform detected: TDX guest");
}

#[test]
fn an_sev_guest_device_that_opens_is_chosen_and_a_bad_one_fails_clearly() {
    let root = TempDir::new("probe-sev");
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    // A regular file opens like the device but answers no ioctl.
    std::fs::write(root.path().join("dev/sev-guest"), b"").unwrap();
    let (out, v) = probe(root.path(), true);
    assert_exit(&out, 0);
    assert_eq!(v["platform"], "snp");
    assert!(v["reason"]
        .as_str()
        .unwrap()
        .ends_with("dev/sev-guest opens"));
    let out = agent_cmd(&["evidence", "--nonce", "n"])
        .env("CVM_ATTEST_ROOT", root.path())
        .output()
        .unwrap();
    crate::util::assert_fails_with(&out, 1, "dev/sev-guest: Inappropriate ioctl for device");
}

#[test]
fn a_configfs_tsm_without_the_kernel_behind_it_is_broken() {
    // A plain directory accepts mkdir but grows no attribute files.
    let root = TempDir::new("probe-tsm-plain");
    std::fs::create_dir_all(root.path().join("sys/kernel/config/tsm/report")).unwrap();
    let (out, v) = probe(root.path(), true);
    assert_exit(&out, 5);
    let (s, detail) = state(&v, "configfs-tsm");
    assert_eq!(s, "broken");
    assert!(detail.contains("provider"), "{detail}");
    // The probe removes the entry it made.
    assert_eq!(
        std::fs::read_dir(root.path().join("sys/kernel/config/tsm/report"))
            .unwrap()
            .count(),
        0
    );
    // With the SNP device there, evidence falls back to it (a regular
    // file: it answers no ioctl, which shows the device was tried).
    std::fs::create_dir_all(root.path().join("dev")).unwrap();
    std::fs::write(root.path().join("dev/sev-guest"), b"").unwrap();
    let out = agent_cmd(&["evidence", "--tee", "snp", "--nonce", "n"])
        .env("CVM_ATTEST_ROOT", root.path())
        .output()
        .unwrap();
    crate::util::assert_fails_with(&out, 1, "dev/sev-guest: Inappropriate ioctl for device");
    crate::util::assert_logged(&out, "configfs-tsm failed (");
    crate::util::assert_logged(&out, "trying /dev/sev-guest instead");
    // A TDX guest with it: no quotes, and not for want of CONFIG_TSM_REPORTS.
    std::fs::remove_file(root.path().join("dev/sev-guest")).unwrap();
    std::fs::write(root.path().join("dev/tdx_guest"), b"").unwrap();
    let (out, v) = probe(root.path(), true);
    assert_exit(&out, 5);
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("whose configfs-tsm does not work"),
        "{reason}"
    );
    assert!(!reason.contains("CONFIG_TSM_REPORTS"), "{reason}");
}

/// A TPM whose helper dies on the first request is broken, and says how:
/// only an NV index that is not defined makes a plain TPM.
#[test]
fn a_tpm_helper_that_crashes_is_broken_not_a_plain_tpm() {
    let root = TempDir::new("probe-tpm-crash");
    let device = root.path().join("dev/tpmrm0");
    std::fs::create_dir_all(device.parent().unwrap()).unwrap();
    std::fs::write(&device, b"").unwrap();
    let tcti = format!("device:{}", device.display());
    let out = agent_cmd(&["probe", "--json", "--tcti", &tcti])
        .env("CVM_ATTEST_ROOT", root.path())
        .env(
            "CVM_ATTEST_TPM_HELPER",
            crate::util::data("tpm-helper/crash.sh"),
        )
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (state, detail) = state(&v, "TPM");
    assert_eq!(state, "broken", "{detail}");
    assert!(detail.contains("signal: 11 (SIGSEGV)"), "{detail}");
}

/// A device that is no TPM: the reason once, and no second word about the
/// helper exiting, as it must, after saying so.
#[test]
fn a_device_that_is_no_tpm_is_named_once() {
    let root = TempDir::new("probe-null-tpm");
    let out = agent_cmd(&["probe", "--tcti", "device:/dev/null"])
        .env("CVM_ATTEST_ROOT", root.path())
        .output()
        .unwrap();
    assert_exit(&out, 5);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("BROKEN  /dev/null"))
        .unwrap_or_else(|| panic!("no BROKEN TPM line:\n{text}"));
    assert_eq!(
        line.matches("response code not recognized").count(),
        1,
        "{line}"
    );
    assert_not_logged(&out, "the TPM helper");
}
