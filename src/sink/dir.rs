// SPDX-License-Identifier: Apache-2.0
//! The directories of a file delivery: on tmpfs or ramfs, reached through
//! real directories, created on the way, searchable by a secret's owner, and
//! read for a killed run's leftovers, each once per delivery
//! ([`super::file::Staging`]).
//!
//! A directory is opened once (`O_PATH`: search permission is enough, as
//! for a path), and every file operation after that is relative to it
//! (`openat`, `renameat`, `linkat`, `unlinkat`). Below `/run`, where the
//! agent's own sinks live, the directories are opened one at a time without
//! following a symlink: a user who owns one of them (a service's runtime
//! directory) cannot swap a part of the way for a symlink between the check
//! and the write.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Permissions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::file::Target;
use super::wipe::leftovers;

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The filesystem type of `dir`, from statfs(2).
pub fn fs_magic(dir: &Path) -> Result<i64> {
    let st = rustix::fs::statfs(dir).with_context(|| format!("statfs {}", dir.display()))?;
    Ok(f_type(&st))
}

pub fn memory_backed(dir: &Path) -> Result<bool> {
    Ok(in_memory(fs_magic(dir)?))
}

/// statfs's `f_type`, an i64 here but a narrower integer on some targets.
#[allow(clippy::unnecessary_cast)]
fn f_type(st: &rustix::fs::StatFs) -> i64 {
    st.f_type as i64
}

/// Whether a filesystem type keeps its files in memory only.
fn in_memory(f_type: i64) -> bool {
    matches!(f_type, TMPFS_MAGIC | RAMFS_MAGIC)
}

/// Opens `dir` as an `O_PATH` descriptor, following symlinks.
fn open_path(dir: &Path) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rustix::fs::open(dir, flags, Mode::empty())
        .map_err(io::Error::from)
        .with_context(|| format!("open directory {}", dir.display()))
}

/// Refuses a `path` whose directories cannot be made: the nearest of them
/// that exists is not a directory.
pub fn reachable(path: &Path) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let blocking = dir
        .ancestors()
        .filter(|d| !d.as_os_str().is_empty())
        .find(|d| fs::symlink_metadata(d).is_ok())
        .filter(|d| !d.is_dir());
    match blocking {
        Some(file) => bail!(
            "{} is not a directory, so {} cannot be written: remove it, or name another path",
            file.display(),
            path.display()
        ),
        None => Ok(()),
    }
}

/// An open directory: files are named relative to it, never through the
/// path it was opened by, which only names them in messages.
pub(super) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` in this directory, for messages.
    pub fn shown(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// The metadata of `name` itself (a symlink is not followed).
    pub fn meta(&self, name: &OsStr) -> io::Result<fs::Metadata> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        File::from(rustix::fs::openat(&self.fd, name, flags, Mode::empty())?).metadata()
    }

    /// Opens `name` with `flags`, never through a symlink.
    pub fn open(&self, name: &OsStr, flags: OFlags, mode: u32) -> io::Result<File> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// A second name `to` for the file `from` (neither followed).
    pub fn link(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::linkat(
            &self.fd,
            from,
            &self.fd,
            to,
            AtFlags::empty(),
        )?)
    }

    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    pub fn unlink(&self, name: &OsStr) -> io::Result<()> {
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// The directory's own metadata.
    pub fn own_meta(&self) -> io::Result<fs::Metadata> {
        File::from(self.fd.try_clone()?).metadata()
    }

    fn memory_backed(&self) -> io::Result<bool> {
        Ok(in_memory(f_type(&rustix::fs::fstatfs(&self.fd)?)))
    }

    /// The directory itself, opened for reading (listing, fchmod), which
    /// the `O_PATH` descriptor cannot do: "." reopens the very directory it
    /// holds.
    fn readable(&self) -> io::Result<OwnedFd> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Ok(rustix::fs::openat(&self.fd, ".", flags, Mode::empty())?)
    }

    /// The names in the directory (which needs read permission on it).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        use std::os::unix::ffi::OsStrExt;
        let mut names = Vec::new();
        // Not Dir::read_from: it reopens "." with this descriptor's own
        // flags, and an O_PATH descriptor cannot be read.
        for entry in rustix::fs::Dir::new(self.readable()?)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(&name).to_owned());
            }
        }
        Ok(names)
    }
}

/// Refuses a symlink among the directories from `/run` down to `dir`, by
/// path: the message [`open_dir`] would give, before anything is created.
fn no_symlink_on_the_way(dir: &Path) -> Result<()> {
    let run = crate::root::path("/run");
    for d in dir.ancestors().take_while(|d| d.starts_with(&run)) {
        if fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!("{}", symlink_refused(d));
        }
    }
    Ok(())
}

fn symlink_refused(path: &Path) -> String {
    format!(
        "{} is a symlink; secrets are delivered only through real directories: name the \
         directory it points to",
        path.display()
    )
}

/// Opens directory `name` in `parent` without following a symlink;
/// `path` names it in messages.
fn open_below(parent: &OwnedFd, name: &OsStr, path: &Path) -> Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(parent, name, flags, Mode::empty()).map_err(|e| {
        let symlink = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
        match e {
            _ if symlink => anyhow!(symlink_refused(path)),
            Errno::NOTDIR => anyhow!("{} is not a directory", path.display()),
            e => anyhow!(io::Error::from(e)).context(format!("open {}", path.display())),
        }
    })
}

/// Opens `dir`, creating what is missing with `mode` (`create`). Below
/// `/run` (`no_symlinks`), one directory at a time, never through a symlink;
/// elsewhere an operator named it, symlinks and all.
pub(super) fn open_dir(dir: &Path, mode: u32, create: bool, no_symlinks: bool) -> Result<Dir> {
    let run = crate::root::path("/run");
    let below = dir.strip_prefix(&run).ok().filter(|_| no_symlinks);
    let Some(below) = below else {
        if create {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .with_context(|| format!("create directory {}", dir.display()))?;
        }
        return Ok(Dir {
            fd: open_path(dir)?,
            path: dir.to_owned(),
        });
    };
    let mut fd = open_path(&run)?;
    let mut walked = run.clone();
    for part in below.components() {
        let Component::Normal(name) = part else {
            bail!("{} names a directory through '..'", dir.display());
        };
        walked.push(name);
        if create {
            match rustix::fs::mkdirat(&fd, name, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => {
                    return Err(io::Error::from(e))
                        .with_context(|| format!("create directory {}", walked.display()))
                }
            }
        }
        fd = open_below(&fd, name, &walked)?;
    }
    Ok(Dir {
        fd,
        path: dir.to_owned(),
    })
}

/// Gives `dir` and every directory above it search permission for all:
/// `RuntimeDirectoryMode=0700` or an older run's mode would keep another
/// owner out. A directory root does not own is someone else's to open: left
/// alone, with a warning. Each is looked up as for the delivery (through no
/// symlink below `/run`) and changed through the descriptor it was checked
/// by; the owner of a directory above could still rename another of root's
/// directories into its place, which would then get the o+x.
pub(super) fn searchable(dir: &Path, no_symlinks: bool) -> Result<()> {
    for d in dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
        let open = open_dir(d, 0, false, no_symlinks)?;
        let meta = open
            .own_meta()
            .with_context(|| format!("stat {}", d.display()))?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o001 != 0 {
            continue;
        }
        if meta.uid() != 0 {
            log::warn!(
                "{} (mode {mode:04o}, owner {}) may keep the secret's owner out: not changed",
                d.display(),
                meta.uid()
            );
            break;
        }
        open.readable()
            .map(File::from)
            .and_then(|f| f.set_permissions(Permissions::from_mode(mode | 0o111)))
            .with_context(|| format!("let the secret's owner search {}", d.display()))?;
        log::info!(
            "{}: mode {:04o} -> {:04o}, so that the secret's owner can reach it",
            d.display(),
            mode,
            mode | 0o111
        );
    }
    Ok(())
}

/// A directory ready for files: its checks passed, its leftovers listed.
pub(super) struct Prepared {
    pub dir: Rc<Dir>,
    pub memory_only: bool,
    pub searchable: bool,
    pub leftovers: Vec<OsString>,
}

/// Opens `dir` for `t`, creating it on the way; see [`super::file::Staging::stage`].
pub(super) fn prepare(t: &Target<'_>, dir: &Path) -> Result<Prepared> {
    // By path first, for the plainer message; open_dir below is what holds.
    if t.memory_only {
        no_symlink_on_the_way(dir)?;
    }
    reachable(&t.path)?;
    let dir_mode = if t.shared() {
        t.dir_mode | 0o111
    } else {
        t.dir_mode
    };
    let open = open_dir(dir, dir_mode, true, t.memory_only)?;
    if !open
        .memory_backed()
        .with_context(|| format!("statfs {}", dir.display()))?
    {
        if t.memory_only {
            bail!("refusing to write a secret to {}: it is not on tmpfs or ramfs (secrets never go to persistent storage)", dir.display());
        }
        log::warn!(
            "{} is not on tmpfs or ramfs: the secret may reach persistent storage",
            dir.display()
        );
    }
    let leftovers = leftovers(&open);
    Ok(Prepared {
        dir: Rc::new(open),
        memory_only: t.memory_only,
        searchable: false,
        leftovers,
    })
}
