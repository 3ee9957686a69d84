// SPDX-License-Identifier: Apache-2.0
//! The sinks of a `[[secret]]`: files, credentials, crypttab key files and
//! keys. The rules keep a secret where it belongs: on tmpfs under /run,
//! never world-readable, in names the kernel and systemd accept.

use std::path::{Component, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::accounts::Accounts;
use super::file::IntOrString;
use super::{under_run, ConfigError, Loc, Source};
use crate::sink::{KeyKind, Sink};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawFile {
    path: Option<Spanned<String>>,
    mode: Option<Spanned<IntOrString>>,
    owner: Option<Spanned<IntOrString>>,
    group: Option<Spanned<IntOrString>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCredential {
    name: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawCryptsetup {
    volume: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawKeyring {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    keyring: Option<Spanned<String>>,
    permissions: Option<Spanned<IntOrString>>,
    timeout: Option<Spanned<u64>>,
}

/// Default file mode: the owner reads.
const FILE_MODE: u32 = 0o400;
/// Default key permissions: possessor all, user view (keyrings(7)).
const KEY_PERM: u32 = 0x3f01_0000;
/// Key permission bits: others' read, write, search, link and setattr.
const KEY_OTHER_BEYOND_VIEW: u32 = 0x0000_003e;
/// The possessor's link bit: a delivery keeps the key it displaces with it.
const KEY_POSSESSOR_LINK: u32 = 0x1000_0000;

pub(super) fn file_sink(
    src: &Source,
    key: &str,
    raw: Spanned<RawFile>,
    accounts: &mut Accounts,
) -> Result<(Sink, Loc), ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let Some(path) = raw.path else {
        return Err(src.at(span, key).error(
            "has no path; add path = \"<file>\" (relative to secrets-dir) or an absolute path \
             under /run",
        ));
    };
    let at = src.at(path.span(), format!("{key}.path"));
    let path_buf = PathBuf::from(path.get_ref());
    let last = path.get_ref().rsplit('/').next().unwrap_or_default();
    if last.is_empty() || last == "." || last == ".." {
        return Err(at.error(format!(
            "'{}' names no file; give a file name, e.g. \"luks/root.key\"",
            path.get_ref()
        )));
    }
    if path_buf.is_absolute() {
        under_run(&path_buf).map_err(|m| at.error(m))?;
    } else if path_buf.components().any(|c| c == Component::ParentDir) {
        return Err(at.error(format!(
            "'{}' leaves secrets-dir with '..'; give a path below it or an absolute path under \
             /run",
            path_buf.display()
        )));
    }

    let mode = match raw.mode {
        None => FILE_MODE,
        Some(mode) => {
            let at = src.at(mode.span(), format!("{key}.mode"));
            let written = src.text.get(mode.span()).unwrap_or_default();
            let value = match mode.get_ref() {
                // TOML has no leading-zero octal: `mode = 400` is decimal 400 (0o620).
                IntOrString::Int(n) if written.starts_with("0o") => u32::try_from(*n).ok(),
                IntOrString::Int(_) => {
                    return Err(at.error(format!(
                        "{written} is a decimal number; write the mode in octal, as \"0400\" or \
                         0o400"
                    )))
                }
                IntOrString::Str(s) => {
                    u32::from_str_radix(s.strip_prefix("0o").unwrap_or(s), 8).ok()
                }
            };
            let Some(value) = value.filter(|&m| m <= 0o7777) else {
                return Err(at.error(format!(
                    "{written} is not a file mode; give an octal mode up to 0o7777, e.g. \"0400\""
                )));
            };
            if value & 0o004 != 0 {
                return Err(at.error(format!(
                    "mode {value:04o} lets every user read the secret; clear the read bit for \
                     others, e.g. \"0400\" or \"0440\""
                )));
            }
            value
        }
    };
    let uid = match raw.owner {
        Some(owner) => Some(accounts.id(src, &format!("{key}.owner"), &owner, false)?),
        None => None,
    };
    let gid = match raw.group {
        Some(group) => Some(accounts.id(src, &format!("{key}.group"), &group, true)?),
        None => None,
    };
    let sink = Sink::File {
        path: path_buf,
        mode,
        uid,
        gid,
    };
    Ok((sink, at))
}

/// `/run/credstore/<name>`; the name defaults to the secret's.
pub(super) fn credential_sink(
    src: &Source,
    key: &str,
    raw: Spanned<RawCredential>,
    secret: &str,
) -> Result<(Sink, Loc), ConfigError> {
    let span = raw.span();
    let (name, at) = match raw.into_inner().name {
        Some(n) => (n.get_ref().clone(), src.at(n.span(), format!("{key}.name"))),
        None => (secret.to_owned(), src.at(span, key)),
    };
    file_name(&name).map_err(|m| at.error(format!("credential name {m}")))?;
    Ok((Sink::Credential { name }, at))
}

/// `/run/cryptsetup-keys.d/<volume>.key`.
pub(super) fn cryptsetup_sink(
    src: &Source,
    key: &str,
    raw: Spanned<RawCryptsetup>,
) -> Result<(Sink, Loc), ConfigError> {
    let span = raw.span();
    let Some(volume) = raw.into_inner().volume else {
        return Err(src
            .at(span, key)
            .error("has no volume; add volume = \"<name>\", the crypttab volume (first column)"));
    };
    let at = src.at(volume.span(), format!("{key}.volume"));
    file_name(volume.get_ref()).map_err(|m| at.error(format!("volume name {m}")))?;
    if volume.get_ref().contains(char::is_whitespace) {
        return Err(at.error(format!(
            "volume name '{}' holds white space, which crypttab's first column cannot; give \
             the volume's name as crypttab has it",
            volume.get_ref()
        )));
    }
    let sink = Sink::Cryptsetup {
        volume: volume.into_inner(),
    };
    Ok((sink, at))
}

pub(super) fn keyring_sink(
    src: &Source,
    key: &str,
    raw: Spanned<RawKeyring>,
) -> Result<(Sink, Loc), ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let kind = match raw.kind {
        None => {
            return Err(src.at(span, key).error(
                "has no type; add type = \"user\" (readable back by programs, the \
                 luks2-keyring token) or type = \"logon\" (kernel consumers only)",
            ))
        }
        Some(kind) => match kind.get_ref().as_str() {
            "user" => KeyKind::User,
            "logon" => KeyKind::Logon,
            other => {
                return Err(src.at(kind.span(), format!("{key}.type")).error(format!(
                    "'{other}' is not a key type this agent writes; use \"user\" or \"logon\""
                )))
            }
        },
    };
    let Some(description) = raw.description else {
        return Err(src.at(span, key).error(
            "has no description; add description = \"<prefix>:<name>\", e.g. \"cvm:root\"",
        ));
    };
    let at = src.at(description.span(), format!("{key}.description"));
    let description = description.into_inner();
    if description.is_empty() {
        return Err(at.error("is empty; give the key's description, e.g. \"cvm:root\""));
    }
    // security/keys/user_defined.c logon_vet_description(): "prefix:" required.
    if kind == KeyKind::Logon && description.find(':').is_none_or(|i| i == 0) {
        let name = description.trim_start_matches(':');
        return Err(at.error(format!(
            "logon key description '{description}' has no prefix; the kernel requires \
             \"prefix:name\" for logon keys, e.g. \"cvm:{name}\""
        )));
    }
    let keyring = match raw.keyring {
        // Filled in with delivery.keyring once every file is read.
        None => String::new(),
        Some(keyring) => {
            let at = src.at(keyring.span(), format!("{key}.keyring"));
            keyring_name(keyring.get_ref()).map_err(|m| at.error(m))?;
            keyring.into_inner()
        }
    };
    let perm = match raw.permissions {
        None => KEY_PERM,
        Some(perm) => {
            let value = match perm.get_ref() {
                IntOrString::Int(n) => u32::try_from(*n).ok(),
                IntOrString::Str(s) => s
                    .strip_prefix("0x")
                    .or_else(|| s.strip_prefix("0X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok()),
            };
            let at = src.at(perm.span(), format!("{key}.permissions"));
            let value = value.ok_or_else(|| {
                at.error(
                    "is not a key permission mask; give 32 bits in hexadecimal, e.g. \
                     \"0x3f010000\" (keyctl(1) describes the bits)",
                )
            })?;
            if value & KEY_OTHER_BEYOND_VIEW != 0 {
                return Err(at.error(format!(
                    "{value:#010x} lets every user at the key (its last byte grants others more \
                     than view); end it in 00 or 01, e.g. \"0x3f010000\""
                )));
            }
            if value & KEY_POSSESSOR_LINK == 0 {
                return Err(at.error(format!(
                    "{value:#010x} denies the key's possessor link (0x10000000), which the \
                     agent needs to keep a key until its replacement is delivered; add it, \
                     e.g. \"0x3f010000\""
                )));
            }
            value
        }
    };
    let timeout = match raw.timeout {
        // KEYCTL_SET_TIMEOUT takes an unsigned int of seconds; 0 would mean never.
        Some(t) => match *t.get_ref() {
            n @ 1..=0xffff_ffff => Some(Duration::from_secs(n)),
            n => {
                return Err(src.at(t.span(), format!("{key}.timeout")).error(format!(
                    "{n} seconds is not a key timeout; give 1 to 4294967295 seconds, or leave \
                     the key out for a key that never expires"
                )))
            }
        },
        None => None,
    };
    let sink = Sink::Keyring {
        kind,
        description,
        keyring,
        perm,
        timeout,
    };
    Ok((sink, at))
}

/// A name that becomes one file name (credentials, crypttab volumes).
fn file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.len() > 250 {
        Err(format!(
            "'{name}' cannot be a file name; use a non-empty name without '/'"
        ))
    } else {
        Ok(())
    }
}

/// A named keyring under root's @u; names starting with '.' are the kernel's.
pub(super) fn keyring_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.starts_with('.') {
        Err(format!(
            "'{name}' is not a keyring name this agent may create; use a non-empty name not \
             starting with '.' (reserved for the kernel), e.g. \"cvm-attest\""
        ))
    } else {
        Ok(())
    }
}
