// SPDX-License-Identifier: Apache-2.0
//! Where `get` puts what it fetched: stdout, one file, or one file per
//! resource under a directory.
//!
//! The destination is planned before any network traffic, so a wrong one
//! costs no attestation. A secret never goes to a terminal unless `--output -`
//! asks for it. Files are written whole or not at all, by the same staging
//! as the configured sinks (`sink/file.rs`), with mode 0600. A destination
//! that is not tmpfs or ramfs is allowed for manual use but draws a warning.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::kbs::Fetched;
use crate::sink::file::{self, Target};

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
            Output::File(path) => deliver_files(&[(
                path.clone(),
                &fetched.first().context("nothing was fetched")?.data,
            )]),
            Output::Dir(dir) => {
                let files: Vec<(PathBuf, &[u8])> = fetched
                    .iter()
                    .map(|f| {
                        (
                            dir.join(&f.path.repo).join(&f.path.kind).join(&f.path.tag),
                            &f.data[..],
                        )
                    })
                    .collect();
                deliver_files(&files)
            }
        }
    }
}

/// Stages every file (mode 0600), then moves them all into place.
fn deliver_files(files: &[(PathBuf, &[u8])]) -> Result<()> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, data) in files {
        let target = Target {
            path: path.clone(),
            mode: 0o600,
            uid: None,
            gid: None,
            dir_mode: 0o700,
            memory_only: false,
            data,
        };
        staged.push(file::stage(&target)?);
    }
    if let Err(e) = staged.iter_mut().try_for_each(file::Staged::commit) {
        staged.iter_mut().rev().for_each(file::Staged::undo);
        return Err(e);
    }
    for s in staged {
        log::info!("wrote {}", s.target().display());
        s.finish();
    }
    Ok(())
}
