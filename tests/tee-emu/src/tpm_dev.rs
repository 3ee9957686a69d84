// SPDX-License-Identifier: Apache-2.0
//! `/dev/tpmrm0` served over FUSE, in front of a TPM on a loopback port (a
//! [`crate::Swtpm`] or the [`crate::Paravisor`] proxy), so that the agent
//! reaches it the way it does in a VM: through tpm2-tss's device TCTI.
//!
//! ABI (drivers/char/tpm/tpm-dev-common.c): a `write(2)` carries one whole
//! command; the response is then read back with one or more `read(2)`s
//! (partial reads, which tpm2-tss probes for at open); a `read(2)` with no
//! response pending returns 0. The file is opened direct-I/O and
//! non-seekable, so every read and write reaches the server with the
//! caller's size. Each open file gets its own connection to the TPM port,
//! made at the first command and closed on release, like the resource
//! manager's per-open session. A command the TPM port does not answer (within
//! 30 s) fails the write with `EIO`.
//!
//! Deviation: the file is a regular file, not a character device.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use fuser::consts::{FOPEN_DIRECT_IO, FOPEN_NONSEEKABLE};
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request,
};

use crate::mount::{file_attr, list_dir, reply_attr, reply_entry, FuseMount};
use crate::tpm_cmd;

/// Name of the device file in the mounted directory.
pub const DEVICE_NAME: &str = "tpmrm0";

const ROOT: u64 = 1;
const DEVICE: u64 = 2;

/// A mounted TPM device emulator; unmounted on drop.
#[derive(Debug)]
pub struct TpmDevice {
    mount: FuseMount,
}

impl TpmDevice {
    /// Creates `dir` and mounts there a directory holding `tpmrm0`, whose
    /// commands go to the TPM listening on 127.0.0.1:`port`.
    pub fn mount(dir: &Path, port: u16) -> Result<TpmDevice> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let fs = TpmFs {
            port,
            open: HashMap::new(),
            next: 1,
        };
        let mount = FuseMount::mount(dir, fs, "tee-emu-tpm")?;
        Ok(TpmDevice { mount })
    }

    /// Path of the device file.
    pub fn path(&self) -> PathBuf {
        self.mount.dir().join(DEVICE_NAME)
    }

    /// The agent's `--tcti` for this device.
    pub fn tcti(&self) -> String {
        format!("device:{}", self.path().display())
    }
}

/// One open file: its TPM connection and the unread part of the last response.
#[derive(Default)]
struct OpenFile {
    tpm: Option<TcpStream>,
    command: Vec<u8>,
    response: Vec<u8>,
    read: usize,
}

struct TpmFs {
    port: u16,
    open: HashMap<u64, OpenFile>,
    next: u64,
}

impl TpmFs {
    fn stat(&self, ino: u64) -> Option<FileAttr> {
        let (kind, perm) = match ino {
            ROOT => (FileType::Directory, 0o755),
            DEVICE => (FileType::RegularFile, 0o660),
            _ => return None,
        };
        Some(file_attr(ino, kind, perm, 0))
    }
}

impl OpenFile {
    /// Takes command bytes; once a whole command is in, sends it and keeps the response.
    fn write(&mut self, port: u16, data: &[u8]) -> Result<()> {
        self.command.extend_from_slice(data);
        let size = match self.command.get(2..6) {
            Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => return Ok(()),
        };
        if self.command.len() < size {
            return Ok(());
        }
        let command = std::mem::take(&mut self.command);
        let tpm = match self.tpm.as_mut() {
            Some(tpm) => tpm,
            None => {
                let tpm = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .with_context(|| format!("connect to the TPM on 127.0.0.1:{port}"))?;
                // The FUSE session is one thread: a TPM that stops answering
                // must fail this write (EIO), not hang every test's mount.
                tpm.set_read_timeout(Some(Duration::from_secs(30)))
                    .context("set the TPM read timeout")?;
                self.tpm.insert(tpm)
            }
        };
        self.response = tpm_cmd::transact(tpm, &command)?;
        self.read = 0;
        Ok(())
    }

    fn read(&mut self, size: usize) -> &[u8] {
        let start = self.read;
        let end = (start + size).min(self.response.len());
        self.read = end;
        &self.response[start..end]
    }
}

impl Filesystem for TpmFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let found = (parent == ROOT && name == DEVICE_NAME).then(|| self.stat(DEVICE));
        reply_entry(found.flatten().ok_or(libc::ENOENT), reply);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        reply_attr(self.stat(ino).ok_or(libc::ENOENT), reply);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if ino != DEVICE {
            return reply.error(libc::EISDIR);
        }
        let fh = self.next;
        self.next += 1;
        self.open.insert(fh, OpenFile::default());
        reply.opened(fh, FOPEN_DIRECT_IO | FOPEN_NONSEEKABLE);
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        match self.open.get_mut(&fh) {
            Some(file) => reply.data(file.read(size as usize)),
            None => reply.error(libc::EBADF),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let port = self.port;
        let Some(file) = self.open.get_mut(&fh) else {
            return reply.error(libc::EBADF);
        };
        match file.write(port, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(_) => {
                // The connection is broken: the next command starts afresh.
                *file = OpenFile::default();
                reply.error(libc::EIO)
            }
        }
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.open.remove(&fh);
        reply.ok();
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
            (DEVICE, FileType::RegularFile, DEVICE_NAME),
        ];
        list_dir(reply, offset, names);
    }
}
