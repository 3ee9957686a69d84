// SPDX-License-Identifier: Apache-2.0
//! `probe`: which TEE interfaces this guest offers, whether each one works,
//! and the platform the agent picks from them — the first thing to run when
//! a boot fails on a customer's VM. Detection uses the same checks, so what
//! `probe` prints is exactly why `get --tee`-less runs choose what they do.
//!
//! Order (README "Platform detection"): configfs-tsm and its provider, then
//! `/dev/sev-guest`, then `/dev/tdx_guest`. (The Azure vTPM HCL report, which
//! comes first, and the plain TPM arrive with the vTPM evidence.)

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::evidence::Platform;
use crate::root;
use crate::sevguest::{SevGuest, SevGuestError};
use crate::tsm::{self, TsmError};

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
pub fn run() -> Probe {
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
    let tpm = root::path(root::TPMRM);
    let tpm_check = if tpm.exists() {
        check(
            "TPM",
            &tpm,
            State::Usable,
            "present (vTPM evidence is not supported by this version)",
        )
    } else {
        check("TPM", &tpm, State::Absent, "no TPM resource manager")
    };
    let (platform, reason) = match (provider.as_deref(), sev_check.state, tdx_check.state) {
        (Some("sev_guest"), _, _) => (Some(Platform::Snp), "configfs-tsm provider sev_guest".to_owned()),
        (Some("tdx_guest"), _, _) => (Some(Platform::Tdx), "configfs-tsm provider tdx_guest".to_owned()),
        (Some(other), _, _) => (None, format!("configfs-tsm has provider '{other}', which cvm-attest does not support")),
        (None, State::Usable, _) => (Some(Platform::Snp), format!("{} opens", sev_check.path)),
        (None, State::Denied, _) => (None, format!("{} exists but cannot be opened: run as root", sev_check.path)),
        (None, _, State::Usable) => (None, format!("TDX guest ({}) without configfs-tsm: this kernel cannot produce quotes (needs CONFIG_TSM_REPORTS)", tdx_check.path)),
        (None, _, _) => (None, "no TEE interface found: not a confidential VM, or its guest drivers are not loaded (see the checks)".to_owned()),
    };
    Probe {
        platform,
        reason,
        checks: vec![tsm_check, sev_check, tdx_check, ccel_check, tpm_check],
    }
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
                "configfs is not mounted on /sys/kernel/config",
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
