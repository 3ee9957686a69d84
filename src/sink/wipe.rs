// SPDX-License-Identifier: Apache-2.0
//! Dropping a copy of a secret: overwritten with zeros in place (tmpfs keeps
//! the same pages), then removed. The file a delivery replaces, a temporary
//! file of a failed one, the copies a killed run left beside a target, and
//! the key files of open volumes all go this way, each named in its open
//! directory ([`Dir`]), never through a path.

use std::ffi::{OsStr, OsString};
use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use rustix::fs::OFlags;

use super::dir::Dir;

/// Zeros written per call: a large file is not held in memory whole.
const CHUNK: usize = 64 << 10;

/// The hidden name beside file `name` for this process's `new` (temporary)
/// or `old` (backup) copy: `.NAME.cvm-attest-new-PID`.
pub(super) fn hidden(name: &OsStr, suffix: &str) -> OsString {
    format!(
        ".{}.cvm-attest-{suffix}-{}",
        name.to_string_lossy(),
        std::process::id()
    )
    .into()
}

/// The names in `dir` that killed runs left there: [`hidden`] copies whose
/// process is gone. Read once per directory of a delivery.
pub(super) fn leftovers(dir: &Dir) -> Vec<OsString> {
    let Ok(names) = dir.names() else {
        return Vec::new();
    };
    names
        .into_iter()
        .filter(|name| {
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix('.'))
                .and_then(|n| n.rsplit_once(".cvm-attest-"))
                .and_then(|(_, copy)| copy_pid(copy));
            pid.is_some_and(|pid| {
                pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
            })
        })
        .collect()
}

/// The PID in what follows `.NAME.cvm-attest-` in a [`hidden`] name:
/// `new-PID` or `old-PID`, and nothing else.
fn copy_pid(copy: &str) -> Option<u32> {
    let pid = copy
        .strip_prefix("new-")
        .or_else(|| copy.strip_prefix("old-"))?;
    pid.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| pid.parse().ok())
        .flatten()
}

/// Removes `target`'s copies among `leftovers` (from [`leftovers`] of its
/// directory): its temporary file and its backup, a second copy of an
/// earlier secret. A backup that is still a second name of the target (the
/// run was killed between the link and the rename) is only unlinked: wiping
/// it would wipe the target. So is one with other names unless
/// `wipe_shared` (for `get --output` they are the user's).
pub(super) fn remove_stale(dir: &Dir, name: &OsStr, wipe_shared: bool, leftovers: &[OsString]) {
    let prefix = format!(".{}.cvm-attest-", name.to_string_lossy());
    // Exactly `.NAME.cvm-attest-new-PID` (or `old-`): a longer NAME with
    // the same beginning (`NAME.cvm-attest-x`) is another target's.
    let mut mine = leftovers
        .iter()
        .filter(|n| {
            n.to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(copy_pid)
                .is_some()
        })
        .peekable();
    if mine.peek().is_none() {
        return;
    }
    let live = dir.meta(name).ok().map(|m| (m.dev(), m.ino()));
    for file_name in mine {
        let path = dir.shown(file_name);
        let keep_pages = dir
            .meta(file_name)
            .is_ok_and(|m| Some((m.dev(), m.ino())) == live || (!wipe_shared && m.nlink() > 1));
        match drop_copy(dir, file_name, keep_pages) {
            Ok(true) => log::info!("removed {}, left by an earlier run", path.display()),
            Ok(false) => {}
            Err(e) => log::warn!("remove {}: {e:#}", path.display()),
        }
    }
}

/// Drops the copy `name` of a secret: only unlinked when `keep_pages` (its
/// pages are another name's too), else wiped first ([`wipe`]).
pub(super) fn drop_copy(dir: &Dir, name: &OsStr, keep_pages: bool) -> Result<bool> {
    if keep_pages {
        dir.unlink(name).map(|()| true).map_err(anyhow::Error::from)
    } else {
        wipe(dir, name)
    }
}

/// Overwrites a regular file with zeros in place, then removes it.
/// `Ok(false)`: there was no such file. One that cannot be overwritten
/// (another owner's 0400 file, and no CAP_DAC_OVERRIDE) is removed all the
/// same, with a warning.
pub(super) fn wipe(dir: &Dir, name: &OsStr) -> Result<bool> {
    let path = dir.shown(name);
    match dir.meta(name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
        Ok(meta) => super::file::regular(&meta, &path, "remove it by hand")?,
    }
    if let Err(e) = open_to_wipe(dir, name).and_then(|mut w| zero(&mut w, &path)) {
        log::warn!("{e:#}; removing it without wiping it first");
    }
    dir.unlink(name)
        .with_context(|| format!("remove {}", path.display()))?;
    Ok(true)
}

/// Opens a regular file to overwrite it. The units run as root without
/// CAP_DAC_OVERRIDE and key files are 0400, so the file is opened for
/// reading, made writable by its owner, and opened again for writing (the
/// same inode, checked).
pub(super) fn open_to_wipe(dir: &Dir, name: &OsStr) -> Result<File> {
    let path = dir.shown(name);
    let open = |write: bool| {
        let access = if write {
            OFlags::WRONLY
        } else {
            OFlags::RDONLY
        };
        dir.open(name, access | OFlags::NONBLOCK, 0)
    };
    let file = open(false).with_context(|| format!("open {} to wipe it", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?;
    anyhow::ensure!(
        meta.is_file(),
        "{} was replaced while being wiped",
        path.display()
    );
    file.set_permissions(Permissions::from_mode(0o600))
        .with_context(|| format!("make {} writable", path.display()))?;
    let writer = open(true).with_context(|| format!("open {} to wipe it", path.display()))?;
    let again = writer
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?;
    anyhow::ensure!(
        (again.dev(), again.ino()) == (meta.dev(), meta.ino()),
        "{} was replaced while being wiped",
        path.display()
    );
    Ok(writer)
}

/// Overwrites what `writer` (from [`open_to_wipe`]) holds with zeros, as
/// long as it is now; `path` names it in errors.
pub(super) fn zero(writer: &mut File, path: &Path) -> Result<()> {
    let size = writer
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .len();
    let zeros = [0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        writer
            .write_all(&zeros[..n])
            .with_context(|| format!("overwrite {}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Each target removes only its own copies: `k` does not take those of
    /// `k.cvm-attest-x`, whose name begins like `k`'s, nor a live process's.
    #[test]
    fn only_a_targets_own_copies_of_dead_runs_are_removed() {
        let dir = std::env::temp_dir().join(format!("cvm-attest-stale-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let names = [
            ".k.cvm-attest-old-99999999",
            ".k.cvm-attest-new-99999998",
            ".k.cvm-attest-x.cvm-attest-old-99999997",
            ".k.cvm-attest-new-1",
            ".k.cvm-attest-new-9x",
        ];
        for name in names {
            fs::write(dir.join(name), b"copy").unwrap();
        }
        let open = super::super::dir::open_dir(&dir, 0o700, false, false).unwrap();
        remove_stale(&open, OsStr::new("k"), true, &leftovers(&open));
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            left,
            [
                ".k.cvm-attest-new-1",
                ".k.cvm-attest-new-9x",
                ".k.cvm-attest-x.cvm-attest-old-99999997",
            ]
        );
    }
}
