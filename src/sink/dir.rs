// SPDX-License-Identifier: Apache-2.0
//! The directories of a file delivery: on tmpfs or ramfs, reached through
//! real directories, created on the way, searchable by a secret's owner, and
//! read for a killed run's leftovers, each once per delivery
//! ([`super::file::Staging`]).

use std::ffi::OsString;
use std::fs::{self, Permissions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::file::Target;
use super::wipe::leftovers;

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The filesystem type of `dir`, from statfs(2).
pub fn fs_magic(dir: &Path) -> Result<i64> {
    let c_path =
        std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).context("path contains NUL")?;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is NUL-terminated and st points to writable memory the
    // size of a statfs, which the kernel fills completely on success.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statfs {}", dir.display()));
    }
    // SAFETY: statfs returned 0, so st is initialized.
    let f_type = unsafe { st.assume_init() }.f_type;
    // f_type is i64 here but a narrower integer on some targets.
    #[allow(clippy::unnecessary_cast)]
    Ok(f_type as i64)
}

pub fn memory_backed(dir: &Path) -> Result<bool> {
    Ok(matches!(fs_magic(dir)?, TMPFS_MAGIC | RAMFS_MAGIC))
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

/// Refuses a symlink among the directories from `/run` down to `dir`: one
/// placed in a directory another user owns (a service's runtime directory)
/// would send the secret, chowned to its owner, wherever it points.
fn no_symlink_on_the_way(dir: &Path) -> Result<()> {
    let run = crate::root::path("/run");
    for d in dir.ancestors().take_while(|d| d.starts_with(&run)) {
        if fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink()) {
            bail!(
                "{} is a symlink; secrets are delivered only through real directories: name \
                 the directory it points to",
                d.display()
            );
        }
    }
    Ok(())
}

/// Gives `dir` and every directory above it search permission for all:
/// `RuntimeDirectoryMode=0700` or an older run's mode would keep another
/// owner out. A directory root does not own is someone else's to open: left
/// alone, with a warning.
pub(super) fn searchable(dir: &Path) -> Result<()> {
    for d in dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
        let meta = fs::metadata(d).with_context(|| format!("stat {}", d.display()))?;
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
        fs::set_permissions(d, Permissions::from_mode(mode | 0o111))
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
    pub dir: PathBuf,
    pub memory_only: bool,
    pub searchable: bool,
    pub leftovers: Vec<OsString>,
}

/// Checks `dir` for `t`, creating it on the way; see [`super::file::Staging::stage`].
pub(super) fn prepare(t: &Target<'_>, dir: &Path) -> Result<Prepared> {
    if t.memory_only {
        no_symlink_on_the_way(dir)?;
    }
    reachable(&t.path)?;
    let dir_mode = if t.shared() {
        t.dir_mode | 0o111
    } else {
        t.dir_mode
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(dir_mode)
        .create(dir)
        .with_context(|| format!("create directory {}", dir.display()))?;
    if !memory_backed(dir)? {
        if t.memory_only {
            bail!("refusing to write a secret to {}: it is not on tmpfs or ramfs (secrets never go to persistent storage)", dir.display());
        }
        log::warn!(
            "{} is not on tmpfs or ramfs: the secret may reach persistent storage",
            dir.display()
        );
    }
    Ok(Prepared {
        dir: dir.to_owned(),
        memory_only: t.memory_only,
        searchable: false,
        leftovers: leftovers(dir),
    })
}
