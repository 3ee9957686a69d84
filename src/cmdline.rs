// SPDX-License-Identifier: Apache-2.0
//! Kernel command line keys: `cvm_attest.*`, and `rd.cvm_attest.*` in the
//! initramfs.
//!
//! In an initramfs `/etc/cvm-attest` may not exist, so the command line can
//! configure everything a boot needs. Parameters are split exactly as the
//! kernel's `next_arg()` (lib/cmdline.c) splits them: whitespace separates,
//! double quotes group (`key="a b"`), quotes around a value are dropped,
//! everything after a lone `--` belongs to init. As in the kernel's
//! `parameq()`, `-` and `_` are the same character in a key; the last
//! occurrence of a key wins. In the initramfs `rd.cvm_attest.X` wins over
//! `cvm_attest.X` (dracut's convention); after switch-root `rd.` keys are
//! ignored.
//!
//! | key | value |
//! |---|---|
//! | `cvm_attest.enable` | `1` or `0`; `cvm_attest=0` is the short form |
//! | `cvm_attest.kbs` | `URL[,URL…]`, tried in order |
//! | `cvm_attest.kbs_ca` | absolute path of the CA bundle |
//! | `cvm_attest.tee` | a platform name (`snp`, `tdx`, `az-snp-vtpm`, …) |
//! | `cvm_attest.insecure_http` | bare, `1` or `0` |
//! | `cvm_attest.timeout` | seconds for the whole run |
//!
//! A command line cannot be refused, so an unknown `cvm_attest.` key draws a
//! warning and is ignored; a known key with a bad value is an error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{self, ConfigError};
use crate::evidence::Platform;
use anyhow::{Context, Result};

/// What the kernel command line sets; `None` where it is silent.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cmdline {
    pub enable: Option<Switch>,
    pub kbs: Option<Vec<String>>,
    pub kbs_ca: Option<PathBuf>,
    pub tee: Option<Platform>,
    pub insecure_http: Option<bool>,
    pub timeout: Option<Duration>,
}

/// `cvm_attest.enable` (or `cvm_attest`) with the parameter as written, for
/// the one log line that says where the agent was disabled.
#[derive(Debug, PartialEq, Eq)]
pub struct Switch {
    pub on: bool,
    pub written: String,
}

const PREFIX: &str = "cvm_attest";
const KEYS: [&str; 6] = ["enable", "kbs", "kbs_ca", "tee", "insecure_http", "timeout"];

/// The agent's keys in `cmdline` (the text of `/proc/cmdline`).
pub fn parse(cmdline: &str, initrd: bool) -> Result<Cmdline, ConfigError> {
    // (rd, key) → (key as written, value), last occurrence wins.
    let mut found: BTreeMap<(bool, String), (String, Option<String>)> = BTreeMap::new();
    for (written, value) in params(cmdline) {
        let name = written.replace('-', "_");
        let (rd, rest) = match name.strip_prefix("rd.") {
            Some(rest) => (true, rest),
            None => (false, name.as_str()),
        };
        let key = if rest == PREFIX {
            "enable"
        } else if let Some(key) = rest.strip_prefix(PREFIX).and_then(|k| k.strip_prefix('.')) {
            key
        } else {
            continue;
        };
        if rd && !initrd {
            log::debug!("kernel command line: {written} applies to the initramfs only; ignored");
            continue;
        }
        if !KEYS.contains(&key) {
            log::warn!(
                "kernel command line: unknown key {written} ignored (known: {})",
                KEYS.map(|k| format!("{PREFIX}.{k}")).join(", ")
            );
            continue;
        }
        found.insert((rd, key.to_owned()), (written, value));
    }

    let mut out = Cmdline::default();
    for key in KEYS {
        let chosen = found
            .get(&(true, key.to_owned()))
            .or_else(|| found.get(&(false, key.to_owned())));
        let Some((written, value)) = chosen else {
            continue;
        };
        match (apply(&mut out, key, written, value), &out.enable) {
            (Ok(()), _) => {}
            // The rescue switch works even when another key has a typo
            // (`enable` comes first in KEYS).
            (Err(e), Some(switch)) if !switch.on => {
                log::warn!("{e}; ignored, since {} disables the agent", switch.written)
            }
            (Err(e), _) => return Err(e),
        }
    }
    Ok(out)
}

/// Sets the field of `key` from its value as written.
fn apply(
    out: &mut Cmdline,
    key: &str,
    written: &str,
    value: &Option<String>,
) -> Result<(), ConfigError> {
    let bad = |message: String| ConfigError::Cmdline {
        key: written.to_owned(),
        message,
    };
    match key {
        "enable" => {
            let on = flag(value.as_deref()).map_err(bad)?;
            let written = match value {
                Some(v) => format!("{written}={v}"),
                None => written.to_owned(),
            };
            out.enable = Some(Switch { on, written });
        }
        "insecure_http" => out.insecure_http = Some(flag(value.as_deref()).map_err(bad)?),
        "kbs" => {
            let urls: Vec<String> = required(value)
                .map_err(bad)?
                .split(',')
                .map(str::to_owned)
                .collect();
            if urls.iter().any(String::is_empty) {
                return Err(bad(format!(
                    "'{}' has an empty URL; separate URLs with single commas",
                    value.as_deref().unwrap_or_default()
                )));
            }
            out.kbs = Some(urls);
        }
        "kbs_ca" => {
            let path = PathBuf::from(required(value).map_err(bad)?);
            if !path.is_absolute() {
                return Err(bad(format!(
                    "'{}' is not an absolute path; give the CA bundle's full path",
                    path.display()
                )));
            }
            out.kbs_ca = Some(path);
        }
        "tee" => {
            let name = required(value).map_err(bad)?;
            out.tee = Some(config::platform(name).map_err(bad)?);
        }
        "timeout" => {
            let secs = required(value).map_err(bad)?;
            out.timeout = Some(config::seconds(secs).map_err(bad)?);
        }
        _ => {}
    }
    Ok(())
}

/// The command line the agent reads: `/proc/cmdline`, and in the initramfs
/// first `/etc/cmdline.d/*.conf` and `/etc/cmdline` as dracut's
/// `getcmdline` does (so a dracut module can bake keys into the image; the
/// later text wins).
pub fn read(initrd: bool) -> Result<String> {
    read_with(crate::root::path, initrd)
}

/// `read` with `path` mapping absolute paths to real ones (tests re-root).
fn read_with(path: impl Fn(&str) -> PathBuf, initrd: bool) -> Result<String> {
    let mut text = String::new();
    if initrd {
        let dir = path("/etc/cmdline.d");
        let mut confs = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.with_context(|| format!("list {}", dir.display()))?;
                    let conf = entry.path();
                    if conf.extension().is_some_and(|e| e == "conf") {
                        confs.push(conf);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("list {}", dir.display())),
        }
        confs.sort();
        confs.push(path("/etc/cmdline"));
        for conf in confs {
            match std::fs::read(&conf) {
                Ok(line) => {
                    text.push_str(&String::from_utf8_lossy(&line));
                    text.push(' ');
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("read {}", conf.display())),
            }
        }
    }
    let proc = path("/proc/cmdline");
    // Bytes: a parameter of someone else's that is not UTF-8 must not
    // stop the agent; its own keys are ASCII.
    let cmdline = std::fs::read(&proc).with_context(|| format!("read {}", proc.display()))?;
    text.push_str(&String::from_utf8_lossy(&cmdline));
    Ok(text)
}

fn required(value: &Option<String>) -> Result<&str, String> {
    match value.as_deref() {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err("needs a value (key=value)".to_owned()),
    }
}

/// A boolean switch: bare means on; otherwise the kernel's `kstrtobool` words.
fn flag(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("1" | "y" | "yes" | "on" | "true") => Ok(true),
        Some("0" | "n" | "no" | "off" | "false") => Ok(false),
        Some(other) => Err(format!("'{other}' is not a switch value; use 1 or 0")),
    }
}

/// Splits like the kernel's `next_arg()`: returns (key, value) pairs with
/// the value's surrounding quotes removed; stops at `--`.
fn params(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut rest = cmdline.trim_start_matches(space);
    while !rest.is_empty() {
        let mut arg = rest;
        let mut in_quote = false;
        let quoted = arg.starts_with('"');
        if quoted {
            arg = &arg[1..];
            in_quote = true;
        }
        let mut end = arg.len();
        let mut equals = None;
        for (i, c) in arg.char_indices() {
            if space(c) && !in_quote {
                end = i;
                break;
            }
            if equals.is_none() && c == '=' {
                equals = Some(i);
            }
            if c == '"' {
                in_quote = !in_quote;
            }
        }
        let token = &arg[..end];
        // The kernel drops a closing quote of a quoted parameter or value.
        let unquote_end = |s: &str, open: bool| -> String {
            match s.strip_suffix('"') {
                Some(inner) if open => inner.to_owned(),
                _ => s.to_owned(),
            }
        };
        let (key, value) = match equals.filter(|&i| i > 0) {
            None => (unquote_end(token, quoted), None),
            Some(i) => {
                let value = &token[i + 1..];
                let value = match value.strip_prefix('"') {
                    Some(v) => unquote_end(v, true),
                    None => unquote_end(value, quoted),
                };
                (token[..i].to_owned(), Some(value))
            }
        };
        if key == "--" && value.is_none() {
            break;
        }
        out.push((key, value));
        rest = arg[end..].trim_start_matches(space);
    }
    out
}

/// The kernel's `isspace()` (ASCII, including vertical tab).
fn space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::{params, parse, read_with, Cmdline, Switch};
    use crate::evidence::Platform;

    fn p(key: &str, value: Option<&str>) -> (String, Option<String>) {
        (key.to_owned(), value.map(str::to_owned))
    }

    #[test]
    fn split_like_the_kernel() {
        for (cmdline, expected) in [
            ("", vec![]),
            ("  ro  quiet ", vec![p("ro", None), p("quiet", None)]),
            ("a=b c=", vec![p("a", Some("b")), p("c", Some(""))]),
            ("k=\"a b\" x", vec![p("k", Some("a b")), p("x", None)]),
            ("\"k=a b\" x", vec![p("k", Some("a b")), p("x", None)]),
            ("k=a=b", vec![p("k", Some("a=b"))]),
            ("k=x\"y z\"", vec![p("k", Some("x\"y z\""))]),
            ("=v", vec![p("=v", None)]),
            ("a\tb\nc", vec![p("a", None), p("b", None), p("c", None)]),
            ("a -- cvm_attest=0", vec![p("a", None)]),
            (
                "a --=x b",
                vec![p("a", None), p("--", Some("x")), p("b", None)],
            ),
            ("k=\"unterminated x", vec![p("k", Some("unterminated x"))]),
        ] {
            assert_eq!(params(cmdline), expected, "{cmdline:?}");
        }
    }

    fn sw(on: bool, written: &str) -> Option<Switch> {
        Some(Switch {
            on,
            written: written.to_owned(),
        })
    }

    #[test]
    fn keys() {
        let urls = |u: &[&str]| Some(u.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        for (cmdline, initrd, expected) in [
            ("ro quiet", false, Cmdline::default()),
            (
                "cvm_attest.kbs=https://a,https://b cvm_attest.tee=az-snp-vtpm",
                false,
                Cmdline {
                    kbs: urls(&["https://a", "https://b"]),
                    tee: Some(Platform::AzSnpVtpm),
                    ..Cmdline::default()
                },
            ),
            (
                "cvm-attest.kbs-ca=/etc/ca.pem cvm_attest.insecure-http cvm_attest.timeout=60",
                false,
                Cmdline {
                    kbs_ca: Some(PathBuf::from("/etc/ca.pem")),
                    insecure_http: Some(true),
                    timeout: Some(Duration::from_secs(60)),
                    ..Cmdline::default()
                },
            ),
            (
                "cvm_attest.insecure_http=1 cvm_attest.insecure_http=0",
                false,
                Cmdline {
                    insecure_http: Some(false),
                    ..Cmdline::default()
                },
            ),
            (
                "cvm_attest=0",
                false,
                Cmdline {
                    enable: sw(false, "cvm_attest=0"),
                    ..Cmdline::default()
                },
            ),
            (
                "cvm_attest.enable=0",
                false,
                Cmdline {
                    enable: sw(false, "cvm_attest.enable=0"),
                    ..Cmdline::default()
                },
            ),
            (
                "cvm_attest=0 cvm_attest.enable=1",
                false,
                Cmdline {
                    enable: sw(true, "cvm_attest.enable=1"),
                    ..Cmdline::default()
                },
            ),
            (
                "cvm_attest.kbs=\"http://x\" cvm_attest.kbs=http://y",
                false,
                Cmdline {
                    kbs: urls(&["http://y"]),
                    ..Cmdline::default()
                },
            ),
            // rd. keys: ignored after switch-root …
            (
                "rd.cvm_attest.kbs=http://rd cvm_attest.kbs=http://real rd.cvm_attest=0",
                false,
                Cmdline {
                    kbs: urls(&["http://real"]),
                    ..Cmdline::default()
                },
            ),
            // … and winning in the initramfs, whatever the order.
            (
                "rd.cvm_attest.kbs=http://rd cvm_attest.kbs=http://real rd.cvm_attest=0",
                true,
                Cmdline {
                    kbs: urls(&["http://rd"]),
                    enable: sw(false, "rd.cvm_attest=0"),
                    ..Cmdline::default()
                },
            ),
            (
                "cvm_attest.tee=tdx",
                true,
                Cmdline {
                    tee: Some(Platform::Tdx),
                    ..Cmdline::default()
                },
            ),
            // Unknown keys are ignored (with a warning); lookalikes are not ours.
            (
                "cvm_attest.kbss=x cvm_attestx=1 xcvm_attest.kbs=x",
                false,
                Cmdline::default(),
            ),
            // A bad value in an overridden occurrence does not matter.
            (
                "cvm_attest.timeout=abc cvm_attest.timeout=5",
                false,
                Cmdline {
                    timeout: Some(Duration::from_secs(5)),
                    ..Cmdline::default()
                },
            ),
        ] {
            assert_eq!(
                parse(cmdline, initrd).unwrap(),
                expected,
                "{cmdline:?} initrd={initrd}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        for (cmdline, initrd, message) in [
            ("cvm_attest.enable=maybe", false, "kernel command line cvm_attest.enable: 'maybe' is not a switch value; use 1 or 0"),
            ("cvm_attest.kbs", false, "kernel command line cvm_attest.kbs: needs a value"),
            ("cvm_attest.kbs=", false, "kernel command line cvm_attest.kbs: needs a value"),
            ("cvm_attest.kbs=http://a,,http://b", false, "kernel command line cvm_attest.kbs: 'http://a,,http://b' has an empty URL"),
            ("cvm_attest.kbs_ca=ca.pem", false, "kernel command line cvm_attest.kbs_ca: 'ca.pem' is not an absolute path"),
            ("cvm_attest.tee=sev", false, "kernel command line cvm_attest.tee: unknown TEE 'sev'; use one of snp, tdx, az-snp-vtpm, az-tdx-vtpm, tpm, sample"),
            ("rd.cvm_attest.timeout=0", true, "kernel command line rd.cvm_attest.timeout: 0 seconds"),
            ("cvm_attest.timeout=5m", false, "kernel command line cvm_attest.timeout: '5m' is not a number of seconds"),
            ("cvm_attest.insecure_http=2", false, "kernel command line cvm_attest.insecure_http: '2' is not a switch value"),
        ] {
            let err = parse(cmdline, initrd).unwrap_err().to_string();
            assert!(err.starts_with(message), "{cmdline:?}: {err}");
            // The rescue switch still works with the same mistake beside it.
            let off = parse(&format!("cvm_attest=0 {cmdline}"), initrd);
            if !cmdline.contains("enable") {
                let off = off.unwrap();
                assert!(!off.enable.unwrap().on, "{cmdline:?}");
            }
        }
    }

    #[test]
    fn dracut_order_in_the_initramfs() {
        let root = std::env::temp_dir().join(format!("cvm-attest-cmdline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc/cmdline.d")).unwrap();
        std::fs::create_dir_all(root.join("proc")).unwrap();
        for (file, text) in [
            ("etc/cmdline.d/20-b.conf", "cvm_attest.kbs=http://b\n"),
            (
                "etc/cmdline.d/10-a.conf",
                "cvm_attest.kbs=http://a cvm_attest.tee=tdx\n",
            ),
            (
                "etc/cmdline.d/30-c.conf.bak",
                "cvm_attest.kbs=http://ignored\n",
            ),
            ("etc/cmdline", "cvm_attest.timeout=9"),
            ("proc/cmdline", "ro cvm_attest.timeout=7\n"),
        ] {
            std::fs::write(root.join(file), text).unwrap();
        }
        // Someone else's parameter that is not UTF-8 is no reason to fail.
        std::fs::write(
            root.join("proc/cmdline"),
            b"ro x=\xe9 cvm_attest.timeout=7\n",
        )
        .unwrap();
        let path = |abs: &str| root.join(abs.trim_start_matches('/'));
        for (initrd, kbs, tee, timeout) in [
            (
                true,
                Some(vec!["http://b".to_owned()]),
                Some(Platform::Tdx),
                7,
            ),
            (false, None, None, 7),
        ] {
            let text = read_with(path, initrd).unwrap();
            let got = parse(&text, initrd).unwrap();
            assert_eq!(got.kbs, kbs, "{text}");
            assert_eq!(got.tee, tee, "{text}");
            assert_eq!(got.timeout, Some(Duration::from_secs(timeout)), "{text}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }
}
