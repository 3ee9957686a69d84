// SPDX-License-Identifier: Apache-2.0
//! Configuration of `run`: one typed [`Config`] built from built-in defaults,
//! TOML files, the kernel command line and `run`'s flags.
//!
//! Precedence: built-in defaults, then `/etc/cvm-attest/config.toml`, then
//! the drop-ins `/etc/cvm-attest/config.d/*.toml` in lexical order, then the
//! kernel command line (`rd.cvm_attest.*` over `cvm_attest.*` in the
//! initramfs), then the flags of `run`, each later source overriding the keys
//! it sets, except that `[[secret]]` entries are merged by `name` (a later
//! secret replaces an earlier one of the same name entirely) and that
//! `kbs.url` is replaced, never appended to.
//!
//! Why this shape: the agent runs at boot, where a silently ignored typo means
//! a machine that does not come up, so every file is parsed strictly (unknown
//! keys are errors) and every message names the file, the line and the key
//! path (`/etc/cvm-attest/config.toml:31: secret[2].keyring[0].type: …`).
//! A missing `config.toml` is fine: in an initramfs the kernel command line
//! (`cmdline.rs`) may configure everything. `cvm_attest=0` on the command line
//! disables the agent without reading any file, so it rescues a boot whose
//! configuration is broken.
//!
//! The file (all keys optional; kebab-case; defaults in brackets):
//!
//! ```toml
//! enable = true                      # [true]
//! [kbs]
//! url = ["https://kbs-a.example:8080", "https://kbs-b.example:8080"]   # tried in order; or one string
//! ca = "/etc/cvm-attest/kbs-ca.pem"  # [system roots]
//! insecure-http = false              # allow http:// URLs
//! timeout = 300                      # seconds for the whole run, retries included [300]
//! connect-timeout = 10               # [10]
//! request-timeout = 30               # [30]
//! [tee]
//! type = "snp"                       # snp, tdx, az-snp-vtpm, az-tdx-vtpm, tpm, sample [detect]
//! tcti = "device:/dev/tpmrm0"
//! ak-handle = "0x81010002"           # a persistent handle, string or integer
//! imds-url = "http://169.254.169.254"
//! hcl-timeout = 10                   # seconds
//! [delivery]
//! secrets-dir = "/run/cvm-attest"    # under /run [/run/cvm-attest]
//! keyring = "cvm-attest"             # default keyring of keyring sinks [cvm-attest]
//!
//! [[secret]]
//! name = "root-luks"                 # [A-Za-z0-9_.@-]+, unique
//! resource = "default/luks/root"     # or kbs:///default/luks/root
//! required = true                    # [true]
//! reload = ["nginx.service"]         # units to act on after delivery
//! restart = ["sshd.service"]
//! reload-or-restart = []
//!   [[secret.file]]                  # relative to secrets-dir, or absolute under /run
//!   path = "luks/root.key"
//!   mode = "0400"                    # octal string, or 0o400 [0400]; never world-readable
//!   owner = "root"                   # name (this root's /etc/passwd) or number [the agent's]
//!   group = "root"                   # name (/etc/group) or number
//!   [[secret.credential]]            # /run/credstore/<name> for LoadCredential=
//!   name = "tls.key"                 # [the secret's name]
//!   [[secret.cryptsetup]]            # /run/cryptsetup-keys.d/<volume>.key for crypttab
//!   volume = "root"
//!   [[secret.keyring]]               # a key in a named keyring under root's @u
//!   type = "logon"                   # user (readable back) or logon (kernel only)
//!   description = "cvm:root"         # logon keys need a "prefix:"
//!   keyring = "cvm-attest"           # [delivery.keyring]
//!   permissions = "0x3f010000"       # [0x3f010000: possessor all, user view]
//!   timeout = 600                    # seconds until the key expires [never]
//! ```
//!
//! Every secret needs at least one destination, and no destination may be
//! written by two sinks.

mod accounts;
mod file;
mod secret;
mod sinks;
#[cfg(test)]
mod tests;

use std::io;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;

use crate::cmdline::{self, Switch};
use crate::evidence::Platform;
use crate::sink::{Secret, KEYRING, SECRETS_DIR};

/// Where the configuration comes from (`run` passes the real paths; tests
/// their own).
pub struct Sources<'a> {
    /// `/etc/cvm-attest/config.toml`.
    pub file: &'a Path,
    /// `file` was named by `--config`: it must exist.
    pub file_given: bool,
    /// `/etc/cvm-attest/config.d`.
    pub dropins: &'a Path,
    /// The kernel command line (see `cmdline::read`).
    pub cmdline: &'a str,
    /// Running in the initramfs: `rd.cvm_attest.*` keys apply.
    pub initrd: bool,
    /// For `cleanup`, which needs the secrets only: a disabled agent or a
    /// missing KBS URL does not stop the load (keys left for volumes opened
    /// meanwhile are wiped whether or not this root runs the agent).
    pub secrets_only: bool,
}

/// `run`'s flags, the last word.
#[derive(Default)]
pub struct Overrides {
    /// `--kbs` (replaces the list when non-empty).
    pub kbs: Vec<String>,
    pub kbs_ca: Option<PathBuf>,
    /// `--insecure-http` (can only turn it on).
    pub insecure_http: bool,
    pub tee: Option<Platform>,
    pub timeout: Option<Duration>,
}

/// What `run` does, with every layer applied and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// False when disabled by a file or the kernel command line: `run` logs
    /// `disabled_by` once and exits 0.
    pub enabled: bool,
    /// `file:line`, or `kernel command line cvm_attest.enable=0`.
    pub disabled_by: Option<String>,
    /// KBS URLs, tried in order (at least one when enabled).
    pub kbs: Vec<String>,
    pub kbs_ca: Option<PathBuf>,
    pub insecure_http: bool,
    /// `None`: detect the platform.
    pub tee: Option<Platform>,
    pub tcti: Option<String>,
    pub ak_handle: Option<u32>,
    pub imds_url: Option<String>,
    pub hcl_timeout: Option<Duration>,
    /// Overall deadline of `run`, retries included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Where relative `file` sinks go.
    pub secrets_dir: PathBuf,
    /// Default keyring of keyring sinks.
    pub keyring: String,
    pub secrets: Vec<Secret>,
}

/// Why the configuration cannot be used. `run` exits 2 for all but `Read`
/// (1: local I/O).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or directory exists but cannot be read (the cause is the source).
    #[error("read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file breaks the TOML syntax, the schema or a rule. `key` is the key
    /// path (`secret[2].keyring[0].type`), empty when there is none.
    #[error("{}:{line}: {}{message}", .file.display(), key_prefix(.key))]
    Invalid {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// A kernel command line key has a bad value; `key` as written.
    #[error("kernel command line {key}: {message}")]
    Cmdline { key: String, message: String },
    /// A flag of `run` has a bad value.
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    /// Enabled, but no layer names a KBS.
    #[error(
        "no KBS URL is configured: set kbs.url in {} (or a drop-in), cvm_attest.kbs= on the \
         kernel command line, or --kbs; or disable the agent (enable = false, cvm_attest=0)",
        .file.display()
    )]
    NoKbs { file: PathBuf },
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

/// Builds the configuration (see the module documentation for the order).
pub fn load(sources: &Sources, overrides: &Overrides) -> Result<Config, ConfigError> {
    let cmdline = cmdline::parse(sources.cmdline, sources.initrd)?;
    let mut config = Config::defaults();
    if let Some(Switch { on: false, written }) = &cmdline.enable {
        config.enabled = false;
        config.disabled_by = Some(format!("kernel command line {written}"));
        if !sources.secrets_only {
            return Ok(config);
        }
    }

    let mut entries = Vec::new();
    let mut accounts = accounts::Accounts::system();
    for path in files(sources)? {
        let text = match crate::input::read_text(&path, crate::input::CONFIG_CAP) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound && path == sources.file => {
                if sources.file_given {
                    return Err(ConfigError::Flag {
                        flag: "--config",
                        message: format!("{} does not exist", path.display()),
                    });
                }
                continue;
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        file::apply(&path, &text, &mut config, &mut entries, &mut accounts)?;
    }

    if let Some(Switch { on: true, .. }) = cmdline.enable {
        // The command line re-enables what a file disabled.
        config.enabled = true;
        config.disabled_by = None;
    }
    if let Some(kbs) = cmdline.kbs {
        config.kbs = kbs;
    }
    config.kbs_ca = cmdline.kbs_ca.or(config.kbs_ca);
    config.insecure_http = cmdline.insecure_http.unwrap_or(config.insecure_http);
    config.tee = cmdline.tee.or(config.tee);
    config.timeout = cmdline.timeout.unwrap_or(config.timeout);

    if !overrides.kbs.is_empty() {
        if overrides.kbs.iter().any(|u| u.trim().is_empty()) {
            return Err(ConfigError::Flag {
                flag: "--kbs",
                message: "an empty URL; give the KBS URL, e.g. https://kbs.example:8080".into(),
            });
        }
        config.kbs = overrides.kbs.clone();
    }
    config.kbs_ca = overrides.kbs_ca.clone().or(config.kbs_ca);
    config.insecure_http |= overrides.insecure_http;
    config.tee = overrides.tee.or(config.tee);
    if let Some(timeout) = overrides.timeout {
        if timeout.is_zero() || timeout > Duration::from_secs(MAX_SECS) {
            return Err(ConfigError::Flag {
                flag: "--timeout",
                message: format!("give 1 to {MAX_SECS} seconds"),
            });
        }
        config.timeout = timeout;
    }

    config.secrets = secret::finalize(entries, &config.secrets_dir, &config.keyring)?;
    if config.enabled && config.kbs.is_empty() && !sources.secrets_only {
        return Err(ConfigError::NoKbs {
            file: sources.file.to_owned(),
        });
    }
    Ok(config)
}

impl Config {
    fn defaults() -> Config {
        Config {
            enabled: true,
            disabled_by: None,
            kbs: Vec::new(),
            kbs_ca: None,
            insecure_http: false,
            tee: None,
            tcti: None,
            ak_handle: None,
            imds_url: None,
            hcl_timeout: None,
            timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            secrets_dir: PathBuf::from(SECRETS_DIR),
            keyring: KEYRING.to_owned(),
            secrets: Vec::new(),
        }
    }
}

/// `config.toml`, then `config.d/*.toml` in lexical order.
fn files(sources: &Sources) -> Result<Vec<PathBuf>, ConfigError> {
    let mut dropins = Vec::new();
    let read_error = |source| ConfigError::Read {
        path: sources.dropins.to_owned(),
        source,
    };
    match std::fs::read_dir(sources.dropins) {
        Ok(entries) => {
            for entry in entries {
                let path = entry.map_err(read_error)?.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    dropins.push(path);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(read_error(e)),
    }
    dropins.sort();
    dropins.insert(0, sources.file.to_owned());
    Ok(dropins)
}

/// Where a value was set: file, line and key path, for messages.
#[derive(Clone, Debug)]
struct Loc {
    file: PathBuf,
    line: usize,
    key: String,
}

impl Loc {
    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            line: self.line,
            key: self.key.clone(),
            message: message.into(),
        }
    }
}

/// One file's text, to turn toml's byte spans into line numbers.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        1 + self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn at(&self, span: Range<usize>, key: impl Into<String>) -> Loc {
        Loc {
            file: self.path.to_owned(),
            line: self.line(span.start),
            key: key.into(),
        }
    }
}

/// Longest accepted timeout: a day (and no `Instant` overflow in `run`).
const MAX_SECS: u64 = 86_400;

/// A positive number of seconds, at most a day.
pub(crate) fn secs(n: u64) -> Result<Duration, String> {
    match n {
        0 => Err("0 seconds is no time at all; give a positive number of seconds".into()),
        n if n > MAX_SECS => Err(format!(
            "{n} seconds is more than a day; give at most {MAX_SECS}"
        )),
        n => Ok(Duration::from_secs(n)),
    }
}

/// `secs` of a decimal string.
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    let n = text
        .parse::<u64>()
        .map_err(|_| format!("'{text}' is not a number of seconds; give an integer, e.g. 300"))?;
    secs(n)
}

/// The names `tee` accepts, for messages.
fn platform_names() -> String {
    Platform::value_variants()
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A platform by its name.
pub(crate) fn platform(name: &str) -> Result<Platform, String> {
    Platform::from_str(name, false).map_err(|_| {
        format!(
            "unknown TEE '{name}'; use one of {}, or leave it out to detect the platform",
            platform_names()
        )
    })
}

/// Secrets live on tmpfs: an absolute path must be below `/run`.
fn under_run(path: &Path) -> Result<(), String> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "'{}' contains '..'; write the path without it",
            path.display()
        ));
    }
    if !path.starts_with("/run") || path == Path::new("/run") {
        return Err(format!(
            "'{}' is not under /run: secrets must stay on tmpfs, never reach a disk that outlives \
             the boot; use a path under /run",
            path.display()
        ));
    }
    Ok(())
}
