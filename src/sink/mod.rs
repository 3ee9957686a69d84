// SPDX-License-Identifier: Apache-2.0
//! Where secrets go: files on tmpfs, systemd credentials, crypttab key
//! files and the kernel keyring. One `Secret` names one KBS resource and
//! every place it is delivered to; `deliver` puts a whole set in place, or
//! none of it.

pub mod dir;
pub mod file;
pub mod keyring;
pub mod volumes;
mod wipe;

use std::path::PathBuf;
use std::time::Duration;

use crate::resource::ResourcePath;
pub use crate::systemd::action::{Action, UnitAction};

/// Default directory of `file` sinks with relative paths.
pub const SECRETS_DIR: &str = "/run/cvm-attest";
/// systemd's credential store searched by `LoadCredential=` (systemd.exec(5)).
pub const CREDSTORE: &str = "/run/credstore";
/// Where systemd-cryptsetup looks for `<volume>.key` (crypttab(5)).
pub const CRYPTSETUP_KEYS: &str = "/run/cryptsetup-keys.d";

/// The name systemd-cryptsetup looks for in `CRYPTSETUP_KEYS` for `volume`.
pub fn key_file_name(volume: &str) -> String {
    format!("{volume}.key")
}
/// Default named keyring, linked under root's user keyring.
pub const KEYRING: &str = "cvm-attest";

/// One configured secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret {
    /// Operator-chosen name (unique; used in messages and as the default
    /// credential name).
    pub name: String,
    pub resource: ResourcePath,
    /// A required secret that cannot be fetched or delivered fails the run
    /// and leaves every sink as it was; an optional one is skipped with a
    /// warning.
    pub required: bool,
    pub sinks: Vec<Sink>,
    /// Units to act on after delivery.
    pub units: Vec<UnitAction>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// A file; relative paths are under the secrets directory.
    File {
        path: PathBuf,
        mode: u32,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    /// `/run/credstore/<name>` (file 0400, directory 0700) for `LoadCredential=<name>`.
    Credential { name: String },
    /// `/run/cryptsetup-keys.d/<volume>.key` (0400) for crypttab.
    Cryptsetup { volume: String },
    /// A key in a named keyring under `@u`.
    Keyring {
        kind: KeyKind,
        description: String,
        keyring: String,
        perm: u32,
        timeout: Option<Duration>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Readable back by processes with read permission.
    User,
    /// Never readable from userspace; for kernel consumers (dm-crypt).
    Logon,
}

/// Where relative paths and fixed sinks live (re-rooted in tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub secrets_dir: PathBuf,
    pub credstore: PathBuf,
    pub cryptsetup_keys: PathBuf,
}

/// What a delivery did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Destinations written or keys (re)placed.
    pub changed: usize,
    /// Files that already held the same secret.
    pub unchanged: usize,
    /// Per item (secret), in order: whether any of its destinations changed.
    pub changed_items: Vec<bool>,
}

impl Layout {
    /// The standard places, under the current root.
    pub fn standard(secrets_dir: &std::path::Path) -> Layout {
        Layout {
            secrets_dir: crate::root::path(&secrets_dir.to_string_lossy()),
            credstore: crate::root::path(CREDSTORE),
            cryptsetup_keys: crate::root::path(CRYPTSETUP_KEYS),
        }
    }

    /// `volume`'s key file.
    pub fn cryptsetup_key(&self, volume: &str) -> PathBuf {
        self.cryptsetup_keys.join(key_file_name(volume))
    }

    fn file_target<'a>(&self, sink: &Sink, data: &'a [u8]) -> Option<file::Target<'a>> {
        let (path, mode, uid, gid) = match sink {
            // Config makes file paths absolute; they live under the root too.
            Sink::File {
                path,
                mode,
                uid,
                gid,
            } if path.is_absolute() => (
                crate::root::path(&path.to_string_lossy()),
                *mode,
                *uid,
                *gid,
            ),
            Sink::File {
                path,
                mode,
                uid,
                gid,
            } => (self.secrets_dir.join(path), *mode, *uid, *gid),
            Sink::Credential { name } => (self.credstore.join(name), 0o400, None, None),
            Sink::Cryptsetup { volume } => (self.cryptsetup_key(volume), 0o400, None, None),
            Sink::Keyring { .. } => return None,
        };
        Some(file::Target {
            path,
            mode,
            uid,
            gid,
            dir_mode: 0o700,
            memory_only: true,
            data,
        })
    }
}

/// Puts every secret in every one of its sinks, or changes nothing: all
/// files are staged and all keys added to a staging keyring first; only
/// then are they committed, and a failure while committing undoes what
/// was already committed.
pub fn deliver(layout: &Layout, items: &[(&Secret, &[u8])]) -> anyhow::Result<Delivered> {
    use anyhow::Context;
    let (mut staging, mut files) = (file::Staging::default(), Vec::new());
    let mut keys: Option<keyring::Staging> = None;
    for (item, (secret, data)) in items.iter().enumerate() {
        for sink in &secret.sinks {
            let staged = match (layout.file_target(sink, data), sink) {
                (Some(target), _) => staging.stage(&target).map(|s| files.push((item, s))),
                (
                    None,
                    Sink::Keyring {
                        kind,
                        description,
                        keyring,
                        perm,
                        timeout,
                    },
                ) => {
                    let staging = match keys.as_mut() {
                        Some(k) => k,
                        None => keys.insert(keyring::Staging::new()?),
                    };
                    staging.stage(
                        &keyring::KeyTarget {
                            kind: *kind,
                            description,
                            keyring,
                            perm: *perm,
                            timeout: *timeout,
                            data,
                        },
                        item,
                    )
                }
                (None, _) => Ok(()),
            };
            staged.with_context(|| format!("deliver secret '{}'", secret.name))?;
        }
    }
    let mut outcome = files.iter_mut().try_for_each(|(_, f)| f.commit());
    if outcome.is_ok() {
        if let Some(k) = keys.as_mut() {
            outcome = k.commit();
        }
    }
    if let Err(e) = outcome {
        let keys_restored = keys.as_mut().is_none_or(keyring::Staging::undo);
        let files_restored = file::undo_all(files.iter_mut().map(|(_, f)| f));
        return Err(e.context(if keys_restored && files_restored {
            "nothing was delivered: every destination is as it was"
        } else {
            "the delivery failed, and some destinations could not be put back (see the errors above)"
        }));
    }
    let mut delivered = Delivered {
        changed_items: vec![false; items.len()],
        ..Delivered::default()
    };
    for (item, f) in files {
        if f.changes() {
            log::info!("wrote {}", f.target().display());
            delivered.changed += 1;
            delivered.changed_items[item] = true;
        } else {
            delivered.unchanged += 1;
        }
        f.finish();
    }
    if let Some(k) = keys {
        let (changed, unchanged) = k.counts();
        delivered.changed += changed;
        delivered.unchanged += unchanged;
        for item in k.changed_items() {
            delivered.changed_items[item] = true;
        }
        k.finish();
    }
    Ok(delivered)
}
