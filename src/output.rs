// SPDX-License-Identifier: Apache-2.0
//! Where `get` puts what it fetched: stdout, one file, or one file per
//! resource under a directory.
//!
//! The destination is planned before any network traffic, so a wrong one
//! costs no attestation. A secret never goes to a terminal, or to the
//! journal (stdout under systemd), unless `--output -` asks for it. Files
//! are written whole or not at all, by the same staging as the configured
//! sinks (`sink/file.rs`), with mode 0600. A destination
//! that is not tmpfs or ramfs is allowed for manual use but draws a warning.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::kbs::Fetched;
use crate::resource::ResourcePath;
use crate::sink::dir;
use crate::sink::file::{self, Target};

pub enum Output {
    Stdout,
    File(PathBuf),
    Dir(PathBuf),
}

impl Output {
    /// Checks the destination for `resources` (each once) before anything
    /// is fetched. `--output` names a directory when `listed` (the command
    /// line's count) is more than one, even if they were the same.
    pub fn plan(
        output: Option<&Path>,
        resources: &[ResourcePath],
        listed: usize,
    ) -> Result<Output> {
        let count = resources.len();
        let explicit_stdout = output == Some(Path::new("-"));
        match output {
            _ if count > 1 && (output.is_none() || explicit_stdout) => {
                bail!("{count} resources need --output DIR (one file per resource); stdout takes a single resource")
            }
            None if std::io::stdout().is_terminal() => bail!(
                "refusing to print a secret to the terminal: pass --output FILE, or --output - to print it anyway"
            ),
            None if stdout_is_journal() => bail!(
                "refusing to write a secret to stdout, which is the journal (run from a unit or \
                 systemd-run): pass --output FILE, or --output - to log it anyway"
            ),
            None => Ok(Output::Stdout),
            Some(_) if explicit_stdout => Ok(Output::Stdout),
            Some(path) if listed > 1 => {
                if path.exists() && !path.is_dir() {
                    bail!("--output {} is not a directory; with {listed} resources it must name one", path.display());
                }
                for r in resources {
                    let target = in_dir(path, r);
                    dir::reachable(&target)?;
                    file::replaceable(&target, "writing replaces it: remove it, or name another directory")?;
                }
                Ok(Output::Dir(path.to_owned()))
            }
            Some(path) if path.is_dir() => bail!(
                "--output {} is a directory; with one resource it names the file to write",
                path.display()
            ),
            Some(path) if path.as_os_str().as_encoded_bytes().ends_with(b"/") => bail!(
                "--output {} ends in '/'; with one resource it names the file to write",
                path.display()
            ),
            Some(path) => {
                dir::reachable(path)?;
                file::replaceable(
                    path,
                    "writing replaces it: name a new file, or pass --output - for stdout",
                )?;
                Ok(Output::File(path.to_owned()))
            }
        }
    }

    /// Writes every secret, or none.
    pub fn deliver(&self, fetched: &[Fetched]) -> Result<()> {
        match self {
            Output::Stdout => {
                warn_about_stdout();
                // Straight to fd 1: std's stdout keeps a copy in its buffer.
                // SAFETY: fd 1 is open for the whole process (`start::begin`),
                // and ManuallyDrop keeps this File from closing it.
                let mut out = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
                for f in fetched {
                    out.write_all(&f.data)
                        .context("write the secret to stdout")?;
                }
                Ok(())
            }
            Output::File(path) => deliver_files(&[(
                path.clone(),
                &fetched.first().context("nothing was fetched")?.data,
            )]),
            Output::Dir(dir) => {
                let files: Vec<(PathBuf, &[u8])> = fetched
                    .iter()
                    .map(|f| (in_dir(dir, &f.path), &f.data[..]))
                    .collect();
                deliver_files(&files)
            }
        }
    }
}

/// Where `--output DIR` puts `r`.
fn in_dir(dir: &Path, r: &ResourcePath) -> PathBuf {
    dir.join(&r.repo).join(&r.kind).join(&r.tag)
}

/// journald's socket for the stdout and stderr streams of units.
const JOURNAL_STDOUT: &str = "/run/systemd/journal/stdout";

/// Whether fd 1 is a journal stream: the one `JOURNAL_STREAM` names, or a
/// socket connected to journald's (when stdout and stderr are separate
/// journal streams, `JOURNAL_STREAM` names stderr's).
fn stdout_is_journal() -> bool {
    let stdout = std::io::stdout();
    if crate::logger::is_journal(stdout.as_fd()) {
        return true;
    }
    let Ok(fd) = stdout.as_fd().try_clone_to_owned() else {
        return false;
    };
    let journald = crate::root::path(JOURNAL_STDOUT);
    std::os::unix::net::UnixStream::from(fd)
        .peer_addr()
        .is_ok_and(|addr| addr.as_pathname() == Some(journald.as_path()))
}

/// `get … > FILE`: the shell chose the file, so only warn, as for --output.
/// And `get … >/dev/null` (or with stdout closed, which `start::begin`
/// points at /dev/null): the secret is thrown away, which is worth a word.
fn warn_about_stdout() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let fd1 = Path::new("/proc/self/fd/1");
    let Ok(meta) = std::fs::metadata(fd1) else {
        return;
    };
    if meta.is_file() && dir::memory_backed(fd1).is_ok_and(|memory| !memory) {
        log::warn!(
            "stdout is a file that is not on tmpfs or ramfs: the secret may reach persistent \
             storage; redirect to a file under /run instead"
        );
    }
    let null = std::fs::metadata("/dev/null");
    if meta.file_type().is_char_device() && null.is_ok_and(|n| n.rdev() == meta.rdev()) {
        log::warn!("stdout is /dev/null: the secret is thrown away; pass --output FILE to keep it");
    }
}

/// Stages every file (mode 0600), then moves them all into place.
fn deliver_files(files: &[(PathBuf, &[u8])]) -> Result<()> {
    let (mut staging, mut staged) = (file::Staging::default(), Vec::with_capacity(files.len()));
    for (path, data) in files {
        staged.push(staging.stage(&Target::operator_file(path.clone(), data))?);
    }
    if let Err(e) = staged.iter_mut().try_for_each(file::Staged::commit) {
        return Err(e.context(if file::undo_all(staged.iter_mut()) {
            "nothing was written: every file is as it was"
        } else {
            "writing failed, and some files could not be put back (see the errors above)"
        }));
    }
    for s in staged {
        log::info!("wrote {}", s.target().display());
        s.finish();
    }
    Ok(())
}
