// SPDX-License-Identifier: Apache-2.0
//! File sinks, written all-or-nothing.
//!
//! `Staging::stage` writes the secret to a temporary file beside its target,
//! created with its final mode (and owner), after checking that the
//! directory is on tmpfs or ramfs (`dir.rs`, once per directory of a
//! delivery): a secret never touches persistent storage. `commit`
//! renames it into place, keeping the previous file as a hard-linked backup
//! until `finish`, so that `undo` can put every earlier file back when a
//! later step fails. A target that already holds the same bytes, mode and
//! owner is left alone: a re-run with the same content changes nothing.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

use rustix::fs::OFlags;

use super::dir::{prepare, searchable, Dir, Prepared};
use super::wipe::{drop_copy, hidden, open_to_wipe, remove_stale, wipe, zero};

/// A file to put in place.
pub struct Target<'a> {
    pub path: PathBuf,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Mode of directories created on the way.
    pub dir_mode: u32,
    /// Refuse a directory that is not tmpfs or ramfs (else only warn, for
    /// an operator's explicit `get --output`).
    pub memory_only: bool,
    pub data: &'a [u8],
}

impl<'a> Target<'a> {
    /// Given to another owner or group, so it must be reachable by them: the
    /// directories on the way get search permission for all (o+x, never
    /// read: the names stay unlisted; the file's own mode guards it).
    pub fn shared(&self) -> bool {
        self.uid.is_some() || self.gid.is_some()
    }

    /// A file an operator names (`get --output`): mode 0600, owned by the
    /// caller, new directories 0700, on any filesystem (with a warning).
    pub fn operator_file(path: PathBuf, data: &'a [u8]) -> Target<'a> {
        Target {
            path,
            mode: 0o600,
            uid: None,
            gid: None,
            dir_mode: 0o700,
            memory_only: false,
            data,
        }
    }
}

/// Undoes every committed file, last first; false when one could not be
/// put back (each such error is logged).
pub fn undo_all<'s>(staged: impl DoubleEndedIterator<Item = &'s mut Staged>) -> bool {
    staged.rev().fold(true, |restored, s| s.undo() & restored)
}

/// A staged file: written, not yet in place. Removed on drop unless committed.
pub struct Staged {
    /// The target's directory; every name below is in it.
    dir: Rc<Dir>,
    name: OsString,
    temp: Option<OsString>,
    backup: Option<OsString>,
    committed: bool,
    /// Wipe the replaced file even when it has other names: true for the
    /// agent's own sinks; for `get --output` the other names are the user's.
    wipe_shared: bool,
}

/// The owner and group a file created in `dir` gets: the process's, or the
/// directory's group when it is set-group-ID.
fn new_file_owner(dir: &Dir) -> (u32, u32) {
    // SAFETY: geteuid and getegid always succeed and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    match dir.own_meta() {
        Ok(m) if m.mode() & libc::S_ISGID != 0 => (uid, m.gid()),
        _ => (uid, gid),
    }
}

/// Whether the target holds these bytes with this mode and owner already.
/// Without an owner or group configured, the file must have those a new
/// file would get: one an earlier configuration gave away is taken back.
fn unchanged(t: &Target<'_>, dir: &Dir, name: &OsStr) -> bool {
    let Ok(meta) = dir.meta(name) else {
        return false;
    };
    let (uid, gid) = new_file_owner(dir);
    let same_bytes = || {
        let Ok(mut file) = dir.open(name, OFlags::RDONLY | OFlags::NONBLOCK, 0) else {
            return false;
        };
        // Read straight into a wiped buffer one byte longer than the
        // secret: no copy lands anywhere else, and a file that grew since
        // its size was read shows.
        let mut old = Zeroizing::new(vec![0u8; t.data.len() + 1]);
        let mut n = 0;
        while n < old.len() {
            match file.read(&mut old[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        n == t.data.len() && old[..n] == *t.data
    };
    meta.is_file()
        && meta.mode() & 0o7777 == t.mode
        && t.uid.unwrap_or(uid) == meta.uid()
        && t.gid.unwrap_or(gid) == meta.gid()
        && meta.len() == t.data.len() as u64
        && same_bytes()
}

/// Refuses a `path` that exists and is not a regular file: delivery renames
/// over it, so a symlink, directory, device or pipe would be replaced (or
/// fail the rename), never written through. `what_to_do` ends the message.
pub fn replaceable(path: &Path, what_to_do: &str) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) => regular(&meta, path, what_to_do),
        Err(_) => Ok(()),
    }
}

/// [`replaceable`] for metadata already read: `path` names it.
pub(super) fn regular(meta: &fs::Metadata, path: &Path, what_to_do: &str) -> Result<()> {
    if !meta.is_file() {
        bail!(
            "{} is not a regular file (a symlink, directory, device or pipe); {what_to_do}",
            path.display()
        );
    }
    Ok(())
}

/// Stages the files of one delivery. Each directory is checked, created and
/// read for a killed run's leftovers once, however many files go there.
#[derive(Default)]
pub struct Staging {
    dirs: Vec<Prepared>,
}

impl Staging {
    /// Writes the temporary file (or notes that nothing needs to change).
    pub fn stage(&mut self, t: &Target<'_>) -> Result<Staged> {
        let dir = match t.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = t
            .path
            .file_name()
            .with_context(|| format!("{} names no file", t.path.display()))?;
        let known = self
            .dirs
            .iter()
            .position(|p| p.dir.path() == dir && p.memory_only == t.memory_only);
        let prepared = match known {
            Some(i) => &mut self.dirs[i],
            None => {
                self.dirs.push(prepare(t, dir)?);
                self.dirs.last_mut().expect("just pushed")
            }
        };
        if t.shared() && !prepared.searchable {
            searchable(dir, t.memory_only)?;
            prepared.searchable = true;
        }
        if let Ok(meta) = prepared.dir.meta(name) {
            regular(&meta, &t.path, "remove it, or name another path")?;
        }
        remove_stale(&prepared.dir, name, t.memory_only, &prepared.leftovers);
        stage_file(t, Rc::clone(&prepared.dir), name)
    }
}

/// Writes `t`'s temporary file in its prepared directory `dir`.
fn stage_file(t: &Target<'_>, dir: Rc<Dir>, name: &OsStr) -> Result<Staged> {
    let mut staged = Staged {
        dir,
        name: name.to_owned(),
        temp: None,
        backup: None,
        committed: false,
        wipe_shared: t.memory_only,
    };
    if unchanged(t, &staged.dir, name) {
        log::debug!("{} already holds this secret", t.path.display());
        return Ok(staged);
    }
    let temp = hidden(name, "new");
    let _ = wipe(&staged.dir, &temp);
    let write = |dir: &Dir| -> std::io::Result<()> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let mut file: File = dir.open(&temp, flags, t.mode)?;
        // The umask may have narrowed the mode; the final mode is exact.
        file.set_permissions(Permissions::from_mode(t.mode))?;
        // Only when it changes anything: the hardened unit's seccomp filter
        // refuses chown(2) altogether (see systemd/cvm-attest.service).
        let meta = file.metadata()?;
        let uid = t.uid.filter(|&u| u != meta.uid());
        let gid = t.gid.filter(|&g| g != meta.gid());
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::fchown(&file, uid, gid).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("change the owner to {uid:?}:{gid:?} ({e}); the unit needs CapabilityBoundingSet=CAP_CHOWN and SystemCallFilter=@chown for that"),
                )
            })?;
        }
        file.write_all(t.data)
    };
    if let Err(e) = write(&staged.dir) {
        let _ = wipe(&staged.dir, &temp);
        return Err(e).with_context(|| format!("write {}", t.path.display()));
    }
    staged.temp = Some(temp);
    Ok(staged)
}

impl Staged {
    /// The target's path.
    pub fn target(&self) -> PathBuf {
        self.dir.shown(&self.name)
    }

    /// Whether committing changes anything.
    pub fn changes(&self) -> bool {
        self.temp.is_some()
    }

    /// Renames the new file into place, keeping the old one as a backup.
    pub fn commit(&mut self) -> Result<()> {
        let Some(temp) = &self.temp else {
            return Ok(());
        };
        if self.dir.meta(&self.name).is_ok() {
            let backup = hidden(&self.name, "old");
            let _ = self.dir.unlink(&backup);
            self.dir
                .link(&self.name, &backup)
                .with_context(|| format!("keep the previous {}", self.target().display()))?;
            self.backup = Some(backup);
        }
        if let Err(e) = self.dir.rename(temp, &self.name) {
            // Not wiped: the backup is a second name of the target in place.
            if let Some(backup) = self.backup.take() {
                let _ = self.dir.unlink(&backup);
            }
            return Err(e).with_context(|| {
                format!("move the secret into place at {}", self.target().display())
            });
        }
        self.committed = true;
        Ok(())
    }

    /// Puts the previous file (or its absence) back; false when it could
    /// not (the error is logged).
    pub fn undo(&mut self) -> bool {
        if !self.committed {
            return true;
        }
        let result = match &self.backup {
            Some(backup) => self.put_back(backup),
            None => wipe(&self.dir, &self.name).map(|_| ()),
        };
        if let Err(e) = &result {
            log::error!("restore {}: {e:#}", self.target().display());
        }
        self.committed = false;
        self.backup = None;
        result.is_ok()
    }

    /// Renames the backup over the new file, which is wiped through a
    /// descriptor opened before: it needs no second name meanwhile.
    fn put_back(&self, backup: &OsStr) -> Result<()> {
        let target = self.target();
        let writer = open_to_wipe(&self.dir, &self.name);
        self.dir
            .rename(backup, &self.name)
            .with_context(|| format!("put back the previous {}", target.display()))?;
        match writer {
            Ok(mut writer) => zero(&mut writer, &target)?,
            Err(e) => log::warn!("{e:#}; the new file is dropped without being wiped"),
        }
        Ok(())
    }

    /// Wipes the backup (the previous secret) once the whole delivery
    /// succeeded.
    pub fn finish(mut self) {
        if let Some(backup) = self.backup.take() {
            let shared = self.dir.meta(&backup).is_ok_and(|m| m.nlink() > 1);
            if let Err(e) = drop_copy(&self.dir, &backup, shared && !self.wipe_shared) {
                log::warn!("remove {}: {e:#}", self.dir.shown(&backup).display());
            }
        }
        self.committed = false;
        self.temp = None;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(temp) = &self.temp {
            if !self.committed {
                let _ = wipe(&self.dir, temp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undo puts the previous file back and zeroes the new one: a reader
    /// that opened it meanwhile finds zeros, not the secret.
    #[test]
    fn undo_restores_the_previous_file_and_wipes_the_new_one() {
        let dir = std::env::temp_dir().join(format!("cvm-attest-undo-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.key");
        fs::write(&path, b"previous").unwrap();
        let target = Target::operator_file(path.clone(), b"the new secret");
        let mut staged = Staging::default().stage(&target).unwrap();
        staged.commit().unwrap();
        let mut reader = File::open(&path).unwrap();
        let restored_ok = staged.undo();
        let mut seen = Vec::new();
        reader.read_to_end(&mut seen).unwrap();
        let restored = fs::read(&path).unwrap();
        drop(staged);
        let left = fs::read_dir(&dir).unwrap().count();
        fs::remove_dir_all(&dir).unwrap();
        assert!(restored_ok);
        assert_eq!(seen, vec![0u8; b"the new secret".len()]);
        assert_eq!(restored, b"previous");
        assert_eq!(left, 1, "no other copy is left");
    }

    /// The directory is held open from staging to commit: swapped for a
    /// symlink in between, the secret still lands in the directory that was
    /// checked (its previous file kept and then wiped there), never where
    /// the symlink points.
    #[test]
    fn a_directory_swapped_for_a_symlink_after_staging_is_not_followed() {
        let base = std::env::temp_dir().join(format!("cvm-attest-swap-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (real, moved, elsewhere) = (base.join("d"), base.join("moved"), base.join("elsewhere"));
        fs::create_dir_all(&real).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(real.join("k"), b"previous").unwrap();
        let target = Target::operator_file(real.join("k"), b"secret");
        let mut staged = Staging::default().stage(&target).unwrap();
        fs::rename(&real, &moved).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &real).unwrap();
        let committed = staged.commit();
        staged.finish();
        let landed = fs::read(moved.join("k"));
        let beside = fs::read_dir(&moved).unwrap().count();
        let leaked = fs::read_dir(&elsewhere).unwrap().count();
        fs::remove_dir_all(&base).unwrap();
        committed.unwrap();
        assert_eq!(landed.unwrap(), b"secret");
        assert_eq!(beside, 1, "the backup is gone");
        assert_eq!(leaked, 0, "nothing went where the symlink points");
    }
}
