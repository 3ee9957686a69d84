// SPDX-License-Identifier: Apache-2.0
//! Keyring sinks: `user` and `logon` keys in a named keyring linked under
//! root's user keyring (`@u`), which lives for the whole boot and survives
//! switch-root, unlike a service's private session keyring
//! (systemd.exec(5) `KeyringMode=`; keyrings(7)).
//!
//! All or nothing, like the files: each new key is first added to a staging
//! keyring held by this process (so it is possessed while we set its
//! attributes), and the key it will displace is linked there too. `commit`
//! links the new key into its target keyring, which displaces the old one
//! of the same type and description; `undo` links the old one back.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use keyutils::keytypes::{logon, Logon, User};
use keyutils::{Key, Keyring, Permission, SpecialKeyring};

use super::KeyKind;

/// Keyring permissions for the named keyring: possessor all; user (root)
/// view, read, write, search, link, setattr, so that every run as root can
/// replace keys whatever keyring its session has.
const RING_PERM: u32 = 0x3f3f_0000;

pub struct KeyTarget<'a> {
    pub kind: KeyKind,
    pub description: &'a str,
    pub keyring: &'a str,
    pub perm: u32,
    pub timeout: Option<Duration>,
    pub data: &'a [u8],
}

struct Entry {
    /// Which of the delivery's items (secrets) the key is for.
    item: usize,
    ring: Keyring,
    new: Key,
    old: Option<Key>,
    perm: u32,
    label: String,
    committed: bool,
}

pub struct Staging {
    staging: Keyring,
    /// The keys being replaced, kept alive for `undo`. Apart from the new
    /// ones: a keyring holds one key per type and description.
    previous: Keyring,
    entries: Vec<Entry>,
    /// Keys found already in place.
    unchanged: usize,
}

fn errno_text(e: keyutils::Error) -> String {
    match e.0 {
        libc::EDQUOT => "the kernel key quota of this user is exhausted (EDQUOT): raise /proc/sys/kernel/keys/maxbytes and maxkeys (root_maxbytes/root_maxkeys for root) or store fewer or smaller keys".to_owned(),
        libc::EACCES => "permission denied (EACCES)".to_owned(),
        _ => e.to_string(),
    }
}

/// The keyring `name` directly under `@u`, created if missing, and linked
/// into the process keyring: under systemd's `KeyringMode=private` nothing
/// in `@u` is possessed by the service, and only possession gives the
/// possessor rights the keys' default permissions grant (a later run reads a
/// user key back to compare, and keeps a displaced key to undo with). The
/// process keyring, and the link, go when the process does.
fn named_keyring(name: &str) -> Result<Keyring> {
    let mut user = Keyring::attach_or_create(SpecialKeyring::User)
        .map_err(|e| anyhow!("attach root's user keyring: {}", errno_text(e)))?;
    let mut process = Keyring::attach_or_create(SpecialKeyring::Process)
        .map_err(|e| anyhow!("attach the process keyring: {}", errno_text(e)))?;
    let (_, rings) = user
        .read()
        .map_err(|e| anyhow!("list the user keyring: {}", errno_text(e)))?;
    for ring in rings {
        if ring.description().is_ok_and(|d| d.description == name) {
            process
                .link_keyring(&ring)
                .map_err(|e| anyhow!("possess keyring '{name}': {}", errno_text(e)))?;
            return Ok(ring);
        }
    }
    // Created in the process keyring, where we possess it, so that its
    // permissions can be set; then linked under @u.
    let mut ring = process
        .add_keyring(name)
        .map_err(|e| anyhow!("create keyring '{name}': {}", errno_text(e)))?;
    ring.set_permissions(Permission::from_bits_truncate(RING_PERM))
        .map_err(|e| anyhow!("set the permissions of keyring '{name}': {}", errno_text(e)))?;
    user.link_keyring(&ring)
        .map_err(|e| anyhow!("link keyring '{name}' under @u: {}", errno_text(e)))?;
    Ok(ring)
}

impl Staging {
    pub fn new() -> Result<Staging> {
        let mut process = Keyring::attach_or_create(SpecialKeyring::Process)
            .map_err(|e| anyhow!("attach the process keyring: {}", errno_text(e)))?;
        let staging = process
            .add_keyring("cvm-attest.staging")
            .map_err(|e| anyhow!("create a staging keyring: {}", errno_text(e)))?;
        let previous = process
            .add_keyring("cvm-attest.previous")
            .map_err(|e| anyhow!("create a keyring for the replaced keys: {}", errno_text(e)))?;
        Ok(Staging {
            staging,
            previous,
            entries: Vec::new(),
            unchanged: 0,
        })
    }

    /// Adds the new key of secret `item` to the staging keyring and keeps the
    /// one it replaces.
    pub fn stage(&mut self, t: &KeyTarget<'_>, item: usize) -> Result<()> {
        let label = format!(
            "{} key '{}' in keyring '{}'",
            kind_name(t.kind),
            t.description,
            t.keyring
        );
        let ring = named_keyring(t.keyring)?;
        let old = existing(&ring, t.kind, t.description)?;
        // A user key with the same payload and permissions stays as it is.
        // (A logon key cannot be read back, so it is always replaced.)
        if let (KeyKind::User, Some(key)) = (t.kind, &old) {
            let same_perm = key.description().is_ok_and(|d| d.perms.bits() == t.perm);
            if same_perm
                && t.timeout.is_none()
                && key
                    .read()
                    .is_ok_and(|p| zeroize::Zeroizing::new(p).as_slice() == t.data)
            {
                log::debug!("the {label} already holds this secret");
                self.unchanged += 1;
                return Ok(());
            }
        }
        if let Some(old) = &old {
            // Keep the displaced key alive for `undo`. Without link
            // permission on it, a failed delivery could not put it back:
            // refuse rather than risk a half-done one.
            self.previous.link_key(old).map_err(|e| {
                anyhow!(
                    "keep the previous {label} until the delivery is complete: {}; its \
                     permissions must grant its possessor link (0x10000000): remove it by hand \
                     (keyctl purge {} '{}') or grant that",
                    errno_text(e),
                    kind_name(t.kind),
                    t.description
                )
            })?;
        }
        let mut new = match t.kind {
            KeyKind::User => self.staging.add_key::<User, _, _>(t.description, t.data),
            KeyKind::Logon => {
                let (subtype, rest) = t
                    .description
                    .split_once(':')
                    .filter(|(s, _)| !s.is_empty())
                    .with_context(|| {
                        format!("{label}: a logon key's description needs a 'prefix:'")
                    })?;
                let desc = logon::Description {
                    subtype: subtype.to_owned().into(),
                    description: rest.to_owned().into(),
                };
                self.staging.add_key::<Logon, _, _>(desc, t.data)
            }
        }
        .map_err(|e| {
            anyhow!(
                "add the {label} ({} bytes): {}",
                t.data.len(),
                errno_text(e)
            )
        })?;
        if let Some(timeout) = t.timeout {
            new.set_timeout(timeout)
                .map_err(|e| anyhow!("set the timeout of the {label}: {}", errno_text(e)))?;
        }
        self.entries.push(Entry {
            item,
            ring,
            new,
            old,
            perm: t.perm,
            label,
            committed: false,
        });
        Ok(())
    }

    /// Links every new key into its keyring and sets its permissions.
    pub fn commit(&mut self) -> Result<()> {
        for entry in &mut self.entries {
            entry
                .ring
                .link_key(&entry.new)
                .map_err(|e| anyhow!("link the {}: {}", entry.label, errno_text(e)))?;
            entry.committed = true;
            entry
                .new
                .set_permissions(Permission::from_bits_truncate(entry.perm))
                .map_err(|e| {
                    anyhow!(
                        "set the permissions of the {}: {}",
                        entry.label,
                        errno_text(e)
                    )
                })?;
        }
        Ok(())
    }

    /// Puts the previous keys back; false when one could not be (logged).
    pub fn undo(&mut self) -> bool {
        let mut restored = true;
        for entry in &mut self.entries {
            if !entry.committed {
                continue;
            }
            let result = match &entry.old {
                Some(old) => entry.ring.link_key(old),
                None => entry.ring.unlink_key(&entry.new),
            };
            if let Err(e) = result {
                log::error!("restore the {}: {}", entry.label, errno_text(e));
                restored = false;
            }
            entry.committed = false;
        }
        restored
    }

    /// Drops the staging keyring (and with it the displaced keys).
    pub fn finish(self) {
        if let Err(e) = self
            .staging
            .invalidate()
            .and_then(|()| self.previous.invalidate())
        {
            log::debug!("drop the staging keyrings: {e}");
        }
    }

    /// Keys placed, and keys that were already in place.
    pub fn counts(&self) -> (usize, usize) {
        (self.entries.len(), self.unchanged)
    }

    /// The items (secrets) whose keys were (re)placed.
    pub fn changed_items(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries.iter().map(|e| e.item)
    }
}

/// The key of this type and description directly in `ring`, if any.
fn existing(ring: &Keyring, kind: KeyKind, description: &str) -> Result<Option<Key>> {
    let (keys, _) = ring
        .read()
        .map_err(|e| anyhow!("list keyring: {}", errno_text(e)))?;
    Ok(keys.into_iter().find(|k| {
        k.description()
            .is_ok_and(|d| d.type_ == kind_name(kind) && d.description == description)
    }))
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::User => "user",
        KeyKind::Logon => "logon",
    }
}
