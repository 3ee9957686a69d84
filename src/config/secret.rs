// SPDX-License-Identifier: Apache-2.0
//! `[[secret]]` tables: from TOML to `sink::Secret`. A secret needs a name, a
//! resource and somewhere to go, and no two sinks may write one destination
//! (whichever wrote last would win, silently).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::accounts::Accounts;
use super::sinks::{self, RawCredential, RawCryptsetup, RawFile, RawKeyring};
use super::{ConfigError, Loc, Source};
use crate::resource::ResourcePath;
use crate::sink::{
    key_file_name, Action, KeyKind, Secret, Sink, UnitAction, CREDSTORE, CRYPTSETUP_KEYS,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawSecret {
    name: Option<Spanned<String>>,
    resource: Option<Spanned<String>>,
    required: Option<Spanned<bool>>,
    reload: Option<Vec<Spanned<String>>>,
    restart: Option<Vec<Spanned<String>>>,
    reload_or_restart: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    file: Vec<Spanned<RawFile>>,
    #[serde(default)]
    credential: Vec<Spanned<RawCredential>>,
    #[serde(default)]
    cryptsetup: Vec<Spanned<RawCryptsetup>>,
    #[serde(default)]
    keyring: Vec<Spanned<RawKeyring>>,
}

/// A checked secret before the last layer is known: relative file paths are
/// not yet under `secrets-dir`, and a keyring sink's keyring is empty when
/// it takes `delivery.keyring`.
pub(super) struct Entry {
    pub secret: Secret,
    /// Where the secret's name was set.
    pub loc: Loc,
    /// Where each sink's destination was set, in the order of `secret.sinks`.
    sinks: Vec<Loc>,
}

const UNIT_SUFFIXES: [&str; 6] = [
    ".service", ".socket", ".target", ".mount", ".path", ".timer",
];

pub(super) fn convert(
    src: &Source,
    index: usize,
    raw: Spanned<RawSecret>,
    accounts: &mut Accounts,
) -> Result<Entry, ConfigError> {
    let table = raw.span();
    let raw = raw.into_inner();
    let base = format!("secret[{index}]");
    let Some(name) = raw.name else {
        return Err(src
            .at(table, &base)
            .error("has no name; add name = \"…\" (letters, digits, '_', '.', '@', '-')"));
    };
    let loc = src.at(name.span(), format!("{base}.name"));
    let name = name.into_inner();
    let well_formed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-');
    if name.is_empty() || !name.chars().all(well_formed) {
        return Err(loc.error(format!(
            "'{name}' is not a secret name; use letters, digits, '_', '.', '@' and '-'"
        )));
    }
    let Some(resource) = raw.resource else {
        return Err(src.at(table, &base).error(format!(
            "secret '{name}' has no resource; add resource = \"repo/type/tag\" (an entry \
             replaces any earlier one of the same name whole)"
        )));
    };
    let resource = resource
        .get_ref()
        .parse::<ResourcePath>()
        .map_err(|m| src.at(resource.span(), format!("{base}.resource")).error(m))?;

    let mut units = Vec::new();
    for (list, key, action) in [
        (raw.reload, "reload", Action::Reload),
        (raw.restart, "restart", Action::Restart),
        (
            raw.reload_or_restart,
            "reload-or-restart",
            Action::ReloadOrRestart,
        ),
    ] {
        for (i, unit) in list.unwrap_or_default().into_iter().enumerate() {
            unit_name(unit.get_ref())
                .map_err(|m| src.at(unit.span(), format!("{base}.{key}[{i}]")).error(m))?;
            units.push(UnitAction {
                unit: unit.into_inner(),
                action,
            });
        }
    }

    // Each sink with where its destination was set.
    let mut placed = Vec::new();
    for (i, raw) in raw.file.into_iter().enumerate() {
        let key = format!("{base}.file[{i}]");
        placed.push(sinks::file_sink(src, &key, raw, accounts)?);
    }
    for (i, raw) in raw.credential.into_iter().enumerate() {
        let key = format!("{base}.credential[{i}]");
        placed.push(sinks::credential_sink(src, &key, raw, &name)?);
    }
    for (i, raw) in raw.cryptsetup.into_iter().enumerate() {
        let key = format!("{base}.cryptsetup[{i}]");
        placed.push(sinks::cryptsetup_sink(src, &key, raw)?);
    }
    for (i, raw) in raw.keyring.into_iter().enumerate() {
        let key = format!("{base}.keyring[{i}]");
        placed.push(sinks::keyring_sink(src, &key, raw)?);
    }
    let (sinks, locs): (Vec<Sink>, Vec<Loc>) = placed.into_iter().unzip();
    if sinks.is_empty() {
        return Err(src.at(table, base).error(format!(
            "secret '{name}' goes nowhere; add at least one [[secret.file]], \
             [[secret.credential]], [[secret.cryptsetup]] or [[secret.keyring]]"
        )));
    }

    let required = raw.required.is_none_or(Spanned::into_inner);
    Ok(Entry {
        secret: Secret {
            name,
            resource,
            required,
            sinks,
            units,
        },
        loc,
        sinks: locs,
    })
}

/// systemd's unit name: a name and one of the suffixes the agent acts on.
fn unit_name(unit: &str) -> Result<(), String> {
    let stem = UNIT_SUFFIXES.iter().find_map(|s| unit.strip_suffix(s));
    let ok = stem.is_some_and(|stem| !stem.is_empty())
        && unit.len() <= 255
        && !unit.contains(|c: char| c == '/' || c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{unit}' is not a unit name; write the full name with its type, e.g. \
             nginx.service (one of {})",
            UNIT_SUFFIXES.join(", ")
        ))
    }
}

/// Relative file paths go under `secrets_dir`, keyring sinks without a
/// keyring into `keyring`; then no two sinks may write the same place.
pub(super) fn finalize(
    entries: Vec<Entry>,
    secrets_dir: &Path,
    keyring: &str,
) -> Result<Vec<Secret>, ConfigError> {
    let mut taken: HashMap<String, (String, Loc)> = HashMap::new();
    // The files written, to refuse one that would be another's directory.
    let mut files: Vec<(PathBuf, String, Loc)> = Vec::new();
    let mut secrets = Vec::with_capacity(entries.len());
    for mut entry in entries {
        for (sink, loc) in entry.secret.sinks.iter_mut().zip(&entry.sinks) {
            let destination = match sink {
                Sink::File { path, .. } => {
                    if path.is_relative() {
                        *path = secrets_dir.join(&*path);
                    }
                    // Normalizes "a//b" and "a/./b".
                    *path = path.components().collect();
                    path.display().to_string()
                }
                Sink::Credential { name } => Path::new(CREDSTORE).join(name).display().to_string(),
                Sink::Cryptsetup { volume } => Path::new(CRYPTSETUP_KEYS)
                    .join(key_file_name(volume))
                    .display()
                    .to_string(),
                Sink::Keyring {
                    kind,
                    description,
                    keyring: ring,
                    ..
                } => {
                    if ring.is_empty() {
                        keyring.clone_into(ring);
                    }
                    let kind = match kind {
                        KeyKind::User => "user",
                        KeyKind::Logon => "logon",
                    };
                    format!("{kind} key '{description}' in keyring '{ring}'")
                }
            };
            if let Some((other, at)) = taken.get(&destination) {
                return Err(loc.error(format!(
                    "{destination} is also written by secret '{other}' ({}:{}, {}); give every \
                     destination to one sink only",
                    at.file.display(),
                    at.line,
                    at.key
                )));
            }
            if !matches!(sink, Sink::Keyring { .. }) {
                let path = PathBuf::from(&destination);
                let nested = files
                    .iter()
                    .find(|(other, ..)| path.starts_with(other) || other.starts_with(&path));
                if let Some((other, name, at)) = nested {
                    return Err(loc.error(format!(
                        "{destination} and {} (secret '{name}', {}:{}, {}) cannot both be \
                         written: one would be the other's directory; move one of them",
                        other.display(),
                        at.file.display(),
                        at.line,
                        at.key
                    )));
                }
                files.push((path, entry.secret.name.clone(), loc.clone()));
            }
            taken.insert(destination, (entry.secret.name.clone(), loc.clone()));
        }
        secrets.push(entry.secret);
    }
    Ok(secrets)
}
