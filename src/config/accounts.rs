// SPDX-License-Identifier: Apache-2.0
//! User and group names of `owner`/`group`, resolved through `/etc/passwd`
//! and `/etc/group` under the current root (`crate::root`), so that a name
//! means what it means in the root the secret is delivered in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::file::IntOrString;
use super::{ConfigError, Source};

/// User and group names, from `/etc/passwd` and `/etc/group` under the
/// current root, read once when first needed.
pub(super) struct Accounts {
    files: [PathBuf; 2],
    tables: [Option<HashMap<String, u32>>; 2],
}

impl Accounts {
    pub(super) fn system() -> Accounts {
        Accounts::at(
            crate::root::path("/etc/passwd"),
            crate::root::path("/etc/group"),
        )
    }

    pub(super) fn at(passwd: PathBuf, group: PathBuf) -> Accounts {
        Accounts {
            files: [passwd, group],
            tables: [None, None],
        }
    }

    /// `owner`/`group`: a number, or a name to look up.
    pub(super) fn id(
        &mut self,
        src: &Source,
        key: &str,
        value: &Spanned<IntOrString>,
        group: bool,
    ) -> Result<u32, ConfigError> {
        let at = src.at(value.span(), key);
        let what = if group { "group" } else { "user" };
        let name = match value.get_ref() {
            IntOrString::Int(n) => {
                // u32::MAX is (uid_t)-1, "no change" to chown(2).
                return u32::try_from(*n)
                    .ok()
                    .filter(|&id| id != u32::MAX)
                    .ok_or_else(|| at.error(format!("{n} is not a {what} id")));
            }
            IntOrString::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                return s
                    .parse::<u32>()
                    .ok()
                    .filter(|&id| id != u32::MAX)
                    .ok_or_else(|| at.error(format!("{s} is not a {what} id")));
            }
            IntOrString::Str(s) => s,
        };
        let index = usize::from(group);
        let file = &self.files[index];
        let table = match &mut self.tables[index] {
            Some(table) => table,
            slot => slot.insert(read_table(file)?),
        };
        match table.get(name.as_str()) {
            Some(&id) => Ok(id),
            // uid and gid 0 are root everywhere, even in an initramfs without the file.
            None if name == "root" => Ok(0),
            None => Err(at.error(format!(
                "{what} '{name}' does not exist in {}; create it there (in the initramfs too, \
                 if the secret is delivered there) or give a number",
                file.display()
            ))),
        }
    }
}

/// `name:x:id:…` lines; a missing file is an empty table.
fn read_table(path: &Path) -> Result<HashMap<String, u32>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            Some((name.to_owned(), id))
        })
        .collect())
}
