// SPDX-License-Identifier: Apache-2.0
//! `probe`: which TEE interfaces this guest offers, whether each one works,
//! and the platform the agent picks from them — the first thing to run when
//! a boot fails on a customer's VM. Detection uses the same checks, so what
//! `probe` prints is exactly why `get --tee`-less runs choose what they do.
//!
//! Order (README "Platform detection"): an Azure HCL report in the vTPM
//! (NV 0x01400001), then configfs-tsm and its provider, then
//! `/dev/sev-guest`, then `/dev/tdx_guest`. A plain TPM is reported but is
//! never chosen: `--tee tpm` must name it.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};

use crate::evidence::Platform;
use crate::report::hcl::{HclReport, HclReportType};
use crate::root;
use crate::sevguest::{SevGuest, SevGuestError};
use crate::tpm::Tpm;
use crate::tsm::{self, TsmError};

const HCL_REPORT_INDEX: u32 = 0x0140_0001;

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Usable,
    Absent,
    Denied,
    Broken,
}

#[derive(Serialize)]
pub struct Check {
    pub interface: &'static str,
    pub path: String,
    pub state: State,
    pub detail: String,
}

#[derive(Serialize)]
pub struct Probe {
    pub platform: Option<Platform>,
    pub reason: String,
    pub checks: Vec<Check>,
    /// The Azure HCL report's type, var-data keys and vm-configuration.
    pub hcl: Option<Value>,
}

fn check(interface: &'static str, path: &Path, state: State, detail: impl Into<String>) -> Check {
    Check {
        interface,
        path: path.display().to_string(),
        state,
        detail: detail.into(),
    }
}

/// Runs every check and decides.
pub fn run(tcti: &str) -> Probe {
    let (tpm_check, hcl) = vtpm(tcti);
    let (tsm_check, provider) = configfs_tsm();
    let sev_check = sev_guest();
    let tdx = root::path(root::TDX_GUEST);
    let tdx_check = if tdx.exists() {
        check(
            "tdx-guest device",
            &tdx,
            State::Usable,
            "present (gives a TDREPORT only; quotes come through configfs-tsm)",
        )
    } else {
        check(
            "tdx-guest device",
            &tdx,
            State::Absent,
            "no TDX guest driver",
        )
    };
    let ccel = root::path(root::CCEL);
    let ccel_check = match std::fs::metadata(&ccel) {
        Ok(m) => check(
            "CC event log",
            &ccel,
            State::Usable,
            format!("{} bytes", m.len()),
        ),
        Err(_) => check(
            "CC event log",
            &ccel,
            State::Absent,
            "no ACPI CCEL table (only TDX guests have one)",
        ),
    };
    let azure = hcl.as_ref().map(|(kind, _)| *kind);
    let (platform, reason) = match azure {
        Some(HclReportType::Snp) => (
            Some(Platform::AzSnpVtpm),
            "Azure HCL report (SNP) in the vTPM".to_owned(),
        ),
        Some(HclReportType::Tdx) => (
            Some(Platform::AzTdxVtpm),
            "Azure HCL report (TDX) in the vTPM".to_owned(),
        ),
        None => hardware(provider.as_deref(), &tsm_check, &sev_check, &tdx_check),
    };
    Probe {
        platform,
        reason,
        checks: vec![tpm_check, tsm_check, sev_check, tdx_check, ccel_check],
        hcl: hcl.map(|(_, summary)| summary),
    }
}

/// What keeps this guest from giving `platform`'s evidence, found with no
/// traffic: a platform named rather than detected is checked so before the
/// KBS is asked anything. `None` when its interfaces are there.
pub fn missing(platform: Platform, tcti: &str) -> Option<String> {
    match platform {
        Platform::Sample => None,
        // A TCTI that is not supported is a usage error, told later.
        Platform::Tpm | Platform::AzSnpVtpm | Platform::AzTdxVtpm => crate::tpm::device_path(tcti)
            .ok()
            .and_then(crate::tpm::absent),
        // As evidence::snp::collect goes: configfs-tsm with another
        // provider is an error there, and without one the device is used.
        Platform::Snp => {
            let (tsm, provider) = configfs_tsm();
            match provider.as_deref() {
                Some("sev_guest") => None,
                Some(other) => Some(format!(
                    "configfs-tsm has provider '{other}', not sev_guest"
                )),
                None => {
                    let sev = sev_guest();
                    (sev.state != State::Usable).then(|| {
                        format!(
                            "configfs-tsm offers no SEV-SNP report ({}), and {}: {}",
                            tsm.detail, sev.path, sev.detail
                        )
                    })
                }
            }
        }
        Platform::Tdx => {
            let (tsm, provider) = configfs_tsm();
            (provider.as_deref() != Some("tdx_guest")).then(|| {
                format!(
                    "TDX quotes come only through configfs-tsm, which offers none ({})",
                    tsm.detail
                )
            })
        }
    }
}

/// The choice among the hardware interfaces.
fn hardware(
    provider: Option<&str>,
    tsm: &Check,
    sev: &Check,
    tdx: &Check,
) -> (Option<Platform>, String) {
    match (provider, sev.state, tdx.state) {
        (Some("sev_guest"), _, _) => (Some(Platform::Snp), "configfs-tsm provider sev_guest".to_owned()),
        (Some("tdx_guest"), _, _) => (Some(Platform::Tdx), "configfs-tsm provider tdx_guest".to_owned()),
        (Some(other), _, _) => (None, format!("configfs-tsm has provider '{other}', which cvm-attest does not support")),
        (None, State::Usable, _) => (Some(Platform::Snp), format!("{} opens", sev.path)),
        (None, State::Denied, _) => (None, format!("{} exists but cannot be opened: run as root", sev.path)),
        (None, _, State::Usable) if tsm.state != State::Absent => (
            None,
            format!("TDX guest ({}) whose configfs-tsm does not work ({}): quotes come only through configfs-tsm", tdx.path, tsm.detail),
        ),
        (None, _, State::Usable) => (
            None,
            format!("TDX guest ({}) without configfs-tsm: this kernel cannot produce quotes (needs CONFIG_TSM_REPORTS)", tdx.path),
        ),
        (None, _, _) => (
            None,
            "no TEE interface found: not a confidential VM, or its guest drivers are not loaded".to_owned(),
        ),
    }
}

/// The TPM, and an Azure HCL report in it if there is one.
fn vtpm(tcti: &str) -> (Check, Option<(HclReportType, Value)>) {
    let path = Path::new(tcti.strip_prefix("device:").unwrap_or(tcti));
    if tcti.starts_with("device:") && !path.exists() {
        return (check("TPM", path, State::Absent, "no TPM device"), None);
    }
    let mut tpm = match Tpm::open(tcti) {
        Ok(tpm) => tpm,
        Err(e) => return (check("TPM", path, State::Broken, format!("{e:#}")), None),
    };
    // Only an index that is not there makes a plain TPM; a TPM or helper
    // that fails is broken, and says how.
    let bytes = match tpm
        .nv_defined(HCL_REPORT_INDEX)
        .and_then(|defined| defined.then(|| tpm.nv_read(HCL_REPORT_INDEX)).transpose())
    {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            let detail =
                "no Azure HCL report (NV 0x01400001): a plain TPM, used only with --tee tpm";
            return (check("TPM", path, State::Usable, detail), None);
        }
        Err(e) => return (check("TPM", path, State::Broken, format!("{e:#}")), None),
    };
    match HclReport::parse(&bytes) {
        Ok(hcl) => {
            let detail = format!(
                "Azure HCL report ({:?}) in NV 0x01400001, {} bytes",
                hcl.report_type(),
                bytes.len()
            );
            (
                check("TPM", path, State::Usable, detail),
                Some((hcl.report_type(), hcl_summary(&hcl))),
            )
        }
        Err(e) => {
            let detail = format!("NV 0x01400001 holds no valid HCL report: {e:#}");
            (check("TPM", path, State::Broken, detail), None)
        }
    }
}

/// Report type, var-data key ids and the VM configuration, for operators.
fn hcl_summary(hcl: &HclReport) -> Value {
    let var: Value = serde_json::from_slice(hcl.var_data()).unwrap_or(Value::Null);
    let keys: Vec<Value> = var["keys"]
        .as_array()
        .map(|k| k.iter().map(|k| k["kid"].clone()).collect())
        .unwrap_or_default();
    json!({
        "report_type": format!("{:?}", hcl.report_type()),
        "keys": keys,
        "vm_configuration": var["vm-configuration"].clone(),
    })
}

fn configfs_tsm() -> (Check, Option<String>) {
    let path = root::path(root::TSM_REPORT);
    match tsm::provider() {
        Ok(p) => (
            check(
                "configfs-tsm",
                &path,
                State::Usable,
                format!("provider {p}"),
            ),
            Some(p),
        ),
        Err(TsmError::Absent(_)) if !root::path(root::CONFIGFS).is_dir() => (
            check(
                "configfs-tsm",
                &path,
                State::Absent,
                "no /sys/kernel/config: kernel without configfs (CONFIG_CONFIGFS_FS)",
            ),
            None,
        ),
        // The kernel makes /sys/kernel/config whenever it has configfs; it
        // stays a sysfs directory until something mounts configfs on it.
        Err(TsmError::Absent(_)) if configfs_unmounted() => (
            check(
                "configfs-tsm",
                &path,
                State::Absent,
                "configfs is not mounted on /sys/kernel/config \
                 (mount -t configfs none /sys/kernel/config)",
            ),
            None,
        ),
        Err(TsmError::Absent(_)) => (
            check(
                "configfs-tsm",
                &path,
                State::Absent,
                "no tsm/report directory: kernel without CONFIG_TSM_REPORTS",
            ),
            None,
        ),
        Err(e @ TsmError::NoProvider(_)) => (
            check("configfs-tsm", &path, State::Absent, e.to_string()),
            None,
        ),
        Err(e @ TsmError::Denied(_)) => (
            check("configfs-tsm", &path, State::Denied, e.to_string()),
            None,
        ),
        Err(e) => (
            check("configfs-tsm", &path, State::Broken, e.to_string()),
            None,
        ),
    }
}

/// Whether /sys/kernel/config is still the bare sysfs mount point.
fn configfs_unmounted() -> bool {
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    crate::sink::dir::fs_magic(&root::path(root::CONFIGFS)).is_ok_and(|m| m == SYSFS_MAGIC)
}

fn sev_guest() -> Check {
    let path = root::path(root::SEV_GUEST);
    match SevGuest::open() {
        Ok(_) => check("sev-guest device", &path, State::Usable, "opens read-write"),
        Err(SevGuestError::Absent(_)) if root::path(root::SEV_GUEST_PLATFORM).exists() => check(
            "sev-guest device",
            &path,
            State::Absent,
            "the SNP platform device exists but the sev-guest driver is not loaded (modprobe sev-guest)",
        ),
        Err(SevGuestError::Absent(_)) => check("sev-guest device", &path, State::Absent, "no SEV-SNP guest driver"),
        Err(e @ SevGuestError::Denied(_)) => check("sev-guest device", &path, State::Denied, e.to_string()),
        Err(e) => check("sev-guest device", &path, State::Broken, e.to_string()),
    }
}

impl Probe {
    /// The readable report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = match self.platform {
            Some(p) => writeln!(out, "platform: {} ({})", p.name(), self.reason),
            None => writeln!(out, "platform: none ({})", self.reason),
        };
        if let Some(hcl) = &self.hcl {
            let _ = writeln!(
                out,
                "  HCL report: {} report; keys {}; vm-configuration {}",
                hcl["report_type"].as_str().unwrap_or("?"),
                hcl["keys"],
                hcl["vm_configuration"]
            );
        }
        for c in &self.checks {
            let state = match c.state {
                State::Usable => "usable",
                State::Absent => "absent",
                State::Denied => "DENIED",
                State::Broken => "BROKEN",
            };
            let _ = writeln!(
                out,
                "  {:<17} {:<7} {}  {}",
                c.interface, state, c.path, c.detail
            );
        }
        out
    }
}
