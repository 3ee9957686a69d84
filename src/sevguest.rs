// SPDX-License-Identifier: Apache-2.0
//! `/dev/sev-guest`: SNP_GET_EXT_REPORT and SNP_GET_REPORT through the
//! kernel's ioctl ABI (`include/uapi/linux/sev-guest.h`).
//!
//! Our own small ioctl code rather than the `sev` crate's `Firmware`, whose
//! `open()` hard-wires the device path: the path comes from `root.rs`, so
//! tests drive this very code against a FUSE emulator of the device. All of
//! the agent's `unsafe` lives here, each block with its SAFETY argument.
//!
//! Errors: the ioctl fails with an errno; for EIO the firmware status is in
//! the low 32 bits of `exitinfo2` and the hypervisor's in the high 32.
//! VMM error 1 (INVALID_LEN) on SNP_GET_EXT_REPORT means our certificate
//! buffer was too small and `certs_len` now holds the size needed.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::root;

const SNP_GET_REPORT: libc::c_ulong = 0xC020_5300;
const SNP_GET_EXT_REPORT: libc::c_ulong = 0xC020_5302;
/// `SNP_GUEST_VMM_ERR_INVALID_LEN` / `_BUSY`, the high half of exitinfo2.
const VMM_ERR_INVALID_LEN: u32 = 1;
const VMM_ERR_BUSY: u32 = 2;
/// The kernel caps the certificate buffer at 16 pages (SEV_FW_BLOB_MAX_SIZE).
const CERTS_MAX: usize = 16 * 4096;
/// Length of an SNP attestation report.
pub const REPORT_LEN: usize = 1184;

#[repr(C)]
struct GuestRequest {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}

#[repr(C)]
struct ExtReportReq {
    data: ReportReq,
    certs_address: u64,
    certs_len: u32,
}

#[repr(C)]
struct ReportResp {
    data: [u8; 4000],
}

#[derive(Debug, thiserror::Error)]
pub enum SevGuestError {
    #[error("{0} does not exist: the sev-guest driver is not loaded (modprobe sev-guest) or this is not an SNP guest")]
    Absent(PathBuf),
    #[error("permission denied opening {0}: run as root")]
    Denied(PathBuf),
    #[error("{path} is busy serving another request ({detail}): retry")]
    Busy { path: PathBuf, detail: String },
    #[error("the SNP firmware refused the report request: {0}")]
    Firmware(String),
    #[error("{what} on {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} returned a malformed response: {detail}")]
    Malformed { path: PathBuf, detail: String },
}

impl SevGuestError {
    /// Worth another try after a pause.
    pub fn retryable(&self) -> bool {
        matches!(self, SevGuestError::Busy { .. })
    }
}

/// An open `/dev/sev-guest`.
pub struct SevGuest {
    file: File,
    path: PathBuf,
}

impl SevGuest {
    pub fn open() -> Result<SevGuest, SevGuestError> {
        let path = root::path(root::SEV_GUEST);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => SevGuestError::Absent(path.clone()),
                ErrorKind::PermissionDenied => SevGuestError::Denied(path.clone()),
                _ => SevGuestError::Io {
                    what: "open",
                    path: path.clone(),
                    source: e,
                },
            })?;
        Ok(SevGuest { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SNP_GET_EXT_REPORT: the report and the host's certificate table
    /// (`None` when the host supplies no certificates).
    pub fn ext_report(
        &self,
        report_data: &[u8; 64],
        vmpl: u32,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), SevGuestError> {
        let mut certs = vec![0u8; 4096];
        loop {
            let mut req = ExtReportReq {
                data: report_req(report_data, vmpl),
                certs_address: certs.as_mut_ptr() as u64,
                certs_len: certs.len() as u32,
            };
            let mut resp = Box::new(ReportResp { data: [0; 4000] });
            match self.request(
                SNP_GET_EXT_REPORT,
                &mut req as *mut ExtReportReq as u64,
                &mut resp,
            ) {
                Ok(()) => {
                    let report = self.parse(&resp)?;
                    let table =
                        (req.certs_len > 0 && certs.iter().any(|&b| b != 0)).then_some(certs);
                    return Ok((report, table));
                }
                Err(Failure { vmm, .. }) if vmm == VMM_ERR_INVALID_LEN => {
                    let needed = req.certs_len as usize;
                    if needed <= certs.len() || needed > CERTS_MAX {
                        return Err(SevGuestError::Malformed {
                            path: self.path.clone(),
                            detail: format!(
                                "asked for a {needed}-byte certificate buffer after {} bytes",
                                certs.len()
                            ),
                        });
                    }
                    certs = vec![0u8; needed.next_multiple_of(4096)];
                }
                Err(f) => return Err(self.error(f)),
            }
        }
    }

    /// SNP_GET_REPORT: the report alone.
    pub fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Vec<u8>, SevGuestError> {
        let mut req = report_req(report_data, vmpl);
        let mut resp = Box::new(ReportResp { data: [0; 4000] });
        self.request(SNP_GET_REPORT, &mut req as *mut ReportReq as u64, &mut resp)
            .map_err(|f| self.error(f))?;
        self.parse(&resp)
    }

    fn request(&self, cmd: libc::c_ulong, req: u64, resp: &mut ReportResp) -> Result<(), Failure> {
        let mut guest = GuestRequest {
            msg_version: 1,
            req_data: req,
            resp_data: resp as *mut ReportResp as u64,
            exitinfo2: 0,
        };
        // SAFETY: `guest` is a live, correctly laid out snp_guest_request_ioctl;
        // `req_data` and `resp_data` point at live request/response buffers of
        // the sizes the kernel expects for `cmd` (96/112 and 4000 bytes), and
        // for SNP_GET_EXT_REPORT `certs_address`/`certs_len` describe `certs`,
        // which outlives the call. The kernel writes only within them.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                cmd as _,
                &mut guest as *mut GuestRequest,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        Err(Failure {
            errno: std::io::Error::last_os_error(),
            vmm: (guest.exitinfo2 >> 32) as u32,
            fw: guest.exitinfo2 as u32,
        })
    }

    fn parse(&self, resp: &ReportResp) -> Result<Vec<u8>, SevGuestError> {
        let le = |at: usize| {
            u32::from_le_bytes([
                resp.data[at],
                resp.data[at + 1],
                resp.data[at + 2],
                resp.data[at + 3],
            ])
        };
        let (status, size) = (le(0), le(4) as usize);
        if status != 0 {
            return Err(SevGuestError::Firmware(firmware_status(status)));
        }
        if size != REPORT_LEN {
            return Err(SevGuestError::Malformed {
                path: self.path.clone(),
                detail: format!("report_size is {size}, not {REPORT_LEN}"),
            });
        }
        Ok(resp.data[32..32 + size].to_vec())
    }

    fn error(&self, f: Failure) -> SevGuestError {
        let path = self.path.clone();
        match f.errno.raw_os_error() {
            Some(libc::EBUSY) | Some(libc::EAGAIN) => SevGuestError::Busy {
                path,
                detail: f.errno.to_string(),
            },
            Some(libc::EIO) if f.vmm == VMM_ERR_BUSY => SevGuestError::Busy {
                path,
                detail: "hypervisor busy".into(),
            },
            Some(libc::EIO) if f.fw != 0 => SevGuestError::Firmware(firmware_status(f.fw)),
            Some(libc::EIO) if f.vmm != 0 => {
                SevGuestError::Firmware(format!("hypervisor error {:#x}", f.vmm))
            }
            Some(libc::EACCES) | Some(libc::EPERM) => SevGuestError::Denied(path),
            _ => SevGuestError::Io {
                what: "ioctl",
                path,
                source: f.errno,
            },
        }
    }
}

struct Failure {
    errno: std::io::Error,
    vmm: u32,
    fw: u32,
}

fn report_req(report_data: &[u8; 64], vmpl: u32) -> ReportReq {
    ReportReq {
        user_data: *report_data,
        vmpl,
        rsvd: [0; 28],
    }
}

/// SEV firmware status codes (SEV-SNP firmware ABI, "Status codes").
fn firmware_status(code: u32) -> String {
    let name = match code {
        0x01 => "INVALID_PLATFORM_STATE",
        0x02 => "INVALID_GUEST_STATE",
        0x03 => "INVALID_CONFIG",
        0x04 => "INVALID_LENGTH",
        0x07 => "POLICY_FAILURE",
        0x09 => "INVALID_ADDRESS",
        0x0A => "BAD_SIGNATURE",
        0x10 => "INVALID_GUEST",
        0x11 => "INVALID_COMMAND",
        0x13 => "HWERROR_PLATFORM",
        0x14 => "HWERROR_UNSAFE",
        0x15 => "UNSUPPORTED",
        0x16 => "INVALID_PARAM",
        0x17 => "RESOURCE_LIMIT",
        0x18 => "SECURE_DATA_INVALID",
        0x1F => "AEAD_OFLOW",
        0x27 => "EXPAND_BUFFER_LENGTH_REQUEST",
        _ => "unknown status",
    };
    format!("{name} ({code:#04x})")
}

#[cfg(test)]
mod tests {
    use super::{firmware_status, ExtReportReq, GuestRequest, ReportReq, ReportResp};

    #[test]
    fn structs_match_the_kernel_abi() {
        // include/uapi/linux/sev-guest.h sizes: the ioctl numbers encode 32.
        assert_eq!(std::mem::size_of::<GuestRequest>(), 32);
        assert_eq!(std::mem::size_of::<ReportReq>(), 96);
        assert_eq!(std::mem::size_of::<ExtReportReq>(), 112);
        assert_eq!(std::mem::size_of::<ReportResp>(), 4000);
    }

    #[test]
    fn firmware_codes_are_named() {
        assert_eq!(firmware_status(0x16), "INVALID_PARAM (0x16)");
        assert_eq!(firmware_status(0x99), "unknown status (0x99)");
    }
}
