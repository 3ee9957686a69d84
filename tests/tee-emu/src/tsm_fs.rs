// SPDX-License-Identifier: Apache-2.0
//! configfs-tsm served over FUSE: the tree `tsm/report/<entry>/<attr>` below
//! the mount point (mount it where configfs lives, `<root>/sys/kernel/config`).
//!
//! configfs file semantics (fs/configfs/file.c) reproduced here: a readable
//! attribute is rendered once, at the first read of an open file, and later
//! reads of that fd see the same bytes; text attributes are stored at each
//! `write()` (errors come back from `write`); binary attributes (`inblob`)
//! are buffered per open file, `EFBIG` when they grow past 64 bytes, and
//! stored when the file is closed, with the store's result ignored. Files are
//! opened with `FOPEN_DIRECT_IO`, so reads ignore `st_size` (configfs reports
//! 4096 for text attributes and 0 for binary ones) and `O_TRUNC` is accepted.
//! Deviation: the store happens at the first `close()` (FUSE `flush`) of the
//! open file rather than at its last reference, so it is ordered before the
//! client's next request.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use fuser::consts::FOPEN_DIRECT_IO;
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request, TimeOrNow,
};

use crate::mount::{file_attr, list_dir, reply_attr, reply_entry, FuseMount};
use crate::tsm::{Attr, Provider, TsmKnobs, INBLOB_MAX};

const ROOT: u64 = 1;
const TSM: u64 = 2;
const REPORT: u64 = 3;

/// A mounted configfs-tsm emulator; unmounted on drop.
#[derive(Debug)]
pub struct TsmEmulator {
    knobs: TsmKnobs,
    mount: FuseMount,
}

impl TsmEmulator {
    /// Creates `<root>/sys/kernel/config` and mounts the emulator there, so
    /// that reports live in `<root>/sys/kernel/config/tsm/report`.
    pub fn mount(root: &Path, provider: Provider) -> Result<Self> {
        let dir = root.join("sys/kernel/config");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Self::mount_at(&dir, provider)
    }

    /// Mounts the emulator on the existing directory `dir` (configfs's mount point).
    pub fn mount_at(dir: &Path, provider: Provider) -> Result<Self> {
        let knobs = TsmKnobs::default();
        knobs.update(|f| f.provider = Some(provider));
        let fs = TsmFs {
            knobs: knobs.clone(),
            handles: HashMap::new(),
            next_fh: 1,
        };
        let mount = FuseMount::mount(dir, fs, "tee-emu-tsm")?;
        Ok(TsmEmulator { knobs, mount })
    }

    /// The knobs, shared with the running emulator.
    pub fn knobs(&self) -> &TsmKnobs {
        &self.knobs
    }

    /// `<mount>/tsm/report`, the directory a client makes entries in.
    pub fn report_dir(&self) -> PathBuf {
        self.mount.dir().join("tsm/report")
    }
}

struct Handle {
    ino: u64,
    written: Option<Vec<u8>>,
    snapshot: Option<Vec<u8>>,
}

struct TsmFs {
    knobs: TsmKnobs,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
}

fn split(ino: u64) -> (u64, Option<Attr>) {
    let attr = Attr::ALL.iter().copied().find(|a| *a as u64 == ino & 0xf);
    (ino >> 4, attr)
}

impl TsmFs {
    /// Attributes of `ino`, or the errno for a missing or invisible node.
    fn stat(&self, ino: u64) -> Result<FileAttr, i32> {
        if matches!(ino, ROOT | TSM | REPORT) {
            return Ok(file_attr(ino, FileType::Directory, 0o755, 0));
        }
        let state = self.knobs.lock();
        let (id, attr) = split(ino);
        state.entry(id)?;
        match attr {
            None if ino & 0xf == 0 => Ok(file_attr(ino, FileType::Directory, 0o755, 0)),
            Some(a) if a.visible(state.faults.provider) => {
                let binary = matches!(a, Attr::Inblob | Attr::Outblob | Attr::Auxblob);
                let size = if binary { 0 } else { 4096 };
                Ok(file_attr(ino, FileType::RegularFile, a.mode(), size))
            }
            _ => Err(libc::ENOENT),
        }
    }

    fn child(&self, parent: u64, name: &str) -> Result<u64, i32> {
        match (parent, name) {
            (ROOT, "tsm") => Ok(TSM),
            (TSM, "report") => Ok(REPORT),
            (REPORT, _) => self
                .knobs
                .lock()
                .find(name)
                .map(|id| id << 4)
                .ok_or(libc::ENOENT),
            (p, _) if p > REPORT && p & 0xf == 0 => {
                let attr = Attr::ALL
                    .iter()
                    .find(|a| a.name() == name)
                    .ok_or(libc::ENOENT)?;
                Ok(p | *attr as u64)
            }
            _ => Err(libc::ENOENT),
        }
    }

    fn commit(&mut self, fh: u64) {
        if let Some(h) = self.handles.get_mut(&fh) {
            if let Some(data) = h.written.take() {
                let (id, _) = split(h.ino);
                self.knobs.lock().commit_inblob(id, &data);
            }
        }
    }
}

impl Filesystem for TsmFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let found = self
            .child(parent, &name.to_string_lossy())
            .and_then(|ino| self.stat(ino));
        reply_entry(found, reply);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        reply_attr(self.stat(ino), reply);
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        // O_TRUNC arrives as a size-0 setattr; configfs ignores it too.
        self.getattr(_req, ino, None, reply);
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        if parent != REPORT {
            return reply.error(libc::EPERM);
        }
        let made = self.knobs.lock().mkdir(&name.to_string_lossy());
        reply_entry(made.and_then(|id| self.stat(id << 4)), reply);
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        if parent != REPORT {
            return reply.error(libc::EPERM);
        }
        match self.knobs.lock().rmdir(&name.to_string_lossy()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        if let Err(e) = self.stat(ino) {
            return reply.error(e);
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        let handle = Handle {
            ino,
            written: None,
            snapshot: None,
        };
        self.handles.insert(fh, handle);
        reply.opened(fh, FOPEN_DIRECT_IO);
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(handle) = self.handles.get_mut(&fh) else {
            return reply.error(libc::EBADF);
        };
        if handle.snapshot.is_none() {
            let (id, attr) = split(ino);
            let Some(attr) = attr else {
                return reply.error(libc::EISDIR);
            };
            match self.knobs.lock().read(id, attr) {
                Ok(data) => handle.snapshot = Some(data),
                Err(e) => return reply.error(e),
            }
        }
        let data = handle.snapshot.as_deref().unwrap_or_default();
        let start = (offset.max(0) as usize).min(data.len());
        let end = (start + size as usize).min(data.len());
        reply.data(&data[start..end]);
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _wflags: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyWrite,
    ) {
        let (id, attr) = split(ino);
        match attr {
            Some(Attr::Inblob) => {
                let Some(handle) = self.handles.get_mut(&fh) else {
                    return reply.error(libc::EBADF);
                };
                let offset = offset.max(0) as usize;
                if offset + data.len() > INBLOB_MAX {
                    return reply.error(libc::EFBIG);
                }
                let buf = handle.written.get_or_insert_with(Vec::new);
                if buf.len() < offset + data.len() {
                    buf.resize(offset + data.len(), 0);
                }
                buf[offset..offset + data.len()].copy_from_slice(data);
                reply.written(data.len() as u32);
            }
            Some(Attr::Privlevel) => match self.knobs.lock().write_privlevel(id, data) {
                Ok(()) => reply.written(data.len() as u32),
                Err(e) => reply.error(e),
            },
            _ => reply.error(libc::EACCES),
        }
    }

    fn flush(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty,
    ) {
        self.commit(fh);
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.commit(fh);
        self.handles.remove(&fh);
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
        let mut names: Vec<(u64, FileType, String)> = vec![
            (ino, FileType::Directory, ".".into()),
            (ROOT, FileType::Directory, "..".into()),
        ];
        let state = self.knobs.lock();
        match ino {
            ROOT => names.push((TSM, FileType::Directory, "tsm".into())),
            TSM => names.push((REPORT, FileType::Directory, "report".into())),
            REPORT => names.extend(
                state
                    .entries
                    .iter()
                    .map(|e| (e.id << 4, FileType::Directory, e.name.clone())),
            ),
            _ if ino & 0xf == 0 && state.entry(ino >> 4).is_ok() => names.extend(
                Attr::ALL
                    .iter()
                    .filter(|a| a.visible(state.faults.provider))
                    .map(|a| (ino | *a as u64, FileType::RegularFile, a.name().to_string())),
            ),
            _ => return reply.error(libc::ENOTDIR),
        }
        drop(state);
        list_dir(reply, offset, names);
    }
}

#[cfg(test)]
mod tests {
    use super::split;
    use crate::tsm::Attr;

    #[test]
    fn inode_numbers_split_into_entry_and_attribute() {
        assert_eq!(split(5 << 4), (5, None));
        assert_eq!(split(5 << 4 | 2), (5, Some(Attr::Outblob)));
        assert_eq!(split(5 << 4 | 7), (5, Some(Attr::PrivlevelFloor)));
    }
}
