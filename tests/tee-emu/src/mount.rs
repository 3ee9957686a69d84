// SPDX-License-Identifier: Apache-2.0
//! Mounting a `fuser` filesystem as root without `fusermount`, and unmounting
//! it on drop.
//!
//! Kernel ABI (Documentation/filesystems/fuse.rst, "Mount options"): open
//! `/dev/fuse`, then `mount(2)` with fstype `fuse` and the data string
//! `fd=N,rootmode=40000,user_id=U,group_id=G`; the fd is then the session
//! channel handed to `fuser::Session::from_fd`. `allow_other` lets other users
//! in (the kernel then checks modes because of `default_permissions`).
//! Drop detaches the mount (`umount2(MNT_DETACH)`), which aborts the
//! connection once the last open file in it is closed; the session thread then
//! sees `ENODEV` and is joined.

use std::ffi::{CString, OsStr};
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyDirectory, ReplyEntry, Session, SessionACL,
};

/// A mounted emulator; unmounts and joins its session thread on drop.
#[derive(Debug)]
pub struct FuseMount {
    dir: PathBuf,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl FuseMount {
    /// Mounts `fs` on the existing directory `dir` and serves it on a new thread.
    pub fn mount<FS: Filesystem + Send + 'static>(dir: &Path, fs: FS, name: &str) -> Result<Self> {
        let dev: OwnedFd = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .context("open /dev/fuse")?
            .into();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&dev);
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let data = format!(
            "fd={fd},rootmode=40000,user_id={uid},group_id={gid},allow_other,default_permissions"
        );
        let c_dir = CString::new(dir.as_os_str().as_bytes()).context("mount point has a NUL")?;
        let c_name = CString::new(name).context("source name has a NUL")?;
        let c_data = CString::new(data).context("mount data has a NUL")?;
        // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c_name.as_ptr(),
                c_dir.as_ptr(),
                c"fuse".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c_data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mount FUSE {name} on {}", dir.display()));
        }
        let mut session = Session::from_fd(fs, dev, SessionACL::All);
        let thread = std::thread::Builder::new()
            .name(format!("tee-emu {name}"))
            .spawn(move || session.run());
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                detach(dir);
                return Err(e).context("spawn the FUSE session thread");
            }
        };
        Ok(FuseMount {
            dir: dir.to_path_buf(),
            thread: Some(thread),
        })
    }

    /// The directory the filesystem is mounted on.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn detach(dir: &Path) {
    if let Ok(c_dir) = CString::new(dir.as_os_str().as_bytes()) {
        // SAFETY: c_dir is a valid NUL-terminated path.
        unsafe { libc::umount2(c_dir.as_ptr(), libc::MNT_DETACH) };
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        detach(&self.dir);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The attributes of an emulated file or directory: owned by root, times now.
pub(crate) fn file_attr(ino: u64, kind: FileType, perm: u16, size: u64) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino,
        size,
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: now,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// Attributes are never cached: the emulators' files change under the guest.
const TTL: Duration = Duration::ZERO;

/// Answers `lookup` (and `mkdir`) with the attributes found, or the errno.
pub(crate) fn reply_entry(found: Result<FileAttr, i32>, reply: ReplyEntry) {
    match found {
        Ok(attr) => reply.entry(&TTL, &attr, 0),
        Err(e) => reply.error(e),
    }
}

/// Answers `getattr` with the attributes found, or the errno.
pub(crate) fn reply_attr(found: Result<FileAttr, i32>, reply: ReplyAttr) {
    match found {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(e) => reply.error(e),
    }
}

/// Answers `readdir` with `entries` (`.` and `..` included) from `offset` on.
pub(crate) fn list_dir<N: AsRef<OsStr>>(
    mut reply: ReplyDirectory,
    offset: i64,
    entries: impl IntoIterator<Item = (u64, FileType, N)>,
) {
    for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(offset.max(0) as usize) {
        if reply.add(child, i as i64 + 1, kind, name) {
            break;
        }
    }
    reply.ok();
}

/// True when FUSE emulators can run here: root and a usable `/dev/fuse`.
pub fn fuse_usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_ok()
}

/// For tests: false (after printing `SKIPPED <name>: needs root and /dev/fuse`
/// to stderr) when FUSE emulators cannot run here.
pub fn can_run(name: &str) -> bool {
    let ok = fuse_usable();
    if !ok {
        eprintln!("SKIPPED {name}: needs root and /dev/fuse");
    }
    ok
}
