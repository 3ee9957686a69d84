// SPDX-License-Identifier: Apache-2.0
//! One configuration file: its serde schema and the checks of its scalar
//! keys.
//!
//! Every struct is all-`Option` with `deny_unknown_fields`, and every value
//! is `toml::Spanned`, so that a rule broken after parsing still names its
//! line; the `[[secret]]` tables are checked in `secret.rs`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use super::accounts::Accounts;
use super::secret::{self, Entry, RawSecret};
use super::sinks;
use super::{platform, secs, under_run, Config, ConfigError, Source};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    enable: Option<Spanned<bool>>,
    kbs: Option<RawKbs>,
    tee: Option<RawTee>,
    delivery: Option<RawDelivery>,
    #[serde(default)]
    secret: Vec<Spanned<RawSecret>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawKbs {
    url: Option<Spanned<StringList>>,
    ca: Option<Spanned<String>>,
    insecure_http: Option<Spanned<bool>>,
    timeout: Option<Spanned<u64>>,
    connect_timeout: Option<Spanned<u64>>,
    request_timeout: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTee {
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    tcti: Option<Spanned<String>>,
    ak_handle: Option<Spanned<IntOrString>>,
    imds_url: Option<Spanned<String>>,
    hcl_timeout: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDelivery {
    secrets_dir: Option<Spanned<String>>,
    keyring: Option<Spanned<String>>,
}

/// Modes, handles, masks and ids: `"0x3f010000"` or `0x3f010000`.
pub(super) enum IntOrString {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::Str(v.to_owned()))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// `url = "…"` or `url = ["…", …]`; array elements keep their spans.
enum StringList {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    items.push(item);
                }
                Ok(StringList::Many(items))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Parses one file and lays it over `config` and `secrets` (merged by name).
pub(super) fn apply(
    path: &Path,
    text: &str,
    config: &mut Config,
    secrets: &mut Vec<Entry>,
    accounts: &mut Accounts,
) -> Result<(), ConfigError> {
    let src = Source { path, text };
    let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(&src, &e))?;

    if let Some(enable) = raw.enable {
        config.enabled = *enable.get_ref();
        config.disabled_by = (!config.enabled)
            .then(|| format!("{}:{}", path.display(), src.line(enable.span().start)));
    }
    if let Some(kbs) = raw.kbs {
        apply_kbs(&src, kbs, config)?;
    }
    if let Some(tee) = raw.tee {
        apply_tee(&src, tee, config)?;
    }
    if let Some(delivery) = raw.delivery {
        if let Some(dir) = delivery.secrets_dir {
            let path = PathBuf::from(dir.get_ref());
            let loc = src.at(dir.span(), "delivery.secrets-dir");
            under_run(&path).map_err(|m| loc.error(m))?;
            config.secrets_dir = path;
        }
        if let Some(keyring) = delivery.keyring {
            let loc = src.at(keyring.span(), "delivery.keyring");
            sinks::keyring_name(keyring.get_ref()).map_err(|m| loc.error(m))?;
            config.keyring = keyring.into_inner();
        }
    }

    let mut names = HashSet::new();
    for (index, raw) in raw.secret.into_iter().enumerate() {
        let entry = secret::convert(&src, index, raw, accounts)?;
        if !names.insert(entry.secret.name.clone()) {
            return Err(entry.loc.error(format!(
                "a secret named '{}' is already defined in this file; give each secret its own \
                 name (a drop-in may replace a secret by reusing its name)",
                entry.secret.name
            )));
        }
        match secrets
            .iter_mut()
            .find(|e| e.secret.name == entry.secret.name)
        {
            Some(earlier) => *earlier = entry,
            None => secrets.push(entry),
        }
    }
    Ok(())
}

fn apply_kbs(src: &Source, kbs: RawKbs, config: &mut Config) -> Result<(), ConfigError> {
    if let Some(url) = kbs.url {
        let span = url.span();
        let urls = match url.into_inner() {
            StringList::One(url) => vec![Spanned::new(span.clone(), url)],
            StringList::Many(urls) => urls,
        };
        if urls.is_empty() {
            return Err(src.at(span, "kbs.url").error(
                "is empty; give at least one KBS URL, or disable the agent with enable = false",
            ));
        }
        for (i, url) in urls.iter().enumerate() {
            if url.get_ref().trim().is_empty() {
                return Err(src
                    .at(url.span(), format!("kbs.url[{i}]"))
                    .error("is an empty string; give the KBS URL, e.g. https://kbs.example:8080"));
            }
        }
        config.kbs = urls.into_iter().map(Spanned::into_inner).collect();
    }
    if let Some(ca) = kbs.ca {
        let path = PathBuf::from(ca.get_ref());
        if !path.is_absolute() {
            return Err(src.at(ca.span(), "kbs.ca").error(format!(
                "'{}' is not an absolute path; give the CA bundle's full path",
                path.display()
            )));
        }
        config.kbs_ca = Some(path);
    }
    if let Some(insecure) = kbs.insecure_http {
        config.insecure_http = insecure.into_inner();
    }
    for (value, key, slot) in [
        (kbs.timeout, "kbs.timeout", &mut config.timeout),
        (
            kbs.connect_timeout,
            "kbs.connect-timeout",
            &mut config.connect_timeout,
        ),
        (
            kbs.request_timeout,
            "kbs.request-timeout",
            &mut config.request_timeout,
        ),
    ] {
        if let Some(value) = value {
            *slot = duration(src, &value, key)?;
        }
    }
    Ok(())
}

fn apply_tee(src: &Source, tee: RawTee, config: &mut Config) -> Result<(), ConfigError> {
    if let Some(kind) = tee.kind {
        let loc = src.at(kind.span(), "tee.type");
        config.tee = Some(platform(kind.get_ref()).map_err(|m| loc.error(m))?);
    }
    for (value, key, slot) in [
        (tee.tcti, "tee.tcti", &mut config.tcti),
        (tee.imds_url, "tee.imds-url", &mut config.imds_url),
    ] {
        if let Some(value) = value {
            if value.get_ref().trim().is_empty() {
                return Err(src
                    .at(value.span(), key)
                    .error("is an empty string; give a value or leave the key out"));
            }
            if key == "tee.tcti" {
                crate::tpm::device_path(value.get_ref())
                    .map_err(|e| src.at(value.span(), key).error(e.to_string()))?;
            }
            *slot = Some(value.into_inner());
        }
    }
    if let Some(handle) = tee.ak_handle {
        let loc = src.at(handle.span(), "tee.ak-handle");
        let value = match handle.get_ref() {
            IntOrString::Int(n) => u32::try_from(*n).ok(),
            IntOrString::Str(s) => s
                .strip_prefix("0x")
                .or_else(|| s.strip_prefix("0X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok()),
        };
        match value {
            Some(h @ 0x8100_0000..=0x81ff_ffff) => config.ak_handle = Some(h),
            _ => {
                return Err(loc.error(
                    "is not a persistent TPM handle; give one in 0x81000000-0x81ffffff, e.g. \
                     \"0x81010002\"",
                ))
            }
        }
    }
    if let Some(hcl) = tee.hcl_timeout {
        config.hcl_timeout = Some(duration(src, &hcl, "tee.hcl-timeout")?);
    }
    Ok(())
}

fn duration(
    src: &Source,
    value: &Spanned<u64>,
    key: &str,
) -> Result<std::time::Duration, ConfigError> {
    secs(*value.get_ref()).map_err(|m| src.at(value.span(), key).error(m))
}

/// A syntax or type error from toml, with the line and (from the text
/// around it) the key path.
fn parse_error(src: &Source, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |s| s.start);
    let message = error.message().trim_end();
    let message = match message.strip_prefix("unknown field ") {
        Some(rest) => format!("unknown key {rest}; fix its spelling or remove it"),
        // Rust's names for the types, in words.
        None => message.replace(
            "expected u64",
            "expected a whole number of 0 or more, unquoted",
        ),
    };
    let key = key_path_at(src.text, offset);
    // The key written just before the value, inline tables included.
    let before = src.text.get(..offset).unwrap_or_default().trim_end();
    let of_mode = before
        .strip_suffix('=')
        .is_some_and(|b| b.trim_end().ends_with("mode"));
    let message = if message.contains("leading zero") && of_mode {
        "a number with a leading zero; write a file mode as a string, \"0400\", or as 0o400"
            .to_owned()
    } else {
        message
    };
    src.at(offset..offset, key).error(message)
}

/// The key path at `offset` (`secret[1].file[0].mode`), read from the table
/// headers above it and the key on its line. Good for messages about plain
/// `key = value` lines and headers, which is what toml's errors point at.
fn key_path_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text.as_bytes()[..offset]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);

    // How many `[[name]]` headers were seen so far, per array name.
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut table = String::new();
    let mut on_header = false;
    for line in text[..line_end].lines() {
        on_header = false;
        if let Some((array, name)) = header(line) {
            if array {
                *counts.entry(name.clone()).or_default() += 1;
                let child = format!("{name}.");
                counts.retain(|k, _| !k.starts_with(&child));
            }
            table = indexed(&name, &counts);
            on_header = true;
        }
    }
    if on_header {
        return table;
    }
    let line = &text[line_start..line_end];
    let key = match line.split_once('=') {
        Some((key, _)) => key.trim().trim_matches('"'),
        None => "",
    };
    match (table.is_empty(), key.is_empty()) {
        (_, true) => table,
        (true, false) => key.to_owned(),
        (false, false) => format!("{table}.{key}"),
    }
}

/// `[a.b]` → (false, "a.b"), `[[a.b]]` → (true, "a.b").
fn header(line: &str) -> Option<(bool, String)> {
    let line = line.trim();
    let (array, inner) = if let Some(rest) = line.strip_prefix("[[") {
        (true, rest.split_once("]]")?.0)
    } else {
        (false, line.strip_prefix('[')?.split_once(']')?.0)
    };
    let name: Vec<&str> = inner
        .split('.')
        .map(|s| s.trim().trim_matches('"'))
        .collect();
    Some((array, name.join(".")))
}

/// `secret.file` → `secret[2].file[0]` with the counts of array headers.
fn indexed(name: &str, counts: &HashMap<String, usize>) -> String {
    let mut prefix = String::new();
    let mut out = String::new();
    for segment in name.split('.') {
        if !prefix.is_empty() {
            prefix.push('.');
            out.push('.');
        }
        prefix.push_str(segment);
        out.push_str(segment);
        if let Some(n) = counts.get(&prefix) {
            out.push_str(&format!("[{}]", n.saturating_sub(1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::key_path_at;

    #[test]
    fn key_paths_from_the_text() {
        let text = "enable = 1\n[kbs]\nurl = \"x\"\n[[secret]]\nname = \"a\"\n[[secret]]\n\
                    name = \"b\"\n[[secret.file]]\nmode = 1\n[[secret.file]]\n  mode = 2\n\
                    [[secret.keyring]]\n[tee]\ntype = 3\n";
        for (needle, path) in [
            ("enable", "enable"),
            ("url", "kbs.url"),
            ("\"a\"", "secret[0].name"),
            ("\"b\"", "secret[1].name"),
            ("1\n[[", "secret[1].file[0].mode"),
            ("2", "secret[1].file[1].mode"),
            ("keyring", "secret[1].keyring[0]"),
            ("type", "tee.type"),
        ] {
            let offset = text.find(needle).unwrap();
            assert_eq!(key_path_at(text, offset), path, "{needle}");
        }
    }
}
