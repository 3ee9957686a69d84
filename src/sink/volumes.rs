// SPDX-License-Identifier: Apache-2.0
//! Key files of volumes that are open already.
//!
//! systemd-cryptsetup reads `/run/cryptsetup-keys.d/<volume>.key` once, when
//! it opens the volume; after that the file is only one more copy of a disk
//! key, on a tmpfs, for the rest of the boot (crypttab's `keyfile-erase`
//! does not apply to a key file found there). So a key file lives only
//! while its volume waits for it: `run` writes none for a volume that is
//! open and wipes one left behind, and `cleanup`, which the initramfs unit
//! runs when it stops before switch-root, wipes those of the volumes opened
//! since it delivered them. A key file that a crypttab line of a volume not
//! yet open names as its key file (third column) is kept for that volume.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::{Layout, Secret, Sink};

/// Device-mapper devices appear here as `dm-N`, with `dm/name` and `dm/uuid`.
const SYS_BLOCK: &str = "/sys/block";
/// The crypttabs that may name key files: the running root's, and in the
/// initramfs the real root's, mounted at /sysroot before switch-root.
const CRYPTTABS: [&str; 2] = ["/etc/crypttab", "/sysroot/etc/crypttab"];

/// Names of the open dm-crypt devices: those whose DM UUID cryptsetup set
/// (`CRYPT-<type>-…`). Another device-mapper target of the same name, such
/// as an LVM volume, does not count.
pub fn open() -> BTreeSet<String> {
    open_in(&crate::root::path(SYS_BLOCK))
}

fn open_in(sys_block: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    // No /sys/block (a container) means no device is open.
    let Ok(entries) = fs::read_dir(sys_block) else {
        return out;
    };
    for entry in entries.flatten() {
        if !entry.file_name().as_encoded_bytes().starts_with(b"dm-") {
            continue;
        }
        // A device removed meanwhile has no attributes left: skip it.
        let dm = entry.path().join("dm");
        let (Ok(name), Ok(uuid)) = (
            fs::read_to_string(dm.join("name")),
            fs::read_to_string(dm.join("uuid")),
        ) else {
            continue;
        };
        if uuid.starts_with("CRYPT-") {
            out.insert(name.trim_end().to_owned());
        }
    }
    out
}

/// Wipes and removes the key files of the configured volumes that are
/// open. Returns the open volumes, and how many key files could not be
/// removed (each named in a warning). With no key-file sink configured it
/// looks at nothing and returns no volume.
pub fn forget_open(layout: &Layout, secrets: &[Secret]) -> (BTreeSet<String>, usize) {
    let volumes: BTreeSet<&String> = secrets
        .iter()
        .flat_map(|s| &s.sinks)
        .filter_map(|s| match s {
            Sink::Cryptsetup { volume } => Some(volume),
            _ => None,
        })
        .collect();
    if volumes.is_empty() {
        return (BTreeSet::new(), 0);
    }
    let open = open();
    let waiting = waiting_key_files(&open);
    let mut failed = 0;
    for volume in volumes.into_iter().filter(|v| open.contains(*v)) {
        let path = layout.cryptsetup_key(volume);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let dir = match super::dir::open_dir(parent, 0, false, true) {
            Ok(dir) => dir,
            // No directory, no key file to wipe.
            Err(e) if not_found(&e) => continue,
            Err(e) => {
                log::warn!("volume '{volume}' is open, but its key file stays: {e:#}");
                failed += 1;
                continue;
            }
        };
        // Copies a run killed mid-delivery left beside it, too.
        super::wipe::remove_stale(&dir, name, true, &super::wipe::leftovers(&dir));
        if let Some(other) = waiting.get(&path) {
            log::info!(
                "volume '{volume}' is open, but crypttab names {} as the key file of '{other}', \
                 which is not: kept",
                path.display()
            );
            continue;
        }
        match super::wipe::wipe(&dir, name) {
            Ok(true) => log::info!(
                "volume '{volume}' is open: wiped and removed {}",
                path.display()
            ),
            Ok(false) => {}
            Err(e) => {
                log::warn!("volume '{volume}' is open, but its key file stays: {e:#}");
                failed += 1;
            }
        }
    }
    (open, failed)
}

/// Whether `e` comes of a path that does not exist.
fn not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    })
}

/// Key files (under the current root) that crypttab lines of volumes not
/// open name in their third column, with one such volume each.
fn waiting_key_files(open: &BTreeSet<String>) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for tab in CRYPTTABS {
        let Ok(text) = fs::read_to_string(crate::root::path(tab)) else {
            continue;
        };
        for (volume, key_file) in key_files(&text) {
            if !open.contains(volume) && key_file.starts_with('/') {
                out.insert(crate::root::path(key_file), volume.to_owned());
            }
        }
    }
    out
}

/// (volume, key file) of each crypttab(5) line that names a key file.
fn key_files(crypttab: &str) -> impl Iterator<Item = (&str, &str)> {
    crypttab.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let volume = fields.next().filter(|v| !v.starts_with('#'))?;
        let key_file = fields.nth(1).filter(|k| !matches!(*k, "-" | "none"))?;
        Some((volume, key_file))
    })
}

/// Drops the key-file sinks of open volumes, and the secrets left with no
/// sink at all: there is nothing to fetch them for.
pub fn skip_open(secrets: Vec<Secret>, open: &BTreeSet<String>) -> Vec<Secret> {
    let mut out = Vec::with_capacity(secrets.len());
    for mut secret in secrets {
        secret.sinks.retain(|sink| match sink {
            Sink::Cryptsetup { volume } if open.contains(volume) => {
                log::info!(
                    "secret '{}': volume '{volume}' is open, so it needs no key file",
                    secret.name
                );
                false
            }
            _ => true,
        });
        if secret.sinks.is_empty() {
            log::info!(
                "secret '{}' ({}) has nowhere left to go: not fetched",
                secret.name,
                secret.resource
            );
        } else {
            out.push(secret);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dm(sys_block: &Path, dev: &str, name: &str, uuid: &str) {
        let dir = sys_block.join(dev).join("dm");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        fs::write(dir.join("uuid"), format!("{uuid}\n")).unwrap();
    }

    #[test]
    fn only_dm_crypt_devices_count_as_open_volumes() {
        let dir = std::env::temp_dir().join(format!("cvm-attest-volumes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert!(open_in(&dir).is_empty(), "no /sys/block: nothing open");
        dm(
            &dir,
            "dm-0",
            "root",
            "CRYPT-LUKS2-0123456789abcdef0123456789abcdef-root",
        );
        dm(&dir, "dm-1", "data", "CRYPT-PLAIN-data");
        dm(&dir, "dm-2", "swap", "LVM-AbCdEf");
        fs::create_dir_all(dir.join("dm-3")).unwrap(); // going away: no dm/
        dm(&dir, "vda", "vda", "CRYPT-not-a-dm-device");
        let open = open_in(&dir);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(open, BTreeSet::from(["data".to_owned(), "root".to_owned()]));
    }

    #[test]
    fn crypttab_key_files() {
        let tab = "# name device key options\n\
                   root UUID=1 none luks\n\
                   \n\
                   data  UUID=2\t/run/cryptsetup-keys.d/root.key  luks,discard\n\
                   swap /dev/sdb1 /dev/urandom swap\n\
                   home UUID=3 -\n\
                   bare UUID=4\n";
        let got: Vec<_> = key_files(tab).collect();
        assert_eq!(
            got,
            [
                ("data", "/run/cryptsetup-keys.d/root.key"),
                ("swap", "/dev/urandom")
            ]
        );
    }
}
