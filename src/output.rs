// SPDX-License-Identifier: Apache-2.0
//! Where `get` puts what it fetched: stdout, one file, or one file per
//! resource under a directory.
//!
//! The destination is planned before any network traffic, so a wrong one
//! costs no attestation. A secret never goes to a terminal unless `--output -`
//! asks for it. Files are written whole or not at all: each goes to a
//! temporary file (mode 0600) in its final directory and is renamed into
//! place only after every secret has been written. A destination that is
//! not tmpfs or ramfs is allowed for manual use but draws a warning.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::kbs::Fetched;

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

pub enum Output {
    Stdout,
    File(PathBuf),
    Dir(PathBuf),
}

impl Output {
    /// Checks the destination for `count` resources before anything is fetched.
    pub fn plan(output: Option<&Path>, count: usize) -> Result<Output> {
        let explicit_stdout = output == Some(Path::new("-"));
        match output {
            _ if count > 1 && (output.is_none() || explicit_stdout) => {
                bail!("{count} resources need --output DIR (one file per resource); stdout takes a single resource")
            }
            None if std::io::stdout().is_terminal() => bail!(
                "refusing to print a secret to the terminal: pass --output FILE, or --output - to print it anyway"
            ),
            None => Ok(Output::Stdout),
            Some(_) if explicit_stdout => Ok(Output::Stdout),
            Some(path) if count > 1 => {
                if path.exists() && !path.is_dir() {
                    bail!("--output {} is not a directory; with {count} resources it must name one", path.display());
                }
                Ok(Output::Dir(path.to_owned()))
            }
            Some(path) if path.is_dir() => bail!(
                "--output {} is a directory; with one resource it names the file to write",
                path.display()
            ),
            Some(path) => Ok(Output::File(path.to_owned())),
        }
    }

    /// Writes every secret, or none.
    pub fn deliver(&self, fetched: &[Fetched]) -> Result<()> {
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                for f in fetched {
                    out.write_all(&f.data)
                        .context("write the secret to stdout")?;
                }
                out.flush().context("write the secret to stdout")
            }
            Output::File(path) => {
                let f = fetched.first().context("nothing was fetched")?;
                commit(vec![stage(path, &f.data)?])
            }
            Output::Dir(dir) => {
                let mut staged = Vec::with_capacity(fetched.len());
                for f in fetched {
                    let target = dir.join(&f.path.repo).join(&f.path.kind).join(&f.path.tag);
                    match stage(&target, &f.data) {
                        Ok(s) => staged.push(s),
                        Err(e) => {
                            discard(staged);
                            return Err(e);
                        }
                    }
                }
                commit(staged)
            }
        }
    }
}

/// A secret written to a temporary file beside its target.
struct Staged {
    temp: PathBuf,
    target: PathBuf,
}

fn stage(target: &Path, data: &[u8]) -> Result<Staged> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("create directory {}", dir.display()))?;
    warn_unless_memory_backed(&dir);
    let name = target.file_name().context("output path names no file")?;
    let temp = dir.join(format!(
        ".{}.cvm-attest-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(data)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&temp);
        return Err(e).with_context(|| format!("write {}", target.display()));
    }
    Ok(Staged {
        temp,
        target: target.to_owned(),
    })
}

fn commit(staged: Vec<Staged>) -> Result<()> {
    let mut rest = staged.into_iter();
    while let Some(s) = rest.next() {
        if let Err(e) = fs::rename(&s.temp, &s.target) {
            let target = s.target.clone();
            discard(std::iter::once(s).chain(rest).collect());
            return Err(e)
                .with_context(|| format!("move the secret into place at {}", target.display()));
        }
        log::info!("wrote {}", s.target.display());
    }
    Ok(())
}

fn discard(staged: Vec<Staged>) {
    for s in staged {
        let _ = fs::remove_file(&s.temp);
    }
}

fn warn_unless_memory_backed(dir: &Path) {
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and st a writable statfs.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut st) } != 0 {
        return;
    }
    let magic = st.f_type as i64;
    if magic != TMPFS_MAGIC && magic != RAMFS_MAGIC {
        log::warn!(
            "{} is not on tmpfs or ramfs: the secret may reach persistent storage",
            dir.display()
        );
    }
}
