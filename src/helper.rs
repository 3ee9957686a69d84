// SPDX-License-Identifier: Apache-2.0
//! The agent's helper programs: `cvm-attest-tpm` (tpm2-tss) and
//! `cvm-attest-units` (the system bus). Each holds a library stack the agent
//! needs only sometimes, so that the agent does not load it, or carry it in
//! its binary, on every run; none of them ever sees a secret.
//!
//! A helper is found beside the agent (a build tree), else in the libexec
//! directory compiled in by `make` (`CVM_ATTEST_LIBEXECDIR`). Debug builds
//! (the tests') also take a stand-in named by the helper's test variable;
//! release builds never run a program named by their environment.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result};

/// Where the package installs the helpers when they are not beside the agent.
const LIBEXECDIR: &str = match option_env!("CVM_ATTEST_LIBEXECDIR") {
    Some(dir) => dir,
    None => "/usr/libexec",
};

pub struct Helper {
    /// File name, beside the agent or in the libexec directory.
    pub name: &'static str,
    /// What messages call it ("the TPM helper").
    pub what: &'static str,
    /// Debug builds only: the variable naming a stand-in.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub test_env: &'static str,
    /// The only variables of the agent's environment it gets.
    pub env: &'static [&'static str],
}

impl Helper {
    pub fn path(&self) -> PathBuf {
        #[cfg(debug_assertions)]
        if let Some(path) = std::env::var_os(self.test_env) {
            return path.into();
        }
        if let Ok(exe) = std::env::current_exe() {
            let beside = exe.with_file_name(self.name);
            if beside.is_file() {
                return beside;
            }
        }
        PathBuf::from(LIBEXECDIR).join(self.name)
    }

    /// Starts the one at `path` with the agent's `-q`/`-v`, then `args`, a
    /// clean environment but [`Helper::env`] (no NOTIFY_SOCKET, no
    /// proxies…), stdout piped and stderr shared (its logs are the agent's).
    pub fn spawn<I, S>(&self, path: &Path, args: I, stdin: Stdio) -> Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(path);
        command.env_clear();
        for name in self.env {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command
            .args(crate::logger::flags())
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "run {} {} (it comes with cvm-attest)",
                    self.what,
                    path.display()
                )
            })
    }
}
