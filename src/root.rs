// SPDX-License-Identifier: Apache-2.0
//! Every kernel interface path the agent touches, from one root.
//!
//! In production the root is `/`. Tests set `CVM_ATTEST_ROOT` to a
//! directory of their own (holding FUSE emulators of configfs-tsm and
//! `/dev/sev-guest`, a fake CCEL, …) so that the unmodified code paths run
//! against them. It is a test seam, not a configuration knob.

use std::path::PathBuf;
use std::sync::OnceLock;

/// Test seam: the directory that stands for `/`.
pub const ROOT_ENV: &str = "CVM_ATTEST_ROOT";

/// configfs-tsm report directory (Linux ≥ 6.7, `CONFIG_TSM_REPORTS`).
pub const TSM_REPORT: &str = "/sys/kernel/config/tsm/report";
/// Where configfs is mounted.
pub const CONFIGFS: &str = "/sys/kernel/config";
/// The SEV-SNP guest driver's device.
pub const SEV_GUEST: &str = "/dev/sev-guest";
/// The SEV-SNP guest platform device (present when the firmware offers SNP).
pub const SEV_GUEST_PLATFORM: &str = "/sys/devices/platform/sev-guest";
/// The TDX guest driver's device.
pub const TDX_GUEST: &str = "/dev/tdx_guest";
/// The TDX CC event log (ACPI CCEL table data).
pub const CCEL: &str = "/sys/firmware/acpi/tables/data/CCEL";
/// The kernel's TPM resource manager.
pub const TPMRM: &str = "/dev/tpmrm0";

/// `abs` under the current root.
pub fn path(abs: &str) -> PathBuf {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    let root = ROOT.get_or_init(|| std::env::var_os(ROOT_ENV).map(PathBuf::from));
    match root {
        Some(root) => root.join(abs.trim_start_matches('/')),
        None => PathBuf::from(abs),
    }
}
