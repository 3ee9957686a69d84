// SPDX-License-Identifier: Apache-2.0
//! configfs-tsm reports (Linux `Documentation/ABI/testing/configfs-tsm-report`,
//! `drivers/virt/coco/guest/report.c`).
//!
//! One private entry per request under `/sys/kernel/config/tsm/report`,
//! removed on drop. The ABI's rules this code relies on: binary attributes
//! are committed when the file is closed and the kernel ignores the result
//! of that commit, so `generation` is the only proof a write landed; every
//! committed write bumps `generation`; reading `outblob` (re)generates the
//! report. A concurrent writer is detected by reading `generation` before
//! the writes and after the read: it must have grown by exactly the number
//! of our writes, else the blob may belong to someone else's input.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::root;

/// Attempts when another writer races us.
const TRIES: u32 = 3;
/// Entry names of ours found taken before giving up.
const NAMES_TAKEN: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum TsmError {
    #[error("configfs-tsm is not available at {0} (needs CONFIG_TSM_REPORTS and configfs mounted on /sys/kernel/config)")]
    Absent(PathBuf),
    #[error("configfs-tsm at {0} has no provider: neither the sev-guest nor the tdx-guest driver is loaded")]
    NoProvider(PathBuf),
    #[error("permission denied creating a report under {0}: run as root")]
    Denied(PathBuf),
    #[error("configfs-tsm at {path} has provider '{found}', not '{wanted}'")]
    WrongProvider {
        path: PathBuf,
        found: String,
        wanted: &'static str,
    },
    #[error("another process wrote to the configfs-tsm report {path} while we used it (generation {before} → {after}, expected {expected}) {TRIES} times in a row")]
    Race {
        path: PathBuf,
        before: u64,
        after: u64,
        expected: u64,
    },
    #[error("the TEE is busy producing another report ({0}): retry later")]
    Busy(PathBuf),
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> TsmError + 'p {
    move |source| match source.raw_os_error() {
        Some(libc::EBUSY) | Some(libc::EAGAIN) => TsmError::Busy(path.to_owned()),
        _ => TsmError::Io {
            what,
            path: path.to_owned(),
            source,
        },
    }
}

/// What one request returned.
pub struct Blobs {
    pub outblob: Vec<u8>,
    /// SEV only: the certificate table (empty when the host supplies none).
    pub auxblob: Option<Vec<u8>>,
}

/// A private report entry; `rmdir` on drop.
pub struct Entry {
    dir: PathBuf,
}

impl Entry {
    /// Creates `cvm-attest-<pid>-<n>` under the report directory. A name
    /// that is taken belongs to a process of the same PID that was killed
    /// before it removed its entry, or that lives in another PID namespace:
    /// it is left alone, and the next number tried.
    pub fn create() -> Result<Entry, TsmError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let base = root::path(root::TSM_REPORT);
        if !base.is_dir() {
            return Err(TsmError::Absent(base));
        }
        let mut taken = 0;
        loop {
            let dir = base.join(format!(
                "cvm-attest-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(Entry { dir }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists && taken < NAMES_TAKEN => {
                    log::debug!("{} exists: trying the next name", dir.display());
                    taken += 1;
                }
                Err(e) => {
                    return Err(match (e.kind(), e.raw_os_error()) {
                        (ErrorKind::PermissionDenied, _) => TsmError::Denied(base),
                        (_, Some(libc::ENXIO)) => TsmError::NoProvider(base),
                        _ => io("create report entry", &dir)(e),
                    })
                }
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn attr(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The provider name without its newline (`sev_guest`, `tdx_guest`).
    pub fn provider(&self) -> Result<String, TsmError> {
        let path = self.attr("provider");
        let text = fs::read_to_string(&path).map_err(io("read", &path))?;
        Ok(text.trim_end().to_owned())
    }

    pub fn generation(&self) -> Result<u64, TsmError> {
        let path = self.attr("generation");
        let text = fs::read_to_string(&path).map_err(io("read", &path))?;
        text.trim().parse().map_err(|_| TsmError::Io {
            what: "parse",
            path,
            source: std::io::Error::new(
                ErrorKind::InvalidData,
                format!("generation is '{}'", text.trim()),
            ),
        })
    }

    /// Writes one attribute in a single write; the close commits it.
    fn write(&self, name: &str, data: &[u8]) -> Result<(), TsmError> {
        let path = self.attr(name);
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        file.write_all(data).map_err(io("write", &path))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, TsmError> {
        let path = self.attr(name);
        fs::read(&path).map_err(io("read", &path))
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.dir) {
            log::warn!("remove configfs-tsm entry {}: {e}", self.dir.display());
        }
    }
}

/// Pauses between attempts when the TEE is busy (configfs-tsm answers EBUSY
/// while another request is in flight; the SNP ioctls retry the same way).
const BUSY_WAITS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(400),
    Duration::from_secs(1),
];

/// Runs `op`, again after each of `BUSY_WAITS` while it fails with an
/// error that `busy` says is the TEE being busy.
pub fn busy_retry<T, E: std::fmt::Display>(
    busy: impl Fn(&E) -> bool,
    mut op: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    for wait in BUSY_WAITS {
        match op() {
            Err(e) if busy(&e) => {
                log::warn!("{e}; retrying in {} ms", wait.as_millis());
                std::thread::sleep(wait);
            }
            other => return other,
        }
    }
    op()
}

/// One report through a private entry: retried with a fresh entry while the
/// TEE is busy (`BUSY_WAITS`), and when another writer raced us (`TRIES`).
pub fn request(
    provider: &'static str,
    inblob: &[u8; 64],
    privlevel: Option<u32>,
) -> Result<Blobs, TsmError> {
    busy_retry(
        |e| matches!(e, TsmError::Busy(_)),
        || request_once(provider, inblob, privlevel),
    )
}

/// Requests a report from `provider` for `inblob`, at `privlevel` (SEV).
fn request_once(
    provider: &'static str,
    inblob: &[u8; 64],
    privlevel: Option<u32>,
) -> Result<Blobs, TsmError> {
    let mut last = None;
    for _ in 0..TRIES {
        let entry = Entry::create()?;
        let found = entry.provider()?;
        if found != provider {
            return Err(TsmError::WrongProvider {
                path: entry.path().to_owned(),
                found,
                wanted: provider,
            });
        }
        let before = entry.generation()?;
        let mut writes = 0;
        if let Some(level) = privlevel {
            entry.write("privlevel", level.to_string().as_bytes())?;
            writes += 1;
        }
        entry.write("inblob", inblob)?;
        writes += 1;
        let outblob = entry.read("outblob")?;
        let auxblob = if provider == "sev_guest" {
            Some(entry.read("auxblob")?)
        } else {
            None
        };
        let after = entry.generation()?;
        if after == before + writes {
            return Ok(Blobs { outblob, auxblob });
        }
        log::warn!(
            "configfs-tsm entry {} changed under us (generation {before} → {after}); retrying",
            entry.path().display()
        );
        last = Some(TsmError::Race {
            path: entry.path().to_owned(),
            before,
            after,
            expected: before + writes,
        });
    }
    Err(last.unwrap_or(TsmError::Absent(root::path(root::TSM_REPORT))))
}

/// The provider registered with configfs-tsm, if any (probe and detection).
pub fn provider() -> Result<String, TsmError> {
    Entry::create()?.provider()
}
