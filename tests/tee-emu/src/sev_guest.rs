// SPDX-License-Identifier: Apache-2.0
//! `/dev/sev-guest` served over FUSE: a directory (mount it on `<root>/dev`)
//! holding one regular file `sev-guest` that answers the driver's ioctls.
//!
//! ABI: include/uapi/linux/sev-guest.h and drivers/virt/coco/sev-guest/
//! sev-guest.c. FUSE hands a regular file's ioctl to the server in
//! "restricted" mode: size and direction come from the command number, so the
//! server receives and returns the 32-byte `snp_guest_request_ioctl`
//! `{u8 msg_version; u64 req_data; u64 resp_data; u64 exitinfo2}`. The request
//! and response buffers it points to are read and written in the caller's
//! memory with `process_vm_readv/writev` (pid of the FUSE request; root may).
//!
//! * `SNP_GET_REPORT` (0xC0205300): req = `snp_report_req {user_data[64], vmpl
//!   u32, rsvd[28]}` (96 bytes); resp = 4000 bytes `{status u32, report_size
//!   u32, rsvd[24], report[1184]}`.
//! * `SNP_GET_EXT_REPORT` (0xC0205302): req = `{snp_report_req, certs_address
//!   u64, certs_len u32}` (112 bytes). `certs_len` 0 or `certs_address` 0: no
//!   certificates. Not a multiple of 4096 or above 16 KiB: `EINVAL`. Smaller
//!   than the table: `EIO`, `exitinfo2` = `SNP_GUEST_VMM_ERR_INVALID_LEN << 32`
//!   and the needed size written back into the request's `certs_len`.
//!   Otherwise the buffer gets the table, zero-padded to `certs_len`.
//! * `msg_version` 0 or a null buffer: `EINVAL`; other commands: `ENOTTY`.
//! * VMPL above 3 is refused by the firmware, not the driver: the ioctl
//!   succeeds with status `SEV_RET_INVALID_PARAM` (0x16) and `report_size` 0.
//!
//! Deviation: the file is a regular file, not a character device.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context as _, Result};
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyDirectory, ReplyEntry, ReplyIoctl, ReplyOpen,
    Request,
};

use crate::mount::{file_attr, list_dir, reply_attr, reply_entry, FuseMount};
use crate::sev_ioctl::{get_ext_report, get_report};
use crate::snp;

/// `_IOWR('S', 0x0, struct snp_guest_request_ioctl)`.
pub const SNP_GET_REPORT: u32 = 0xC020_5300;
/// `_IOWR('S', 0x2, struct snp_guest_request_ioctl)`.
pub const SNP_GET_EXT_REPORT: u32 = 0xC020_5302;
/// `exitinfo2` when the certificate buffer is too small (VMM error 1 in the high half).
pub const VMM_ERR_INVALID_LEN: u64 = 1 << 32;
/// `exitinfo2` for a busy VMM (VMM error 2).
pub const VMM_ERR_BUSY: u64 = 2 << 32;
/// SEV firmware status INVALID_PARAM.
pub const SEV_RET_INVALID_PARAM: u32 = 0x16;
/// SEV firmware status RESOURCE_LIMIT.
pub const SEV_RET_RESOURCE_LIMIT: u32 = 0x17;
/// SEV firmware status AEAD_OFLOW (message sequence exhausted).
pub const SEV_RET_AEAD_OFLOW: u32 = 0x1D;
/// `SEV_FW_BLOB_MAX_SIZE`: the largest certificate buffer the driver takes.
pub const CERTS_MAX: u32 = 0x4000;

const ROOT: u64 = 1;
const DEVICE: u64 = 2;

/// Fault knobs of the `/dev/sev-guest` emulator.
#[derive(Debug, Clone)]
pub struct SevGuestFaults {
    /// The next `busy` requests fail with `EBUSY`, `exitinfo2` = [`VMM_ERR_BUSY`].
    pub busy: u32,
    /// The next `eio` requests fail with `EIO`, `exitinfo2` = `fw_error`.
    pub eio: u32,
    /// Firmware status reported by `eio` (low 32 bits of `exitinfo2`).
    pub fw_error: u32,
    /// Mode bits of the device file (0o600); 0 refuses non-root openers.
    pub mode: u16,
    /// `open` fails with `EACCES` for everyone, root included.
    pub deny_open: bool,
    /// The certificates the host publishes (none: the EXT_REPORT buffer
    /// stays zero).
    pub certs: snp::HostCerts,
    /// Requests answered so far (both commands, successful or not).
    pub requests: u32,
}

impl Default for SevGuestFaults {
    fn default() -> Self {
        SevGuestFaults {
            busy: 0,
            eio: 0,
            fw_error: SEV_RET_INVALID_PARAM,
            mode: 0o600,
            deny_open: false,
            certs: snp::HostCerts::All,
            requests: 0,
        }
    }
}

/// Shared handle on the knobs.
#[derive(Debug, Clone, Default)]
pub struct SevGuestKnobs(Arc<Mutex<SevGuestFaults>>);

impl SevGuestKnobs {
    fn lock(&self) -> MutexGuard<'_, SevGuestFaults> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes knobs: `knobs.update(|f| f.eio = 1)`.
    pub fn update(&self, change: impl FnOnce(&mut SevGuestFaults)) {
        change(&mut self.lock());
    }

    /// The current knobs.
    pub fn faults(&self) -> SevGuestFaults {
        self.lock().clone()
    }
}

/// A mounted `/dev/sev-guest` emulator; unmounted on drop.
#[derive(Debug)]
pub struct SevGuestEmulator {
    knobs: SevGuestKnobs,
    mount: FuseMount,
}

impl SevGuestEmulator {
    /// Creates `<root>/dev` and mounts the emulator there: `<root>/dev/sev-guest`.
    pub fn mount(root: &Path) -> Result<Self> {
        let dir = root.join("dev");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Self::mount_at(&dir)
    }

    /// Mounts the emulator on the existing directory `dir`.
    pub fn mount_at(dir: &Path) -> Result<Self> {
        let knobs = SevGuestKnobs::default();
        let mount = FuseMount::mount(
            dir,
            SevGuestFs {
                knobs: knobs.clone(),
            },
            "tee-emu-sev-guest",
        )?;
        Ok(SevGuestEmulator { knobs, mount })
    }

    /// The knobs, shared with the running emulator.
    pub fn knobs(&self) -> &SevGuestKnobs {
        &self.knobs
    }

    /// Path of the device file.
    pub fn device(&self) -> PathBuf {
        self.mount.dir().join("sev-guest")
    }
}

struct SevGuestFs {
    knobs: SevGuestKnobs,
}

impl SevGuestFs {
    fn stat(&self, ino: u64) -> Option<FileAttr> {
        let (kind, perm) = match ino {
            ROOT => (FileType::Directory, 0o755),
            DEVICE => (FileType::RegularFile, self.knobs.lock().mode),
            _ => return None,
        };
        Some(file_attr(ino, kind, perm, 0))
    }

    /// Handles one request; returns (ioctl result, the updated 32-byte struct).
    fn request(&self, pid: u32, cmd: u32, arg: &[u8]) -> (i32, [u8; 32]) {
        let mut io = [0u8; 32];
        io[..arg.len().min(32)].copy_from_slice(&arg[..arg.len().min(32)]);
        let word = |off: usize| u64::from_le_bytes(io[off..off + 8].try_into().unwrap_or_default());
        let (msg_version, req, resp) = (io[0], word(8), word(16));
        if cmd != SNP_GET_REPORT && cmd != SNP_GET_EXT_REPORT {
            return (-libc::ENOTTY, io);
        }
        if msg_version == 0 || req == 0 || resp == 0 {
            return (-libc::EINVAL, io);
        }
        let mut faults = self.knobs.lock();
        faults.requests += 1;
        let set_exitinfo2 =
            |io: &mut [u8; 32], v: u64| io[24..32].copy_from_slice(&v.to_le_bytes());
        if faults.busy > 0 {
            faults.busy -= 1;
            set_exitinfo2(&mut io, VMM_ERR_BUSY);
            return (-libc::EBUSY, io);
        }
        if faults.eio > 0 {
            faults.eio -= 1;
            set_exitinfo2(&mut io, u64::from(faults.fw_error));
            return (-libc::EIO, io);
        }
        let table = snp::host_table(faults.certs);
        drop(faults);
        let result = if cmd == SNP_GET_REPORT {
            get_report(pid, req, resp)
        } else {
            get_ext_report(pid, req, resp, table, &mut io)
        };
        match result {
            Ok(rc) => (rc, io),
            Err(_) => (-libc::EFAULT, io),
        }
    }
}

impl Filesystem for SevGuestFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let found = (parent == ROOT && name == "sev-guest").then(|| self.stat(DEVICE));
        reply_entry(found.flatten().ok_or(libc::ENOENT), reply);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        reply_attr(self.stat(ino).ok_or(libc::ENOENT), reply);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if ino == DEVICE && self.knobs.lock().deny_open {
            return reply.error(libc::EACCES);
        }
        reply.opened(0, fuser::consts::FOPEN_DIRECT_IO);
    }

    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _flags: u32,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        if ino != DEVICE {
            return reply.error(libc::ENOTTY);
        }
        let (rc, io) = self.request(req.pid(), cmd, in_data);
        reply.ioctl(rc, &io);
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        reply: ReplyDirectory,
    ) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let names = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (DEVICE, FileType::RegularFile, "sev-guest"),
        ];
        list_dir(reply, offset, names);
    }
}
