// SPDX-License-Identifier: Apache-2.0
//! A small stderr logger for the `log` facade.
//!
//! When stderr is journald's stream (`JOURNAL_STREAM` names its device and
//! inode) each line starts with the sd-daemon priority prefix (`<3>` error
//! … `<7>` debug, sd-daemon(3)) so journald records real levels, in the
//! initramfs as after switch-root; by hand the lines are plain. Standard
//! output is never used: it carries secrets when asked to. Other crates'
//! warnings show at every level, their info from `-vv`, their debug and
//! trace only from `-vvv`; no module logs key material, tokens, cookies or
//! secret bytes.

use std::io::Write;
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    ours: LevelFilter,
    others: LevelFilter,
    journal: bool,
}

impl Logger {
    fn limit(&self, target: &str) -> LevelFilter {
        if target.starts_with(env!("CARGO_CRATE_NAME")) {
            self.ours
        } else if target.starts_with("tss_esapi") && self.others < LevelFilter::Trace {
            // tss-esapi logs every failed TPM command at error level, also
            // the ones the agent expects and handles (probing NV indices).
            LevelFilter::Off
        } else {
            self.others
        }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.limit(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.journal {
            format!("<{}>{}\n", priority(record.level()), record.args())
        } else {
            let label = match record.level() {
                Level::Error => "error: ",
                Level::Warn => "warning: ",
                _ => "",
            };
            let origin = if record.target().starts_with(env!("CARGO_CRATE_NAME")) {
                ""
            } else {
                record.target()
            };
            let sep = if origin.is_empty() { "" } else { ": " };
            format!("{label}{origin}{sep}{}\n", record.args())
        };
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// sd-daemon priorities.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The verbosity given to [`init`], for helper processes.
static FLAGS: OnceLock<(u8, bool)> = OnceLock::new();

/// The command-line flags (`-q`, `-v`…) that give a helper process the same
/// verbosity.
#[allow(dead_code)] // The TPM helper logs but starts no helper itself.
pub fn flags() -> Vec<&'static str> {
    match FLAGS.get() {
        Some((_, true)) => vec!["-q"],
        Some((v, false)) => vec!["-v"; usize::from(*v)],
        None => Vec::new(),
    }
}

/// Installs the logger: `verbosity` 0 = info, 1 = debug, 2 = trace, 3+ =
/// trace including other crates; `quiet` = errors only.
pub fn init(verbosity: u8, quiet: bool) {
    let _ = FLAGS.set((verbosity, quiet));
    let (ours, others) = match (quiet, verbosity) {
        (true, _) => (LevelFilter::Error, LevelFilter::Error),
        (false, 0) => (LevelFilter::Info, LevelFilter::Warn),
        (false, 1) => (LevelFilter::Debug, LevelFilter::Warn),
        (false, 2) => (LevelFilter::Trace, LevelFilter::Info),
        (false, _) => (LevelFilter::Trace, LevelFilter::Trace),
    };
    let journal = is_journal(std::os::fd::AsFd::as_fd(&std::io::stderr()));
    let logger = Logger {
        ours,
        others,
        journal,
    };
    // Only fails when a logger is already installed, which never happens.
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(ours.max(others));
    }
}

/// Whether `fd` is journald's stream, as systemd.exec(5) says to tell:
/// `JOURNAL_STREAM` is "DEVICE:INODE" of the stream it handed over, which
/// stdout and stderr still are unless someone redirected them.
pub fn is_journal(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = fd.try_clone_to_owned() else {
        return false;
    };
    std::fs::File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

#[cfg(test)]
mod tests {
    use super::{priority, Logger};
    use log::{Level, LevelFilter, Log, Metadata};

    #[test]
    fn priorities_follow_sd_daemon() {
        let got: Vec<u8> = [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ]
        .into_iter()
        .map(priority)
        .collect();
        assert_eq!(got, [3, 4, 6, 7, 7]);
    }

    #[test]
    fn other_crates_are_held_back() {
        let l = Logger {
            ours: LevelFilter::Debug,
            others: LevelFilter::Warn,
            journal: false,
        };
        let meta = |level, target| Metadata::builder().level(level).target(target).build();
        // Our crate is cvm_attest or, in the TPM helper, cvm_attest_tpm.
        assert!(l.enabled(&meta(
            Level::Debug,
            concat!(env!("CARGO_CRATE_NAME"), "::kbs")
        )));
        assert!(!l.enabled(&meta(Level::Debug, "hyper_util::client")));
        assert!(l.enabled(&meta(Level::Warn, "rustls::conn")));
    }
}
